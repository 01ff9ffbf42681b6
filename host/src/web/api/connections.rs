//! `/api/v1/connections`: broker connections of this host's file (read-only) and of the
//! database. Secrets are never shown back; a definition sent back as it was shown keeps them,
//! for the same host only.

use crate::broker::ConnectionTest;
use crate::config::ConnectionConfig;
use crate::web::caller::{Admin, Allowed, Viewer};
use crate::web::json::JsonBody;
use crate::web::ops::connections::{self as ops, ConnectionView, NewConnection};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

#[utoipa::path(get, path = "/api/v1/connections", tag = "connections",
    responses((status = 200, body = [ConnectionView])))]
pub async fn list(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
) -> Result<Json<Vec<ConnectionView>>, AppError> {
    Ok(Json(ops::list(&state, &who).await?))
}

#[utoipa::path(get, path = "/api/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
    Path(name): Path<String>,
) -> Result<Json<ConnectionView>, AppError> {
    Ok(Json(ops::get(&state, &who, &name).await?))
}

/// Adds a connection; every host on this database opens it.
#[utoipa::path(post, path = "/api/v1/connections", tag = "connections",
    request_body = NewConnection,
    responses((status = 201, body = ConnectionView), (status = 400), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<ConnectionView>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(ops::create(&state, &who, body).await?),
    ))
}

/// Replaces a connection: it is opened again, and the routes on it move to the new one.
/// Secrets sent back hidden (`***`) keep their stored values, unless the connection now
/// points at another host (then they must be given again).
#[utoipa::path(put, path = "/api/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path)), request_body = ConnectionConfig,
    responses((status = 200, body = ConnectionView), (status = 400), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ConnectionView>, AppError> {
    Ok(Json(ops::update(&state, &who, &name, body).await?))
}

/// Removes a connection no route uses.
#[utoipa::path(delete, path = "/api/v1/connections/{name}", tag = "connections",
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

/// Tests a connection: connects afresh (for RabbitMQ: opens a connection and closes it; for
/// HTTP: a HEAD to the base URL, redirects not followed), so the answer says whether it works
/// now, not only what this host last saw.
#[utoipa::path(post, path = "/api/v1/connections/{name}/test", tag = "connections",
    params(("name" = String, Path)),
    responses((status = 200, body = ConnectionTest), (status = 404)))]
pub async fn test(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
) -> Result<Json<ConnectionTest>, AppError> {
    Ok(Json(ops::test(&state, &who, &name).await?))
}

/// Tests a definition before it is stored.
#[utoipa::path(post, path = "/api/v1/connections/test", tag = "connections",
    request_body = NewConnection,
    responses((status = 200, body = ConnectionTest), (status = 400)))]
pub async fn test_new(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ConnectionTest>, AppError> {
    Ok(Json(ops::test_new(&state, &who, body).await?))
}
