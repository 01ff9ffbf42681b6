//! `/api/v1/subscriptions`: the subscriptions of this host's file (read-only) and of the database.

use crate::config::SubscriptionConfig;
use crate::web::caller::{Admin, Allowed, Viewer};
use crate::web::json::JsonBody;
use crate::web::ops::subscriptions::{self as ops, SubscriptionView};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

/// Every subscription, with how it runs on this host.
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "subscriptions",
    responses((status = 200, body = [SubscriptionView])))]
pub async fn list(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
) -> Result<Json<Vec<SubscriptionView>>, AppError> {
    Ok(Json(ops::list(&state, &who).await?))
}

#[utoipa::path(get, path = "/api/v1/subscriptions/{name}", tag = "subscriptions",
    params(("name" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
    Path(name): Path<String>,
) -> Result<Json<SubscriptionView>, AppError> {
    Ok(Json(ops::get(&state, &who, &name).await?))
}

/// Adds a subscription; it runs on every host on this database at once.
#[utoipa::path(post, path = "/api/v1/subscriptions", tag = "subscriptions", request_body = SubscriptionConfig,
    responses((status = 201, body = SubscriptionView), (status = 400), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    JsonBody(subscription): JsonBody<SubscriptionConfig>,
) -> Result<(StatusCode, Json<SubscriptionView>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(ops::create(&state, &who, subscription).await?),
    ))
}

/// Replaces a subscription: events in flight finish on the old chain, new ones take the new.
#[utoipa::path(put, path = "/api/v1/subscriptions/{name}", tag = "subscriptions", request_body = SubscriptionConfig,
    params(("name" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 400), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
    JsonBody(subscription): JsonBody<SubscriptionConfig>,
) -> Result<Json<SubscriptionView>, AppError> {
    Ok(Json(ops::update(&state, &who, &name, subscription).await?))
}

/// Deletes a subscription: it stops taking events, finishes those it holds, and its queue is unbound.
#[utoipa::path(delete, path = "/api/v1/subscriptions/{name}", tag = "subscriptions",
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
