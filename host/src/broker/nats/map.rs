//! Wharf's [`Message`] to and from a NATS message.
//!
//! | Wharf            | NATS                                                            |
//! |------------------|-----------------------------------------------------------------|
//! | `payload`        | the payload                                                     |
//! | `topic`          | the subject; one that differs travels in `x-wharf-topic`        |
//! | `id`             | header `x-wharf-id`; a message without one gets an id derived from its stream and sequence, the same at every delivery |
//! | `key`            | header `x-wharf-key` (base64)                                   |
//! | `content_type`   | header `content-type`                                           |
//! | `correlation_id`, `reply_to`, `priority`, `expiration_ms`, `timestamp_ms` | headers `x-wharf-correlation-id`, `x-wharf-reply-to`, `x-wharf-priority`, `x-wharf-expiration-ms`, `x-wharf-timestamp-ms` |
//! | `persistent`     | header `x-wharf-transient` when false (a stream keeps every message) |
//! | `headers`        | headers of the same names                                       |
//!
//! A NATS header is a line of text and a header map keeps no order between names, so a
//! value that is not printable ASCII (or not text) travels in base64, and `x-wharf-headers`
//! lists every header's name and type in order (JSON): Wharf reads back exactly what it sent.
//! A header from another client is text, after Wharf's own.

use crate::broker::BrokerError;
use crate::message::{HeaderValue, Message, now_ms};
use async_nats::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const ID: &str = "x-wharf-id";
const TOPIC: &str = "x-wharf-topic";
const KEY: &str = "x-wharf-key";
const CONTENT_TYPE: &str = "content-type";
const CORRELATION_ID: &str = "x-wharf-correlation-id";
const REPLY_TO: &str = "x-wharf-reply-to";
const PRIORITY: &str = "x-wharf-priority";
const EXPIRATION_MS: &str = "x-wharf-expiration-ms";
const TIMESTAMP_MS: &str = "x-wharf-timestamp-ms";
const TRANSIENT: &str = "x-wharf-transient";
const HEADERS: &str = "x-wharf-headers";
/// When a delayed send becomes ready (ms since the epoch): held back until then.
pub const NOT_BEFORE: &str = "x-wharf-not-before";

/// Namespace of the ids given to messages that arrive without `x-wharf-id`.
const NATS_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6e61_7473_206d_6573_7361_6765_2069_6473);

/// Whether `name` is one of the headers this mapping writes itself.
fn own(name: &str) -> bool {
    [
        ID,
        TOPIC,
        KEY,
        CONTENT_TYPE,
        CORRELATION_ID,
        REPLY_TO,
        PRIORITY,
        EXPIRATION_MS,
        TIMESTAMP_MS,
        TRANSIENT,
        HEADERS,
        NOT_BEFORE,
    ]
    .contains(&name)
}

