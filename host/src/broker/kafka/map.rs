//! Wharf's [`Message`] to and from a Kafka record.
//!
//! | Wharf            | Kafka                                                           |
//! |------------------|-----------------------------------------------------------------|
//! | `key`            | the record's key                                                |
//! | `payload`        | the record's value                                              |
//! | `topic`          | the topic; a topic that differs from the one it was sent to travels in `x-wharf-topic` |
//! | `timestamp_ms`   | the record's timestamp (create time)                            |
//! | `id`             | header `x-wharf-id`; a record without one gets an id derived from its topic, partition and offset, the same at every delivery |
//! | `content_type`   | header `content-type`                                           |
//! | `correlation_id` | header `x-wharf-correlation-id`                                 |
//! | `reply_to`       | header `x-wharf-reply-to`                                       |
//! | `priority`, `expiration_ms` | headers `x-wharf-priority`, `x-wharf-expiration-ms` (Kafka does nothing with them) |
//! | `persistent`     | header `x-wharf-transient` when false (Kafka keeps every record) |
//! | `headers`        | the record's headers, in order, repeats kept                    |
//!
//! Header values travel as bytes: text as UTF-8, an int or a float as its decimal text, a
//! boolean as `true` or `false`, a list as a JSON array, JSON as its text, bytes as they are.
//! Every header that is not text is listed in `x-wharf-types` (`position:type,...`), so that
//! Wharf reads back exactly what it sent; a header from another client is text when it is
//! UTF-8 and bytes when it is not, so nothing is lost either way.

use crate::message::{HeaderValue, Message, now_ms};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};

const ID: &str = "x-wharf-id";
const TOPIC: &str = "x-wharf-topic";
const CONTENT_TYPE: &str = "content-type";
const CORRELATION_ID: &str = "x-wharf-correlation-id";
const REPLY_TO: &str = "x-wharf-reply-to";
const PRIORITY: &str = "x-wharf-priority";
const EXPIRATION_MS: &str = "x-wharf-expiration-ms";
const TRANSIENT: &str = "x-wharf-transient";
const TYPES: &str = "x-wharf-types";

/// Namespace of the ids given to records that arrive without `x-wharf-id`.
const RECORD_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b61_666b_6120_7265_636f_7264_2069_6473);

/// A record to send: key, value and headers of `msg` sent to `topic`.
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
    pub timestamp_ms: i64,
}

/// `msg` as a record for `topic`.
pub fn to_record(msg: &Message, topic: &str) -> Record {
    let mut headers = OwnedHeaders::new_with_capacity(msg.headers.len() + 4);
    let mut types = Vec::new();
    for (i, (name, value)) in msg.headers.iter().enumerate() {
        let (bytes, kind): (Vec<u8>, Option<&str>) = match value {
            HeaderValue::Text(text) => (text.as_bytes().to_vec(), None),
            HeaderValue::Bytes(bytes) => (bytes.clone(), Some("bytes")),
            HeaderValue::Int(int) => (int.to_string().into_bytes(), Some("int")),
            HeaderValue::Float(float) => (float.to_string().into_bytes(), Some("float")),
            HeaderValue::Boolean(b) => (b.to_string().into_bytes(), Some("bool")),
            HeaderValue::List(list) => (
                serde_json::to_vec(list).expect("strings serialise"),
                Some("list"),
            ),
            HeaderValue::Json(json) => (json.as_bytes().to_vec(), Some("json")),
        };
        if let Some(kind) = kind {
            types.push(format!("{i}:{kind}"));
        }
        headers = headers.insert(Header {
            key: name,
            value: Some(&bytes),
        });
    }
    let mut own = |name: &str, value: &str| {
        headers = std::mem::replace(&mut headers, OwnedHeaders::new()).insert(Header {
            key: name,
            value: Some(value),
        });
    };
    if !types.is_empty() {
        own(TYPES, &types.join(","));
    }
    own(ID, &msg.id);
    if msg.topic != topic && !msg.topic.is_empty() {
        own(TOPIC, &msg.topic);
    }
    if let Some(content_type) = &msg.content_type {
        own(CONTENT_TYPE, content_type);
    }
    if let Some(id) = &msg.correlation_id {
        own(CORRELATION_ID, id);
    }
    if let Some(reply_to) = &msg.reply_to {
        own(REPLY_TO, reply_to);
    }
    if let Some(priority) = msg.priority {
        own(PRIORITY, &priority.to_string());
    }
    if let Some(expiration) = msg.expiration_ms {
        own(EXPIRATION_MS, &expiration.to_string());
    }
    if !msg.persistent {
        own(TRANSIENT, "true");
    }
    Record {
        key: msg.key.clone(),
        payload: msg.payload.clone(),
        headers,
        timestamp_ms: i64::try_from(msg.timestamp_ms).unwrap_or(i64::MAX),
    }
}

