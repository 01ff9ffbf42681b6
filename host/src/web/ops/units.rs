//! Units (routes, subscriptions and daemons), every kind alike: reading, creating, updating
//! and deleting those of the database (a host's file's are read-only), and an operator
//! stopping one on every host on the database, letting it run again, or restarting it.
//! Stopping is an operational switch: it leaves the definition alone, so it works on the units
//! of a host's file too. What differs between kinds is `supervisor::Unit` and [`Shown`].

use super::{AppError, AppState, applied, audit, now_ms};
use crate::config::EventsConfig;
use crate::supervisor::{Desired, Refusal, Source, Status, Unit, UnitStatus};
use crate::web::caller::{Admin, Allowed, Operator, Viewer};
use serde_json::{Value, json};

/// How long a change's answer waits for its unit to leave `starting`.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What the API shows of every unit, whatever its kind.
#[derive(Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UnitHead {
    pub name: String,
    pub source: Source,
    /// How it runs on this host (none while it has not been applied yet).
    pub status: Option<UnitStatus>,
    /// Why this host does not run it, for a database unit it refuses.
    pub refused: Option<String>,
}

/// What a view of a unit may show beside its definition.
pub struct Around<'a> {
    pub events: &'a EventsConfig,
    /// Daemon leases in force: the daemon and the host holding it.
    leases: Vec<(String, String)>,
}

impl Around<'_> {
    /// The host that holds daemon `name`'s lease, while one does.
    pub fn runs_on(&self, name: &str) -> Option<String> {
        self.leases
            .iter()
            .find(|(daemon, _)| daemon == name)
            .map(|(_, holder)| holder.clone())
    }
}

/// What the API shows of one kind of unit: its head, its definition, and what else its kind
/// shows.
pub trait Shown: Unit {
    type View: serde::Serialize + utoipa::ToSchema + Send + Sync + 'static;
    fn view(head: UnitHead, spec: Self, around: &Around) -> Self::View;
    fn head(view: &Self::View) -> &UnitHead;
    fn spec(view: &Self::View) -> &Self;
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid { field, problem } => crate::web::error::invalid(&field, problem),
            Refusal::Conflict(problem) => AppError::Conflict(problem),
        }
    }
}

/// Every unit of kind `U`, with how it runs on this host; a database unit this host refuses is
/// shown too, with the reason.
async fn views<U: Shown>(state: &AppState) -> Result<Vec<U::View>, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let status = state.supervisor.status().await;
    let now = now_ms();
    let around = Around {
        events: &state.supervisor.file().events,
        leases: state
            .store
            .leases()
            .await?
            .into_iter()
            .filter(|(_, _, expires)| *expires > now)
            .map(|(daemon, holder, _)| (daemon, holder))
            .collect(),
    };
    let status_of = |name: &str| status.units.iter().find(|u| u.name == name).cloned();
    let mut views: Vec<U::View> = U::of(&desired)
        .iter()
        .map(|(name, item)| {
            let head = UnitHead {
                name: name.clone(),
                source: item.source,
                status: status_of(name),
                refused: None,
            };
            U::view(head, item.spec.clone(), &around)
        })
        .collect();
    let kind = U::KIND.as_str();
    let refused: Vec<_> = desired
        .refused
        .into_iter()
        .filter(|(what, _, _)| *what == kind)
        .collect();
    if !refused.is_empty() {
        let docs = state.store.documents(U::DOCUMENTS).await?;
        for (_, name, problem) in refused {
            if let Some(doc) = docs.iter().find(|d| d.name == name)
                && let Ok(spec) = serde_json::from_str::<U>(&doc.spec)
            {
                let head = UnitHead {
                    name,
                    source: Source::Api,
                    status: None,
                    refused: Some(problem),
                };
                views.push(U::view(head, spec, &around));
            }
        }
    }
    Ok(views)
}

fn missing<U: Unit>(name: &str) -> AppError {
    AppError::NotFound(format!("no {} named `{name}`", U::KIND.as_str()))
}

async fn view<U: Shown>(state: &AppState, name: &str) -> Result<U::View, AppError> {
    views::<U>(state)
        .await?
        .into_iter()
        .find(|v| U::head(v).name == name && U::head(v).refused.is_none())
        .ok_or_else(|| missing::<U>(name))
}

