//! Wharf's [`Message`] to and from an MQTT message.
//!
//! MQTT 5:
//!
//! | Wharf            | MQTT 5                                                          |
//! |------------------|-----------------------------------------------------------------|
//! | `payload`        | the payload                                                     |
//! | `topic`          | the topic; one that differs travels in user property `x-wharf-topic` |
//! | `content_type`   | the content type                                                |
//! | `correlation_id` | the correlation data                                            |
//! | `reply_to`       | the response topic                                              |
//! | `expiration_ms`  | the message expiry interval (whole seconds, rounded up), and `x-wharf-expiration-ms` |
//! | `id`, `key`, `priority`, `timestamp_ms` | user properties `x-wharf-id`, `x-wharf-key` (base64), `x-wharf-priority`, `x-wharf-timestamp-ms` |
//! | `persistent`     | user property `x-wharf-transient` when false                    |
//! | `headers`        | user properties of the same names, in order                     |
//!
//! User properties are UTF-8 pairs kept in order; a value that is not text (or holds NUL)
//! travels in base64, and `x-wharf-headers` lists the headers' kinds in order, so Wharf reads
//! back exactly what it sent. A property from another client is a text header.
//!
//! MQTT 3.1.1 carries the payload only: a message read from it has the topic, the payload, a
//! fresh id and the time it arrived; what else a message holds is not sent, and a request
//! (a reply address or a correlation id) is refused, since its answer could not come back.

use super::wire::{Publish, PublishProperties};
use crate::broker::BrokerError;
use crate::broker::textual;
use crate::message::{HeaderValue, Message, now_ms};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const ID: &str = "x-wharf-id";
const TOPIC: &str = "x-wharf-topic";
const KEY: &str = "x-wharf-key";
const PRIORITY: &str = "x-wharf-priority";
const EXPIRATION_MS: &str = "x-wharf-expiration-ms";
const TIMESTAMP_MS: &str = "x-wharf-timestamp-ms";
const TRANSIENT: &str = "x-wharf-transient";
const HEADERS: &str = "x-wharf-headers";
/// When a delayed send becomes ready (ms since the epoch): held back until then.
pub const NOT_BEFORE: &str = "x-wharf-not-before";

fn own(name: &str) -> bool {
    [
        ID,
        TOPIC,
        KEY,
        PRIORITY,
        EXPIRATION_MS,
        TIMESTAMP_MS,
        TRANSIENT,
        HEADERS,
        NOT_BEFORE,
    ]
    .contains(&name)
}

/// MQTT strings are UTF-8 without NUL.
fn plain(text: &str) -> bool {
    !text.contains('\0')
}

fn text_field(field: &str, text: &str) -> Result<String, BrokerError> {
    if plain(text) {
        Ok(text.to_owned())
    } else {
        Err(BrokerError::Mapping {
            field: field.into(),
            problem: "MQTT carries it as a string, which holds no NUL".into(),
        })
    }
}

/// The properties that carry `msg` at `topic` (MQTT 5).
pub fn to_properties(
    msg: &Message,
    topic: &str,
    not_before: Option<u64>,
) -> Result<PublishProperties, BrokerError> {
    let mut user: Vec<(String, String)> = Vec::with_capacity(msg.headers.len() + 4);
    let mut kinds: Vec<(&str, &str)> = Vec::with_capacity(msg.headers.len());
    for (name, value) in &msg.headers {
        if name.is_empty() || !plain(name) || own(&name.to_ascii_lowercase()) {
            return Err(BrokerError::Mapping {
                field: format!("headers.{}", name.escape_debug()),
                problem: "MQTT takes a header name of UTF-8 without NUL, and not one the mapping writes itself (x-wharf-id, …)".into(),
            });
        }
        let (text, kind) = textual::encode(value, plain);
        user.push((name.clone(), text));
        kinds.push((name, kind));
    }
    if !kinds.is_empty() {
        user.push((
            HEADERS.into(),
            serde_json::to_string(&kinds).expect("strings serialise"),
        ));
    }
    user.push((ID.into(), text_field("id", &msg.id)?));
    if msg.topic != topic && !msg.topic.is_empty() {
        user.push((TOPIC.into(), text_field("topic", &msg.topic)?));
    }
    if let Some(key) = &msg.key {
        user.push((KEY.into(), STANDARD.encode(key)));
    }
    if let Some(priority) = msg.priority {
        user.push((PRIORITY.into(), priority.to_string()));
    }
    if let Some(expiration) = msg.expiration_ms {
        user.push((EXPIRATION_MS.into(), expiration.to_string()));
    }
    user.push((TIMESTAMP_MS.into(), msg.timestamp_ms.to_string()));
    if !msg.persistent {
        user.push((TRANSIENT.into(), "true".into()));
    }
    if let Some(at) = not_before {
        user.push((NOT_BEFORE.into(), at.to_string()));
    }
    Ok(PublishProperties {
        content_type: msg
            .content_type
            .as_deref()
            .map(|c| text_field("content_type", c))
            .transpose()?,
        correlation_data: msg
            .correlation_id
            .as_ref()
            .map(|c| c.clone().into_bytes().into()),
        response_topic: msg
            .reply_to
            .as_deref()
            .map(|r| text_field("reply_to", r))
            .transpose()?,
        message_expiry_interval: msg
            .expiration_ms
            .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)),
        user_properties: user,
        ..PublishProperties::default()
    })
}

