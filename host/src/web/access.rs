//! `/api/v1/users` and `/api/v1/tokens`: the people and services that may use the API. Admin
//! only (`caller::authorize_admin`). A token is shown once, in the answer that creates it.

use super::api::JsonBody;
use super::{AppError, AppState, now_ms};
use crate::auth::{self, Caller, Role};
use crate::store::{ApiToken, User};
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn role_of(text: &str) -> Result<Role, AppError> {
    text.parse().map_err(|e: String| invalid("role", e))
}

async fn hash(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|_| AppError::Unavailable("hashing the password failed; try again".into()))?
        .map_err(|e| invalid("password", e.to_string()))
}

/// A user to add.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

/// A user, as added.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserAdded {
    name: String,
    role: String,
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [User])))]
pub async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<User>>, AppError> {
    Ok(Json(state.store.users().await?))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserAdded), (status = 400), (status = 409)))]
pub async fn add_user(
    State(state): State<AppState>,
    JsonBody(NewUser {
        name,
        password,
        role,
    }): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<UserAdded>), AppError> {
    auth::check_name(&name).map_err(|e| invalid("name", e.to_string()))?;
    let role = role_of(&role)?;
    let hash = hash(password).await?;
    if !state.store.add_user(&name, &hash, role, now_ms()).await? {
        return Err(AppError::Conflict(format!(
            "a user named `{name}` exists already"
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(UserAdded {
            name,
            role: role.as_str().into(),
        }),
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
    Path(name): Path<String>,
    JsonBody(NewPassword { password }): JsonBody<NewPassword>,
) -> Result<StatusCode, AppError> {
    let hash = hash(password).await?;
    if !state.store.set_password(&name, &hash, now_ms()).await? {
        return Err(AppError::NotFound(format!(
            "there is no user named `{name}`"
        )));
    }
    state.store.remove_sessions_of(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn remove_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    if caller.name == name {
        return Err(AppError::Conflict(
            "you cannot remove yourself; another admin can".into(),
        ));
    }
    if !state.store.remove_user(&name).await? {
        return Err(AppError::NotFound(format!(
            "there is no user named `{name}`"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A token to make.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

/// A token made: `token` is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenCreated {
    pub id: String,
    pub name: String,
    pub role: String,
    pub token: String,
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = [ApiToken])))]
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<Vec<ApiToken>>, AppError> {
    Ok(Json(state.store.tokens().await?))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = TokenCreated), (status = 400)))]
pub async fn create_token(
    State(state): State<AppState>,
    JsonBody(NewToken { name, role }): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<TokenCreated>), AppError> {
    auth::check_name(&name).map_err(|e| invalid("name", e.to_string()))?;
    let role = role_of(&role)?;
    let (token, digest) = auth::new_token();
    let id = state
        .store
        .add_token(&name, role, &digest, false, now_ms())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            id,
            name,
            role: role.as_str().into(),
            token,
        }),
    ))
}

/// What a revocation did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    revoked: u64,
}

/// Revokes every live token with this id or name.
#[utoipa::path(delete, path = "/api/v1/tokens/{id_or_name}", tag = "tokens",
    params(("id_or_name" = String, Path)),
    responses((status = 200, body = Revoked), (status = 404)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id_or_name): Path<String>,
) -> Result<Json<Revoked>, AppError> {
    match state.store.revoke_tokens(&id_or_name, now_ms()).await? {
        0 => Err(AppError::NotFound(format!(
            "no live token has the id or name `{id_or_name}`"
        ))),
        revoked => Ok(Json(Revoked { revoked })),
    }
}

/// A change to a user: a new role, disabled or enabled again.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// `admin`, `operator` or `viewer`.
    pub role: Option<String>,
    /// A disabled user cannot sign in, and their sessions end.
    pub disabled: Option<bool>,
}

/// Changes a user's role, or disables or enables them.
#[utoipa::path(put, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path)), request_body = UserChange,
    responses((status = 204), (status = 400), (status = 404), (status = 409)))]
pub async fn update_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<UserChange>,
) -> Result<StatusCode, AppError> {
    let role = change.role.as_deref().map(role_of).transpose()?;
    if caller.name == name
        && (change.disabled == Some(true) || role.is_some_and(|r| r < Role::Admin))
    {
        return Err(AppError::Conflict(
            "you cannot disable yourself or take your own admin role; another admin can".into(),
        ));
    }
    if !state
        .store
        .update_user(&name, role, change.disabled, now_ms())
        .await?
    {
        return Err(AppError::NotFound(format!(
            "there is no user named `{name}`"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// How long a password-reset link works.
pub const RESET_LIFETIME_MS: i64 = 24 * 3600 * 1000;

/// A password-reset link, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ResetLink {
    /// The path to open on this host (`/reset/…`); it works once, for 24 hours.
    pub path: String,
    pub expires_ms: i64,
}

/// Issues a one-time link with which `name` sets a new password (their sessions end then).
#[utoipa::path(post, path = "/api/v1/users/{name}/reset", tag = "users",
    params(("name" = String, Path)),
    responses((status = 201, body = ResetLink), (status = 404)))]
pub async fn issue_reset(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<ResetLink>), AppError> {
    let (token, digest) = auth::new_token();
    let (now, expires_ms) = (now_ms(), now_ms() + RESET_LIFETIME_MS);
    if !state
        .store
        .add_password_reset(&digest, &name, now, expires_ms)
        .await?
    {
        return Err(AppError::NotFound(format!(
            "there is no user named `{name}`"
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(ResetLink {
            path: format!("/reset/{token}"),
            expires_ms,
        }),
    ))
}

/// Host-wide settings an admin changes.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Whether people may register themselves (as viewers) on the sign-in page.
    pub registration: bool,
}

/// Whether registration is open.
pub async fn registration_open(state: &AppState) -> Result<bool, AppError> {
    Ok(state.store.setting("registration").await?.as_deref() == Some("open"))
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "users",
    responses((status = 200, body = Settings)))]
pub async fn get_settings(State(state): State<AppState>) -> Result<Json<Settings>, AppError> {
    Ok(Json(Settings {
        registration: registration_open(&state).await?,
    }))
}

#[utoipa::path(put, path = "/api/v1/settings", tag = "users", request_body = Settings,
    responses((status = 200, body = Settings), (status = 400)))]
pub async fn put_settings(
    State(state): State<AppState>,
    JsonBody(settings): JsonBody<Settings>,
) -> Result<Json<Settings>, AppError> {
    let value = if settings.registration {
        "open"
    } else {
        "closed"
    };
    state
        .store
        .set_setting("registration", value, now_ms())
        .await?;
    Ok(Json(settings))
}
