//! Wharf's [`Message`] to and from AMQP 0-9-1 properties, headers and routing key.
//!
//! | Wharf            | AMQP                                                              |
//! |------------------|-------------------------------------------------------------------|
//! | `id`             | `message_id` (a message without one gets an id derived from its content) |
//! | `topic`          | the routing key; a topic that differs from the key it was sent with travels in `x-wharf-topic` |
//! | `key`            | header `x-wharf-key` (bytes)                                      |
//! | `content_type`, `correlation_id`, `reply_to`, `priority` | the properties of those names |
//! | `expiration_ms`  | `expiration` (milliseconds, as text)                              |
//! | `persistent`     | `delivery_mode` 2 (1 otherwise)                                   |
//! | `timestamp_ms`   | `timestamp` (seconds); the milliseconds in `x-wharf-timestamp-ms` when they are not whole seconds |
//! | `headers`        | the header table, with typed values (below)                       |
//!
//! Header values: text ↔ long string, bytes ↔ byte array, int ↔ 64-bit int, float ↔ double,
//! boolean ↔ boolean, list ↔ array of strings, JSON ↔ nested tables and arrays (so services see
//! a dict, and `x-death` reaches a plugin as JSON). Smaller integer types, floats, decimals and
//! timestamps from other clients arrive as int or float. A header name used twice becomes an
//! array under that name, listed in `x-wharf-repeated`, and is split again on the way in. The
//! AMQP properties Wharf has no field for (`type`, `app_id`, `content_encoding`) arrive as
//! headers `x-amqp-type`, `x-amqp-app-id` and `x-amqp-content-encoding` and go back out as the
//! properties. AMQP tables are sorted by name, so header order is not kept.

use crate::broker::BrokerError;
use crate::message::{HeaderValue, Message};
use base64::Engine as _;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, ByteArray, FieldArray, FieldTable, LongString, ShortString};
use serde_json::Value as Json;
use std::collections::BTreeMap;

const TOPIC: &str = "x-wharf-topic";
const KEY: &str = "x-wharf-key";
const TIMESTAMP_MS: &str = "x-wharf-timestamp-ms";
const REPEATED: &str = "x-wharf-repeated";
const TYPE: &str = "x-amqp-type";
const APP_ID: &str = "x-amqp-app-id";
const CONTENT_ENCODING: &str = "x-amqp-content-encoding";

/// Namespace of the ids given to messages that arrive without a `message_id`.
const CONTENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x0a3f_6c2e_8d41_4b5a_9e07_c1d2_e3f4_a5b6);

fn short(field: &str, value: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(value).map_err(|_| BrokerError::Mapping {
        field: field.to_owned(),
        problem: format!(
            "`{}…` is {} bytes; AMQP allows 255",
            value.chars().take(40).collect::<String>(),
            value.len()
        ),
    })
}

/// The properties to publish `msg` with, when it is sent with `routing_key`.
pub fn to_amqp(msg: &Message, routing_key: &str) -> Result<BasicProperties, BrokerError> {
    let mut table: BTreeMap<ShortString, AMQPValue> = BTreeMap::new();
    let mut repeated: Vec<String> = Vec::new();
    let mut props = BasicProperties::default();
    for (name, value) in &msg.headers {
        match (name.as_str(), value) {
            (TYPE, HeaderValue::Text(text)) => {
                props = props.with_type(short(TYPE, text)?);
                continue;
            }
            (APP_ID, HeaderValue::Text(text)) => {
                props = props.with_app_id(short(APP_ID, text)?);
                continue;
            }
            (CONTENT_ENCODING, HeaderValue::Text(text)) => {
                props = props.with_content_encoding(short(CONTENT_ENCODING, text)?);
                continue;
            }
            _ => {}
        }
        let key = short("header name", name)?;
        let value = header_to_amqp(name, value)?;
        match table.get_mut(&key) {
            None => {
                table.insert(key, value);
            }
            Some(AMQPValue::FieldArray(values)) if repeated.contains(name) => values.push(value),
            Some(first) => {
                let first = std::mem::replace(first, AMQPValue::Void);
                table.insert(
                    key,
                    AMQPValue::FieldArray(FieldArray::from(vec![first, value])),
                );
                repeated.push(name.clone());
            }
        }
    }
    if !repeated.is_empty() {
        table.insert(
            REPEATED.into(),
            AMQPValue::FieldArray(FieldArray::from(
                repeated
                    .into_iter()
                    .map(|name| AMQPValue::LongString(name.into()))
                    .collect::<Vec<_>>(),
            )),
        );
    }
    if !msg.topic.is_empty() && msg.topic != routing_key {
        table.insert(
            TOPIC.into(),
            AMQPValue::LongString(msg.topic.clone().into()),
        );
    }
    if let Some(key) = &msg.key {
        table.insert(
            KEY.into(),
            AMQPValue::ByteArray(ByteArray::from(key.as_slice())),
        );
    }
    if !msg.timestamp_ms.is_multiple_of(1000) {
        table.insert(
            TIMESTAMP_MS.into(),
            AMQPValue::LongLongInt(msg.timestamp_ms as i64),
        );
    }
    props = props
        .with_message_id(short("id", &msg.id)?)
        .with_delivery_mode(if msg.persistent { 2 } else { 1 })
        .with_headers(FieldTable::from(table));
    if msg.timestamp_ms != 0 {
        props = props.with_timestamp(msg.timestamp_ms / 1000);
    }
    if let Some(content_type) = &msg.content_type {
        props = props.with_content_type(short("content_type", content_type)?);
    }
    if let Some(correlation_id) = &msg.correlation_id {
        props = props.with_correlation_id(short("correlation_id", correlation_id)?);
    }
    if let Some(reply_to) = &msg.reply_to {
        props = props.with_reply_to(short("reply_to", reply_to)?);
    }
    if let Some(priority) = msg.priority {
        props = props.with_priority(priority);
    }
    if let Some(expiration) = msg.expiration_ms {
        props = props.with_expiration(expiration.to_string().into());
    }
    Ok(props)
}

