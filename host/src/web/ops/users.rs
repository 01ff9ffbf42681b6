//! The people and services that may use the host: users (with their roles, passwords and
//! one-time reset links), API tokens (shown once, in the answer that makes them) and the
//! host-wide settings. Admin only.

use super::{AppError, AppState, audit, now_ms};
use crate::auth::{self, Role};
use crate::store::{ApiToken, User};
use crate::web::caller::{Admin, Allowed};
use crate::web::error::invalid;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn role_of(text: &str) -> Result<Role, AppError> {
    text.parse().map_err(|e: String| invalid("role", e))
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
    pub name: String,
    pub role: String,
}

pub async fn list(state: &AppState, _: &Allowed<Admin>) -> Result<Vec<User>, AppError> {
    Ok(state.store.users().await?)
}

/// Checks a new user's name and role and hashes the password (bounded, on the blocking pool).
pub async fn prepare(state: &AppState, new: &NewUser) -> Result<(Role, String), AppError> {
    auth::check_name(&new.name).map_err(|e| invalid("name", e.to_string()))?;
    let role = role_of(&new.role)?;
    let hash = state.hashing.hash(new.password.clone()).await?;
    Ok((role, hash))
}

pub async fn add(
    state: &AppState,
    who: &Allowed<Admin>,
    new: NewUser,
) -> Result<UserAdded, AppError> {
    let (role, hash) = prepare(state, &new).await?;
    if !state
        .store
        .add_user(&new.name, &hash, role, now_ms())
        .await?
    {
        return Err(AppError::Conflict(format!(
            "a user named `{}` exists already",
            new.name
        )));
    }
    audit::record(
        state,
        who,
        "user.create",
        &new.name,
        json!({ "role": role.as_str() }),
    )
    .await;
    Ok(UserAdded {
        name: new.name,
        role: role.as_str().into(),
    })
}

/// Sets a user's password; every session of that user ends.
pub async fn set_password(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    password: String,
) -> Result<(), AppError> {
    let hash = state.hashing.hash(password).await?;
    if !state.store.set_password(name, &hash, now_ms()).await? {
        return Err(AppError::NotFound(format!(
            "there is no user named `{name}`"
        )));
    }
    state.store.remove_sessions_of(name).await?;
    audit::record(state, who, "user.password", name, json!({})).await;
    Ok(())
}

pub async fn remove(state: &AppState, who: &Allowed<Admin>, name: &str) -> Result<(), AppError> {
    if !who.caller.is_token && who.caller.name == name {
        return Err(AppError::Conflict(
            "you cannot remove yourself; another admin can".into(),
        ));
    }
    if !state.store.remove_user(name).await? {
        return Err(AppError::NotFound(format!(
            "there is no user named `{name}`"
        )));
    }
    audit::record(state, who, "user.delete", name, json!({})).await;
    Ok(())
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

pub async fn update(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    change: UserChange,
) -> Result<(), AppError> {
    let role = change.role.as_deref().map(role_of).transpose()?;
    if !who.caller.is_token
        && who.caller.name == name
        && (change.disabled == Some(true) || role.is_some_and(|r| r < Role::Admin))
    {
        return Err(AppError::Conflict(
            "you cannot disable yourself or take your own admin role; another admin can".into(),
        ));
    }
    if !state
        .store
        .update_user(name, role, change.disabled, now_ms())
        .await?
    {
        return Err(AppError::NotFound(format!(
            "there is no user named `{name}`"
        )));
    }
    audit::record(
        state,
        who,
        "user.update",
        name,
        json!({ "role": role.map(Role::as_str), "disabled": change.disabled }),
    )
    .await;
    Ok(())
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
pub async fn issue_reset(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
) -> Result<ResetLink, AppError> {
    let (token, digest) = auth::new_token();
    let (now, expires_ms) = (now_ms(), now_ms() + RESET_LIFETIME_MS);
    if !state
        .store
        .add_password_reset(&digest, name, now, expires_ms)
        .await?
    {
        return Err(AppError::NotFound(format!(
            "there is no user named `{name}`"
        )));
    }
    audit::record(
        state,
        who,
        "user.reset_link",
        name,
        json!({ "expires_ms": expires_ms }),
    )
    .await;
    Ok(ResetLink {
        path: format!("/reset/{token}"),
        expires_ms,
    })
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

pub async fn tokens(state: &AppState, _: &Allowed<Admin>) -> Result<Vec<ApiToken>, AppError> {
    Ok(state.store.tokens().await?)
}

pub async fn create_token(
    state: &AppState,
    who: &Allowed<Admin>,
    new: NewToken,
) -> Result<TokenCreated, AppError> {
    auth::check_name(&new.name).map_err(|e| invalid("name", e.to_string()))?;
    let role = role_of(&new.role)?;
    let (token, digest) = auth::new_token();
    let id = state
        .store
        .add_token(&new.name, role, &digest, false, now_ms())
        .await?;
    audit::record(
        state,
        who,
        "token.create",
        &new.name,
        json!({ "id": id, "role": role.as_str() }),
    )
    .await;
    Ok(TokenCreated {
        id,
        name: new.name,
        role: role.as_str().into(),
        token,
    })
}

/// What a revocation did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub revoked: u64,
}

/// Revokes every live token with this id or name.
pub async fn revoke_token(
    state: &AppState,
    who: &Allowed<Admin>,
    id_or_name: &str,
) -> Result<Revoked, AppError> {
    match state.store.revoke_tokens(id_or_name, now_ms()).await? {
        0 => Err(AppError::NotFound(format!(
            "no live token has the id or name `{id_or_name}`"
        ))),
        revoked => {
            audit::record(
                state,
                who,
                "token.revoke",
                id_or_name,
                json!({ "revoked": revoked }),
            )
            .await;
            Ok(Revoked { revoked })
        }
    }
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

pub async fn settings(state: &AppState, _: &Allowed<Admin>) -> Result<Settings, AppError> {
    Ok(Settings {
        registration: registration_open(state).await?,
    })
}

pub async fn set_settings(
    state: &AppState,
    who: &Allowed<Admin>,
    settings: Settings,
) -> Result<Settings, AppError> {
    let value = if settings.registration {
        "open"
    } else {
        "closed"
    };
    state
        .store
        .set_setting("registration", value, now_ms())
        .await?;
    audit::record(
        state,
        who,
        "settings.update",
        "registration",
        json!({ "registration": value }),
    )
    .await;
    Ok(settings)
}
