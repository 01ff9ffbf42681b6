//! The web layer's operations: one set of what the host does when asked (create a route,
//! upload a plugin, replay a dead letter, …), called alike by the JSON API (`api/`) and the
//! admin UI's pages (`ui/`), so a change takes one path whichever surface asked.
//!
//! Each operation takes its caller as [`Allowed<Role>`](super::caller::Allowed): proof that
//! the role (and, through a session, the CSRF token) was checked from the request's head
//! before its body was read. It takes typed input, returns typed output or an [`AppError`],
//! and records what it changed in the audit log, once, here.
//!
//! A change of the desired state is written to the database (raising the revision every host
//! watches), this host's supervisor is woken, and the answer waits (up to five seconds) until
//! this host has applied it, so it can say what now runs.

pub mod audit;
pub mod connections;
pub mod drain;
pub mod events;
pub mod leases;
pub mod outbox;
pub mod overview;
pub mod plugins;
pub mod queues;
pub mod rpc;
pub mod sessions;
pub mod units;
pub mod users;
pub mod views;

use super::{AppError, AppState};
use std::time::Duration;

/// How long a change's answer waits for this host to apply it.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// After a change: wakes the supervisor and waits until this host has applied the database's
/// revision; whether it has (another host's change may race; the answer says so).
async fn applied(state: &AppState) -> Result<bool, AppError> {
    let revision = state.store.revision().await?;
    state.supervisor.wake();
    Ok(state.supervisor.applied(revision, APPLY_WAIT).await)
}

/// 409 for unit `name` of kind `what` when this host's file defines it (any kind: routes,
/// subscriptions and daemons share one set of names).
fn refuse_file_unit(state: &AppState, what: &str, name: &str) -> Result<(), AppError> {
    match state.supervisor.file().unit_kind(name) {
        Some(kind) if kind == what => Err(file_defined(state, what, name)),
        Some(kind) => Err(AppError::Conflict(format!(
            "`{name}` is taken: {kind} `{name}` in this host's configuration file has it (routes, subscriptions and daemons share one set of names)"
        ))),
        None => Ok(()),
    }
}

/// 409 for a new unit of kind `what` whose name the database gives to a unit already,
/// naming its kind.
async fn taken(state: &AppState, what: &str, name: &str) -> AppError {
    match state.store.unit_kind(name).await {
        Ok(Some(kind)) if kind != what => AppError::Conflict(format!(
            "`{name}` is taken: {kind} `{name}` has it (routes, subscriptions and daemons share one set of names)"
        )),
        _ => AppError::Conflict(format!("a {what} named `{name}` exists already")),
    }
}

/// 409 for an item this host's file defines.
fn file_defined(state: &AppState, what: &str, name: &str) -> AppError {
    let file = state
        .supervisor
        .file()
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the built-in defaults".into());
    AppError::Conflict(format!(
        "{what} `{name}` is defined in this host's configuration ({file}) and cannot be changed through the API; change it there"
    ))
}

/// Now, as the store keeps times.
fn now_ms() -> i64 {
    super::now_ms()
}
