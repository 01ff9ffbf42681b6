//! Running one daemon: its lease, its runs, and what happens when it fails.
//!
//! A daemon that runs on one host at a time first takes its lease in the database and keeps
//! renewing it while it runs; a host that cannot take it waits in `standby` and tries again,
//! so when the holder dies (its lease expires) or stops (it releases it), another host takes
//! over within one lease period. A run that ends in an error (returned, trapped, spun past its
//! CPU budget) is started again after a capped backoff; `max_failures` of them within
//! `failure_window_secs` mark the daemon failed, and it stays stopped until an operator
//! restarts it (which starts a new unit with its failures forgotten). A run that is asked to
//! stop has the grace period to return; what it took and had not settled goes back.

use super::{Backoff, Lifecycle, SharedStatus, UnitState, lock};
use crate::config::DaemonConfig;
use crate::runtime::Plugin;
use crate::store::Store;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a lease lasts without renewal: a dead host's daemon moves within this.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a running daemon's lease is renewed, and a standby host tries to take it.
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// A run that lasted this long starts the backoff again from its shortest wait.
const STEADY: Duration = Duration::from_secs(60);

/// A daemon resolved: its definition and its loaded plugin.
pub(crate) struct DaemonUnit {
    pub spec: DaemonConfig,
    pub plugin: Plugin,
}

