//! JSON bodies whose every problem names its field: a syntax error names `body`, an unknown
//! field its path (`retry.maxx`), a wrong type or a missing field the field it belongs to.

use super::AppError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

/// A JSON body whose every problem names its field: a syntax error names `body`, an unknown
/// field its path (`retry.maxx`), a wrong type or a missing field the field it belongs to.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let v = v.split(';').next().unwrap_or("").trim();
                v == "application/json" || v.ends_with("+json")
            });
        if !json {
            return Err(AppError::UnsupportedMediaType(
                "send the body as JSON, with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(AppError::from)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The most values (numbers, strings, arrays, objects, ...) one JSON body may hold. A body is
/// read into memory at most as large as its limit, but a tree of JSON values takes tens of
/// bytes per value: `{"payload":[0,0,0,...]}` of a few MiB would take gigabytes. Counted
/// before anything is parsed.
pub const MAX_JSON_VALUES: usize = 200_000;

/// Refuses `bytes` when it holds more than [`MAX_JSON_VALUES`] values: one pass over the
/// text, counting the separators and openings outside strings, allocating nothing.
pub fn check_json_size(bytes: &[u8]) -> Result<(), AppError> {
    let (mut values, mut in_string, mut escaped) = (1usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b'[' | b'{' => values += 1,
            _ => {}
        }
    }
    if values > MAX_JSON_VALUES {
        return Err(AppError::Invalid {
            field: "body".into(),
            message: format!(
                "the body holds more than {MAX_JSON_VALUES} JSON values; send a large binary payload as `payload_base64`"
            ),
        });
    }
    Ok(())
}

/// Reads `bytes` as a `T`; an error names the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    check_json_size(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(field_error)?;
    deserializer.end().map_err(|e| AppError::Invalid {
        field: "body".into(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// Reads a JSON value as a `T`; an error names the field at fault, under `prefix`.
pub fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, AppError> {
    serde_path_to_error::deserialize(value).map_err(|e| match field_error(e) {
        AppError::Invalid { field, message } if !prefix.is_empty() && field != "body" => {
            AppError::Invalid {
                field: format!("{prefix}.{field}"),
                message,
            }
        }
        other => other,
    })
}

/// A deserialising error as bad input in the field it names.
fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = inner.to_string();
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let field = if inner.is_syntax() || inner.is_eof() {
        "body".to_owned()
    } else if let Some(name) = named("missing field `") {
        // The path of a missing field is its parent's.
        match path.as_str() {
            "." => name,
            parent => format!("{parent}.{name}"),
        }
    } else if path == "." {
        named("unknown field `").unwrap_or_else(|| "body".to_owned())
    } else {
        path
    };
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("the body is not valid JSON: {message}")
    } else {
        message
    };
    AppError::Invalid { field, message }
}
