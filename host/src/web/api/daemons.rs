//! `/api/v1/daemons`: the daemons of this host's file (read-only) and of the database.

use crate::config::DaemonConfig;
use crate::web::caller::{Admin, Allowed, Viewer};
use crate::web::json::JsonBody;
use crate::web::ops::daemons::{self as ops, DaemonView};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

/// Every daemon, with how it runs on this host.
#[utoipa::path(get, path = "/api/v1/daemons", tag = "daemons",
    responses((status = 200, body = [DaemonView])))]
pub async fn list(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
) -> Result<Json<Vec<DaemonView>>, AppError> {
    Ok(Json(ops::list(&state, &who).await?))
}

#[utoipa::path(get, path = "/api/v1/daemons/{name}", tag = "daemons",
    params(("name" = String, Path)),
    responses((status = 200, body = DaemonView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
    Path(name): Path<String>,
) -> Result<Json<DaemonView>, AppError> {
    Ok(Json(ops::get(&state, &who, &name).await?))
}

/// Adds a daemon; it starts on one host of this database (or on each, if it says so).
#[utoipa::path(post, path = "/api/v1/daemons", tag = "daemons", request_body = DaemonConfig,
    responses((status = 201, body = DaemonView), (status = 400), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    JsonBody(daemon): JsonBody<DaemonConfig>,
) -> Result<(StatusCode, Json<DaemonView>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(ops::create(&state, &who, daemon).await?),
    ))
}

/// Replaces a daemon: the running one is asked to stop and finishes its call, then the new one starts.
#[utoipa::path(put, path = "/api/v1/daemons/{name}", tag = "daemons", request_body = DaemonConfig,
    params(("name" = String, Path)),
    responses((status = 200, body = DaemonView), (status = 400), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
    JsonBody(daemon): JsonBody<DaemonConfig>,
) -> Result<Json<DaemonView>, AppError> {
    Ok(Json(ops::update(&state, &who, &name, daemon).await?))
}

/// Deletes a daemon: it is asked to stop, and what it took and had not settled goes back.
#[utoipa::path(delete, path = "/api/v1/daemons/{name}", tag = "daemons",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn delete(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    ops::delete(&state, &who, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