/// The `message_id` a delivery carries, if it has one of its own. An empty id is no id:
/// every such message would get the same derived output ids.
pub fn own_id(props: &BasicProperties) -> Option<&str> {
    props
        .message_id()
        .as_ref()
        .map(|id| id.as_str())
        .filter(|id| !id.is_empty())
}

/// The message a delivery with these properties, routing key and payload carries.
pub fn from_amqp(routing_key: &str, props: &BasicProperties, payload: Vec<u8>) -> Message {
    let mut headers: Vec<(String, HeaderValue)> = Vec::new();
    let mut topic = None;
    let mut key = None;
    let mut timestamp_ms = None;
    let mut repeated: Vec<String> = Vec::new();
    if let Some(table) = props.headers() {
        if let Some(AMQPValue::FieldArray(names)) = table.inner().get(REPEATED) {
            repeated = names.as_slice().iter().filter_map(text_of).collect();
        }
        for (name, value) in table.inner() {
            match (name.as_str(), value) {
                (REPEATED, _) => {}
                (TOPIC, value) if text_of(value).is_some() => topic = text_of(value),
                (KEY, AMQPValue::ByteArray(bytes)) => key = Some(bytes.as_slice().to_vec()),
                (TIMESTAMP_MS, value) if int_of(value).is_some() => {
                    timestamp_ms = int_of(value).map(|ms| ms as u64)
                }
                (name, AMQPValue::FieldArray(values)) if repeated.iter().any(|r| r == name) => {
                    for value in values.as_slice() {
                        headers.push((name.to_owned(), header_from_amqp(value)));
                    }
                }
                (name, value) => headers.push((name.to_owned(), header_from_amqp(value))),
            }
        }
    }
    for (name, value) in [
        (TYPE, props.kind()),
        (APP_ID, props.app_id()),
        (CONTENT_ENCODING, props.content_encoding()),
    ] {
        if let Some(value) = value {
            headers.push((name.to_owned(), HeaderValue::Text(value.to_string())));
        }
    }
    let timestamp_ms = timestamp_ms
        .or_else(|| props.timestamp().map(|s| s.saturating_mul(1000)))
        .unwrap_or(0)
        // What a store can keep (a signed 64-bit count of milliseconds).
        .min(i64::MAX as u64);
    let id = match own_id(props) {
        Some(id) => id.to_owned(),
        None => content_id(routing_key, props, &payload),
    };
    Message {
        id,
        topic: topic.unwrap_or_else(|| routing_key.to_owned()),
        key,
        headers,
        content_type: props.content_type().as_ref().map(|s| s.to_string()),
        correlation_id: props.correlation_id().as_ref().map(|s| s.to_string()),
        reply_to: props.reply_to().as_ref().map(|s| s.to_string()),
        priority: *props.priority(),
        expiration_ms: props
            .expiration()
            .as_ref()
            .and_then(|e| e.as_str().parse().ok())
            .map(|ms: u64| ms.min(i64::MAX as u64)),
        persistent: *props.delivery_mode() == Some(2),
        payload,
        timestamp_ms,
    }
}

