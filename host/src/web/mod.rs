//! The HTTP side of the host: health, readiness and the JSON API. The only module that knows
//! axum. The admin UI will live here too. Who a caller is, and whether they may, is
//! `caller.rs`.
//!
//! Rules every endpoint keeps: a GET never changes anything (reading a queue's messages with
//! GET peeks; taking them is a POST); a body is at most `server.max_request_bytes` (413); one
//! answer carries at most `max_response_bytes` of payload; every error is JSON
//! `{"error": {"code", "message", "field"}}`: a code to branch on, a message that says what to
//! fix, and the input field at fault where there is one; a request that waits (taking messages) ends when
//! the host shuts down. Every `/api/v1` call presents a token (`Authorization: Bearer …`) and
//! is checked against its role: reading needs viewer, anything else operator; 401 without a
//! live token, 403 below the role. `/healthz` and `/readyz` are open.

use crate::broker::{BrokerError, Connections};
use crate::shutdown::Shutdown;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

pub(crate) mod access;
pub mod api;
pub(crate) mod caller;
pub mod ingress;
pub mod ui;

/// The most messages one call reads from a queue.
pub const MAX_COUNT: usize = 1_000;
/// The longest a call waits for messages.
pub const MAX_WAIT_MS: u64 = 300_000;

#[derive(Clone)]
pub struct AppState {
    pub connections: Connections,
    /// Where users and tokens are checked.
    pub store: crate::store::Store,
    /// Runs what the desired state says; told of every change made here.
    pub supervisor: crate::supervisor::Supervisor,
    /// Pairs RPC replies with their callers.
    pub rpc: crate::rpc::Rpc,
    /// Fires when the host stops: requests that wait stop waiting.
    pub shutdown: Shutdown,
    /// The largest request body taken.
    pub max_request_bytes: usize,
    /// The most payload bytes one answer carries.
    pub max_response_bytes: usize,
    /// The largest payload a route takes (`server.max_message_bytes`): HTTP ingress refuses
    /// a larger body with 413 rather than hold what no route would handle.
    pub max_message_bytes: usize,
    /// Failed sign-ins, to slow down password guessing.
    pub throttle: std::sync::Arc<caller::Throttle>,
}

/// Every error the API returns: a status and a message that says what to fix, never internals.
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
    /// Too many failed attempts; try again after this many seconds.
    TooManyRequests {
        message: String,
        retry_after_s: u64,
    },
    Unavailable(String),
    /// Waited for something that did not come (an RPC reply).
    Timeout(String),
    /// What the request went on to (an HTTP endpoint, a handler) failed.
    BadGateway(String),
    /// The method is not taken here; the methods that are.
    MethodNotAllowed {
        message: String,
        allow: String,
    },
}

