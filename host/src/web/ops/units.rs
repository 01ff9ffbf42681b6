//! Units (routes, today): what runs on this host, and an operator holding one stopped on every
//! host on the database, or letting it run again. Stopping is an operational switch: it leaves
//! the definition alone, so it works on the routes of a host's file too.

use super::{AppError, AppState, applied, audit, now_ms};
use crate::supervisor::{Desired, Status, UnitStatus};
use crate::web::caller::{Allowed, Operator, Viewer};
use serde_json::json;

/// Every connection and unit on this host, with its state and last error.
pub async fn status(state: &AppState, _: &Allowed<Viewer>) -> Status {
    state.supervisor.status().await
}

async fn known(state: &AppState, name: &str) -> Result<(), AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    if desired.routes.contains_key(name) {
        Ok(())
    } else {
        Err(AppError::NotFound(format!("no unit named `{name}`")))
    }
}

async fn status_of(state: &AppState, name: &str) -> Result<UnitStatus, AppError> {
    state
        .supervisor
        .status()
        .await
        .units
        .into_iter()
        .find(|u| u.name == name)
        .ok_or_else(|| AppError::NotFound(format!("no unit named `{name}` on this host")))
}

/// Stops a unit on every host: it finishes the messages it holds and takes no more.
pub async fn stop(
    state: &AppState,
    who: &Allowed<Operator>,
    name: &str,
) -> Result<UnitStatus, AppError> {
    known(state, name).await?;
    state
        .store
        .stop_unit(name, &who.caller.actor(), now_ms())
        .await?;
    audit::record(state, who, "unit.stop", name, json!({})).await;
    applied(state).await?;
    status_of(state, name).await
}

/// Lets a stopped unit run again.
pub async fn start(
    state: &AppState,
    who: &Allowed<Operator>,
    name: &str,
) -> Result<UnitStatus, AppError> {
    known(state, name).await?;
    state.store.start_unit(name).await?;
    audit::record(state, who, "unit.start", name, json!({})).await;
    applied(state).await?;
    state
        .supervisor
        .settled(name, std::time::Duration::from_secs(2))
        .await;
    status_of(state, name).await
}
