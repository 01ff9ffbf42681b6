//! Typed header values as text, for transports whose headers are strings (NATS headers,
//! MQTT 5 user properties): each value is written as text with a kind, and read back as the
//! value it was sent as.

use crate::message::HeaderValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// `value` as text and its kind (`text`, `text64`, `bytes`, `int`, `float`, `bool`, `list`,
/// `json`); text that `plain` refuses travels in base64 as `text64`.
pub fn encode(value: &HeaderValue, plain: impl Fn(&str) -> bool) -> (String, &'static str) {
    match value {
        HeaderValue::Text(text) if plain(text) => (text.clone(), "text"),
        HeaderValue::Text(text) => (STANDARD.encode(text), "text64"),
        HeaderValue::Bytes(bytes) => (STANDARD.encode(bytes), "bytes"),
        HeaderValue::Int(int) => (int.to_string(), "int"),
        HeaderValue::Float(float) => (float.to_string(), "float"),
        HeaderValue::Boolean(b) => (b.to_string(), "bool"),
        HeaderValue::List(list) => (
            STANDARD.encode(serde_json::to_vec(list).expect("strings serialise")),
            "list",
        ),
        HeaderValue::Json(json) => (STANDARD.encode(json), "json"),
    }
}

/// A header's text as the value it was sent as; text of an unknown kind (or that does not
/// decode) stays text.
pub fn decode(text: String, kind: &str) -> HeaderValue {
    let decoded = || STANDARD.decode(&text).ok();
    let value = match kind {
        "text64" => decoded()
            .and_then(|b| String::from_utf8(b).ok())
            .map(HeaderValue::Text),
        "bytes" => decoded().map(HeaderValue::Bytes),
        "int" => text.parse().ok().map(HeaderValue::Int),
        "float" => text.parse().ok().map(HeaderValue::Float),
        "bool" => text.parse().ok().map(HeaderValue::Boolean),
        "list" => decoded()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .map(HeaderValue::List),
        "json" => decoded()
            .and_then(|b| String::from_utf8(b).ok())
            .map(HeaderValue::Json),
        _ => None,
    };
    value.unwrap_or(HeaderValue::Text(text))
}
