//! How a [`Message`] is kept in a row: one column per field, headers as tagged JSON.
//!
//! The header encoding is lossless (unlike the friendly JSON form people type): each header is
//! `[name, tag, value]` with tag `s` text, `b` base64 bytes, `i` integer, `f` float (as its
//! exact decimal text, so NaN and infinities survive), `t` boolean, `l` list, `j` JSON text.

use crate::message::{HeaderValue, Message};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value as Json, json};
use sqlx::{ColumnIndex, Decode, Row, Type};

pub(crate) fn encode_headers(headers: &[(String, HeaderValue)]) -> String {
    let items: Vec<Json> = headers
        .iter()
        .map(|(name, value)| match value {
            HeaderValue::Text(s) => json!([name, "s", s]),
            HeaderValue::Bytes(b) => json!([name, "b", BASE64.encode(b)]),
            HeaderValue::Int(i) => json!([name, "i", i]),
            HeaderValue::Float(f) => json!([name, "f", f.to_string()]),
            HeaderValue::Boolean(b) => json!([name, "t", b]),
            HeaderValue::List(l) => json!([name, "l", l]),
            HeaderValue::Json(j) => json!([name, "j", j]),
        })
        .collect();
    Json::Array(items).to_string()
}

pub(crate) fn decode_headers(text: &str) -> Result<Vec<(String, HeaderValue)>, String> {
    let items: Vec<(String, String, Json)> =
        serde_json::from_str(text).map_err(|e| format!("stored headers are not readable: {e}"))?;
    items
        .into_iter()
        .map(|(name, tag, value)| {
            let bad = || format!("stored header `{name}` has a bad `{tag}` value");
            let value = match tag.as_str() {
                "s" => HeaderValue::Text(value.as_str().ok_or_else(bad)?.to_owned()),
                "b" => HeaderValue::Bytes(
                    BASE64
                        .decode(value.as_str().ok_or_else(bad)?)
                        .map_err(|_| bad())?,
                ),
                "i" => HeaderValue::Int(value.as_i64().ok_or_else(bad)?),
                "f" => HeaderValue::Float(
                    value
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(bad)?,
                ),
                "t" => HeaderValue::Boolean(value.as_bool().ok_or_else(bad)?),
                "l" => HeaderValue::List(serde_json::from_value(value).map_err(|_| bad())?),
                "j" => HeaderValue::Json(value.as_str().ok_or_else(bad)?.to_owned()),
                _ => return Err(bad()),
            };
            Ok((name, value))
        })
        .collect()
}

/// The message columns of `queue_messages`, in the order [`message_from_row`] reads them.
/// Of rows in the order they are answered, each `(seq, bytes)`, the `seq` of the last that
/// fits in `max_bytes` together with those before it; the first always fits, so an answer
/// holds at least one row.
pub(crate) fn last_within(sizes: &[(i64, i64)], max_bytes: usize) -> Option<i64> {
    let mut total = 0usize;
    let mut last = None;
    for &(seq, size) in sizes {
        total = total.saturating_add(size.max(0) as usize);
        if last.is_some() && total > max_bytes {
            break;
        }
        last = Some(seq);
    }
    last
}

pub(crate) const MESSAGE_COLUMNS: &str = "id, topic, msg_key, headers, content_type, \
    correlation_id, reply_to, priority, expiration_ms, persistent, payload, timestamp_ms";

/// Binds a message's columns to `$query`, in the order of [`MESSAGE_COLUMNS`], after the
/// parameters already bound.
macro_rules! bind_message {
    ($query:expr, $m:expr) => {{
        let m: &$crate::message::Message = $m;
        $query
            .bind(&m.id)
            .bind(&m.topic)
            .bind(&m.key)
            .bind($crate::store::codec::encode_headers(&m.headers))
            .bind(&m.content_type)
            .bind(&m.correlation_id)
            .bind(&m.reply_to)
            .bind(m.priority.map(i64::from))
            .bind(m.expiration_ms.map(|e| e.min(i64::MAX as u64) as i64))
            .bind(i64::from(m.persistent))
            .bind(&m.payload)
            .bind(m.timestamp_ms.min(i64::MAX as u64) as i64)
    }};
}
pub(crate) use bind_message;

/// Reads the message columns of a row of either dialect.
pub(crate) fn message_from_row<R>(row: &R) -> Result<Message, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let headers: String = row.try_get("headers")?;
    let priority: Option<i64> = row.try_get("priority")?;
    let expiration: Option<i64> = row.try_get("expiration_ms")?;
    Ok(Message {
        id: row.try_get("id")?,
        topic: row.try_get("topic")?,
        key: row.try_get("msg_key")?,
        headers: decode_headers(&headers).map_err(|e| sqlx::Error::Decode(e.into()))?,
        content_type: row.try_get("content_type")?,
        correlation_id: row.try_get("correlation_id")?,
        reply_to: row.try_get("reply_to")?,
        priority: priority.map(|p| p.clamp(0, 255) as u8),
        expiration_ms: expiration.map(|e| e.max(0) as u64),
        persistent: row.try_get::<i64, _>("persistent")? != 0,
        payload: row.try_get("payload")?,
        timestamp_ms: row.try_get::<i64, _>("timestamp_ms")?.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_survive_exactly() {
        let headers = vec![
            ("a".into(), HeaderValue::Text("x".into())),
            ("a".into(), HeaderValue::Text("repeated".into())),
            ("b".into(), HeaderValue::Bytes(vec![0, 255])),
            ("i".into(), HeaderValue::Int(i64::MIN)),
            ("f".into(), HeaderValue::Float(0.1)),
            ("inf".into(), HeaderValue::Float(f64::INFINITY)),
            ("t".into(), HeaderValue::Boolean(false)),
            ("l".into(), HeaderValue::List(vec![])),
            ("j".into(), HeaderValue::Json("[1, 2]".into())),
        ];
        assert_eq!(decode_headers(&encode_headers(&headers)).unwrap(), headers);
        let nan = decode_headers(&encode_headers(&[(
            "n".into(),
            HeaderValue::Float(f64::NAN),
        )]));
        assert!(matches!(nan.unwrap()[0].1, HeaderValue::Float(f) if f.is_nan()));
    }
}