/// A name-based id for a message sent without one, so that a redelivery of it gets the same id
/// (and the outputs made from it the same derived ids).
fn content_id(routing_key: &str, props: &BasicProperties, payload: &[u8]) -> String {
    let mut name = Vec::with_capacity(payload.len() + 64);
    name.extend_from_slice(routing_key.as_bytes());
    name.push(0);
    if let Some(correlation_id) = props.correlation_id() {
        name.extend_from_slice(correlation_id.as_str().as_bytes());
    }
    name.push(0);
    if let Some(timestamp) = props.timestamp() {
        name.extend_from_slice(&timestamp.to_be_bytes());
    }
    name.push(0);
    name.extend_from_slice(payload);
    uuid::Uuid::new_v5(&CONTENT_ID_NAMESPACE, &name).to_string()
}

fn text_of(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn int_of(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::Timestamp(n) => *n as i64,
        _ => return None,
    })
}

fn header_to_amqp(name: &str, value: &HeaderValue) -> Result<AMQPValue, BrokerError> {
    Ok(match value {
        HeaderValue::Text(text) => AMQPValue::LongString(text.clone().into()),
        HeaderValue::Bytes(bytes) => AMQPValue::ByteArray(ByteArray::from(bytes.as_slice())),
        HeaderValue::Int(n) => AMQPValue::LongLongInt(*n),
        HeaderValue::Float(x) => AMQPValue::Double(*x),
        HeaderValue::Boolean(b) => AMQPValue::Boolean(*b),
        HeaderValue::List(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .iter()
                .map(|item| AMQPValue::LongString(item.clone().into()))
                .collect::<Vec<_>>(),
        )),
        HeaderValue::Json(text) => match serde_json::from_str::<Json>(text) {
            Ok(doc) => json_to_amqp(name, &doc)?,
            Err(_) => AMQPValue::LongString(text.clone().into()),
        },
    })
}

/// A JSON header value as nested AMQP tables and arrays. An object key is a short string, so
/// one over 255 bytes is refused by its header's name rather than reaching lapin (which panics).
fn json_to_amqp(header: &str, doc: &Json) -> Result<AMQPValue, BrokerError> {
    Ok(match doc {
        Json::Null => AMQPValue::Void,
        Json::Bool(b) => AMQPValue::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Json::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .iter()
                .map(|item| json_to_amqp(header, item))
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Json::Object(fields) => AMQPValue::FieldTable(FieldTable::from(
            fields
                .iter()
                .map(|(k, v)| {
                    Ok((
                        short(&format!("headers.{header} (a key)"), k)?,
                        json_to_amqp(header, v)?,
                    ))
                })
                .collect::<Result<BTreeMap<_, _>, BrokerError>>()?,
        )),
    })
}