/// What an audit record of a change to `spec` holds: `{"route": {...}}`.
fn detail<U: Unit>(spec: &U) -> Value {
    json!({ U::KIND.as_str(): spec })
}

/// Checks a definition for the database.
async fn check<U: Unit>(state: &AppState, spec: &U) -> Result<(), AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    Ok(spec.check(state.supervisor.file(), &desired)?)
}

/// Every unit of kind `U`, with how it runs on this host.
pub async fn list<U: Shown>(
    state: &AppState,
    _: &Allowed<Viewer>,
) -> Result<Vec<U::View>, AppError> {
    views::<U>(state).await
}

pub async fn get<U: Shown>(
    state: &AppState,
    _: &Allowed<Viewer>,
    name: &str,
) -> Result<U::View, AppError> {
    view::<U>(state, name).await
}

/// Adds a unit; it runs on every host on this database at once (a daemon on one of them
/// at a time, unless it runs on each).
pub async fn create<U: Shown>(
    state: &AppState,
    who: &Allowed<Admin>,
    spec: U,
) -> Result<U::View, AppError> {
    let (kind, name) = (U::KIND.as_str(), spec.name().to_owned());
    super::refuse_file_unit(state, kind, &name)?;
    check(state, &spec).await?;
    let stored = serde_json::to_string(&spec).expect("a unit serialises");
    if !state
        .store
        .create_document(U::DOCUMENTS, &name, &stored, now_ms())
        .await?
    {
        return Err(super::taken(state, kind, &name).await);
    }
    audit::record(state, who, &format!("{kind}.create"), &name, detail(&spec)).await;
    applied(state).await?;
    state.supervisor.settled(&name, SETTLE_WAIT).await;
    view::<U>(state, &name).await
}

/// Replaces a unit: what its old runner holds finishes on the old definition, what comes
/// after takes the new (a daemon is asked to stop, then the new definition starts).
pub async fn update<U: Shown>(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    spec: U,
) -> Result<U::View, AppError> {
    let kind = U::KIND.as_str();
    super::refuse_file_unit(state, kind, name)?;
    if spec.name() != name {
        return Err(crate::web::error::invalid(
            "name",
            format!(
                "the body names {kind} `{}`, the path `{name}`; a {kind} cannot be renamed (create the new one, then delete this)",
                spec.name()
            ),
        ));
    }
    check(state, &spec).await?;
    let stored = serde_json::to_string(&spec).expect("a unit serialises");
    if !state
        .store
        .update_document(U::DOCUMENTS, name, &stored, now_ms())
        .await?
    {
        return Err(missing::<U>(name));
    }
    audit::record(state, who, &format!("{kind}.update"), name, detail(&spec)).await;
    applied(state).await?;
    state.supervisor.settled(name, SETTLE_WAIT).await;
    view::<U>(state, name).await
}

/// Deletes a unit: it stops taking messages and finishes those it holds; the supervisor
/// then lets go of what it kept on the broker for it.
pub async fn delete<U: Unit>(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
) -> Result<(), AppError> {
    let kind = U::KIND.as_str();
    super::refuse_file_unit(state, kind, name)?;
    if !state.store.delete_document(U::DOCUMENTS, name).await? {
        return Err(missing::<U>(name));
    }
    audit::record(state, who, &format!("{kind}.delete"), name, json!({})).await;
    applied(state).await?;
    Ok(())
}

/// Every connection and unit on this host, with its state and last error.
pub async fn status(state: &AppState, _: &Allowed<Viewer>) -> Status {
    state.supervisor.status().await
}

async fn known(state: &AppState, name: &str) -> Result<(), AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    if desired
        .units(&state.supervisor.file().events)
        .contains_key(name)
    {
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

/// Starts a unit anew on every host: a route's or subscription's runner is replaced (the old
/// one finishes what it holds), a daemon is asked to stop and started again with its failures
/// forgotten (a daemon marked failed runs again). A unit held stopped stays stopped.
pub async fn restart(
    state: &AppState,
    who: &Allowed<Operator>,
    name: &str,
) -> Result<UnitStatus, AppError> {
    known(state, name).await?;
    state
        .store
        .restart_unit(name, &who.caller.actor(), now_ms())
        .await?;
    audit::record(state, who, "unit.restart", name, json!({})).await;
    applied(state).await?;
    state
        .supervisor
        .settled(name, std::time::Duration::from_secs(2))
        .await;
    status_of(state, name).await
}
