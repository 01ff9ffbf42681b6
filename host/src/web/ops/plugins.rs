//! Plugins: upload a `.wasm` (checked before it is stored), list every version, enable,
//! disable, roll back, delete a version no route uses, and set what a plugin is granted and
//! given. The plugins of this host's file are listed too, read-only. Config values whose names
//! look secret (`api_key`, `token`, …) are shown as `***`; sent back so, they keep their
//! stored values.

use super::{AppError, AppState, applied, audit, file_defined, now_ms};
use crate::check::plugin_ref;
use crate::store::{InstalledPlugin, Upload};
use crate::supervisor::{Desired, PluginPolicy, Source};
use crate::web::caller::{Admin, Allowed, Viewer};
use crate::web::error::invalid;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The largest output budget a policy may give one call, in MiB.
const MAX_OUTPUT_MB: usize = 1024;

/// A plugin as the API shows it: every version, the one unpinned routes use, its policy.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PluginView {
    pub name: String,
    pub source: Source,
    /// The version routes that name the plugin without a version run.
    pub serving: Option<String>,
    pub versions: Vec<VersionView>,
    /// Secret-looking config values shown as `***`.
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
                    wall_ms: config.wall_ms,
                    output_mb: config.output_mb,
                    max_instances: config.max_instances,
                    reuse: config.reuse,
                    config: config.config.clone(),
                }
                .redacted(),
            }
        })
        .collect();
    for (name, versions) in &desired.plugins {
        views.push(PluginView {
            name: name.clone(),
            source: Source::Api,
            serving: desired.version(name, None).ok().map(|v| v.version.clone()),
            versions: versions.iter().map(VersionView::from).collect(),
            policy: desired.policy(name).redacted(),
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

pub async fn list(state: &AppState, _: &Allowed<Viewer>) -> Result<Vec<PluginView>, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    Ok(views(state, &desired))
}

pub async fn get(
    state: &AppState,
    _: &Allowed<Viewer>,
    name: &str,
) -> Result<PluginView, AppError> {
    view(state, name).await
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

/// Uploads a plugin's `.wasm`: checked as `wharf plugin check` does (size, format,
/// component, validation, world, version, imports, describe, kind) before anything is
/// stored; a version is immutable once stored. `enabled`: whether it serves at once.
///
/// A plugin names itself, so a file that says `billing` would become billing's next
/// version, with billing's grants, config and kv state. It does only when the caller says
/// so (`upgrade`: the plugin it is a new version of); otherwise an upload under a name that
/// is installed already is refused, naming that plugin.
pub async fn upload(
    state: &AppState,
    who: &Allowed<Admin>,
    bytes: &[u8],
    enabled: bool,
    upgrade: Option<&str>,
) -> Result<Uploaded, AppError> {
    if bytes.is_empty() {
        return Err(invalid("body", "send the plugin's .wasm file as the body"));
    }
    let plugin = state
        .supervisor
        .runtime()
        .load(
            bytes,
            // Only `describe` runs: one instance of the pool is enough.
            crate::runtime::PluginSettings {
                max_instances: 1,
                ..crate::runtime::PluginSettings::default()
            },
            state.supervisor.services(),
        )
        .await
        .map_err(|e| invalid("body", e.to_string()))?;
    let info = plugin.info().clone();
    crate::check::check_item_name("name", &info.name).map_err(|e| {
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
        return Err(file_defined(state, "plugin", &info.name));
    }
    check_upgrade(state, &info, upgrade).await?;
    let outcome = state
        .store
        .upload_plugin(&info, bytes, enabled, &who.caller.actor(), now_ms())
        .await?;
    let (outcome, stored) = match outcome {
        Upload::New(stored) => ("created", stored),
        Upload::Same(stored) => ("unchanged", stored),
        Upload::VersionTaken(stored) => {
            return Err(AppError::Conflict(format!(
                "version {} of plugin `{}` is stored already with other content (sha256 {}); a version never changes: give the new build a new version",
                stored.version, stored.name, stored.sha256
            )));
        }
    };
    if outcome == "created" {
        audit::record(
            state,
            who,
            "plugin.upload",
            &stored.name,
            json!({ "version": stored.version, "sha256": stored.sha256, "enabled": stored.enabled, "wants": stored.wants }),
        )
        .await;
    }
    applied(state).await?;
    Ok(Uploaded {
        outcome,
        name: stored.name.clone(),
        version: VersionView::from(&stored),
        plugin: view(state, &stored.name).await?,
    })
}

/// Refuses an upload that would add a version to an installed plugin without the caller
/// saying it is an upgrade of that plugin, and an upgrade of a plugin the file is not.
async fn check_upgrade(
    state: &AppState,
    info: &crate::runtime::PluginInfo,
    upgrade: Option<&str>,
) -> Result<(), AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let installed = desired.plugins.get(&info.name);
    match upgrade {
        Some(named) if named != info.name => Err(invalid(
            "upgrade",
            format!(
                "the file describes itself as plugin `{}`, not `{named}`; it cannot be a version of `{named}`",
                info.name
            ),
        )),
        Some(named) if installed.is_none() => Err(AppError::NotFound(format!(
            "no plugin named `{named}` is installed to upgrade; upload the file without an upgrade to install it"
        ))),
        Some(_) => Ok(()),
        None => match installed {
            // The very same file again changes nothing.
            Some(versions)
                if !versions
                    .iter()
                    .any(|v| v.version == info.version && v.sha256 == info.sha256) =>
            {
                let serving = desired
                    .version(&info.name, None)
                    .map(|v| format!("serving {}", v.version))
                    .unwrap_or_else(|_| "no version enabled".into());
                Err(AppError::Conflict(format!(
                    "a plugin named `{name}` is installed already ({serving}), and this file describes itself as `{name}` {version}. A new version would take `{name}`'s grants, config and kv state: if it is one, upload it as an upgrade of `{name}` (wharf plugin install --upgrade {name}, ?upgrade={name} in the API, or \"New version of\" on the Plugins page)",
                    name = info.name,
                    version = info.version,
                )))
            }
            _ => Ok(()),
        },
    }
}

/// Lets `version` of plugin `name` serve, or not.
pub async fn set_enabled(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    version: &str,
    enabled: bool,
) -> Result<PluginView, AppError> {
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
    let action = if enabled {
        "plugin.enable"
    } else {
        "plugin.disable"
    };
    audit::record(state, who, action, name, json!({ "version": version })).await;
    applied(state).await?;
    view(state, name).await
}

/// Rolls back: the version serving now is disabled and the one uploaded before it enabled,
/// in one step; routes move back to it the way they moved forward.
pub async fn rollback(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
) -> Result<PluginView, AppError> {
    let (desired, versions) = uploaded(state, name).await?;
    let current = desired
        .version(name, None)
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
            name,
            &[
                (current.version.as_str(), false),
                (previous.version.as_str(), true),
            ],
        )
        .await?;
    audit::record(
        state,
        who,
        "plugin.rollback",
        name,
        json!({ "from": current.version, "to": previous.version }),
    )
    .await;
    applied(state).await?;
    view(state, name).await
}

/// Deletes a version no route uses (pinned, or serving routes that name the plugin alone).
pub async fn delete_version(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    version: &str,
) -> Result<(), AppError> {
    let (desired, versions) = uploaded(state, name).await?;
    if !versions.iter().any(|v| v.version == version) {
        return Err(AppError::NotFound(format!(
            "plugin `{name}` has no version {version}"
        )));
    }
    let serving = desired.version(name, None).ok().map(|v| v.version.clone());
    for route in desired.routes.values() {
        for entry in &route.spec.through {
            let uses = match plugin_ref(entry) {
                (n, Some(pinned)) => n == name && pinned == version,
                (n, None) => n == name && serving.as_deref() == Some(version),
            };
            if uses {
                return Err(AppError::Conflict(format!(
                    "route `{}` uses version {version} of `{name}`; change the route or roll the plugin back first",
                    route.spec.name
                )));
            }
        }
    }
    state.store.delete_plugin_version(name, version).await?;
    audit::record(
        state,
        who,
        "plugin.delete",
        name,
        json!({ "version": version }),
    )
    .await;
    applied(state).await?;
    Ok(())
}

/// Sets what plugin `name` is granted and given (every version of it). Config values sent
/// back hidden (`***`) keep their stored values.
pub async fn set_policy(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    mut policy: PluginPolicy,
) -> Result<PluginView, AppError> {
    let (desired, _) = uploaded(state, name).await?;
    policy
        .keep_secrets(&desired.policy(name))
        .map_err(|(field, problem)| invalid(&field, problem))?;
    store_policy(state, who, name, policy, "plugin.policy").await
}

/// Grants to add or remove.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantChange {
    /// `kind:connection:address` globs (`publish:rabbit:orders.*`), or origins a plugin may
    /// call over outbound HTTP (`http:https://api.example.com`, `http:https://*.example.com`).
    pub grants: Vec<String>,
}

fn check_grants(grants: &[String]) -> Result<(), AppError> {
    for (i, grant) in grants.iter().enumerate() {
        crate::grant::Grants::new(std::slice::from_ref(grant))
            .map_err(|e| invalid(&format!("grants[{i}]"), e.to_string()))?;
    }
    Ok(())
}

/// Grants plugin `name` more (what it `wants` is not in force until granted here).
pub async fn grant(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    change: GrantChange,
) -> Result<PluginView, AppError> {
    let (desired, _) = uploaded(state, name).await?;
    check_grants(&change.grants)?;
    let mut policy = desired.policy(name);
    for grant in change.grants {
        if !policy.grants.contains(&grant) {
            policy.grants.push(grant);
        }
    }
    store_policy(state, who, name, policy, "plugin.grant").await
}

/// Takes grants away from plugin `name`.
pub async fn revoke(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    change: GrantChange,
) -> Result<PluginView, AppError> {
    let (desired, _) = uploaded(state, name).await?;
    let mut policy = desired.policy(name);
    policy.grants.retain(|g| !change.grants.contains(g));
    store_policy(state, who, name, policy, "plugin.revoke").await
}

async fn store_policy(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    policy: PluginPolicy,
    action: &str,
) -> Result<PluginView, AppError> {
    check_grants(&policy.grants)?;
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
    if policy.wall_ms == Some(0) {
        return Err(invalid(
            "wall_ms",
            "must be at least 1 (leave it out for ten times timeout_ms)",
        ));
    }
    if policy.output_mb == 0 || policy.output_mb > MAX_OUTPUT_MB {
        return Err(invalid(
            "output_mb",
            format!("must be between 1 and {MAX_OUTPUT_MB}"),
        ));
    }
    if policy.max_instances == 0 {
        return Err(invalid("max_instances", "must be at least 1"));
    }
    let spec = serde_json::to_string(&policy).expect("a policy serialises");
    state.store.set_plugin_policy(name, &spec, now_ms()).await?;
    audit::record(
        state,
        who,
        action,
        name,
        json!({ "policy": policy.redacted() }),
    )
    .await;
    applied(state).await?;
    view(state, name).await
}
