//! The units' API, written once for every kind: `/api/v1/{routes,subscriptions,daemons}`
//! (read, create, update, delete; a host's file's units are read-only), `/api/v1/status`
//! (what runs on this host), `/api/v1/units/{name}/stop|start|restart` (an operator holds any
//! unit stopped on every host on the database, lets it run again, or starts it anew) and
//! `/api/v1/drain`.

use crate::supervisor::{Status, UnitStatus};
use crate::web::caller::{Allowed, Operator, Viewer};
use crate::web::ops::{drain as drains, units as ops};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::{Path, State};

/// Every connection and unit on this host, with its state and last error.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = Status)))]
pub async fn status(State(state): State<AppState>, who: Allowed<Viewer>) -> Json<Status> {
    Json(ops::status(&state, &who).await)
}

/// Stops a unit on every host: it finishes the messages it holds and takes no more.
#[utoipa::path(post, path = "/api/v1/units/{name}/stop", tag = "units",
    params(("name" = String, Path)),
    responses((status = 200, body = UnitStatus), (status = 404)))]
pub async fn stop(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path(name): Path<String>,
) -> Result<Json<UnitStatus>, AppError> {
    Ok(Json(ops::stop(&state, &who, &name).await?))
}

/// Lets a stopped unit run again.
#[utoipa::path(post, path = "/api/v1/units/{name}/start", tag = "units",
    params(("name" = String, Path)),
    responses((status = 200, body = UnitStatus), (status = 404)))]
pub async fn start(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path(name): Path<String>,
) -> Result<Json<UnitStatus>, AppError> {
    Ok(Json(ops::start(&state, &who, &name).await?))
}

/// Starts a unit anew on every host; a daemon marked failed runs again, its failures
/// forgotten. A unit held stopped stays stopped.
#[utoipa::path(post, path = "/api/v1/units/{name}/restart", tag = "units",
    params(("name" = String, Path)),
    responses((status = 200, body = UnitStatus), (status = 404)))]
pub async fn restart(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path(name): Path<String>,
) -> Result<Json<UnitStatus>, AppError> {
    Ok(Json(ops::restart(&state, &who, &name).await?))
}

/// Which units to drain, and for how long at most.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Routes and subscriptions, by name (at most 100); none, or left out: every route and
    /// subscription the host consumes for.
    #[serde(default)]
    pub units: Vec<String>,
    /// How long to wait for their inputs to empty (1 to 3600 s; 60 by default).
    #[serde(default = "sixty")]
    pub timeout_secs: u64,
}

fn sixty() -> u64 {
    60
}

/// Processes every message outstanding on the units named (none: every route and
/// subscription), then answers with how many this host took; a unit held stopped runs for the drain and is held stopped again after it.
#[utoipa::path(post, path = "/api/v1/drain", tag = "units", request_body = DrainRequest,
    responses((status = 200, body = drains::DrainReport), (status = 400), (status = 404)))]
pub async fn drain(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    crate::web::json::JsonBody(request): crate::web::json::JsonBody<DrainRequest>,
) -> Result<Json<drains::DrainReport>, AppError> {
    let timeout = std::time::Duration::from_secs(request.timeout_secs);
    Ok(Json(
        drains::drain(&state, &who, &request.units, timeout).await?,
    ))
}

