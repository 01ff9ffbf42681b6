//! `/api/v1/plugins`: upload a `.wasm` (checked before it is stored), list every version,
//! enable, disable, roll back, delete a version no route uses, and set what a plugin is
//! granted and given. The plugins of this host's file are listed too, read-only.

use super::{AppError, AppState, JsonBody, applied, body_rejection, file_defined, invalid};
use crate::auth::Caller;
use crate::config::plugin_ref;
use crate::store::{InstalledPlugin, Upload};
use crate::supervisor::{Desired, PluginPolicy, Source};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// A plugin as the API shows it: every version, the one unpinned routes use, its policy.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PluginView {
    pub name: String,
    pub source: Source,
    /// The version routes that name the plugin without a version run.
    pub serving: Option<String>,
    pub versions: Vec<VersionView>,
    pub policy: PluginPolicy,
}

/// One version of a plugin.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version: String,
    pub kind: String,
    pub description: String,
    pub contract: String,
    /// What the plugin asks to be granted (not in force until granted).
    pub wants: Vec<String>,
    pub sha256: String,
    pub size_bytes: i64,
    pub enabled: bool,
    pub uploaded_by: Option<String>,
    pub uploaded_ms: Option<i64>,
}

impl From<&InstalledPlugin> for VersionView {
    fn from(p: &InstalledPlugin) -> Self {
        VersionView {
            version: p.version.clone(),
            kind: p.kind.clone(),
            description: p.description.clone(),
            contract: p.contract.clone(),
            wants: p.wants.clone(),
            sha256: p.sha256.clone(),
            size_bytes: p.size_bytes,
            enabled: p.enabled,
            uploaded_by: p.uploaded_by.clone(),
            uploaded_ms: Some(p.installed_ms),
        }
    }
}

fn views(state: &AppState, desired: &Desired) -> Vec<PluginView> {
    let mut views: Vec<PluginView> = state
        .supervisor
        .file()
        .plugins
        .iter()
        .map(|(name, file)| {
            let info = file.plugin.info();
            let config = &file.config;
            PluginView {
                name: name.clone(),
                source: Source::File,
                serving: Some(info.version.clone()),
                versions: vec![VersionView {
                    version: info.version.clone(),
                    kind: info.kind.as_str().to_owned(),
                    description: info.description.clone(),
                    contract: info.contract.clone(),
                    wants: info.wants.clone(),
                    sha256: info.sha256.clone(),
                    size_bytes: info.size_bytes as i64,
                    enabled: true,
                    uploaded_by: None,
                    uploaded_ms: None,
                }],
                policy: PluginPolicy {
                    grants: [
                        ("publish", &config.publish),
                        ("request", &config.request),
                        ("receive", &config.receive),
                    ]
                    .into_iter()
                    .flat_map(|(kind, globs)| globs.iter().map(move |g| format!("{kind}:{g}")))
                    .collect(),
                    memory_mb: config.memory_mb,
                    timeout_ms: config.timeout_ms,
                    max_instances: config.max_instances,
                    reuse: config.reuse,
                    config: config.config.clone(),
                },
            }
        })
        .collect();
    for (name, versions) in &desired.plugins {
        views.push(PluginView {
            name: name.clone(),
            source: Source::Api,
            serving: desired.version(name, None).ok().map(|v| v.version.clone()),
            versions: versions.iter().map(VersionView::from).collect(),
            policy: desired.policy(name),
        });
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

async fn view(state: &AppState, name: &str) -> Result<PluginView, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    views(state, &desired)
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| AppError::NotFound(format!("no plugin named `{name}`")))
}

/// The database's plugin `name` (404 if none; 409 if this host's file defines it).
async fn uploaded(
    state: &AppState,
    name: &str,
) -> Result<(Desired, Vec<InstalledPlugin>), AppError> {
    if state.supervisor.file().plugins.contains_key(name) {
        return Err(file_defined(state, "plugin", name));
    }
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let versions = desired
        .plugins
        .get(name)
        .cloned()
        .ok_or_else(|| AppError::NotFound(format!("no plugin named `{name}`")))?;
    Ok((desired, versions))
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, body = [PluginView])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<PluginView>>, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    Ok(Json(views(&state, &desired)))
}

