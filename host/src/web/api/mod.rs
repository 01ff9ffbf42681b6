//! The API, one file per noun: `queues` (messages), and the control plane's `connections`,
//! `plugins`, `routes`, `status` and `units`.
//! Reading needs viewer, a change admin (`caller::authorize_control`). A change is written to
//! the database (raising the revision every host watches), this host's supervisor is woken,
//! and the answer waits (up to five seconds) until this host has applied it, so it can say
//! what now runs.

pub mod connections;
pub mod plugins;
pub mod queues;
pub mod routes;
pub mod rpc;
pub mod status;
pub mod units;

use super::{AppError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long a change's answer waits for this host to apply it.
const APPLY_WAIT: Duration = Duration::from_secs(5);

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
            .map_err(body_rejection)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A body that could not be read: too large (413), or cut off.
pub fn body_rejection(e: BytesRejection) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge(
            "the request body is over the host's limit (server.max_request_bytes)".into(),
        )
    } else {
        AppError::BadRequest(format!("the body could not be read: {}", e.body_text()))
    }
}

/// Reads `bytes` as a `T`; an error names the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
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
    AppError::Invalid { field, message }
}

/// After a change: wakes the supervisor and waits until this host has applied the database's
/// revision; whether it has (another host's change may race; the answer says so).
async fn applied(state: &AppState) -> Result<bool, AppError> {
    let revision = state.store.revision().await?;
    state.supervisor.wake();
    Ok(state.supervisor.applied(revision, APPLY_WAIT).await)
}

/// 409 for an item this host's file defines.
fn file_defined(state: &AppState, what: &str, name: &str) -> AppError {
    let file = state
        .supervisor
        .file()
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the built-in defaults".into());
    AppError::Conflict(format!(
        "{what} `{name}` is defined in this host's configuration ({file}) and cannot be changed through the API; change it there"
    ))
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl From<crate::config::ConfigError> for AppError {
    fn from(e: crate::config::ConfigError) -> Self {
        match e {
            crate::config::ConfigError::Invalid { key, problem } => AppError::Invalid {
                field: key,
                message: problem,
            },
            other => AppError::BadRequest(other.to_string()),
        }
    }
}