impl From<JsonRejection> for AppError {
    fn from(e: JsonRejection) -> Self {
        match e {
            JsonRejection::MissingJsonContentType(_) => AppError::UnsupportedMediaType(
                "send the message as JSON, with `Content-Type: application/json`".into(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                AppError::PayloadTooLarge(
                    "the request body is over the host's limit (server.max_request_bytes)".into(),
                )
            }
            other => AppError::BadRequest(format!(
                "the body is not usable JSON: {}",
                other.body_text()
            )),
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
            BrokerError::InvalidAddress { .. } | BrokerError::Unroutable { .. } => {
                AppError::BadRequest(e.to_string())
            }
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

impl From<crate::store::StoreError> for AppError {
    /// A database failure: logged whole here, answered without its internals.
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(%error, "a database error in the API");
        AppError::Unavailable("the database could not complete the request; try again".into())
    }
}

/// Now, as the store keeps times.
fn now_ms() -> i64 {
    crate::message::now_ms() as i64
}

impl From<crate::message::MessageJsonError> for AppError {
    fn from(e: crate::message::MessageJsonError) -> Self {
        AppError::Invalid {
            message: e.to_string(),
            field: e.field,
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

pub fn router(state: AppState) -> Router {
    let body_limit = state.max_request_bytes;
    let api = Router::new()
        .route(
            "/api/v1/queues/{connection}/{queue}",
            get(api::queues::queue_stats),
        )
        .route(
            "/api/v1/queues/{connection}/{queue}/messages",
            get(api::queues::peek)
                .post(api::queues::publish)
                .delete(api::queues::purge),
        )
        .route(
            "/api/v1/queues/{connection}/{queue}/take",
            post(api::queues::take),
        )
        .route(
            "/api/v1/queues/{connection}/{queue}/replay",
            post(api::queues::replay),
        )
        .route("/api/v1/rpc/{connection}/{*address}", post(api::rpc::call))
        .route("/api/v1/units/{name}/stop", post(api::units::stop))
        .route("/api/v1/units/{name}/start", post(api::units::start))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            caller::authorize,
        ));
    let admin = Router::new()
        .route(
            "/api/v1/users",
            get(access::list_users).post(access::add_user),
        )
        .route(
            "/api/v1/users/{name}",
            put(access::update_user).delete(access::remove_user),
        )
        .route("/api/v1/users/{name}/reset", post(access::issue_reset))
        .route(
            "/api/v1/settings",
            get(access::get_settings).put(access::put_settings),
        )
        .route("/api/v1/users/{name}/password", put(access::set_password))
        .route(
            "/api/v1/tokens",
            get(access::list_tokens).post(access::create_token),
        )
        .route("/api/v1/tokens/{id_or_name}", delete(access::revoke_token))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            caller::authorize_admin,
        ));
    let control = Router::new()
        .route("/api/v1/status", get(api::status::get))
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/routes",
            get(api::routes::list).post(api::routes::create),
        )
        .route(
            "/api/v1/routes/{name}",
            get(api::routes::get)
                .put(api::routes::update)
                .delete(api::routes::delete),
        )
        .route(
            "/api/v1/plugins",
            get(api::plugins::list).post(api::plugins::upload),
        )
        .route("/api/v1/plugins/{name}", get(api::plugins::get))
        .route(
            "/api/v1/plugins/{name}/policy",
            put(api::plugins::set_policy),
        )
        .route(
            "/api/v1/plugins/{name}/grants",
            post(api::plugins::grant).delete(api::plugins::revoke),
        )
        .route(
            "/api/v1/plugins/{name}/rollback",
            post(api::plugins::rollback),
        )
        .route(
            "/api/v1/plugins/{name}/versions/{version}",
            delete(api::plugins::delete_version),
        )
        .route(
            "/api/v1/plugins/{name}/versions/{version}/enable",
            post(api::plugins::enable),
        )
        .route(
            "/api/v1/plugins/{name}/versions/{version}/disable",
            post(api::plugins::disable),
        )
        .route(
            "/api/v1/connections",
            get(api::connections::list).post(api::connections::create),
        )
        .route("/api/v1/connections/test", post(api::connections::test_new))
        .route(
            "/api/v1/connections/{name}",
            get(api::connections::get)
                .put(api::connections::update)
                .delete(api::connections::delete),
        )
        .route(
            "/api/v1/connections/{name}/test",
            post(api::connections::test),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            caller::authorize_control,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/login", post(caller::login))
        .route("/api/v1/logout", post(caller::logout))
        .route(
            "/ingress/{connection}/{*path}",
            axum::routing::any(ingress::ingress),
        )
        .merge(api)
        .merge(admin)
        .merge(control)
        .merge(ui::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The API's description, generated from the handlers and their types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Wharf", description = "The host's JSON API. Every call needs `Authorization: Bearer TOKEN` or a session; reading needs viewer, publishing and taking operator, changing connections, plugins, routes, users and tokens admin. Every error is `{\"error\": {\"code\", \"message\", \"field\"}}`."),
    paths(
        healthz, readyz, caller::login, caller::logout,
        api::queues::queue_stats, api::queues::peek, api::queues::publish, api::queues::take,
        api::queues::purge, api::queues::replay,
        access::list_users, access::add_user, access::set_password, access::remove_user,
        access::update_user, access::issue_reset, access::get_settings, access::put_settings,
        access::list_tokens, access::create_token, access::revoke_token,
        api::status::get, api::units::stop, api::units::start, api::rpc::call,
        ingress::ingress,
        api::routes::list, api::routes::get, api::routes::create, api::routes::update,
        api::routes::delete,
        api::plugins::list, api::plugins::get, api::plugins::upload, api::plugins::enable,
        api::plugins::disable, api::plugins::rollback, api::plugins::delete_version,
        api::plugins::set_policy, api::plugins::grant, api::plugins::revoke,
        api::connections::list, api::connections::get, api::connections::create,
        api::connections::update, api::connections::delete, api::connections::test,
        api::connections::test_new,
    ),
    components(schemas(ApiError, ApiErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The shape of every error (for the API's description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ApiError {
    error: ApiErrorBody,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ApiErrorBody {
    /// What to branch on: `invalid`, `not_found`, `conflict`, `forbidden`, ...
    code: String,
    /// What to fix.
    message: String,
    /// The input field at fault, where there is one.
    field: Option<String>,
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// Prometheus metrics (open, like `/healthz`): per route messages in, out, failed, retried and
/// dead-lettered; plugin call durations; connections up; units by state.
async fn metrics(State(state): State<AppState>) -> Response {
    let status = state.supervisor.status().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&status, state.rpc.in_flight()),
    )
        .into_response()
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint; the API is under /api/v1".into())
}

/// Every connection's state, and whether all are up.
async fn connection_states(state: &AppState) -> (bool, serde_json::Map<String, Value>) {
    let checks = state.connections.check().await;
    let up = checks.iter().all(|(_, state)| state.is_ok());
    let connections = checks
        .into_iter()
        .map(|(name, state)| {
            let state = match state {
                Ok(()) => json!({ "status": "up" }),
                Err(e) => json!({ "status": "down", "error": e }),
            };
            (name, state)
        })
        .collect();
    (up, connections)
}

#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, body = Object)))]
/// Liveness: the process answers (always 200). `status` is `degraded` while a connection is
/// down (the host is reconnecting it), with each connection's state.
async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let (up, connections) = connection_states(&state).await;
    Json(json!({
        "status": if up { "ok" } else { "degraded" },
        "connections": connections,
    }))
}

#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Object), (status = 503, body = Object)))]
/// Readiness: every connection is up (503 otherwise).
async fn readyz(State(state): State<AppState>) -> Response {
    let (ready, connections) = connection_states(&state).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "connections": connections })),
    )
        .into_response()
}