/// Refuses what MQTT 3.1.1 cannot carry and would break if dropped: a request.
pub fn check_v311(msg: &Message) -> Result<(), BrokerError> {
    for (field, set) in [
        ("reply_to", msg.reply_to.is_some()),
        ("correlation_id", msg.correlation_id.is_some()),
    ] {
        if set {
            return Err(BrokerError::Mapping {
                field: field.into(),
                problem: "MQTT 3.1.1 carries the payload only, so a reply could not come back: use `protocol = \"5\"`".into(),
            });
        }
    }
    Ok(())
}

/// When a delayed send becomes ready, if it is one.
pub fn not_before(publish: &Publish) -> Option<u64> {
    publish
        .properties()?
        .user_properties
        .iter()
        .find(|(name, _)| name == NOT_BEFORE)
        .and_then(|(_, at)| at.parse().ok())
}

/// The message an MQTT message carries, wherever it came from.
pub fn from_publish(publish: &Publish) -> Message {
    let topic = publish.topic();
    let mut msg = Message::new(topic, publish.payload().to_vec());
    msg.timestamp_ms = now_ms();
    let Some(props) = publish.properties() else {
        return msg;
    };
    msg.content_type = props.content_type.clone();
    msg.reply_to = props.response_topic.clone();
    msg.correlation_id = props
        .correlation_data
        .as_ref()
        .map(|data| String::from_utf8(data.to_vec()).unwrap_or_else(|_| STANDARD.encode(data)));
    let kinds: Vec<(String, String)> = props
        .user_properties
        .iter()
        .find(|(name, _)| name == HEADERS)
        .and_then(|(_, kinds)| serde_json::from_str(kinds).ok())
        .unwrap_or_default();
    let mut kinds = kinds.into_iter().peekable();
    let mut others = Vec::new();
    for (name, text) in &props.user_properties {
        match name.as_str() {
            ID => msg.id = text.clone(),
            TOPIC => msg.topic = text.clone(),
            KEY => msg.key = STANDARD.decode(text).ok(),
            PRIORITY => msg.priority = text.parse().ok(),
            EXPIRATION_MS => msg.expiration_ms = text.parse().ok(),
            TIMESTAMP_MS => {
                if let Ok(ts) = text.parse() {
                    msg.timestamp_ms = ts;
                }
            }
            TRANSIENT => msg.persistent = text != "true",
            HEADERS | NOT_BEFORE => {}
            _ => match kinds.peek() {
                Some((listed, _)) if listed == name => {
                    let (_, kind) = kinds.next().expect("peeked");
                    msg.headers
                        .push((name.clone(), textual::decode(text.clone(), &kind)));
                }
                _ => others.push((name.clone(), HeaderValue::Text(text.clone()))),
            },
        }
    }
    msg.headers.extend(others);
    if msg.expiration_ms.is_none() {
        msg.expiration_ms = props.message_expiry_interval.map(|s| u64::from(s) * 1000);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::{QoS, v5 as m5};

    fn over_the_wire(msg: &Message, topic: &str) -> Message {
        let props = to_properties(msg, topic, None).unwrap();
        let publish = m5::Publish::new(topic, QoS::AtLeastOnce, msg.payload.clone(), Some(props));
        from_publish(&Publish::V5(publish))
    }

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
            ("nul".into(), HeaderValue::Text("a\0b".into())),
            ("text".into(), HeaderValue::Text("again".into())),
        ];
        sent.correlation_id = Some("c-1".into());
        sent.reply_to = Some("replies/abc".into());
        sent.content_type = Some("application/json".into());
        sent.priority = Some(3);
        sent.expiration_ms = Some(1500);
        sent.persistent = false;
        assert_eq!(over_the_wire(&sent, "orders/created"), sent);
    }

    #[test]
    fn a_plain_clients_message_is_read_as_text() {
        let props = PublishProperties {
            user_properties: vec![("source".into(), "sensor-1".into())],
            ..PublishProperties::default()
        };
        let publish = m5::Publish::new("home/t", QoS::AtLeastOnce, "21.5", Some(props));
        let msg = from_publish(&Publish::V5(publish));
        assert_eq!(msg.topic, "home/t");
        assert_eq!(msg.payload, b"21.5");
        assert_eq!(
            msg.headers,
            vec![("source".into(), HeaderValue::Text("sensor-1".into()))]
        );
    }

    #[test]
    fn what_the_mapping_writes_is_not_a_header_name() {
        let mut msg = Message::new("t", b"x".to_vec());
        msg.headers = vec![("x-wharf-id".into(), HeaderValue::Text("x".into()))];
        assert!(matches!(
            to_properties(&msg, "t", None),
            Err(BrokerError::Mapping { .. })
        ));
        let mut request = Message::new("t", b"x".to_vec());
        request.reply_to = Some("r".into());
        assert!(check_v311(&request).is_err());
    }
}