/// The five calls of one kind of unit (`$spec`, shown as `$view`) at `$list` and `$one`,
/// in a module of their own for the router and the OpenAPI document.
macro_rules! unit_api {
    ($module:ident, $spec:ty, $view:ident, $tag:literal, $list:literal, $one:literal,
     list: $list_doc:literal, create: $create_doc:literal, update: $update_doc:literal,
     delete: $delete_doc:literal) => {
        pub mod $module {
            use crate::web::caller::{Admin, Allowed, Viewer};
            use crate::web::json::JsonBody;
            use crate::web::ops::units as ops;
            use crate::web::ops::views::$view;
            use crate::web::{AppError, AppState};
            use axum::Json;
            use axum::extract::{Path, State};
            use axum::http::StatusCode;

            #[doc = $list_doc]
            #[utoipa::path(get, path = $list, tag = $tag,
                        responses((status = 200, body = [$view])))]
            pub async fn list(
                State(state): State<AppState>,
                who: Allowed<Viewer>,
            ) -> Result<Json<Vec<$view>>, AppError> {
                Ok(Json(ops::list::<$spec>(&state, &who).await?))
            }

            #[utoipa::path(get, path = $one, tag = $tag,
                        params(("name" = String, Path)),
                        responses((status = 200, body = $view), (status = 404)))]
            pub async fn get(
                State(state): State<AppState>,
                who: Allowed<Viewer>,
                Path(name): Path<String>,
            ) -> Result<Json<$view>, AppError> {
                Ok(Json(ops::get::<$spec>(&state, &who, &name).await?))
            }

            #[doc = $create_doc]
            #[utoipa::path(post, path = $list, tag = $tag, request_body = $spec,
                        responses((status = 201, body = $view), (status = 400), (status = 409)))]
            pub async fn create(
                State(state): State<AppState>,
                who: Allowed<Admin>,
                JsonBody(spec): JsonBody<$spec>,
            ) -> Result<(StatusCode, Json<$view>), AppError> {
                Ok((
                    StatusCode::CREATED,
                    Json(ops::create(&state, &who, spec).await?),
                ))
            }

            #[doc = $update_doc]
            #[utoipa::path(put, path = $one, tag = $tag, request_body = $spec,
                        params(("name" = String, Path)),
                        responses((status = 200, body = $view), (status = 400), (status = 404),
                            (status = 409)))]
            pub async fn update(
                State(state): State<AppState>,
                who: Allowed<Admin>,
                Path(name): Path<String>,
                JsonBody(spec): JsonBody<$spec>,
            ) -> Result<Json<$view>, AppError> {
                Ok(Json(ops::update(&state, &who, &name, spec).await?))
            }

            #[doc = $delete_doc]
            #[utoipa::path(delete, path = $one, tag = $tag,
                        params(("name" = String, Path)),
                        responses((status = 204), (status = 404), (status = 409)))]
            pub async fn delete(
                State(state): State<AppState>,
                who: Allowed<Admin>,
                Path(name): Path<String>,
            ) -> Result<StatusCode, AppError> {
                ops::delete::<$spec>(&state, &who, &name).await?;
                Ok(StatusCode::NO_CONTENT)
            }
        }
    };
}

unit_api!(routes, crate::config::RouteConfig, RouteView, "routes",
    "/api/v1/routes", "/api/v1/routes/{name}",
    list: "Every route, with how it runs on this host.",
    create: "Adds a route; it runs on every host on this database at once.",
    update: "Replaces a route: messages in flight finish on the old chain, new ones take the new.",
    delete: "Deletes a route: it stops taking messages, finishes those it holds, and lets go of its input on the broker.");

unit_api!(subscriptions, crate::config::SubscriptionConfig, SubscriptionView, "subscriptions",
    "/api/v1/subscriptions", "/api/v1/subscriptions/{name}",
    list: "Every subscription, with how it runs on this host.",
    create: "Adds a subscription; it runs on every host on this database at once.",
    update: "Replaces a subscription: events in flight finish on the old chain, new ones take the new; a change of service, chain or pattern moves it to a new queue (the old one is unbound).",
    delete: "Deletes a subscription: it stops taking events and finishes those it holds; its queue is unbound from the events exchange (what it holds stays, to read or purge).");

unit_api!(daemons, crate::config::DaemonConfig, DaemonView, "daemons",
    "/api/v1/daemons", "/api/v1/daemons/{name}",
    list: "Every daemon, with how it runs on this host (and which host holds its lease).",
    create: "Adds a daemon; it starts on one host of this database (or on each, if it says so).",
    update: "Replaces a daemon: the running one is asked to stop and finishes its call, then the new one starts.",
    delete: "Deletes a daemon: it is asked to stop, and what it took and had not settled goes back.");
