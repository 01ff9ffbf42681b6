//! The HTTP side of the host: the JSON API, the admin UI, HTTP ingress, health and metrics.
//! The only module that knows axum.
//!
//! - `caller.rs`: who a request's caller is and whether their role (and, through a session,
//!   their CSRF token) lets them through, checked from the request's head before its body;
//! - `ops/`: the one set of operations (create a route, upload a plugin, replay a dead
//!   letter, …) that `api/` (JSON) and `ui/` (pages) both call, each recording its change in
//!   the audit log;
//! - `security.rs`: the headers every answer carries, cross-site changes refused, panics and
//!   slow requests answered in the one error shape; `limits.rs`: credential attempts per
//!   address; `listener.rs`: the listener itself, over TLS when configured.
//!
//! Rules every endpoint keeps: a GET never changes anything (reading a queue's messages with
//! GET peeks; taking them is a POST; the live consume checks its CSRF token as a change); a
//! body is at most `server.max_request_bytes` (413), and a few KiB where no one is signed in
//! yet; one answer carries at most `max_response_bytes` of payload; every error is JSON
//! `{"error": {"code", "message", "field"}}`; a request that waits ends when the host shuts
//! down.

pub mod api;
pub mod caller;
pub mod error;
pub mod health;
pub mod ingress;
pub mod json;
pub mod limits;
pub mod listener;
pub mod ops;
pub mod security;
pub mod ui;

pub use error::AppError;

use crate::broker::Connections;
use crate::shutdown::Shutdown;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, delete, get, post, put};
use std::sync::Arc;

/// The most messages one call reads from a queue.
pub const MAX_COUNT: usize = 1_000;
/// The longest a call waits for messages.
pub const MAX_WAIT_MS: u64 = 300_000;
/// The largest body taken from someone not signed in (a sign-in, a set-up or registration
/// form): names and passwords are small.
pub const MAX_ANONYMOUS_BODY: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub connections: Connections,
    /// Where users, tokens, sessions, the desired state and the audit log are kept.
    pub store: crate::store::Store,
    /// Runs what the desired state says; told of every change made here.
    pub supervisor: crate::supervisor::Supervisor,
    /// Messages handed over to be sent whatever the brokers do, and its backlog.
    pub outbox: crate::outbox::Outbox,
    /// Pairs RPC replies with their callers.
    pub rpc: crate::rpc::Rpc,
    /// Messages taken through the API with a lease, held until settled.
    pub leases: crate::leases::Leases,
    /// Fires when the host stops: requests that wait stop waiting.
    pub shutdown: Shutdown,
    /// The largest request body taken.
    pub max_request_bytes: usize,
    /// The most payload bytes one answer carries.
    pub max_response_bytes: usize,
    /// The largest payload a route takes (`server.max_message_bytes`): HTTP ingress refuses
    /// a larger body with 413 rather than hold what no route would handle.
    pub max_message_bytes: usize,
    /// Whether the listener speaks TLS (cookies are then `Secure`, and HSTS is sent).
    pub tls: bool,
    /// Password hashes, a few at a time.
    pub hashing: Arc<crate::auth::Hashing>,
    /// Credential attempts per peer address.
    pub limits: Arc<limits::PeerLimits>,
    /// The one-time link that sets up the first admin, while no user exists.
    pub setup: Arc<crate::auth::SetupLink>,
    /// Units a drain is running now (one drain at a time per unit).
    pub draining: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Now, as the store keeps times.
fn now_ms() -> i64 {
    crate::message::now_ms() as i64
}

/// The largest JSON (or form) body a signed-in caller may send: room for a few messages of
/// `max_message_bytes` as JSON text, and never less than 1 MiB.
pub fn json_body_limit(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_mul(4)
        .max(1024 * 1024)
        .saturating_add(64 * 1024)
}

