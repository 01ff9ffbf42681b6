//! `AppError`: every error the web layer answers, in one JSON shape
//! (`{"error": {"code", "message", "field"}}`), with a status and a message that says what to
//! fix and never internals. Pages show the same words (`status_and_message`).

use crate::broker::BrokerError;
use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Every error the API returns: a status and a message that says what to fix, never internals.
#[derive(Debug)]
pub enum AppError {
    BadRequest(String),
    /// Bad input in a named field of the request.
    Invalid {
        field: String,
        message: String,
    },
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    /// The change conflicts with what exists (a name taken).
    Conflict(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    /// Too many attempts; try again after this many seconds.
    TooManyRequests {
        message: String,
        retry_after_s: u64,
    },
    /// The host cannot do it now (a broker down, too much work at once); try again.
    Unavailable(String),
    /// Waited for something that did not come (an RPC reply), or the request took too long.
    Timeout(String),
    /// What the request went on to (an HTTP endpoint, a handler) failed.
    BadGateway(String),
    /// The method is not taken here; the methods that are.
    MethodNotAllowed {
        message: String,
        allow: String,
    },
    /// A bug of the host's (a panic caught while answering): logged, never shown.
    Internal,
}

/// `field: message` as bad input.
pub fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl From<JsonRejection> for AppError {
    fn from(e: JsonRejection) -> Self {
        match e {
            JsonRejection::MissingJsonContentType(_) => AppError::UnsupportedMediaType(
                "send the message as JSON, with `Content-Type: application/json`".into(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                too_large()
            }
            other => AppError::BadRequest(format!(
                "the body is not usable JSON: {}",
                other.body_text()
            )),
        }
    }
}

fn too_large() -> AppError {
    AppError::PayloadTooLarge(
        "the request body is over the host's limit (server.max_request_bytes)".into(),
    )
}

impl From<BytesRejection> for AppError {
    /// A body that could not be read: too large (413), or cut off.
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            AppError::BadRequest(format!("the body could not be read: {}", e.body_text()))
        }
    }
}

impl From<QueryRejection> for AppError {
    fn from(e: QueryRejection) -> Self {
        AppError::BadRequest(format!("bad query parameters: {}", e.body_text()))
    }
}

impl From<BrokerError> for AppError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::TooLarge { .. } => AppError::PayloadTooLarge(e.to_string()),
            BrokerError::InvalidAddress { .. }
            | BrokerError::Unroutable { .. }
            | BrokerError::Unsupported(_) => AppError::BadRequest(e.to_string()),
            BrokerError::Mapping { ref field, .. } => AppError::Invalid {
                field: field.clone(),
                message: e.to_string(),
            },
            BrokerError::Unavailable { .. } => AppError::Unavailable(e.to_string()),
            BrokerError::HttpStatus { .. } => AppError::BadGateway(e.to_string()),
            other => {
                tracing::error!(error = %other, "broker error in the API");
                AppError::Unavailable("the broker could not complete the request; try again".into())
            }
        }
    }
}

impl From<crate::leases::LeaseError> for AppError {
    fn from(e: crate::leases::LeaseError) -> Self {
        match e {
            crate::leases::LeaseError::Unknown(_) => AppError::NotFound(e.to_string()),
            crate::leases::LeaseError::NotYours(_) => AppError::Forbidden(e.to_string()),
            crate::leases::LeaseError::TooLong(_) => AppError::Conflict(e.to_string()),
            crate::leases::LeaseError::Full => AppError::Conflict(e.to_string()),
            crate::leases::LeaseError::NoStream(_) => AppError::NotFound(e.to_string()),
            crate::leases::LeaseError::StreamNotYours(_) => AppError::Forbidden(e.to_string()),
            crate::leases::LeaseError::Broker(error) => error.into(),
        }
    }
}

impl From<crate::address::InvalidAddress> for AppError {
    fn from(e: crate::address::InvalidAddress) -> Self {
        AppError::BadRequest(e.to_string())
    }
}

impl From<crate::store::StoreError> for AppError {
    /// A database failure: logged whole here, answered without its internals.
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(%error, "a database error in the API");
        AppError::Unavailable("the database could not complete the request; try again".into())
    }
}

impl From<crate::message::MessageJsonError> for AppError {
    fn from(e: crate::message::MessageJsonError) -> Self {
        AppError::Invalid {
            message: e.to_string(),
            field: e.field,
        }
    }
}

impl From<crate::auth::HashError> for AppError {
    fn from(e: crate::auth::HashError) -> Self {
        match e {
            crate::auth::HashError::Busy => AppError::Unavailable(e.to_string()),
            crate::auth::HashError::Refused(e) => invalid("password", e.to_string()),
        }
    }
}

impl From<crate::secrets::SecretError> for AppError {
    /// A secret that cannot be opened (a missing key): logged whole, answered plainly.
    fn from(error: crate::secrets::SecretError) -> Self {
        tracing::error!(%error, "a sealed secret could not be opened");
        AppError::Unavailable(error.to_string())
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

impl AppError {
    /// The status and the message, for a page that shows the error in the API's words.
    pub fn status_and_message(self) -> (StatusCode, String) {
        let (status, _, message, field) = self.parts();
        match field {
            Some(field) => (status, format!("{field}: {message}")),
            None => (status, message),
        }
    }

    /// The error as the API's body gives it (`{"error": {"code", "message", "field"}}`), for
    /// an answer already under way (a stream's last line).
    pub fn body(self) -> Value {
        let (_, code, message, field) = self.parts();
        json!({ "error": { "code": code, "message": message, "field": field } })
    }

    fn parts(self) -> (StatusCode, &'static str, String, Option<String>) {
        match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m, None),
            AppError::Invalid { field, message } => {
                (StatusCode::BAD_REQUEST, "invalid", message, Some(field))
            }
            AppError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m, None),
            AppError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m, None),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, None),
            AppError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, None),
            AppError::PayloadTooLarge(m) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m, None)
            }
            AppError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m,
                None,
            ),
            AppError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m, None),
            AppError::Timeout(m) => (StatusCode::GATEWAY_TIMEOUT, "timeout", m, None),
            AppError::BadGateway(m) => (StatusCode::BAD_GATEWAY, "bad_gateway", m, None),
            AppError::MethodNotAllowed { message, .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message,
                None,
            ),
            AppError::TooManyRequests { message, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                message,
                None,
            ),
            AppError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the host failed while answering; it is logged (try again)".into(),
                None,
            ),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        // The header some answers carry besides the body: when to try again, the methods
        // taken, how to authenticate.
        let extra = match &self {
            AppError::TooManyRequests { retry_after_s, .. } => {
                Some((header::RETRY_AFTER, retry_after_s.to_string()))
            }
            AppError::MethodNotAllowed { allow, .. } => Some((header::ALLOW, allow.clone())),
            AppError::Unauthorized(_) => Some((header::WWW_AUTHENTICATE, "Bearer".to_owned())),
            _ => None,
        };
        let (status, code, message, field) = self.parts();
        let body = Json(json!({
            "error": { "code": code, "message": message, "field": field }
        }));
        match extra {
            Some(extra) => (status, [extra], body).into_response(),
            None => (status, body).into_response(),
        }
    }
}

/// The shape of every error (for the API's description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ApiError {
    error: ApiErrorBody,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ApiErrorBody {
    /// What to branch on: `invalid`, `not_found`, `conflict`, `forbidden`, ...
    code: String,
    /// What to fix.
    message: String,
    /// The input field at fault, where there is one.
    field: Option<String>,
}