/// Runs daemon `unit` until its unit is stopped.
pub(crate) async fn run(
    unit: DaemonUnit,
    store: Store,
    host_id: String,
    lifecycle: Lifecycle,
    grace: Duration,
    status: SharedStatus,
) {
    let Lifecycle {
        mut shutdown,
        after,
        closed,
    } = lifecycle;
    // The daemon it replaces finishes its call first (within its grace period).
    if let Some(mut after) = after {
        tokio::select! {
            _ = shutdown.fired() => {
                lock(&status).set(UnitState::Stopped);
                closed.send_replace(true);
                return;
            }
            _ = tokio::time::timeout(grace + Duration::from_secs(5), after.wait_for(|closed| *closed)) => {}
        }
    }
    let name = unit.spec.name.clone();
    let window = Duration::from_secs(unit.spec.failure_window_secs);
    let mut failures: VecDeque<Instant> = VecDeque::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
    let lease = (!unit.spec.each_host).then(|| Lease {
        store: store.clone(),
        name: name.clone(),
        holder: host_id,
    });
    loop {
        if let Some(lease) = &lease {
            lock(&status).set(UnitState::Starting);
            if !lease.wait_for(&mut shutdown, &status).await {
                break;
            }
        }
        lock(&status).set(UnitState::Running);
        lock(&status).note = None;
        crate::metrics::daemon_started(&name);
        let (stop_tx, stop_rx) = watch::channel(false);
        let run = unit.plugin.run_daemon(&name, stop_rx, grace);
        tokio::pin!(run);
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.tick().await;
        let mut stopping = false;
        let mut renewed = Instant::now();
        let exit = loop {
            tokio::select! {
                exit = &mut run => break exit,
                _ = shutdown.fired(), if !stopping => {
                    stopping = true;
                    stop_tx.send_replace(true);
                }
                _ = renew.tick(), if lease.is_some() && !stopping => {
                    let lease = lease.as_ref().expect("checked");
                    match lease.take().await {
                        Ok(true) => renewed = Instant::now(),
                        Ok(false) => {
                            tracing::warn!(daemon = %name, "another host took the daemon's lease; stopping it here");
                            stop_tx.send_replace(true);
                        }
                        // The database is unreachable: run on until the lease would expire,
                        // then stop, since another host may take it from then on.
                        Err(error) if renewed.elapsed() + RENEW_EVERY >= LEASE => {
                            tracing::warn!(daemon = %name, %error, "cannot renew the daemon's lease before it expires; stopping it here");
                            stop_tx.send_replace(true);
                        }
                        Err(error) => {
                            tracing::warn!(daemon = %name, %error, "cannot renew the daemon's lease; trying again");
                        }
                    }
                }
            }
        };
        if let Some(lease) = &lease {
            lease.release().await;
        }
        if exit.returned > 0 {
            tracing::info!(daemon = %name, messages = exit.returned, "gave back what the daemon took and had not settled");
            crate::metrics::daemon_returned(&name, exit.returned);
        }
        if shutdown.is_fired() {
            lock(&status).set(UnitState::Stopped);
            break;
        }
        if exit.ran > STEADY {
            backoff.reset();
        }
        let error = match exit.result {
            // It returned of its own accord (or gave up its lease): run it again.
            Ok(()) => None,
            Err(error) => Some(error.to_string()),
        };
        let now = Instant::now();
        if error.is_some() {
            crate::metrics::daemon_failed(&name);
            failures.push_back(now);
            while failures
                .front()
                .is_some_and(|at| now.duration_since(*at) > window)
            {
                failures.pop_front();
            }
        }
        if failures.len() >= unit.spec.max_failures as usize {
            tracing::error!(daemon = %name, failures = failures.len(), error = error.as_deref().unwrap_or_default(), "the daemon failed too often; it stays stopped until restarted");
            {
                let mut s = lock(&status);
                s.set(UnitState::Failed);
                s.error = error;
                s.note = Some(format!(
                    "failed {} times within {} s; stopped until someone restarts it",
                    failures.len(),
                    unit.spec.failure_window_secs
                ));
            }
            shutdown.fired().await;
            lock(&status).set(UnitState::Stopped);
            break;
        }
        let wait = backoff.next_delay();
        match &error {
            Some(error) => {
                tracing::error!(daemon = %name, %error, retry_in_ms = wait.as_millis() as u64, "the daemon failed; restarting it")
            }
            None => {
                tracing::info!(daemon = %name, retry_in_ms = wait.as_millis() as u64, "the daemon returned; starting it again")
            }
        }
        {
            let mut s = lock(&status);
            s.set(UnitState::BackingOff);
            if error.is_some() {
                s.error = error;
            }
            s.restarts += 1;
        }
        tokio::select! {
            _ = shutdown.fired() => {
                lock(&status).set(UnitState::Stopped);
                break;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    closed.send_replace(true);
}

/// A daemon's lease in the database, held by this host.
struct Lease {
    store: Store,
    name: String,
    holder: String,
}

impl Lease {
    /// Takes or renews the lease: whether this host holds it now.
    async fn take(&self) -> Result<bool, crate::store::StoreError> {
        let now = crate::message::now_ms() as i64;
        self.store
            .take_lease(
                &self.name,
                &self.holder,
                now,
                now + LEASE.as_millis() as i64,
            )
            .await
    }

    async fn release(&self) {
        if let Err(error) = self.store.release_lease(&self.name, &self.holder).await {
            tracing::warn!(daemon = %self.name, %error, "cannot release the daemon's lease; it expires by itself");
        }
    }

    /// Waits until this host holds the lease (`true`) or the unit is stopped (`false`); in
    /// standby meanwhile, saying which host runs it.
    async fn wait_for(
        &self,
        shutdown: &mut crate::shutdown::Shutdown,
        status: &SharedStatus,
    ) -> bool {
        loop {
            match self.take().await {
                Ok(true) => return true,
                Ok(false) => {
                    let holder = self
                        .store
                        .leases()
                        .await
                        .ok()
                        .and_then(|leases| {
                            leases
                                .into_iter()
                                .find(|(name, _, _)| *name == self.name)
                                .map(|(_, holder, _)| holder)
                        })
                        .unwrap_or_else(|| "another host".into());
                    let mut s = lock(status);
                    s.set(UnitState::Standby);
                    s.note = Some(format!(
                        "runs on {holder}; this host takes over if it stops"
                    ));
                }
                Err(error) => {
                    let mut s = lock(status);
                    s.set(UnitState::Standby);
                    s.note = Some(format!("cannot read its lease: {error}"));
                }
            }
            tokio::select! {
                _ = shutdown.fired() => return false,
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
        }
    }
}
