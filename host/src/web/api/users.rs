//! `/api/v1/users`, `/api/v1/tokens` and `/api/v1/settings`: the people and services that
//! may use the API, and the host-wide settings. Admin only. A token is shown once, in the
//! answer that creates it.

use crate::store::{ApiToken, User};
use crate::web::caller::{Admin, Allowed};
use crate::web::json::JsonBody;
use crate::web::ops::users::{
    self as ops, NewToken, NewUser, ResetLink, Revoked, Settings, TokenCreated, UserAdded,
    UserChange,
};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [User])))]
pub async fn list(
    State(state): State<AppState>,
    who: Allowed<Admin>,
) -> Result<Json<Vec<User>>, AppError> {
    Ok(Json(ops::list(&state, &who).await?))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserAdded), (status = 400), (status = 409)))]
pub async fn add(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    JsonBody(new): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<UserAdded>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(ops::add(&state, &who, new).await?),
    ))
}

/// A new password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

/// Sets a user's password; that user's sessions end.
#[utoipa::path(put, path = "/api/v1/users/{name}/password", tag = "users",
    params(("name" = String, Path)), request_body = NewPassword,
    responses((status = 204), (status = 400), (status = 404)))]
pub async fn set_password(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
    JsonBody(NewPassword { password }): JsonBody<NewPassword>,
) -> Result<StatusCode, AppError> {
    ops::set_password(&state, &who, &name, password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn remove(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    ops::remove(&state, &who, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a user's role, or disables or enables them.
#[utoipa::path(put, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path)), request_body = UserChange,
    responses((status = 204), (status = 400), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<UserChange>,
) -> Result<StatusCode, AppError> {
    ops::update(&state, &who, &name, change).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a one-time link with which `name` sets a new password (their sessions end then).
#[utoipa::path(post, path = "/api/v1/users/{name}/reset", tag = "users",
    params(("name" = String, Path)),
    responses((status = 201, body = ResetLink), (status = 404)))]
pub async fn issue_reset(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<ResetLink>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(ops::issue_reset(&state, &who, &name).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "users",
    responses((status = 200, body = Settings)))]
pub async fn settings(
    State(state): State<AppState>,
    who: Allowed<Admin>,
) -> Result<Json<Settings>, AppError> {
    Ok(Json(ops::settings(&state, &who).await?))
}

#[utoipa::path(put, path = "/api/v1/settings", tag = "users", request_body = Settings,
    responses((status = 200, body = Settings), (status = 400)))]
pub async fn set_settings(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    JsonBody(settings): JsonBody<Settings>,
) -> Result<Json<Settings>, AppError> {
    Ok(Json(ops::set_settings(&state, &who, settings).await?))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = [ApiToken])))]
pub async fn tokens(
    State(state): State<AppState>,
    who: Allowed<Admin>,
) -> Result<Json<Vec<ApiToken>>, AppError> {
    Ok(Json(ops::tokens(&state, &who).await?))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = TokenCreated), (status = 400)))]
pub async fn create_token(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    JsonBody(new): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<TokenCreated>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(ops::create_token(&state, &who, new).await?),
    ))
}

/// Revokes every live token with this id or name.
#[utoipa::path(delete, path = "/api/v1/tokens/{id_or_name}", tag = "tokens",
    params(("id_or_name" = String, Path)),
    responses((status = 200, body = Revoked), (status = 404)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(id_or_name): Path<String>,
) -> Result<Json<Revoked>, AppError> {
    Ok(Json(ops::revoke_token(&state, &who, &id_or_name).await?))
}
