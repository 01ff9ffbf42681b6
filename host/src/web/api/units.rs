//! `/api/v1/status` (what runs on this host) and `/api/v1/units/{name}/stop|start`: an
//! operator holds a unit stopped on every host on the database, or lets it run again.

use crate::supervisor::{Status, UnitStatus};
use crate::web::caller::{Allowed, Operator, Viewer};
use crate::web::ops::units as ops;
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
    /// Routes and subscriptions, by name (1 to 100).
    pub units: Vec<String>,
    /// How long to wait for their inputs to empty (1 to 3600 s; 60 by default).
    #[serde(default = "sixty")]
    pub timeout_secs: u64,
}

fn sixty() -> u64 {
    60
}

/// Processes every message outstanding on the units named, then answers with how many this
/// host took; a unit held stopped runs for the drain and is held stopped again after it.
#[utoipa::path(post, path = "/api/v1/drain", tag = "units", request_body = DrainRequest,
    responses((status = 200, body = ops::DrainReport), (status = 400), (status = 404)))]
pub async fn drain(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    crate::web::json::JsonBody(request): crate::web::json::JsonBody<DrainRequest>,
) -> Result<Json<ops::DrainReport>, AppError> {
    let timeout = std::time::Duration::from_secs(request.timeout_secs);
    Ok(Json(
        ops::drain(&state, &who, &request.units, timeout).await?,
    ))
}