pub fn router(state: AppState) -> Router {
    // Only plugin uploads take large bodies (up to `server.max_request_bytes`); every other
    // signed-in body is JSON or a form, held near the largest message it could carry.
    let upload_limit = state.max_request_bytes;
    let body_limit = json_body_limit(state.max_message_bytes).min(upload_limit);
    let tls = state.tls;
    let api = Router::new()
        .route(
            "/api/v1/queues/{connection}/{queue}",
            get(api::queues::stats),
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
        .route(
            "/api/v1/queues/{connection}/{queue}/lease",
            post(api::queues::lease),
        )
        .route(
            "/api/v1/queues/{connection}/{queue}/lease/stream",
            post(api::queues::lease_stream),
        )
        .route("/api/v1/leases", get(api::queues::leases))
        .route("/api/v1/leases/settle", post(api::queues::settle))
        .route("/api/v1/leases/streams", get(api::queues::lease_streams))
        .route(
            "/api/v1/leases/streams/{id}",
            delete(api::queues::stop_lease_stream),
        )
        .route("/api/v1/leases/{id}/ack", post(api::queues::ack))
        .route("/api/v1/leases/{id}/nack", post(api::queues::nack))
        .route("/api/v1/leases/{id}/extend", post(api::queues::extend))
        .route("/api/v1/rpc/{connection}/{*address}", post(api::rpc::call))
        .route("/api/v1/units/{name}/stop", post(api::units::stop))
        .route("/api/v1/units/{name}/start", post(api::units::start))
        .route("/api/v1/units/{name}/restart", post(api::units::restart))
        .route(
            "/api/v1/daemons",
            get(api::daemons::list).post(api::daemons::create),
        )
        .route(
            "/api/v1/daemons/{name}",
            get(api::daemons::get)
                .put(api::daemons::update)
                .delete(api::daemons::delete),
        )
        .route("/api/v1/status", get(api::units::status))
        .route("/api/v1/drain", post(api::units::drain))
        .route("/api/v1/queues", get(api::queues::list))
        .route(
            "/api/v1/outbox",
            get(api::outbox::stats).post(api::outbox::accept),
        )
        .route("/api/v1/outbox/dead", get(api::outbox::dead))
        .route("/api/v1/events/{model}/{event}", post(api::events::publish))
        .route(
            "/api/v1/subscriptions",
            get(api::subscriptions::list).post(api::subscriptions::create),
        )
        .route(
            "/api/v1/subscriptions/{name}",
            get(api::subscriptions::get)
                .put(api::subscriptions::update)
                .delete(api::subscriptions::delete),
        )
        .route("/api/v1/outbox/dead/{seq}", delete(api::outbox::forget))
        .route("/api/v1/outbox/dead/{seq}/retry", post(api::outbox::retry))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/users", get(api::users::list).post(api::users::add))
        .route(
            "/api/v1/users/{name}",
            put(api::users::update).delete(api::users::remove),
        )
        .route("/api/v1/users/{name}/reset", post(api::users::issue_reset))
        .route(
            "/api/v1/users/{name}/password",
            put(api::users::set_password),
        )
        .route(
            "/api/v1/settings",
            get(api::users::settings).put(api::users::set_settings),
        )
        .route(
            "/api/v1/tokens",
            get(api::users::tokens).post(api::users::create_token),
        )
        .route(
            "/api/v1/tokens/{id_or_name}",
            delete(api::users::revoke_token),
        )
        .route("/api/v1/audit", get(api::audit::list))
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
            get(api::plugins::list)
                .post(api::plugins::upload)
                .layer(DefaultBodyLimit::max(upload_limit)),
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
        .route("/api/v1/logout", post(api::sessions::logout));
    // Where no one is signed in yet: small bodies only.
    let anonymous = Router::new()
        .route("/api/v1/login", post(api::sessions::login))
        .merge(ui::anonymous_router())
        .layer(DefaultBodyLimit::max(MAX_ANONYMOUS_BODY));
    let app = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        // Ingress takes no body larger than a route would (413), read or not.
        .route(
            "/ingress/{connection}/{*path}",
            any(ingress::ingress).layer(DefaultBodyLimit::max(state.max_message_bytes)),
        )
        .route(
            "/hooks/{*path}",
            any(ingress::hook).layer(DefaultBodyLimit::max(state.max_message_bytes)),
        )
        .merge(api)
        .merge(ui::router(upload_limit))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(anonymous)
        .fallback(health::not_found)
        .with_state(state);
    security::layer(app, tls)
}
