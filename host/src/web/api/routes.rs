//! `/api/v1/routes`: the routes of this host's file (read-only) and of the database.

use crate::config::RouteConfig;
use crate::web::caller::{Admin, Allowed, Viewer};
use crate::web::json::JsonBody;
use crate::web::ops::routes::{self as ops, RouteView};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

/// Every route, with how it runs on this host.
#[utoipa::path(get, path = "/api/v1/routes", tag = "routes",
    responses((status = 200, body = [RouteView])))]
pub async fn list(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
) -> Result<Json<Vec<RouteView>>, AppError> {
    Ok(Json(ops::list(&state, &who).await?))
}

#[utoipa::path(get, path = "/api/v1/routes/{name}", tag = "routes",
    params(("name" = String, Path)),
    responses((status = 200, body = RouteView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
    Path(name): Path<String>,
) -> Result<Json<RouteView>, AppError> {
    Ok(Json(ops::get(&state, &who, &name).await?))
}

/// Adds a route; it runs on every host on this database at once.
#[utoipa::path(post, path = "/api/v1/routes", tag = "routes", request_body = RouteConfig,
    responses((status = 201, body = RouteView), (status = 400), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    JsonBody(route): JsonBody<RouteConfig>,
) -> Result<(StatusCode, Json<RouteView>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(ops::create(&state, &who, route).await?),
    ))
}

/// Replaces a route: messages in flight finish on the old chain, new ones take the new.
#[utoipa::path(put, path = "/api/v1/routes/{name}", tag = "routes", request_body = RouteConfig,
    params(("name" = String, Path)),
    responses((status = 200, body = RouteView), (status = 400), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
    JsonBody(route): JsonBody<RouteConfig>,
) -> Result<Json<RouteView>, AppError> {
    Ok(Json(ops::update(&state, &who, &name, route).await?))
}

/// Deletes a route: it stops taking messages and finishes those it holds.
#[utoipa::path(delete, path = "/api/v1/routes/{name}", tag = "routes",
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
