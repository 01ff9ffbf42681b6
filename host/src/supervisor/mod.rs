//! The supervisor: owns every running unit and reconciles them to the desired state.
//!
//! A unit is something that runs on its own until stopped: a route today; subscriptions and
//! daemons plug in the same way. Each has its own shutdown, a state (`starting`, `running`,
//! `backing_off`, `failed`, `stopped`) and its last error, which `GET /api/v1/status` shows.
//!
//! One task reconciles: at start, whenever this host's API changes something (`wake`),
//! whenever the database's revision moves (every host on a database polls it twice a second,
//! so a change made through one host reaches the others within a second), and when a unit
//! that could not be built is due to be tried again. Reconciling opens, replaces and closes
//! connections, and starts, replaces and stops routes: a route whose definition, plugin
//! versions, plugin policies or connections changed gets a new runner, and the old one is told
//! to stop. The old runner stops taking messages at once (it closes its consumer) and finishes
//! the ones it holds on the old chain (up to the grace period); the new one starts reading once
//! the old consumer is closed and takes the rest. A message runs through one chain, whole: none
//! is lost, failed or run through half of each.

mod daemon;
pub mod desired;
mod release;
mod resolve;
mod route;
mod status;
mod unit;

pub use desired::{
    Desired, FileLayer, FilePlugin, Item, PluginPolicy, Source, UnitDef, UnitKind, UnitSpec,
};

pub use crate::backoff::Backoff;
use crate::broker::{Address, Connections, Producer};
use crate::check::plugin_ref;
use crate::config::{ConnectionConfig, RouteConfig};
use crate::router::{Route, RouteRunner};
use crate::runtime::{HostServices, Plugin, PluginKind, Runtime};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::store::Store;
use futures::FutureExt as _;
use route::*;
use serde::Serialize;
pub use status::*;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
pub use unit::{Refusal, Unit};

/// What the supervisor needs of the host.
pub struct Parts {
    pub store: Store,
    pub runtime: Runtime,
    pub services: Arc<dyn HostServices>,
    pub connections: Connections,
    /// Where durable routes commit their work, and every route its kv writes.
    pub outbox: crate::outbox::Outbox,
    pub file: FileLayer,
    /// Server-wide route limits.
    pub max_message_bytes: usize,
    pub max_outputs: usize,
    /// How long a stopping route may finish what it holds.
    pub grace: Duration,
    /// Names this host in the daemons' leases: unique per process.
    pub host_id: String,
    /// This host's stable name among the hosts sharing its brokers (`[server] name`).
    pub host_name: String,
}

/// A handle on the supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    parts: Parts,
    wake: Notify,
    /// The revision last applied.
    applied: watch::Sender<i64>,
    units: RwLock<BTreeMap<String, SharedStatus>>,
    refused: RwLock<Vec<Refused>>,
    /// Connections this host opened, with the source and the problem of one it could not.
    connection_sources: RwLock<BTreeMap<String, Opened>>,
    /// The addresses routes consume from (`connection:address`), each with whether its
    /// route answers requests (it has no `to`, so its handler replies to the caller).
    bindings: RwLock<HashMap<String, bool>>,
}