fn header_from_amqp(value: &AMQPValue) -> HeaderValue {
    if let Some(n) = int_of(value) {
        return HeaderValue::Int(n);
    }
    match value {
        AMQPValue::Boolean(b) => HeaderValue::Boolean(*b),
        AMQPValue::Float(x) => HeaderValue::Float(f64::from(*x)),
        AMQPValue::Double(x) => HeaderValue::Float(*x),
        AMQPValue::DecimalValue(d) => {
            HeaderValue::Float(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => HeaderValue::Text(s.to_string()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(text) => HeaderValue::Text(text.to_owned()),
            Err(_) => HeaderValue::Bytes(s.as_bytes().to_vec()),
        },
        AMQPValue::ByteArray(bytes) => HeaderValue::Bytes(bytes.as_slice().to_vec()),
        AMQPValue::FieldArray(items) => {
            let texts: Vec<String> = items.as_slice().iter().map_while(text_of).collect();
            if texts.len() == items.as_slice().len() {
                HeaderValue::List(texts)
            } else {
                HeaderValue::Json(amqp_to_json(value).to_string())
            }
        }
        other => HeaderValue::Json(amqp_to_json(other).to_string()),
    }
}

fn amqp_to_json(value: &AMQPValue) -> Json {
    if let Some(n) = int_of(value) {
        return Json::from(n);
    }
    match value {
        AMQPValue::Boolean(b) => Json::Bool(*b),
        AMQPValue::Float(x) => {
            serde_json::Number::from_f64(f64::from(*x)).map_or(Json::Null, Json::Number)
        }
        AMQPValue::Double(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        AMQPValue::DecimalValue(d) => {
            serde_json::Number::from_f64(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
                .map_or(Json::Null, Json::Number)
        }
        AMQPValue::ShortString(s) => Json::String(s.to_string()),
        AMQPValue::LongString(s) => {
            Json::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ByteArray(bytes) => serde_json::json!({
            "bytes_base64": base64::engine::general_purpose::STANDARD.encode(bytes.as_slice())
        }),
        AMQPValue::FieldArray(items) => {
            Json::Array(items.as_slice().iter().map(amqp_to_json).collect())
        }
        AMQPValue::FieldTable(table) => Json::Object(
            table
                .inner()
                .iter()
                .map(|(k, v)| (k.to_string(), amqp_to_json(v)))
                .collect(),
        ),
        _ => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut headers: Vec<(String, HeaderValue)>) -> Vec<(String, HeaderValue)> {
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        headers
    }

    #[test]
    fn every_field_survives_a_round_trip() {
        let msg = Message {
            id: "m-1".into(),
            topic: "orders.created".into(),
            key: Some(vec![0, 1, 255]),
            headers: vec![
                ("text".into(), HeaderValue::Text("héllo".into())),
                ("bytes".into(), HeaderValue::Bytes(vec![0xff, 0])),
                ("int".into(), HeaderValue::Int(-7)),
                ("float".into(), HeaderValue::Float(2.5)),
                ("bool".into(), HeaderValue::Boolean(true)),
                (
                    "list".into(),
                    HeaderValue::List(vec!["a".into(), "b".into()]),
                ),
                (
                    "json".into(),
                    HeaderValue::Json(r#"{"a":[1,2.5,"x",null],"b":{"c":true}}"#.into()),
                ),
                ("twice".into(), HeaderValue::Text("one".into())),
                ("twice".into(), HeaderValue::Int(2)),
                (TYPE.into(), HeaderValue::Text("order".into())),
            ],
            content_type: Some("application/json".into()),
            correlation_id: Some("c-1".into()),
            reply_to: Some("replies".into()),
            priority: Some(5),
            expiration_ms: Some(60_000),
            persistent: true,
            payload: b"{\"n\":1}".to_vec(),
            timestamp_ms: 1_700_000_000_123,
        };
        let props = to_amqp(&msg, "orders.in").unwrap();
        let back = from_amqp("orders.in", &props, msg.payload.clone());
        assert_eq!(sorted(back.headers.clone()), sorted(msg.headers.clone()));
        assert_eq!(
            Message {
                headers: Vec::new(),
                ..back
            },
            Message {
                headers: Vec::new(),
                ..msg
            }
        );
    }

    #[test]
    fn a_plain_service_message_maps_naturally() {
        let props = BasicProperties::default()
            .with_timestamp(1_700_000_000)
            .with_headers(FieldTable::from(BTreeMap::from([
                (ShortString::from("n"), AMQPValue::LongInt(3)),
                (
                    ShortString::from("d"),
                    AMQPValue::FieldTable(FieldTable::default()),
                ),
            ])));
        let msg = from_amqp("jobs", &props, b"x".to_vec());
        assert_eq!(msg.topic, "jobs");
        assert_eq!(msg.timestamp_ms, 1_700_000_000_000);
        assert!(!msg.persistent);
        assert_eq!(msg.header("n"), Some(&HeaderValue::Int(3)));
        assert_eq!(msg.header("d"), Some(&HeaderValue::Json("{}".into())));
        // No message_id: the id is derived from the content, the same for a redelivery.
        assert_eq!(msg.id, from_amqp("jobs", &props, b"x".to_vec()).id);
        assert_ne!(msg.id, from_amqp("jobs", &props, b"y".to_vec()).id);
        // Sent back to the queue it came from, no topic header is added.
        let out = to_amqp(&msg, "jobs").unwrap();
        assert!(!out.headers().as_ref().unwrap().contains_key(TOPIC));
    }

    #[test]
    fn a_json_header_key_too_long_for_amqp_is_refused_not_a_panic() {
        let mut msg = Message::new("t", "x");
        msg.headers.push((
            "nested".into(),
            HeaderValue::Json(format!(r#"{{"ok": {{"{}": 1}}}}"#, "k".repeat(256))),
        ));
        let e = to_amqp(&msg, "t").unwrap_err().to_string();
        assert!(e.contains("headers.nested") && e.contains("255"), "{e}");
        // The copy a dead letter carries can be sent.
        to_amqp(&msg.sendable_copy(), "t").unwrap();
    }

    #[test]
    fn values_too_long_for_amqp_are_refused_by_name() {
        let mut msg = Message::new("t", "x");
        msg.correlation_id = Some("c".repeat(300));
        let e = to_amqp(&msg, "t").unwrap_err().to_string();
        assert!(e.contains("correlation_id") && e.contains("255"), "{e}");
    }
}
