//! The one message type every part of the host speaks.
//!
//! Transports map their broker's properties to and from [`Message`]; the runtime maps it to
//! and from the WIT `message` record. Header values keep their type ([`HeaderValue`]) so that
//! AMQP tables and Kafka byte headers survive a round trip.
//!
//! The JSON form ([`Message::from_json`], [`Message::to_json`]) is what people type on the
//! command line and what the HTTP API will speak: the payload is text when it is UTF-8 and
//! `payload_base64` otherwise; header values are JSON values (string, integer, float, boolean,
//! array of strings, object) or `{"bytes_base64": "..."}` for raw bytes; a list of
//! `[name, value]` pairs instead of an object keeps repeated header names.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value as Json, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// A typed header value.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    Text(String),
    Bytes(Vec<u8>),
    Int(i64),
    Float(f64),
    Boolean(bool),
    List(Vec<String>),
    /// A JSON document, for nested values such as AMQP field tables.
    Json(String),
}

impl HeaderValue {
    /// The bytes the value holds (eight for a number or a boolean).
    pub fn size_bytes(&self) -> usize {
        match self {
            HeaderValue::Text(s) | HeaderValue::Json(s) => s.len(),
            HeaderValue::Bytes(b) => b.len(),
            HeaderValue::Int(_) | HeaderValue::Float(_) => 8,
            HeaderValue::Boolean(_) => 1,
            HeaderValue::List(items) => items.iter().map(String::len).sum(),
        }
    }
}

/// One message, as every transport and every plugin sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    /// Topic, routing key or queue name the message was sent to.
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, HeaderValue)>,
    pub content_type: Option<String>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub priority: Option<u8>,
    pub expiration_ms: Option<u64>,
    pub persistent: bool,
    pub payload: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// Why a JSON document is not a message; names the field at fault.