/// A connection of the desired state: where it is defined, its kind, and why it could not be
/// opened, if it could not.
type Opened = (Source, &'static str, Option<String>);

/// The reconciling task's own state.
struct State {
    units: BTreeMap<String, Running>,
    /// Every unit's task, those draining after a change too.
    tasks: JoinSet<()>,
    /// Connections open, by name, with the definition they were opened from.
    opened: BTreeMap<String, String>,
    /// Units that could not be built: when to try again.
    retry: BTreeMap<String, (Instant, Backoff)>,
    /// Plugins loaded for units, by file hash and policy.
    plugins: HashMap<String, Plugin>,
    /// Each subscription's place on the events exchange as last applied (held stopped ones
    /// too: a stopped subscription's queue keeps filling): `(events connection, place)`.
    subscribed: BTreeMap<String, (String, crate::router::Subscription)>,
}

struct Running {
    fingerprint: String,
    trigger: ShutdownTrigger,
    /// Becomes true once the unit's runner has closed its consumer (or the unit has ended):
    /// the runner replacing it reads only from then on.
    closed: watch::Receiver<bool>,
    daemon: bool,
    /// What a route reads, let go of on its broker when the route is deleted.
    reads: Option<crate::broker::Address>,
}

/// Why a route cannot be built: what it names is not there (`fault: false`: it stops), or a
/// plugin it names could not be loaded (`fault: true`: a running route keeps what it had).
struct Unbuildable {
    problem: String,
    fault: bool,
}

impl From<String> for Unbuildable {
    fn from(problem: String) -> Self {
        Unbuildable {
            problem,
            fault: false,
        }
    }
}

fn fault(problem: String) -> Unbuildable {
    Unbuildable {
        problem,
        fault: true,
    }
}

/// A unit resolved: ready to run, with what identifies this exact build of it.
struct Resolved {
    runner: Runner,
    fingerprint: String,
    plugins: Vec<String>,
}

enum Runner {
    Route(Box<Route>),
    Daemon(daemon::DaemonUnit),
}

impl Supervisor {
    /// Builds the desired state once (an error here, in what this host's file defines or a
    /// name in both layers, stops start-up) and then keeps reconciling in a task of `tasks`,
    /// until `shutdown` fires; that task stops every unit before it ends.
    pub async fn start(
        parts: Parts,
        shutdown: Shutdown,
        tasks: &mut JoinSet<()>,
    ) -> anyhow::Result<Supervisor> {
        let supervisor = Supervisor {
            inner: Arc::new(Inner {
                parts,
                wake: Notify::new(),
                applied: watch::channel(-1).0,
                units: RwLock::default(),
                refused: RwLock::default(),
                connection_sources: RwLock::default(),
                bindings: RwLock::default(),
            }),
        };
        let mut state = State {
            units: BTreeMap::new(),
            tasks: JoinSet::new(),
            opened: BTreeMap::new(),
            retry: BTreeMap::new(),
            plugins: HashMap::new(),
            subscribed: BTreeMap::new(),
        };
        // The file's connections are open already (the host opened them, so that a problem
        // stops start-up with its key).
        for (name, spec) in &supervisor.inner.parts.file.connections {
            state.opened.insert(name.clone(), fingerprint_of(spec));
        }
        let desired =
            Desired::load(&supervisor.inner.parts.store, &supervisor.inner.parts.file).await?;
        if let Some((what, name, problem)) = desired.refused.first() {
            anyhow::bail!("{what} `{name}`: {problem}");
        }
        supervisor.reconcile(&mut state, desired, true).await?;
        tasks.spawn(supervisor.clone().run(state, shutdown));
        Ok(supervisor)
    }

    /// Asks for a reconcile now (after a change through this host's API).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Waits until this host has applied `revision` (or `limit` passes); whether it has.
    pub async fn applied(&self, revision: i64, limit: Duration) -> bool {
        let mut applied = self.inner.applied.subscribe();
        tokio::time::timeout(limit, applied.wait_for(|done| *done >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until unit `name` has left `starting` (it runs, or says why not), up to `limit`.
    pub async fn settled(&self, name: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.unit_status(name) {
                Some(status) if lock(&status).state != UnitState::Starting => return,
                None => return,
                Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Whether a route (running or held stopped, on any host) consumes from `address`
    /// (`connection:address`), and if so whether it replies to its caller.
    pub fn binding(&self, address: &str) -> Option<bool> {
        self.inner
            .bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(address)
            .copied()
    }

    /// The connections this host serves.
    pub fn connections(&self) -> &Connections {
        &self.inner.parts.connections
    }

    pub fn store(&self) -> &Store {
        &self.inner.parts.store
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.parts.runtime
    }

    pub fn services(&self) -> Arc<dyn HostServices> {
        self.inner.parts.services.clone()
    }

    /// This host's own layer.
    pub fn file(&self) -> &FileLayer {
        &self.inner.parts.file
    }

    /// Every unit and connection with its state.
    pub async fn status(&self) -> Status {
        let units = self
            .inner
            .units
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|s| lock(s).clone())
            .collect();
        let sources = self
            .inner
            .connection_sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let checks: BTreeMap<String, Result<(), String>> = self
            .inner
            .parts
            .connections
            .check()
            .await
            .into_iter()
            .collect();
        let connections = sources
            .into_iter()
            .map(|(name, (source, kind, problem))| {
                let check = checks
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| Err(problem.clone().unwrap_or_else(|| "not open".into())));
                ConnectionStatus {
                    state: if check.is_ok() { "up" } else { "down" },
                    error: check.err(),
                    name,
                    kind,
                    source,
                }
            })
            .collect();
        let outbox = match self.inner.parts.outbox.stats().await {
            Ok(stats) => Some(stats),
            Err(error) => {
                tracing::warn!(%error, "cannot read the outbox's backlog");
                None
            }
        };
        Status {
            revision: *self.inner.applied.borrow(),
            connections,
            units,
            consumers: self.inner.parts.connections.consumers(),
            refused: self
                .inner
                .refused
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            outbox,
        }
    }

    async fn run(self, mut state: State, mut shutdown: Shutdown) {
        // On PostgreSQL, hear other hosts' changes as they commit; the poll below stays as
        // the fallback for a notification missed while the listening connection was down.
        let listening = self.listen().await;
        let mut poll = tokio::time::interval(Duration::from_millis(500));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.fired() => break,
                _ = self.inner.wake.notified() => {}
                _ = poll.tick() => {
                    let due = state.retry.values().any(|(at, _)| *at <= Instant::now());
                    let moved = match self.inner.parts.store.revision().await {
                        Ok(revision) => revision != *self.inner.applied.borrow(),
                        Err(error) => {
                            tracing::warn!(%error, "cannot read the desired state's revision");
                            false
                        }
                    };
                    if !due && !moved {
                        continue;
                    }
                }
            }
            match Desired::load(&self.inner.parts.store, &self.inner.parts.file).await {
                Ok(desired) => {
                    if let Err(error) = self.reconcile(&mut state, desired, false).await {
                        tracing::error!(%error, "reconciling failed");
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read the desired state"),
            }
        }
        if let Some(task) = listening {
            task.abort();
        }
        // Stop every unit; each finishes what it holds within the grace period.
        for unit in state.units.values() {
            unit.trigger.fire();
        }
        while state.tasks.join_next().await.is_some() {}
        for (name, _) in state.opened {
            if !self.inner.parts.file.connections.contains_key(&name)
                && let Some(producer) = self.inner.parts.connections.remove(&name)
            {
                producer.close().await;
            }
        }
    }

    /// Wakes the reconcile loop at every change any host commits (PostgreSQL only).
    async fn listen(&self) -> Option<tokio::task::JoinHandle<()>> {
        let mut listener = match self.inner.parts.store.listen_changes().await {
            Ok(listener) => listener?,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for changes; polling the revision only");
                return None;
            }
        };
        let inner = Arc::downgrade(&self.inner);
        Some(tokio::spawn(async move {
            loop {
                let heard = listener.next().await;
                let Some(inner) = inner.upgrade() else { return };
                match heard {
                    Ok(()) => inner.wake.notify_one(),
                    Err(error) => {
                        tracing::warn!(%error, "listening for changes failed; polling the revision until it is back");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }))
    }

    /// Brings connections and units to `desired`. With `strict` (at start), a unit of this
    /// host's file that cannot be built is an error.
    async fn reconcile(
        &self,
        state: &mut State,
        desired: Desired,
        strict: bool,
    ) -> anyhow::Result<()> {
        while state.tasks.try_join_next().is_some() {}
        *self
            .inner
            .refused
            .write()
            .unwrap_or_else(|p| p.into_inner()) = desired
            .refused
            .iter()
            .map(|(kind, name, problem)| Refused {
                kind,
                name: name.clone(),
                problem: problem.clone(),
            })
            .collect();
        *self
            .inner
            .bindings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = desired
            .units(&self.inner.parts.file.events)
            .values()
            .filter_map(UnitDef::route)
            .map(|route| (route.from.clone(), route.to.is_none()))
            .collect();
        let closing = self.reconcile_connections(state, &desired).await;
        self.declare_events();
        self.reconcile_routes(state, &desired, strict).await?;
        // Connections replaced or removed close once the routes that used them have had
        // their grace period to finish.
        if !closing.is_empty() {
            let grace = self.inner.parts.grace;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                for producer in closing {
                    producer.close().await;
                }
            });
        }
        self.inner.applied.send_replace(desired.revision);
        Ok(())
    }

    /// Declares this host's events exchange on its connection (in a task: a broker that is
    /// down must not hold up reconciling; AMQP declares it again on every reconnect).
    fn declare_events(&self) {
        let events = self.inner.parts.file.events.clone();
        let at = Address {
            connection: events.connection.clone(),
            address: events.exchange.clone(),
        };
        let Ok(producer) = self.inner.parts.connections.producer(&at) else {
            return;
        };
        tokio::spawn(async move {
            if let Err(error) = producer.transport().declare_events(&events.exchange).await {
                tracing::warn!(connection = %events.connection, exchange = %events.exchange, %error, "cannot declare the events exchange yet");
            }
        });
    }

    /// Opens the connections added, replaces those changed and removes those gone; returns the
    /// brokers to close.
    async fn reconcile_connections(&self, state: &mut State, desired: &Desired) -> Vec<Producer> {
        let connections = &self.inner.parts.connections;
        let mut closing = Vec::new();
        let mut sources = BTreeMap::new();
        for (name, item) in &desired.connections {
            let fingerprint = fingerprint_of(&item.spec);
            let mut problem = None;
            if state.opened.get(name) != Some(&fingerprint) {
                match self.open(name, &item.spec, desired).await {
                    Ok(producer) => {
                        tracing::info!(connection = %name, "connection opened");
                        if let Some(old) = connections.insert(name, producer) {
                            closing.push(old);
                        }
                        state.opened.insert(name.clone(), fingerprint);
                    }
                    Err(error) => {
                        tracing::error!(connection = %name, %error, "cannot open the connection");
                        problem = Some(error);
                    }
                }
            }
            sources.insert(name.clone(), (item.source, item.spec.kind(), problem));
        }
        let gone: Vec<String> = state
            .opened
            .keys()
            .filter(|name| !desired.connections.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            state.opened.remove(&name);
            if let Some(old) = connections.remove(&name) {
                tracing::info!(connection = %name, "connection removed");
                closing.push(old);
            }
        }
        *self
            .inner
            .connection_sources
            .write()
            .unwrap_or_else(|p| p.into_inner()) = sources;
        closing
    }

    /// Opens connection `name` as `spec` defines it.
    async fn open(
        &self,
        name: &str,
        spec: &ConnectionConfig,
        desired: &Desired,
    ) -> Result<Producer, String> {
        let routes: Vec<RouteConfig> = desired.routes.values().map(|r| r.spec.clone()).collect();
        let at = crate::broker::registry::Opening {
            store: &self.inner.parts.store,
            routes: &routes,
            host: &self.inner.parts.host_name,
        };
        spec.open(name, &at).await
    }

    async fn reconcile_routes(
        &self,
        state: &mut State,
        desired: &Desired,
        strict: bool,
    ) -> anyhow::Result<()> {
        let mut plugins_in_use = HashMap::new();
        let mut statuses = BTreeMap::new();
        let now = Instant::now();
        let units = desired.units(&self.inner.parts.file.events);
        let closing: BTreeMap<String, watch::Receiver<bool>> = state
            .units
            .iter()
            .map(|(name, unit)| (name.clone(), unit.closed.clone()))
            .collect();
        for (name, item) in &units {
            let kind = item.kind.as_str();
            // Held stopped by an operator: it finishes what it holds and takes nothing more.
            if let Some(by) = desired.stopped.get(name) {
                if let Some(unit) = state.units.remove(name) {
                    tracing::info!(unit = %name, kind, stopped_by = %by, "unit stopped by an operator");
                    self.stop_for_good(name, unit);
                }
                state.retry.remove(name);
                let mut status = UnitStatus::new(name, item.kind, item.source, UnitState::Stopped);
                if let Some(old) = self.unit_status(name) {
                    let old = lock(&old);
                    if old.state == UnitState::Stopped {
                        status.since_ms = old.since_ms;
                    }
                }
                status.stopped_by = Some(by.clone());
                statuses.insert(name.clone(), Arc::new(Mutex::new(status)));
                continue;
            }
            // A unit that could not be built waits for its retry, unless the state moved.
            let moved = *self.inner.applied.borrow() != desired.revision;
            if let Some((at, _)) = state.retry.get(name)
                && *at > now
                && !moved
                && let Some(status) = self.unit_status(name)
            {
                statuses.insert(name.clone(), status);
                continue;
            }
            match self
                .resolve(state, item, desired, &mut plugins_in_use)
                .await
            {
                Ok(resolved) => {
                    state.retry.remove(name);
                    let same = state
                        .units
                        .get(name)
                        .is_some_and(|unit| unit.fingerprint == resolved.fingerprint);
                    if same && let Some(status) = self.unit_status(name) {
                        statuses.insert(name.clone(), status);
                        continue;
                    }
                    let status = self.start_unit(state, name, item, resolved);
                    statuses.insert(name.clone(), status);
                }
                Err(Unbuildable { problem, fault }) => {
                    if strict && item.source == Source::File {
                        anyhow::bail!("{kind} `{name}`: {problem}");
                    }
                    let (_, backoff) = state.retry.entry(name.clone()).or_insert_with(|| {
                        (
                            now,
                            Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
                        )
                    });
                    let wait = backoff.next_delay();
                    state.retry.get_mut(name).expect("just inserted").0 = now + wait;
                    // A plugin that could not be loaded never replaces one that runs: the
                    // route goes on with what it had, and says why the change waits.
                    if fault
                        && state.units.contains_key(name)
                        && let Some(status) = self.unit_status(name)
                    {
                        tracing::error!(unit = %name, kind, %problem, "the change cannot be applied; the unit keeps its previous definition");
                        lock(&status).error = Some(format!(
                            "the latest change cannot be applied, so the previous definition keeps running: {problem}"
                        ));
                        statuses.insert(name.clone(), status);
                        continue;
                    }
                    tracing::error!(unit = %name, kind, %problem, "the unit cannot run");
                    if let Some(old) = state.units.remove(name) {
                        old.trigger.fire();
                    }
                    let status = self.unit_status(name).unwrap_or_else(|| {
                        Arc::new(Mutex::new(UnitStatus::new(
                            name,
                            item.kind,
                            item.source,
                            UnitState::Failed,
                        )))
                    });
                    {
                        let mut s = lock(&status);
                        s.set(UnitState::Failed);
                        s.error = Some(problem);
                        s.plugins.clear();
                    }
                    statuses.insert(name.clone(), status);
                }
            }
        }
        // Units no longer desired stop (finishing what they hold).
        let gone: Vec<String> = state
            .units
            .keys()
            .filter(|name| !units.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(unit) = state.units.remove(&name) {
                tracing::info!(unit = %name, "unit removed; stopping it");
                self.release_input(&name, &unit);
                self.stop_for_good(&name, unit);
            }
        }
        state.retry.retain(|name, _| units.contains_key(name));
        self.unsubscribe_moved(state, desired, &units, closing);
        state.plugins = plugins_in_use;
        *self.inner.units.write().unwrap_or_else(|p| p.into_inner()) = statuses;
        Ok(())
    }

    fn unit_status(&self, name: &str) -> Option<SharedStatus> {
        self.inner
            .units
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Starts a runner for `resolved`; the one it replaces (if any) is told to stop.
    fn start_unit(
        &self,
        state: &mut State,
        name: &str,
        unit: &UnitDef,
        resolved: Resolved,
    ) -> SharedStatus {
        let mut status = UnitStatus::new(name, unit.kind, unit.source, UnitState::Starting);
        status.plugins = resolved.plugins;
        let status = Arc::new(Mutex::new(status));
        let (trigger, unit_shutdown) = shutdown::channel();
        let (closed_tx, closed) = watch::channel(false);
        let after = state.units.get(name).map(|old| old.closed.clone());
        let lifecycle = Lifecycle {
            shutdown: unit_shutdown,
            after,
            closed: Arc::new(closed_tx),
        };
        let reads = match (&resolved.runner, unit.kind) {
            (Runner::Route(route), UnitKind::Route) => Some(route.from.clone()),
            _ => None,
        };
        let parts = &self.inner.parts;
        match resolved.runner {
            Runner::Route(route) => state.tasks.spawn(run_route(
                Arc::new(*route),
                parts.connections.clone(),
                parts.outbox.clone(),
                lifecycle,
                parts.grace,
                status.clone(),
            )),
            Runner::Daemon(unit) => state.tasks.spawn(daemon::run(
                unit,
                parts.store.clone(),
                parts.host_id.clone(),
                lifecycle,
                parts.grace,
                status.clone(),
            )),
        };
        let replaced = state.units.insert(
            name.to_owned(),
            Running {
                fingerprint: resolved.fingerprint,
                trigger,
                closed,
                daemon: unit.kind == UnitKind::Daemon,
                reads,
            },
        );
        match replaced {
            Some(old) => {
                tracing::info!(unit = %name, kind = unit.kind.as_str(), "unit changed; the old chain finishes what it holds");
                old.trigger.fire();
            }
            None => tracing::info!(unit = %name, kind = unit.kind.as_str(), "unit added"),
        }
        status
    }
}