#[utoipa::path(get, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 200, body = PluginView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, AppError> {
    Ok(Json(view(&state, &name).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// Whether the new version serves at once (default true): routes naming the plugin
    /// without a version move to it.
    pub enabled: Option<bool>,
}

/// What an upload did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// `created`, or `unchanged` when this very file is stored already.
    pub outcome: &'static str,
    pub name: String,
    pub version: VersionView,
    pub plugin: PluginView,
}

/// Uploads a plugin: the `.wasm` file is the body. It is checked as `wharf plugin check`
/// does (size, format, component, validation, world, version, imports, describe, kind)
/// before anything is stored; a version is immutable once stored.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins",
    params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = Uploaded), (status = 200, body = Uploaded),
        (status = 400, description = "the file failed a check, named in the message"),
        (status = 409), (status = 413)))]
pub async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<UploadParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Uploaded>), AppError> {
    let Query(params) = params?;
    let bytes = body.map_err(body_rejection)?;
    if bytes.is_empty() {
        return Err(invalid("body", "send the plugin's .wasm file as the body"));
    }
    let plugin = state
        .supervisor
        .runtime()
        .load(
            &bytes,
            crate::runtime::PluginSettings::default(),
            state.supervisor.services(),
        )
        .await
        .map_err(|e| invalid("body", e.to_string()))?;
    let info = plugin.info().clone();
    crate::config::check_item_name("name", &info.name).map_err(|e| {
        invalid(
            "body",
            format!("the plugin describes itself with a name this host cannot use: {e}"),
        )
    })?;
    if info.version.is_empty()
        || info.version.len() > 64
        || info.version.contains(char::is_whitespace)
    {
        return Err(invalid(
            "body",
            "the plugin describes itself with an empty, overlong or spaced version",
        ));
    }
    if state.supervisor.file().plugins.contains_key(&info.name) {
        return Err(file_defined(&state, "plugin", &info.name));
    }
    let enabled = params.enabled.unwrap_or(true);
    let outcome = state
        .store
        .upload_plugin(&info, &bytes, enabled, &caller.name, crate::web::now_ms())
        .await?;
    let (status, outcome, stored) = match outcome {
        Upload::New(stored) => (StatusCode::CREATED, "created", stored),
        Upload::Same(stored) => (StatusCode::OK, "unchanged", stored),
        Upload::VersionTaken(stored) => {
            return Err(AppError::Conflict(format!(
                "version {} of plugin `{}` is stored already with other content (sha256 {}); a version never changes: give the new build a new version",
                stored.version, stored.name, stored.sha256
            )));
        }
    };
    applied(&state).await?;
    Ok((
        status,
        Json(Uploaded {
            outcome,
            name: stored.name.clone(),
            version: VersionView::from(&stored),
            plugin: view(&state, &stored.name).await?,
        }),
    ))
}

async fn set_enabled(
    state: &AppState,
    name: &str,
    version: &str,
    enabled: bool,
) -> Result<Json<PluginView>, AppError> {
    uploaded(state, name).await?;
    if !state
        .store
        .set_plugin_enabled(name, &[(version, enabled)])
        .await?
    {
        return Err(AppError::NotFound(format!(
            "plugin `{name}` has no version {version}"
        )));
    }
    applied(state).await?;
    Ok(Json(view(state, name).await?))
}

