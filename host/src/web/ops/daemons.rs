//! Daemons: those of this host's file (read-only) and of the database. Each runs a daemon
//! plugin for as long as it is wanted, on one host at a time unless it runs on each.

use super::{AppError, AppState, applied, audit, file_defined, now_ms};
use crate::check::plugin_ref;
use crate::config::DaemonConfig;
use crate::store::Documents;
use crate::supervisor::{Desired, Source, UnitStatus};
use crate::web::caller::{Admin, Allowed, Viewer};
use serde::Serialize;
use serde_json::json;

/// How long a change's answer waits for its daemon to leave `starting`.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A daemon as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DaemonView {
    pub name: String,
    pub source: Source,
    pub daemon: DaemonConfig,
    /// How it runs on this host (none while it has not been applied yet).
    pub status: Option<UnitStatus>,
    /// The host that holds its lease (a daemon that runs on one host at a time), while one
    /// does.
    pub runs_on: Option<String>,
    /// Why this host does not run it, for a database daemon it refuses.
    pub refused: Option<String>,
}

async fn views(state: &AppState) -> Result<Vec<DaemonView>, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let status = state.supervisor.status().await;
    let now = now_ms();
    let leases = state.store.leases().await?;
    let runs_on = |name: &str| {
        leases
            .iter()
            .find(|(daemon, _, expires)| daemon == name && *expires > now)
            .map(|(_, holder, _)| holder.clone())
    };
    let mut views: Vec<DaemonView> = desired
        .daemons
        .into_iter()
        .map(|(name, item)| DaemonView {
            status: status.units.iter().find(|u| u.name == name).cloned(),
            runs_on: runs_on(&name),
            source: item.source,
            daemon: item.spec,
            refused: None,
            name,
        })
        .collect();
    let refused: Vec<_> = desired
        .refused
        .into_iter()
        .filter(|(what, _, _)| *what == "daemon")
        .collect();
    if !refused.is_empty() {
        let docs = state.store.documents(Documents::Daemons).await?;
        for (_, name, problem) in refused {
            if let Some(doc) = docs.iter().find(|d| d.name == name)
                && let Ok(spec) = serde_json::from_str::<DaemonConfig>(&doc.spec)
            {
                views.push(DaemonView {
                    name,
                    source: Source::Api,
                    daemon: spec,
                    status: None,
                    runs_on: None,
                    refused: Some(problem),
                });
            }
        }
    }
    Ok(views)
}

async fn view(state: &AppState, name: &str) -> Result<DaemonView, AppError> {
    views(state)
        .await?
        .into_iter()
        .find(|v| v.name == name && v.refused.is_none())
        .ok_or_else(|| AppError::NotFound(format!("no daemon named `{name}`")))
}

fn refuse_file_daemon(state: &AppState, name: &str) -> Result<(), AppError> {
    if state
        .supervisor
        .file()
        .daemons
        .iter()
        .any(|d| d.name == name)
    {
        return Err(file_defined(state, "daemon", name));
    }
    Ok(())
}

/// Checks a daemon for the database: its shape, that its plugin is a daemon this host has,
/// and that no other unit has its name.
async fn check(state: &AppState, daemon: &DaemonConfig) -> Result<(), AppError> {
    daemon.check("")?;
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    if desired.routes.contains_key(&daemon.name) || desired.subscriptions.contains_key(&daemon.name)
    {
        return Err(AppError::Conflict(format!(
            "a route or subscription is named `{}`; units share names",
            daemon.name
        )));
    }
    let (name, pinned) = plugin_ref(&daemon.plugin);
    let kind = match state.supervisor.file().plugins.get(name) {
        Some(file) => {
            if let Some(version) = pinned
                && version != file.plugin.info().version
            {
                return Err(crate::web::error::invalid(
                    "plugin",
                    format!(
                        "this host's file defines plugin `{name}` at version {}",
                        file.plugin.info().version
                    ),
                ));
            }
            file.plugin.info().kind.as_str().to_owned()
        }
        None => {
            let version = desired
                .version(name, pinned)
                .map_err(|problem| crate::web::error::invalid("plugin", problem))?;
            version.kind.clone()
        }
    };
    if kind != "daemon" {
        return Err(crate::web::error::invalid(
            "plugin",
            format!(
                "`{}` is a {kind}; a daemon runs a daemon plugin",
                daemon.plugin
            ),
        ));
    }
    Ok(())
}

/// Every daemon, with how it runs on this host.
pub async fn list(state: &AppState, _: &Allowed<Viewer>) -> Result<Vec<DaemonView>, AppError> {
    views(state).await
}

pub async fn get(
    state: &AppState,
    _: &Allowed<Viewer>,
    name: &str,
) -> Result<DaemonView, AppError> {
    view(state, name).await
}

/// Adds a daemon; it starts on one host of this database (or on each, if it says so).
pub async fn create(
    state: &AppState,
    who: &Allowed<Admin>,
    daemon: DaemonConfig,
) -> Result<DaemonView, AppError> {
    refuse_file_daemon(state, &daemon.name)?;
    check(state, &daemon).await?;
    let spec = serde_json::to_string(&daemon).expect("a daemon serialises");
    if !state
        .store
        .create_document(Documents::Daemons, &daemon.name, &spec, now_ms())
        .await?
    {
        return Err(AppError::Conflict(format!(
            "a daemon named `{}` exists already",
            daemon.name
        )));
    }
    audit::record(
        state,
        who,
        "daemon.create",
        &daemon.name,
        json!({ "daemon": daemon }),
    )
    .await;
    applied(state).await?;
    state.supervisor.settled(&daemon.name, SETTLE_WAIT).await;
    view(state, &daemon.name).await
}

/// Replaces a daemon: the running one is asked to stop and finishes its call, then the new
/// definition starts.
pub async fn update(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    daemon: DaemonConfig,
) -> Result<DaemonView, AppError> {
    refuse_file_daemon(state, name)?;
    if daemon.name != name {
        return Err(crate::web::error::invalid(
            "name",
            format!(
                "the body names daemon `{}`, the path `{name}`; a daemon cannot be renamed",
                daemon.name
            ),
        ));
    }
    check(state, &daemon).await?;
    let spec = serde_json::to_string(&daemon).expect("a daemon serialises");
    if !state
        .store
        .update_document(Documents::Daemons, name, &spec, now_ms())
        .await?
    {
        return Err(AppError::NotFound(format!("no daemon named `{name}`")));
    }
    audit::record(
        state,
        who,
        "daemon.update",
        name,
        json!({ "daemon": daemon }),
    )
    .await;
    applied(state).await?;
    state.supervisor.settled(name, SETTLE_WAIT).await;
    view(state, name).await
}

/// Deletes a daemon: it is asked to stop, and what it took and had not settled goes back.
pub async fn delete(state: &AppState, who: &Allowed<Admin>, name: &str) -> Result<(), AppError> {
    refuse_file_daemon(state, name)?;
    if !state
        .store
        .delete_document(Documents::Daemons, name)
        .await?
    {
        return Err(AppError::NotFound(format!("no daemon named `{name}`")));
    }
    audit::record(state, who, "daemon.delete", name, json!({})).await;
    applied(state).await?;
    Ok(())
}