/// Whether NATS carries `text` as a header value as it is.
fn plain(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Whether NATS takes `name` as a header name.
fn header_name_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// The headers that carry `msg`; a header name NATS cannot carry is refused, naming it.
pub fn to_headers(msg: &Message, subject: &str) -> Result<HeaderMap, BrokerError> {
    let mut headers = HeaderMap::new();
    let mut order: Vec<(String, &str)> = Vec::with_capacity(msg.headers.len());
    for (name, value) in &msg.headers {
        if !header_name_ok(name) || own(&name.to_ascii_lowercase()) {
            return Err(BrokerError::Mapping {
                field: format!("headers.{}", name.escape_debug()),
                problem: "NATS takes a header name of printable ASCII without `:`, and not one the mapping writes itself (content-type, x-wharf-id, …)".into(),
            });
        }
        let (text, kind) = crate::broker::textual::encode(value, plain);
        headers.append(name.as_str(), text);
        order.push((name.clone(), kind));
    }
    if !order.is_empty() {
        headers.insert(
            HEADERS,
            serde_json::to_string(&order).expect("strings serialise"),
        );
    }
    headers.insert(ID, text_header("id", &msg.id)?);
    if msg.topic != subject && !msg.topic.is_empty() {
        headers.insert(TOPIC, text_header("topic", &msg.topic)?);
    }
    if let Some(key) = &msg.key {
        headers.insert(KEY, STANDARD.encode(key));
    }
    if let Some(content_type) = &msg.content_type {
        headers.insert(CONTENT_TYPE, text_header("content_type", content_type)?);
    }
    if let Some(id) = &msg.correlation_id {
        headers.insert(CORRELATION_ID, text_header("correlation_id", id)?);
    }
    if let Some(reply_to) = &msg.reply_to {
        headers.insert(REPLY_TO, text_header("reply_to", reply_to)?);
    }
    if let Some(priority) = msg.priority {
        headers.insert(PRIORITY, priority.to_string());
    }
    if let Some(expiration) = msg.expiration_ms {
        headers.insert(EXPIRATION_MS, expiration.to_string());
    }
    headers.insert(TIMESTAMP_MS, msg.timestamp_ms.to_string());
    if !msg.persistent {
        headers.insert(TRANSIENT, "true");
    }
    Ok(headers)
}

fn text_header(field: &str, text: &str) -> Result<String, BrokerError> {
    if plain(text) {
        Ok(text.to_owned())
    } else {
        Err(BrokerError::Mapping {
            field: field.into(),
            problem: "NATS carries it as a header: printable ASCII only".into(),
        })
    }
}

/// The message a NATS message carries, wherever it came from; `origin` (stream and
/// sequence) names it when it has no id of its own.
pub fn from_nats(
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
    origin: (&str, u64),
) -> Message {
    let mut msg = Message::new(subject, payload.to_vec());
    msg.id = uuid::Uuid::new_v5(
        &NATS_ID_NAMESPACE,
        format!("{}/{}", origin.0, origin.1).as_bytes(),
    )
    .to_string();
    msg.timestamp_ms = now_ms();
    let Some(headers) = headers else {
        return msg;
    };
    let one = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    if let Some(id) = one(ID) {
        msg.id = id;
    }
    if let Some(topic) = one(TOPIC) {
        msg.topic = topic;
    }
    msg.key = one(KEY).and_then(|k| STANDARD.decode(k).ok());
    msg.content_type = one(CONTENT_TYPE);
    msg.correlation_id = one(CORRELATION_ID);
    msg.reply_to = one(REPLY_TO);
    msg.priority = one(PRIORITY).and_then(|p| p.parse().ok());
    msg.expiration_ms = one(EXPIRATION_MS).and_then(|e| e.parse().ok());
    if let Some(ts) = one(TIMESTAMP_MS).and_then(|t| t.parse().ok()) {
        msg.timestamp_ms = ts;
    }
    msg.persistent = one(TRANSIENT).as_deref() != Some("true");
    let order: Vec<(String, String)> = one(HEADERS)
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or_default();
    // Each name's values, taken in order as the listed order names them.
    let mut values: std::collections::HashMap<String, std::collections::VecDeque<String>> = headers
        .iter()
        .map(|(name, values)| {
            (
                name.to_string(),
                values.iter().map(|v| v.as_str().to_owned()).collect(),
            )
        })
        .collect();
    for (name, kind) in order {
        let Some(text) = values.get_mut(&name).and_then(|v| v.pop_front()) else {
            continue;
        };
        msg.headers
            .push((name, crate::broker::textual::decode(text, &kind)));
    }
    let mut rest: Vec<(String, String)> = values
        .into_iter()
        .filter(|(name, _)| !own(&name.to_ascii_lowercase()))
        .flat_map(|(name, texts)| texts.into_iter().map(move |t| (name.clone(), t)))
        .collect();
    rest.sort();
    msg.headers
        .extend(rest.into_iter().map(|(n, t)| (n, HeaderValue::Text(t))));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_and_header_survives_in_order() {
        let mut sent = Message::new("orders.created", vec![0, 1, 255]);
        sent.key = Some(vec![0, 254]);
        sent.headers = vec![
            ("text".into(), HeaderValue::Text("ünï".into())),
            ("bytes".into(), HeaderValue::Bytes(vec![0, 159])),
            ("int".into(), HeaderValue::Int(-42)),
            (
                "list".into(),
                HeaderValue::List(vec!["a".into(), "b".into()]),
            ),
            ("table".into(), HeaderValue::Json(r#"{"n":[1]}"#.into())),
            ("text".into(), HeaderValue::Text("again".into())),
        ];
        sent.correlation_id = Some("c".into());
        sent.persistent = false;
        let headers = to_headers(&sent, "q").unwrap();
        let got = from_nats("q", Some(&headers), &sent.payload, ("s", 1));
        assert_eq!(got, sent);
    }

    #[test]
    fn a_header_name_nats_cannot_carry_is_refused() {
        let mut msg = Message::new("t", b"x".to_vec());
        msg.headers = vec![("a b".into(), HeaderValue::Text("x".into()))];
        assert!(matches!(
            to_headers(&msg, "t"),
            Err(BrokerError::Mapping { .. })
        ));
    }
}