/// The message a record carries, wherever it came from.
pub fn from_record(record: &BorrowedMessage<'_>) -> Message {
    use rdkafka::Message as _;
    let topic = record.topic();
    let mut msg = Message::new(topic, record.payload().unwrap_or_default().to_vec());
    msg.key = record.key().map(<[u8]>::to_vec);
    msg.timestamp_ms = record
        .timestamp()
        .to_millis()
        .and_then(|ms| u64::try_from(ms).ok())
        .unwrap_or_else(now_ms);
    msg.id = uuid::Uuid::new_v5(
        &RECORD_ID_NAMESPACE,
        format!("{topic}/{}/{}", record.partition(), record.offset()).as_bytes(),
    )
    .to_string();
    let mut raw: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    let mut types = String::new();
    if let Some(headers) = record.headers() {
        for header in headers.iter() {
            let text = || String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned();
            match header.key {
                ID => msg.id = text(),
                TOPIC => msg.topic = text(),
                CONTENT_TYPE => msg.content_type = Some(text()),
                CORRELATION_ID => msg.correlation_id = Some(text()),
                REPLY_TO => msg.reply_to = Some(text()),
                PRIORITY => msg.priority = text().parse().ok(),
                EXPIRATION_MS => msg.expiration_ms = text().parse().ok(),
                TRANSIENT => msg.persistent = text() != "true",
                TYPES => types = text(),
                name => raw.push((name.to_owned(), header.value.map(<[u8]>::to_vec))),
            }
        }
    }
    let kinds: std::collections::HashMap<usize, &str> = types
        .split(',')
        .filter_map(|pair| pair.split_once(':'))
        .filter_map(|(i, kind)| Some((i.parse().ok()?, kind)))
        .collect();
    msg.headers = raw
        .into_iter()
        .enumerate()
        .map(|(i, (name, value))| {
            let value = value.unwrap_or_default();
            (name, header_value(value, kinds.get(&i).copied()))
        })
        .collect();
    msg
}

/// A header's bytes as the value they were sent as.
fn header_value(bytes: Vec<u8>, kind: Option<&str>) -> HeaderValue {
    let text = std::str::from_utf8(&bytes).ok();
    let typed = match (kind, text) {
        (Some("bytes"), _) => Some(HeaderValue::Bytes(bytes.clone())),
        (Some("int"), Some(t)) => t.parse().ok().map(HeaderValue::Int),
        (Some("float"), Some(t)) => t.parse().ok().map(HeaderValue::Float),
        (Some("bool"), Some(t)) => t.parse().ok().map(HeaderValue::Boolean),
        (Some("list"), Some(t)) => serde_json::from_str(t).ok().map(HeaderValue::List),
        (Some("json"), Some(t)) => Some(HeaderValue::Json(t.to_owned())),
        _ => None,
    };
    match (typed, text) {
        (Some(value), _) => value,
        (None, Some(text)) => HeaderValue::Text(text.to_owned()),
        (None, None) => HeaderValue::Bytes(bytes),
    }
}
