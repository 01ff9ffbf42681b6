//! Running a route (or a subscription's) as a unit: its runner's lifecycle, and the queues
//! it needs declared first.

use super::*;

/// A definition as text, to tell whether it changed.
pub(super) fn fingerprint_of(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("definitions serialise")
}

/// Runs one route until its shutdown fires: if its runner stops with an error (a consumer
/// lost, a panic), it is started again after a backoff.
/// When a unit's runner starts and what it tells its successor.
pub(super) struct Lifecycle {
    pub(super) shutdown: Shutdown,
    /// The replaced unit's `closed`: this runner reads only once that is true (or the old unit
    /// has ended). A queue's consumer closes at once; a Kafka member has then left its group,
    /// so the group never holds the old and the new member of one route at once, and no
    /// partition's records are handled by both chains.
    pub(super) after: Option<watch::Receiver<bool>>,
    pub(super) closed: Arc<watch::Sender<bool>>,
}

pub(super) async fn run_route(
    route: Arc<Route>,
    connections: Connections,
    outbox: crate::outbox::Outbox,
    lifecycle: Lifecycle,
    grace: Duration,
    status: SharedStatus,
) {
    let Lifecycle {
        mut shutdown,
        after,
        closed,
    } = lifecycle;
    if let Some(mut after) = after {
        // Bounded: the old runner closes within its grace period and Kafka's 30 s drain.
        let limit = grace + Duration::from_secs(35);
        tokio::select! {
            _ = shutdown.fired() => {
                lock(&status).set(UnitState::Stopped);
                return;
            }
            _ = tokio::time::timeout(limit, after.wait_for(|closed| *closed)) => {}
        }
    }
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        lock(&status).set(UnitState::Starting);
        let started = Instant::now();
        let attempt = async {
            ensure_queues(&connections, &route).await?;
            let running = status.clone();
            let closed = closed.clone();
            RouteRunner::new(route.clone(), connections.clone(), outbox.clone())
                .on_started(move || lock(&running).set(UnitState::Running))
                .on_closed(move || {
                    closed.send_replace(true);
                })
                .run(shutdown.clone(), grace)
                .await
        };
        let error = match AssertUnwindSafe(attempt).catch_unwind().await {
            Ok(Ok(())) => {
                lock(&status).set(UnitState::Stopped);
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(panic) => format!("the route panicked: {}", crate::router::panic_text(&*panic)),
        };
        // A route that ran a while before failing (a dropped connection) starts over from
        // the shortest delay; one that keeps failing at once backs off.
        if started.elapsed() > Duration::from_secs(10) {
            backoff.reset();
        }
        let wait = backoff.next_delay();
        tracing::error!(route = %route.name, %error, retry_in_ms = wait.as_millis() as u64, "route stopped by an error; restarting");
        {
            let mut s = lock(&status);
            s.set(UnitState::BackingOff);
            s.error = Some(error);
            s.restarts += 1;
        }
        tokio::select! {
            _ = shutdown.fired() => {
                lock(&status).set(UnitState::Stopped);
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Makes sure the queues `route` uses exist, where its transport declares them (those of a
/// route added while the host runs were not in its connection's topology at start).
pub(super) async fn ensure_queues(
    connections: &Connections,
    route: &Route,
) -> Result<(), crate::broker::BrokerError> {
    // A subscription's queue is made when it subscribes.
    let from = route.subscription.is_none().then_some(&route.from);
    let addresses: Vec<&Address> = [
        from,
        route.to.as_ref(),
        Some(&route.dead_letter),
        route.reply_to.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter(|a| !a.address.contains('/'))
    .collect();
    connections.ensure(&addresses).await
}