#[utoipa::path(post, path = "/api/v1/plugins/{name}/versions/{version}/enable", tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = PluginView), (status = 404), (status = 409)))]
pub async fn enable(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<PluginView>, AppError> {
    set_enabled(&state, &name, &version, true).await
}

#[utoipa::path(post, path = "/api/v1/plugins/{name}/versions/{version}/disable", tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = PluginView), (status = 404), (status = 409)))]
pub async fn disable(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<PluginView>, AppError> {
    set_enabled(&state, &name, &version, false).await
}

/// Rolls back: the version serving now is disabled and the one uploaded before it enabled,
/// in one step; routes move back to it the way they moved forward.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/rollback", tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 200, body = PluginView), (status = 404), (status = 409)))]
pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, AppError> {
    let (desired, versions) = uploaded(&state, &name).await?;
    let current = desired
        .version(&name, None)
        .map_err(AppError::Conflict)?
        .clone();
    let Some(previous) = versions.iter().rev().find(|v| v.id < current.id) else {
        return Err(AppError::Conflict(format!(
            "plugin `{name}` has no version before {}",
            current.version
        )));
    };
    state
        .store
        .set_plugin_enabled(
            &name,
            &[
                (current.version.as_str(), false),
                (previous.version.as_str(), true),
            ],
        )
        .await?;
    applied(&state).await?;
    Ok(Json(view(&state, &name).await?))
}

/// Deletes a version no route uses (pinned, or serving routes that name the plugin alone).
#[utoipa::path(delete, path = "/api/v1/plugins/{name}/versions/{version}", tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn delete_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let (desired, versions) = uploaded(&state, &name).await?;
    if !versions.iter().any(|v| v.version == version) {
        return Err(AppError::NotFound(format!(
            "plugin `{name}` has no version {version}"
        )));
    }
    let serving = desired.version(&name, None).ok().map(|v| v.version.clone());
    for route in desired.routes.values() {
        for entry in &route.spec.through {
            let uses = match plugin_ref(entry) {
                (n, Some(pinned)) => n == name && pinned == version,
                (n, None) => n == name && serving.as_deref() == Some(version.as_str()),
            };
            if uses {
                return Err(AppError::Conflict(format!(
                    "route `{}` uses version {version} of `{name}`; change the route or roll the plugin back first",
                    route.spec.name
                )));
            }
        }
    }
    state.store.delete_plugin_version(&name, &version).await?;
    applied(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets what plugin `name` is granted and given (every version of it).
#[utoipa::path(put, path = "/api/v1/plugins/{name}/policy", tag = "plugins",
    params(("name" = String, Path)), request_body = PluginPolicy,
    responses((status = 200, body = PluginView), (status = 400), (status = 404), (status = 409)))]
pub async fn set_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(policy): JsonBody<PluginPolicy>,
) -> Result<Json<PluginView>, AppError> {
    uploaded(&state, &name).await?;
    store_policy(&state, &name, policy).await
}

/// Grants to add or remove.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantChange {
    /// `kind:connection:address` globs: `publish:rabbit:orders.*`.
    pub grants: Vec<String>,
}

/// Grants plugin `name` more (what it `wants` is not in force until granted here).
#[utoipa::path(post, path = "/api/v1/plugins/{name}/grants", tag = "plugins",
    params(("name" = String, Path)), request_body = GrantChange,
    responses((status = 200, body = PluginView), (status = 400), (status = 404), (status = 409)))]
pub async fn grant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<GrantChange>,
) -> Result<Json<PluginView>, AppError> {
    let (desired, _) = uploaded(&state, &name).await?;
    for (i, grant) in change.grants.iter().enumerate() {
        crate::grant::Grants::new(std::slice::from_ref(grant))
            .map_err(|e| invalid(&format!("grants[{i}]"), e.to_string()))?;
    }
    let mut policy = desired.policy(&name);
    for grant in change.grants {
        if !policy.grants.contains(&grant) {
            policy.grants.push(grant);
        }
    }
    store_policy(&state, &name, policy).await
}

/// Takes grants away from plugin `name`.
#[utoipa::path(delete, path = "/api/v1/plugins/{name}/grants", tag = "plugins",
    params(("name" = String, Path)), request_body = GrantChange,
    responses((status = 200, body = PluginView), (status = 400), (status = 404), (status = 409)))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<GrantChange>,
) -> Result<Json<PluginView>, AppError> {
    let (desired, _) = uploaded(&state, &name).await?;
    let mut policy = desired.policy(&name);
    policy.grants.retain(|g| !change.grants.contains(g));
    store_policy(&state, &name, policy).await
}

async fn store_policy(
    state: &AppState,
    name: &str,
    policy: PluginPolicy,
) -> Result<Json<PluginView>, AppError> {
    for (i, grant) in policy.grants.iter().enumerate() {
        crate::grant::Grants::new(std::slice::from_ref(grant))
            .map_err(|e| invalid(&format!("grants[{i}]"), e.to_string()))?;
    }
    let max_mb = state.supervisor.runtime().config().max_memory_bytes / (1024 * 1024);
    if policy.memory_mb == 0 || policy.memory_mb > max_mb {
        return Err(invalid(
            "memory_mb",
            format!("must be between 1 and {max_mb} (the host's largest)"),
        ));
    }
    if policy.timeout_ms == 0 {
        return Err(invalid("timeout_ms", "must be at least 1"));
    }
    if policy.max_instances == 0 {
        return Err(invalid("max_instances", "must be at least 1"));
    }
    let spec = serde_json::to_string(&policy).expect("a policy serialises");
    state
        .store
        .set_plugin_policy(name, &spec, crate::web::now_ms())
        .await?;
    applied(state).await?;
    Ok(Json(view(state, name).await?))
}
