//! Routes: those of this host's file (read-only) and of the database.

use super::{AppError, AppState, applied, audit, file_defined, now_ms};
use crate::config::RouteConfig;
use crate::store::Documents;
use crate::supervisor::{Desired, Source, UnitStatus};
use crate::web::caller::{Admin, Allowed, Viewer};
use crate::web::error::invalid;
use serde::Serialize;
use serde_json::json;

/// How long a change's answer waits for its route to leave `starting`.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A route as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RouteView {
    pub name: String,
    pub source: Source,
    pub route: RouteConfig,
    /// How it runs on this host (none while it has not been applied yet).
    pub status: Option<UnitStatus>,
    /// Why this host does not run it, for a database route it refuses.
    pub refused: Option<String>,
}

async fn views(state: &AppState) -> Result<Vec<RouteView>, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let status = state.supervisor.status().await;
    let mut views: Vec<RouteView> = desired
        .routes
        .into_iter()
        .map(|(name, item)| RouteView {
            status: status.units.iter().find(|u| u.name == name).cloned(),
            refused: None,
            name,
            source: item.source,
            route: item.spec,
        })
        .collect();
    // A database route refused here is still shown (from the database), with the reason.
    for (what, name, problem) in desired.refused {
        if what == "route"
            && let Some(doc) = state
                .store
                .documents(Documents::Routes)
                .await?
                .into_iter()
                .find(|d| d.name == name)
            && let Ok(route) = serde_json::from_str::<RouteConfig>(&doc.spec)
        {
            views.push(RouteView {
                name,
                source: Source::Api,
                route,
                status: None,
                refused: Some(problem),
            });
        }
    }
    Ok(views)
}

async fn view(state: &AppState, name: &str) -> Result<RouteView, AppError> {
    views(state)
        .await?
        .into_iter()
        .find(|v| v.name == name && v.refused.is_none())
        .ok_or_else(|| AppError::NotFound(format!("no route named `{name}`")))
}

/// 409 for a route of this host's file.
fn refuse_file_route(state: &AppState, name: &str) -> Result<(), AppError> {
    if state
        .supervisor
        .file()
        .routes
        .iter()
        .any(|r| r.name == name)
    {
        return Err(file_defined(state, "route", name));
    }
    Ok(())
}

/// Checks a route for the database: its shape, its connections and its plugins.
pub(super) async fn check(state: &AppState, route: &RouteConfig) -> Result<(), AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    route.check("", &|name| desired.connections.contains_key(name))?;
    for (i, entry) in route.through.iter().enumerate() {
        let (name, pinned) = crate::check::plugin_ref(entry);
        let known = match state.supervisor.file().plugins.get(name) {
            Some(file) => pinned.is_none_or(|v| v == file.plugin.info().version),
            None => desired.version(name, pinned).is_ok(),
        };
        if !known {
            let problem = match state.supervisor.file().plugins.get(name) {
                Some(_) => format!("this host's file defines `{name}` at another version"),
                None => desired.version(name, pinned).err().unwrap_or_default(),
            };
            return Err(invalid(&format!("through[{i}]"), problem));
        }
    }
    Ok(())
}

/// Every route, with how it runs on this host.
pub async fn list(state: &AppState, _: &Allowed<Viewer>) -> Result<Vec<RouteView>, AppError> {
    views(state).await
}

pub async fn get(state: &AppState, _: &Allowed<Viewer>, name: &str) -> Result<RouteView, AppError> {
    view(state, name).await
}

/// Adds a route; it runs on every host on this database at once.
pub async fn create(
    state: &AppState,
    who: &Allowed<Admin>,
    route: RouteConfig,
) -> Result<RouteView, AppError> {
    refuse_file_route(state, &route.name)?;
    check(state, &route).await?;
    let spec = serde_json::to_string(&route).expect("a route serialises");
    if !state
        .store
        .create_document(Documents::Routes, &route.name, &spec, now_ms())
        .await?
    {
        return Err(AppError::Conflict(format!(
            "a route named `{}` exists already",
            route.name
        )));
    }
    audit::record(
        state,
        who,
        "route.create",
        &route.name,
        json!({ "route": route }),
    )
    .await;
    applied(state).await?;
    state.supervisor.settled(&route.name, SETTLE_WAIT).await;
    view(state, &route.name).await
}

/// Replaces a route: messages in flight finish on the old chain, new ones take the new.
pub async fn update(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    route: RouteConfig,
) -> Result<RouteView, AppError> {
    refuse_file_route(state, name)?;
    if route.name != name {
        return Err(invalid(
            "name",
            format!(
                "the body names route `{}`, the path `{name}`; a route cannot be renamed (create the new one, then delete this)",
                route.name
            ),
        ));
    }
    check(state, &route).await?;
    let spec = serde_json::to_string(&route).expect("a route serialises");
    if !state
        .store
        .update_document(Documents::Routes, name, &spec, now_ms())
        .await?
    {
        return Err(AppError::NotFound(format!("no route named `{name}`")));
    }
    audit::record(state, who, "route.update", name, json!({ "route": route })).await;
    applied(state).await?;
    state.supervisor.settled(name, SETTLE_WAIT).await;
    view(state, name).await
}

/// Deletes a route: it stops taking messages and finishes those it holds.
pub async fn delete(state: &AppState, who: &Allowed<Admin>, name: &str) -> Result<(), AppError> {
    refuse_file_route(state, name)?;
    if !state.store.delete_document(Documents::Routes, name).await? {
        return Err(AppError::NotFound(format!("no route named `{name}`")));
    }
    audit::record(state, who, "route.delete", name, json!({})).await;
    applied(state).await?;
    Ok(())
}
