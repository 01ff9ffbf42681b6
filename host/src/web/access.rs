//! `/api/v1/users` and `/api/v1/tokens`: the people and services that may use the API. Admin
//! only (`caller::authorize_admin`). A token is shown once, in the answer that creates it.

use super::{AppError, AppState, now_ms};
use crate::auth::{self, Caller, Role};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn role_of(text: &str) -> Result<Role, AppError> {
    text.parse().map_err(|e: String| invalid("role", e))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    password: String,
    role: String,
}

pub async fn list_users(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let users = state.store.users().await?;
    Ok(Json(json!(users)))
}

pub async fn add_user(
    State(state): State<AppState>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let Json(NewUser {
        name,
        password,
        role,
    }) = body?;
    auth::check_name(&name).map_err(|e| invalid("name", e.to_string()))?;
    let role = role_of(&role)?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|_| AppError::Unavailable("hashing the password failed; try again".into()))?
        .map_err(|e| invalid("password", e.to_string()))?;
    if !state.store.add_user(&name, &hash, role, now_ms()).await? {
        return Err(AppError::Conflict(format!(
            "a user named `{name}` exists already"
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "role": role.as_str() })),
    ))
}

pub async fn remove_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AppError> {
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
    Ok(Json(json!({ "removed": name })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: String,
}

pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let tokens = state.store.tokens().await?;
    Ok(Json(json!(tokens)))
}

pub async fn create_token(
    State(state): State<AppState>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let Json(NewToken { name, role }) = body?;
    auth::check_name(&name).map_err(|e| invalid("name", e.to_string()))?;
    let role = role_of(&role)?;
    let (token, digest) = auth::new_token();
    let id = state
        .store
        .add_token(&name, role, &digest, false, now_ms())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": name, "role": role.as_str(), "token": token })),
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id_or_name): Path<String>,
) -> Result<Json<Value>, AppError> {
    match state.store.revoke_tokens(&id_or_name, now_ms()).await? {
        0 => Err(AppError::NotFound(format!(
            "no live token has the id or name `{id_or_name}`"
        ))),
        revoked => Ok(Json(json!({ "revoked": revoked }))),
    }
}
