//! `/api/v1/plugins`: upload a `.wasm` (checked before it is stored), list every version,
//! enable, disable, roll back, delete a version no route uses, and set what a plugin is
//! granted and given.

use crate::supervisor::PluginPolicy;
use crate::web::caller::{Admin, Allowed, Viewer};
use crate::web::json::JsonBody;
use crate::web::ops::plugins::{self as ops, GrantChange, PluginView, Uploaded};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, body = [PluginView])))]
pub async fn list(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
) -> Result<Json<Vec<PluginView>>, AppError> {
    Ok(Json(ops::list(&state, &who).await?))
}

#[utoipa::path(get, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 200, body = PluginView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, AppError> {
    Ok(Json(ops::get(&state, &who, &name).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// Whether the new version serves at once (default true): routes naming the plugin
    /// without a version move to it.
    pub enabled: Option<bool>,
    /// The installed plugin this file is a new version of. An upload whose plugin names
    /// itself as one that is installed already is refused without it (409).
    pub upgrade: Option<String>,
}

/// Uploads a plugin: the `.wasm` file is the body. It is checked as `wharf plugin check`
/// does (size, format, component, validation, world, version, imports, describe, kind)
/// before anything is stored; a version is immutable once stored. The caller's role is
/// checked before the body is read.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins",
    params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = Uploaded), (status = 200, body = Uploaded),
        (status = 400, description = "the file failed a check, named in the message"),
        (status = 404, description = "`upgrade` names no installed plugin"),
        (status = 409, description = "the plugin names itself as one installed already (say `upgrade`), or the version is stored with other content"),
        (status = 413)))]
pub async fn upload(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    params: Result<Query<UploadParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Uploaded>), AppError> {
    let Query(params) = params?;
    let bytes = body?;
    let uploaded = ops::upload(
        &state,
        &who,
        &bytes,
        params.enabled.unwrap_or(true),
        params.upgrade.as_deref(),
    )
    .await?;
    let status = if uploaded.outcome == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(uploaded)))
}

#[utoipa::path(post, path = "/api/v1/plugins/{name}/versions/{version}/enable", tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = PluginView), (status = 404), (status = 409)))]
pub async fn enable(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<PluginView>, AppError> {
    Ok(Json(
        ops::set_enabled(&state, &who, &name, &version, true).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/plugins/{name}/versions/{version}/disable", tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = PluginView), (status = 404), (status = 409)))]
pub async fn disable(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<PluginView>, AppError> {
    Ok(Json(
        ops::set_enabled(&state, &who, &name, &version, false).await?,
    ))
}

/// Rolls back: the version serving now is disabled and the one uploaded before it enabled,
/// in one step; routes move back to it the way they moved forward.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/rollback", tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 200, body = PluginView), (status = 404), (status = 409)))]
pub async fn rollback(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, AppError> {
    Ok(Json(ops::rollback(&state, &who, &name).await?))
}

/// Deletes a version no route uses (pinned, or serving routes that name the plugin alone).
#[utoipa::path(delete, path = "/api/v1/plugins/{name}/versions/{version}", tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn delete_version(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    ops::delete_version(&state, &who, &name, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets what plugin `name` is granted and given (every version of it). Config values sent
/// back hidden (`***`) keep their stored values.
#[utoipa::path(put, path = "/api/v1/plugins/{name}/policy", tag = "plugins",
    params(("name" = String, Path)), request_body = PluginPolicy,
    responses((status = 200, body = PluginView), (status = 400), (status = 404), (status = 409)))]
pub async fn set_policy(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
    JsonBody(policy): JsonBody<PluginPolicy>,
) -> Result<Json<PluginView>, AppError> {
    Ok(Json(ops::set_policy(&state, &who, &name, policy).await?))
}

/// Grants plugin `name` more (what it `wants` is not in force until granted here).
#[utoipa::path(post, path = "/api/v1/plugins/{name}/grants", tag = "plugins",
    params(("name" = String, Path)), request_body = GrantChange,
    responses((status = 200, body = PluginView), (status = 400), (status = 404), (status = 409)))]
pub async fn grant(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<GrantChange>,
) -> Result<Json<PluginView>, AppError> {
    Ok(Json(ops::grant(&state, &who, &name, change).await?))
}

/// Takes grants away from plugin `name`.
#[utoipa::path(delete, path = "/api/v1/plugins/{name}/grants", tag = "plugins",
    params(("name" = String, Path)), request_body = GrantChange,
    responses((status = 200, body = PluginView), (status = 400), (status = 404), (status = 409)))]
pub async fn revoke(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<GrantChange>,
) -> Result<Json<PluginView>, AppError> {
    Ok(Json(ops::revoke(&state, &who, &name, change).await?))
}
