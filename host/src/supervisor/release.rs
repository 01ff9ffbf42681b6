//! What a unit leaves behind on its broker, let go of once it is gone: a deleted route's hold
//! on its input, a subscription's old place on the events exchange, a stopped daemon's events
//! patterns. Each waits for the runner that used it to close first.

use super::{Desired, Running, State, Supervisor, UnitDef, UnitSpec};
use crate::broker::Address;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

impl Supervisor {
    /// Subscriptions deleted, or moved to another queue or pattern: once the runner that read
    /// the old place has closed, its queue is taken off the events exchange (what it holds
    /// stays, to read or purge). Every host does this; unbinding twice does no harm.
    pub(super) fn unsubscribe_moved(
        &self,
        state: &mut State,
        desired: &Desired,
        units: &BTreeMap<String, UnitDef>,
        mut closing: BTreeMap<String, watch::Receiver<bool>>,
    ) {
        // One this host refuses (its name clashes with its file's) may still run elsewhere.
        let refused = |name: &str| desired.refused.iter().any(|(_, n, _)| n == name);
        let now: BTreeMap<String, (String, crate::router::Subscription)> = units
            .iter()
            .filter_map(|(name, unit)| match &unit.spec {
                UnitSpec::Route {
                    route,
                    subscription: Some(place),
                } => Some((name.clone(), (route.from.clone(), place.clone()))),
                _ => None,
            })
            .collect();
        let before = std::mem::replace(&mut state.subscribed, now);
        for (name, (from, place)) in before {
            if state.subscribed.get(&name) == Some(&(from.clone(), place.clone())) {
                continue;
            }
            if refused(&name) && !state.subscribed.contains_key(&name) {
                state.subscribed.insert(name, (from, place));
                continue;
            }
            let Ok(at) = Address::parse(&from) else {
                continue;
            };
            let connections = self.inner.parts.connections.clone();
            let limit = self.inner.parts.grace + Duration::from_secs(10);
            let closed = closing.remove(&name);
            tokio::spawn(async move {
                if let Some(mut closed) = closed {
                    let _ = tokio::time::timeout(limit, closed.wait_for(|closed| *closed)).await;
                }
                let result = match connections.producer(&at) {
                    Ok(producer) => {
                        producer
                            .transport()
                            .unsubscribe(&place.exchange, &place.queue, &place.pattern)
                            .await
                    }
                    Err(error) => Err(error),
                };
                match result {
                    Ok(()) => {
                        tracing::info!(subscription = %name, queue = %place.queue, "unbound the subscription's old queue")
                    }
                    Err(error) => {
                        tracing::warn!(subscription = %name, %error, "cannot unbind the subscription's old queue; it keeps filling until deleted")
                    }
                }
            });
        }
    }

    /// A route removed for good: once its runner has closed, its input's transport lets go of
    /// what it keeps for it on the broker.
    pub(super) fn release_input(&self, name: &str, unit: &Running) {
        let Some(address) = unit.reads.clone() else {
            return;
        };
        let connections = self.inner.parts.connections.clone();
        let limit = self.inner.parts.grace + Duration::from_secs(10);
        let mut closed = unit.closed.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(limit, closed.wait_for(|closed| *closed)).await;
            let Ok(producer) = connections.producer(&address) else {
                return;
            };
            if let Err(error) = producer.transport().release(&address.address).await {
                tracing::warn!(route = %name, %error, "cannot let go of the route's input on its broker");
            }
        });
    }

    /// Stops `unit`, held stopped or removed (not replaced, and not because the host stops):
    /// once a daemon has closed, the events patterns it took from are unbound.
    pub(super) fn stop_for_good(&self, name: &str, unit: Running) {
        unit.trigger.fire();
        if !unit.daemon {
            return;
        }
        let services = self.services();
        let limit = self.inner.parts.grace + Duration::from_secs(10);
        let name = name.to_owned();
        let mut closed = unit.closed;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(limit, closed.wait_for(|closed| *closed)).await;
            match services.release_sources(&name).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(daemon = %name, patterns = n, "unbound the daemon's events queues")
                }
                Err(error) => {
                    tracing::warn!(daemon = %name, %error, "cannot unbind the daemon's events queues; they are unbound when it next stops")
                }
            }
        });
    }
}