#[derive(Debug, thiserror::Error)]
#[error("message field `{field}`: {problem}")]
pub struct MessageJsonError {
    pub field: String,
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> MessageJsonError {
    MessageJsonError {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Message {
    /// A new message with a fresh id and the current time.
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Message {
            id: uuid::Uuid::new_v4().to_string(),
            topic: topic.into(),
            key: None,
            headers: Vec::new(),
            content_type: None,
            correlation_id: None,
            reply_to: None,
            priority: None,
            expiration_ms: None,
            persistent: true,
            payload: payload.into(),
            timestamp_ms: now_ms(),
        }
    }

    /// The bytes the whole message holds: payload, key, id, topic, every header's name and
    /// value, and the other text fields. Limits count this, not the payload alone, so a
    /// message of one payload byte and megabytes of headers is as large as it looks.
    pub fn size_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.size_bytes())
            .sum();
        self.payload.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.id.len()
            + self.topic.len()
            + text(&self.content_type)
            + text(&self.correlation_id)
            + text(&self.reply_to)
            + headers
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Sets header `name`, replacing any header of that name (ASCII case-insensitive).
    pub fn set_header(&mut self, name: &str, value: HeaderValue) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value));
    }

    /// The first field that no store can hold: a NUL byte is refused by PostgreSQL's `text`
    /// (and by AMQP clients that read C strings), so it is refused everywhere, before a
    /// message reaches a batch it would fail for everyone; so is a header name that is empty
    /// or holds control characters, and a time past what a store keeps.
    pub fn check_text(&self) -> Result<(), MessageJsonError> {
        if self.id.is_empty() {
            return Err(bad(
                "id",
                "cannot be empty (leave it out to get a fresh one)",
            ));
        }
        let fields = [
            ("id", Some(self.id.as_str())),
            ("topic", Some(self.topic.as_str())),
            ("content_type", self.content_type.as_deref()),
            ("correlation_id", self.correlation_id.as_deref()),
            ("reply_to", self.reply_to.as_deref()),
        ];
        for (field, value) in fields {
            if value.is_some_and(|v| v.contains('\0')) {
                return Err(bad(field, "holds a NUL byte, which no store can keep"));
            }
        }
        // Stores keep times as signed 64-bit integers; later than that is no time at all.
        for (field, value) in [
            ("timestamp_ms", Some(self.timestamp_ms)),
            ("expiration_ms", self.expiration_ms),
        ] {
            if value.is_some_and(|v| v > i64::MAX as u64) {
                return Err(bad(
                    field,
                    format!("is over the largest time kept, {}", i64::MAX),
                ));
            }
        }
        for (name, _) in &self.headers {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(bad(
                    format!("headers.{}", name.escape_debug()),
                    "a header name must be non-empty and hold no control characters",
                ));
            }
        }
        Ok(())
    }

    /// A copy every transport can carry, for a dead letter whose original cannot be sent
    /// as it is: NUL bytes become U+FFFD, and a property too long for AMQP (over 255 bytes) or
    /// an unusable header name moves into a text header `x-wharf-original-…` instead of being
    /// lost, and JSON header values travel as text.
    pub fn sendable_copy(&self) -> Message {
        let mut copy = self.clone();
        let clean = |text: &str| text.replace('\0', "\u{fffd}");
        let mut moved = Vec::new();
        copy.topic = clean(&copy.topic);
        copy.timestamp_ms = copy.timestamp_ms.min(i64::MAX as u64);
        copy.expiration_ms = copy.expiration_ms.map(|ms| ms.min(i64::MAX as u64));
        let short_fields = [
            ("id", Some(&mut copy.id)),
            ("content_type", copy.content_type.as_mut()),
            ("correlation_id", copy.correlation_id.as_mut()),
            ("reply_to", copy.reply_to.as_mut()),
        ];
        for (field, value) in short_fields {
            let Some(value) = value else { continue };
            *value = clean(value);
            if value.len() > 255 {
                moved.push((
                    format!("x-wharf-original-{field}"),
                    HeaderValue::Text(std::mem::take(value)),
                ));
            }
        }
        if copy.id.is_empty() {
            copy.id =
                uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, self.id.as_bytes()).to_string();
        }
        copy.content_type = copy.content_type.filter(|v| !v.is_empty());
        copy.correlation_id = copy.correlation_id.filter(|v| !v.is_empty());
        copy.reply_to = copy.reply_to.filter(|v| !v.is_empty());
        for (name, value) in &mut copy.headers {
            if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                moved.push((
                    "x-wharf-original-header".into(),
                    HeaderValue::Text(std::mem::take(name)),
                ));
                *name = "x-wharf-renamed-header".into();
            }
            // A JSON value becomes nested AMQP tables, whose keys have the same limits.
            if let HeaderValue::Json(text) = value {
                *value = HeaderValue::Text(std::mem::take(text));
            }
        }
        copy.headers.extend(moved);
        copy
    }

    /// Reads the JSON form. Every field is optional: a missing id is generated, a missing
    /// timestamp is now, `persistent` defaults to true. Unknown fields are an error, so a typo
    /// does not silently lose data.
    pub fn from_json(doc: &Json) -> Result<Message, MessageJsonError> {
        let obj = doc
            .as_object()
            .ok_or_else(|| bad("(message)", "expected a JSON object"))?;
        let mut msg = Message::new("", Vec::new());
        for (field, value) in obj {
            match field.as_str() {
                "id" => msg.id = string(field, value)?,
                "topic" => msg.topic = string(field, value)?,
                "key" => msg.key = optional(value, |v| string(field, v).map(String::into_bytes))?,
                "key_base64" => msg.key = optional(value, |v| base64_bytes(field, v))?,
                "content_type" => msg.content_type = optional(value, |v| string(field, v))?,
                "correlation_id" => msg.correlation_id = optional(value, |v| string(field, v))?,
                "reply_to" => msg.reply_to = optional(value, |v| string(field, v))?,
                "priority" => {
                    msg.priority = optional(value, |v| {
                        v.as_u64()
                            .and_then(|n| u8::try_from(n).ok())
                            .ok_or_else(|| bad(field, "expected an integer from 0 to 255"))
                    })?
                }
                "expiration_ms" => {
                    msg.expiration_ms = optional(value, |v| {
                        v.as_u64()
                            .ok_or_else(|| bad(field, "expected a non-negative integer"))
                    })?
                }
                "persistent" => {
                    msg.persistent = value
                        .as_bool()
                        .ok_or_else(|| bad(field, "expected true or false"))?
                }
                "payload" => {
                    msg.payload = match value {
                        Json::String(s) => s.clone().into_bytes(),
                        // A JSON payload may be written inline as a document.
                        other => serde_json::to_vec(other).expect("a JSON value serialises"),
                    }
                }
                "payload_base64" => msg.payload = base64_bytes(field, value)?,
                "timestamp_ms" => {
                    msg.timestamp_ms = value
                        .as_u64()
                        .ok_or_else(|| bad(field, "expected milliseconds since the Unix epoch"))?
                }
                "headers" => msg.headers = headers_from_json(value)?,
                other => {
                    return Err(bad(
                        other,
                        "unknown field (known: id, topic, key, key_base64, headers, content_type, \
                         correlation_id, reply_to, priority, expiration_ms, persistent, payload, \
                         payload_base64, timestamp_ms)",
                    ));
                }
            }
        }
        if obj.contains_key("payload") && obj.contains_key("payload_base64") {
            return Err(bad(
                "payload",
                "give `payload` or `payload_base64`, not both",
            ));
        }
        Ok(msg)
    }

    /// Writes the JSON form that [`Message::from_json`] reads back to an equal message.
    pub fn to_json(&self) -> Json {
        let mut obj = Map::new();
        obj.insert("id".into(), json!(self.id));
        obj.insert("topic".into(), json!(self.topic));
        if let Some(key) = &self.key {
            match std::str::from_utf8(key) {
                Ok(text) => obj.insert("key".into(), json!(text)),
                Err(_) => obj.insert("key_base64".into(), json!(BASE64.encode(key))),
            };
        }
        obj.insert("headers".into(), headers_to_json(&self.headers));
        obj.insert("content_type".into(), json!(self.content_type));
        obj.insert("correlation_id".into(), json!(self.correlation_id));
        obj.insert("reply_to".into(), json!(self.reply_to));
        obj.insert("priority".into(), json!(self.priority));
        obj.insert("expiration_ms".into(), json!(self.expiration_ms));
        obj.insert("persistent".into(), json!(self.persistent));
        match std::str::from_utf8(&self.payload) {
            Ok(text) => obj.insert("payload".into(), json!(text)),
            Err(_) => obj.insert("payload_base64".into(), json!(BASE64.encode(&self.payload))),
        };
        obj.insert("timestamp_ms".into(), json!(self.timestamp_ms));
        Json::Object(obj)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn string(field: &str, value: &Json) -> Result<String, MessageJsonError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad(field, "expected a string"))
}

