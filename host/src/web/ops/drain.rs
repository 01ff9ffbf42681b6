//! Draining: every message outstanding on some units processed, then a count of what this
//! host took (pubsubpy's `drain()`, for cron-style use).

use super::{AppError, AppState, applied, audit, now_ms};
use crate::supervisor::Desired;
use crate::web::caller::{Allowed, Operator};
use serde_json::json;

/// How one unit drained.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Drained {
    pub name: String,
    pub kind: crate::supervisor::UnitKind,
    /// Messages this host took from the unit's input while draining.
    pub processed: u64,
    /// Whether its input was empty by the end (false: the time ran out first).
    pub empty: bool,
}

/// What a drain did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DrainReport {
    pub units: Vec<Drained>,
    /// Every unit's `processed`, added up.
    pub processed: u64,
    /// Whether every unit's input was emptied within the time given.
    pub complete: bool,
}

/// The most units one drain names, and the longest it may take.
pub const MAX_DRAIN_UNITS: usize = 100;
pub const MAX_DRAIN_SECS: u64 = 3_600;

/// Processes every message outstanding on `names` (routes or subscriptions; none: every route
/// and subscription the host consumes for), then answers with
/// how many this host took: pubsubpy's `drain()`, for cron-style use. A unit held stopped runs
/// for the drain (on every host) and is held stopped again after it; a running one is waited
/// for. Its input is empty once its queue holds nothing (ready, delayed or in flight, where
/// the transport tells), or its Kafka group has no lag, and its count stops moving.
///
/// A unit is drained by one drain at a time (409 for another). Starting, waiting and holding
/// stopped again run in a task of their own, so a caller that goes away never leaves a unit
/// it started running: the wait ends then (or at the timeout, or when the host stops) and
/// the units are held stopped again all the same.
pub async fn drain(
    state: &AppState,
    who: &Allowed<Operator>,
    names: &[String],
    timeout: std::time::Duration,
) -> Result<DrainReport, AppError> {
    use crate::web::error::invalid;
    if names.len() > MAX_DRAIN_UNITS {
        return Err(invalid(
            "units",
            format!("name at most {MAX_DRAIN_UNITS} units to drain, or none for every one"),
        ));
    }
    if timeout.is_zero() || timeout.as_secs() > MAX_DRAIN_SECS {
        return Err(invalid(
            "timeout_secs",
            format!("give 1 to {MAX_DRAIN_SECS} seconds"),
        ));
    }
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let units = desired.units(&state.supervisor.file().events);
    // None named: every route and subscription the host consumes for (not the subscriptions
    // left to clients to read, which nothing here takes from).
    let every: Vec<String>;
    let names = if names.is_empty() {
        every = units
            .values()
            .filter_map(|unit| match &unit.spec {
                crate::supervisor::UnitSpec::Route {
                    route,
                    subscription,
                } if !(subscription.is_some()
                    && route.through.is_empty()
                    && route.to.is_none()) =>
                {
                    Some(unit.name().to_owned())
                }
                _ => None,
            })
            .collect();
        if every.is_empty() {
            return Err(invalid(
                "units",
                "this host has no route or subscription to drain",
            ));
        }
        &every[..]
    } else {
        names
    };
    let mut draining = Vec::new();
    for name in names {
        let unit = units
            .get(name)
            .ok_or_else(|| AppError::NotFound(format!("no unit named `{name}`")))?;
        let crate::supervisor::UnitSpec::Route {
            route,
            subscription,
        } = &unit.spec
        else {
            return Err(invalid(
                "units",
                format!("`{name}` is a daemon: a daemon has no input to drain"),
            ));
        };
        let input = crate::broker::Address::parse(&route.from)
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        let group = subscription.as_ref().map(|s| s.queue.clone());
        draining.push((name.clone(), unit.kind, input, group));
    }
    let claim = DrainClaim::take(state, names)?;
    let before = crate::metrics::route_totals();
    audit::record(
        state,
        who,
        "unit.drain",
        &names.join(","),
        json!({ "timeout_secs": timeout.as_secs() }),
    )
    .await;
    // Everything from here runs in a task of its own; the caller's going away (this future
    // dropped, a CLI stopped with Ctrl-C) cancels the wait through `caller_gone`.
    let (gone, caller_gone) = tokio::sync::watch::channel(false);
    let _cancel_when_dropped = CancelOnDrop(gone);
    let watched: Vec<(String, crate::broker::Address, Option<String>)> = draining
        .iter()
        .map(|(name, _, input, group)| (name.clone(), input.clone(), group.clone()))
        .collect();
    let stopped: Vec<(String, String)> = draining
        .iter()
        .filter_map(|(name, ..)| {
            desired
                .stopped
                .get(name)
                .map(|by| (name.clone(), by.clone()))
        })
        .collect();
    let (task_state, task_who) = (state.clone(), who.lesser::<Operator>());
    let waited = tokio::spawn(async move {
        let _claim = claim;
        let state = &task_state;
        // Units held stopped run for the drain, and are held stopped again after it.
        for (name, _) in &stopped {
            state.store.start_unit(name).await?;
            audit::record(
                state,
                &task_who,
                "unit.start",
                name,
                json!({ "for": "drain" }),
            )
            .await;
        }
        if !stopped.is_empty() {
            applied(state).await?;
            for (name, _) in &stopped {
                state
                    .supervisor
                    .settled(name, std::time::Duration::from_secs(5))
                    .await;
            }
        }
        let mut caller_gone = caller_gone;
        let mut shutdown = state.shutdown.clone();
        let empty = tokio::select! {
            empty = wait_empty(state, &watched, timeout) => empty,
            _ = caller_gone.wait_for(|gone| *gone) => vec![false; watched.len()],
            _ = shutdown.fired() => vec![false; watched.len()],
        };
        for (name, by) in &stopped {
            state.store.stop_unit(name, by, now_ms()).await?;
            audit::record(
                state,
                &task_who,
                "unit.stop",
                name,
                json!({ "for": "drain" }),
            )
            .await;
        }
        if !stopped.is_empty() {
            applied(state).await?;
        }
        Ok::<_, AppError>(empty)
    });
    let empty = waited.await.map_err(|e| {
        tracing::error!(error = %e, "a drain's task failed");
        AppError::Internal
    })??;
    let after = crate::metrics::route_totals();
    let units: Vec<Drained> = draining
        .into_iter()
        .zip(empty)
        .map(|((name, kind, _, _), empty)| {
            let taken = |counts: &std::collections::BTreeMap<
                String,
                crate::metrics::RouteCounts,
            >| { counts.get(&name).map_or(0.0, |c| c.r#in) };
            Drained {
                processed: (taken(&after) - taken(&before)).max(0.0) as u64,
                name,
                kind,
                empty,
            }
        })
        .collect();
    Ok(DrainReport {
        processed: units.iter().map(|u| u.processed).sum(),
        complete: units.iter().all(|u| u.empty),
        units,
    })
}

/// The units one drain holds: a second drain of any of them is refused while it runs.
struct DrainClaim {
    draining: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    names: Vec<String>,
}

impl DrainClaim {
    fn take(state: &AppState, names: &[String]) -> Result<DrainClaim, AppError> {
        let mut draining = state.draining.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(busy) = names.iter().find(|n| draining.contains(*n)) {
            return Err(AppError::Conflict(format!(
                "`{busy}` is being drained already; wait for that drain to end"
            )));
        }
        draining.extend(names.iter().cloned());
        Ok(DrainClaim {
            draining: state.draining.clone(),
            names: names.to_vec(),
        })
    }
}

impl Drop for DrainClaim {
    fn drop(&mut self) {
        let mut draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        for name in &self.names {
            draining.remove(name);
        }
    }
}

/// Tells a drain's task that its caller went away, when the caller's future is dropped.
struct CancelOnDrop(tokio::sync::watch::Sender<bool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Waits (up to `timeout`) until each of `watched` (a unit's name, its input, its Kafka
/// group) has nothing outstanding and its count has stopped moving; which ones did.
async fn wait_empty(
    state: &AppState,
    watched: &[(String, crate::broker::Address, Option<String>)],
    timeout: std::time::Duration,
) -> Vec<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut empty = vec![false; watched.len()];
    let mut last_counts = crate::metrics::route_totals();
    while tokio::time::Instant::now() < deadline && empty.iter().any(|e| !e) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let counts = crate::metrics::route_totals();
        let consumers = state.supervisor.connections().consumers();
        for (i, (name, input, group)) in watched.iter().enumerate() {
            let settled = counts.get(name).map(|c| c.r#in) == last_counts.get(name).map(|c| c.r#in);
            let outstanding = match consumers
                .iter()
                .filter(|c| {
                    c.unit.as_deref() == Some(name.as_str())
                        || c.unit.as_deref() == group.as_deref()
                })
                .collect::<Vec<_>>()
            {
                // A Kafka group: what it has not read yet.
                members if !members.is_empty() => members
                    .iter()
                    .flat_map(|m| &m.partitions)
                    .map(|p| p.lag.unwrap_or(1).max(0) as u64)
                    .sum(),
                _ => match state.supervisor.connections().depth(input).await {
                    Ok(depth) => depth
                        .depth
                        .unwrap_or_else(|| depth.ready.unwrap_or(1) + depth.in_flight.unwrap_or(0)),
                    Err(error) => {
                        tracing::warn!(unit = %name, %error, "cannot read the depth of a unit's input while draining");
                        1
                    }
                },
            };
            empty[i] = outstanding == 0 && settled;
        }
        last_counts = counts;
    }
    empty
}
