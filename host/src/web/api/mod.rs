//! The JSON API, one file per noun. Each handler states the role it needs in its signature
//! (`Allowed<Viewer>`, `Allowed<Operator>`, `Allowed<Admin>`: checked from the request's head
//! before its body is read), reads its input and calls the operation in `ops/` that the admin
//! UI calls too. `GET /api/v1/openapi.json` describes it all, generated from the handlers'
//! annotations and their types.

pub mod audit;
pub mod connections;
pub mod events;
pub mod outbox;
pub mod plugins;
pub mod queues;
pub mod rpc;
pub mod sessions;
pub mod units;
pub use units::{daemons, routes, subscriptions};
pub mod users;

use super::error::{ApiError, ApiErrorBody};
use super::{health, ingress};
use axum::Json;

/// The API's description, generated from the handlers and their types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Wharf", description = "The host's JSON API. Every call needs `Authorization: Bearer TOKEN` or a session (whose changes carry its CSRF token in `X-CSRF-Token`); reading needs viewer, publishing (events too), taking (and settling leases), purging, replaying and stopping or restarting units operator, changing connections, plugins, routes, subscriptions, daemons, users, tokens and settings, and reading the audit log, admin. Every error is `{\"error\": {\"code\", \"message\", \"field\"}}`."),
    paths(
        health::healthz, health::readyz, sessions::login, sessions::logout,
        queues::list, queues::stats, queues::peek, queues::publish, queues::take, queues::purge,
        queues::replay, queues::lease, queues::lease_stream, queues::lease_streams, queues::stop_lease_stream, queues::leases, queues::ack, queues::nack, queues::settle,
        queues::extend,
        users::list, users::add, users::set_password, users::remove, users::update,
        users::issue_reset, users::settings, users::set_settings,
        users::tokens, users::create_token, users::revoke_token,
        audit::list,
        units::status, units::stop, units::start, units::restart, units::drain, rpc::call,
        ingress::ingress,
        ingress::hook,
        routes::list, routes::get, routes::create, routes::update, routes::delete,
        plugins::list, plugins::get, plugins::upload, plugins::enable, plugins::disable,
        plugins::rollback, plugins::delete_version, plugins::set_policy, plugins::grant,
        plugins::revoke,
        connections::list, connections::get, connections::create, connections::update,
        connections::delete, connections::test, connections::test_new,
        outbox::accept, outbox::stats, outbox::dead, outbox::retry, outbox::forget,
        events::publish,
        subscriptions::list, subscriptions::get, subscriptions::create, subscriptions::update,
        subscriptions::delete,
        daemons::list, daemons::get, daemons::create, daemons::update, daemons::delete,
    ),
    components(schemas(ApiError, ApiErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

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

/// The API's description (open to every viewer).
pub async fn openapi(
    _: super::caller::Allowed<super::caller::Viewer>,
) -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}