fn optional<T>(
    value: &Json,
    read: impl FnOnce(&Json) -> Result<T, MessageJsonError>,
) -> Result<Option<T>, MessageJsonError> {
    if value.is_null() {
        Ok(None)
    } else {
        read(value).map(Some)
    }
}

fn base64_bytes(field: &str, value: &Json) -> Result<Vec<u8>, MessageJsonError> {
    BASE64
        .decode(string(field, value)?)
        .map_err(|e| bad(field, format!("not valid base64: {e}")))
}

fn headers_from_json(value: &Json) -> Result<Vec<(String, HeaderValue)>, MessageJsonError> {
    // An object is the usual form; a list of [name, value] pairs keeps repeated names (Kafka
    // allows them).
    let pairs: Vec<(String, &Json)> = match value {
        Json::Object(obj) => obj.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Json::Array(items) => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([Json::String(name), v]) => Ok((name.clone(), v)),
                _ => Err(bad(
                    "headers",
                    "a list of headers holds [name, value] pairs",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("headers", "expected an object of name to value")),
    };
    pairs
        .into_iter()
        .map(|(name, v)| {
            let field = format!("headers.{name}");
            let value = match v {
                Json::String(s) => HeaderValue::Text(s.clone()),
                Json::Bool(b) => HeaderValue::Boolean(*b),
                Json::Number(n) => match n.as_i64() {
                    Some(i) => HeaderValue::Int(i),
                    None => HeaderValue::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                Json::Array(items) => HeaderValue::List(
                    items
                        .iter()
                        .map(|item| string(&field, item))
                        .collect::<Result<_, _>>()?,
                ),
                Json::Object(o) if o.len() == 1 && o.contains_key("bytes_base64") => {
                    HeaderValue::Bytes(base64_bytes(&field, &o["bytes_base64"])?)
                }
                Json::Object(_) => HeaderValue::Json(v.to_string()),
                Json::Null => return Err(bad(field, "a header cannot be null")),
            };
            Ok((name, value))
        })
        .collect()
}

fn headers_to_json(headers: &[(String, HeaderValue)]) -> Json {
    let unique: std::collections::HashSet<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    if unique.len() == headers.len() {
        Json::Object(
            headers
                .iter()
                .map(|(k, v)| (k.clone(), header_to_json(v)))
                .collect(),
        )
    } else {
        headers
            .iter()
            .map(|(k, v)| json!([k, header_to_json(v)]))
            .collect()
    }
}

fn header_to_json(value: &HeaderValue) -> Json {
    match value {
        HeaderValue::Text(s) => json!(s),
        HeaderValue::Bytes(b) => json!({ "bytes_base64": BASE64.encode(b) }),
        HeaderValue::Int(i) => json!(i),
        HeaderValue::Float(f) => json!(f),
        HeaderValue::Boolean(b) => json!(b),
        HeaderValue::List(items) => json!(items),
        HeaderValue::Json(doc) => {
            serde_json::from_str(doc).unwrap_or_else(|_| json!({ "json": doc }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_every_field() {
        let msg = Message {
            id: "m-1".into(),
            topic: "orders.in".into(),
            key: Some(vec![0xff, 0x00]),
            headers: vec![
                ("text".into(), HeaderValue::Text("a".into())),
                ("bytes".into(), HeaderValue::Bytes(vec![1, 2, 255])),
                ("int".into(), HeaderValue::Int(-7)),
                ("float".into(), HeaderValue::Float(1.5)),
                ("bool".into(), HeaderValue::Boolean(true)),
                (
                    "list".into(),
                    HeaderValue::List(vec!["x".into(), "y".into()]),
                ),
                ("table".into(), HeaderValue::Json(r#"{"a":1}"#.into())),
            ],
            content_type: Some("application/json".into()),
            correlation_id: Some("c-1".into()),
            reply_to: Some("replies".into()),
            priority: Some(3),
            expiration_ms: Some(60_000),
            persistent: false,
            payload: vec![0, 159, 146, 150],
            timestamp_ms: 1_700_000_000_000,
        };
        let back = Message::from_json(&msg.to_json()).unwrap();
        assert_eq!(back, msg);

        // Repeated header names survive too, as a list of pairs.
        let mut repeated = msg.clone();
        repeated
            .headers
            .push(("text".into(), HeaderValue::Text("b".into())));
        assert!(repeated.to_json()["headers"].is_array());
        assert_eq!(Message::from_json(&repeated.to_json()).unwrap(), repeated);
    }

    #[test]
    fn a_minimal_document_gets_defaults() {
        let msg = Message::from_json(&json!({ "payload": "hi" })).unwrap();
        assert_eq!(msg.payload, b"hi");
        assert!(msg.persistent);
        assert!(!msg.id.is_empty());
        assert!(msg.timestamp_ms > 0);
    }

    #[test]
    fn errors_name_the_field() {
        let err = Message::from_json(&json!({ "priority": 300 })).unwrap_err();
        assert_eq!(err.field, "priority");
        let err = Message::from_json(&json!({ "paylod": "typo" })).unwrap_err();
        assert_eq!(err.field, "paylod");
        let err = Message::from_json(&json!({ "headers": { "h": null } })).unwrap_err();
        assert_eq!(err.field, "headers.h");
    }
}
