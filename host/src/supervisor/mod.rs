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
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What a unit is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    Starting,
    Running,
    /// Stopped by an error; tried again after a wait.
    BackingOff,
    /// Cannot be built as defined (a plugin or connection missing), tried again after a wait
    /// and whenever the desired state changes; or a daemon that failed too often, stopped
    /// until someone restarts it.
    Failed,
    /// A daemon that runs on one host at a time, waiting while another host runs it.
    Standby,
    Stopped,
}

/// One unit, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnitStatus {
    pub name: String,
    /// `route`, `subscription` or `daemon`.
    pub kind: UnitKind,
    pub source: Source,
    pub state: UnitState,
    /// The last error, kept while the unit runs again, until it changes.
    pub error: Option<String>,
    /// When the state last changed (ms since the epoch).
    pub since_ms: u64,
    /// Times it was started again after an error.
    pub restarts: u32,
    /// The plugins it runs, as `name@version`.
    pub plugins: Vec<String>,
    /// Who stopped it, while an operator holds it stopped.
    pub stopped_by: Option<String>,
    /// What else there is to know of its state: which host runs a daemon in standby here.
    pub note: Option<String>,
}

impl UnitStatus {
    fn new(name: &str, kind: UnitKind, source: Source, state: UnitState) -> Self {
        UnitStatus {
            name: name.to_owned(),
            kind,
            source,
            state,
            error: None,
            since_ms: crate::message::now_ms(),
            restarts: 0,
            plugins: Vec::new(),
            stopped_by: None,
            note: None,
        }
    }

    fn set(&mut self, state: UnitState) {
        if self.state != state {
            self.state = state;
            self.since_ms = crate::message::now_ms();
        }
    }
}

type SharedStatus = Arc<Mutex<UnitStatus>>;

fn lock(status: &SharedStatus) -> std::sync::MutexGuard<'_, UnitStatus> {
    status.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectionStatus {
    pub name: String,
    pub kind: &'static str,
    pub source: Source,
    /// `up` or `down`.
    pub state: &'static str,
    pub error: Option<String>,
}

/// The whole host, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// The revision of the desired state this host has applied.
    pub revision: i64,
    pub connections: Vec<ConnectionStatus>,
    pub units: Vec<UnitStatus>,
    /// Consumer-group members on this host (routes reading Kafka): partitions held, lag.
    pub consumers: Vec<crate::broker::ConsumerState>,
    /// Items of the database this host does not run, and why.
    pub refused: Vec<Refused>,
    /// The outbox's backlog (shared by every host on the database); absent if it could not
    /// be read.
    pub outbox: Option<crate::store::OutboxStats>,
}

/// A database item this host does not run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Refused {
    pub kind: &'static str,
    pub name: String,
    pub problem: String,
}

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
    units: BTreeMap<String, Unit>,
    /// Every unit's task, those draining after a change too.
    tasks: JoinSet<()>,
    /// Connections open, by name, with the definition they were opened from.
    opened: BTreeMap<String, String>,
    /// Units that could not be built: when to try again.
    retry: BTreeMap<String, (Instant, Backoff)>,
    /// Plugins loaded for units, by file hash and policy.
    plugins: HashMap<String, Plugin>,
}

struct Unit {
    fingerprint: String,
    trigger: ShutdownTrigger,
    /// Becomes true once the unit's runner has closed its consumer (or the unit has ended):
    /// the runner replacing it reads only from then on.
    closed: watch::Receiver<bool>,
    daemon: bool,
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
        spec.open(name, &self.inner.parts.store, &routes).await
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
                self.stop_for_good(&name, unit);
            }
        }
        state.retry.retain(|name, _| units.contains_key(name));
        state.plugins = plugins_in_use;
        *self.inner.units.write().unwrap_or_else(|p| p.into_inner()) = statuses;
        Ok(())
    }

    /// Stops `unit`, held stopped or removed (not replaced, and not because the host stops):
    /// once a daemon has closed, the events patterns it took from are unbound.
    fn stop_for_good(&self, name: &str, unit: Unit) {
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
            Unit {
                fingerprint: resolved.fingerprint,
                trigger,
                closed,
                daemon: unit.kind == UnitKind::Daemon,
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

    /// Builds unit `unit`: its plugins loaded at the versions it names, its addresses parsed.
    async fn resolve(
        &self,
        state: &State,
        unit: &UnitDef,
        desired: &Desired,
        plugins_in_use: &mut HashMap<String, Plugin>,
    ) -> Result<Resolved, Unbuildable> {
        let mut fingerprint = Vec::new();
        if let Some(generation) = desired.generations.get(unit.name()) {
            fingerprint.push(format!("generation:{generation}"));
        }
        match &unit.spec {
            UnitSpec::Route {
                route,
                subscription,
            } => {
                self.resolve_route(
                    state,
                    route,
                    subscription.as_ref(),
                    desired,
                    plugins_in_use,
                    fingerprint,
                )
                .await
            }
            UnitSpec::Daemon(spec) => {
                fingerprint.push(fingerprint_of(spec));
                let plugin = self
                    .resolve_plugin(
                        state,
                        &spec.plugin,
                        desired,
                        plugins_in_use,
                        &mut fingerprint,
                    )
                    .await?;
                if plugin.info().kind != PluginKind::Daemon {
                    return Err(format!(
                        "`{}` is a {}; a daemon runs a daemon plugin",
                        spec.plugin,
                        plugin.info().kind.as_str()
                    )
                    .into());
                }
                let label = format!("{}@{}", plugin_ref(&spec.plugin).0, plugin.info().version);
                Ok(Resolved {
                    runner: Runner::Daemon(daemon::DaemonUnit {
                        spec: spec.clone(),
                        plugin,
                    }),
                    fingerprint: fingerprint.join("\n"),
                    plugins: vec![label],
                })
            }
        }
    }

    /// Loads plugin `entry` (`name` or `name@version`): this host's file's, or the database's
    /// version under its policy (loaded once per file and policy).
    async fn resolve_plugin(
        &self,
        state: &State,
        entry: &str,
        desired: &Desired,
        plugins_in_use: &mut HashMap<String, Plugin>,
        fingerprint: &mut Vec<String>,
    ) -> Result<Plugin, Unbuildable> {
        let parts = &self.inner.parts;
        let (name, pinned) = plugin_ref(entry);
        Ok(match parts.file.plugins.get(name) {
            Some(file) => {
                let version = &file.plugin.info().version;
                if pinned.is_some_and(|v| v != version) {
                    return Err(format!(
                        "`{entry}`: this host's file defines plugin `{name}` at version {version}"
                    )
                    .into());
                }
                fingerprint.push(format!("file:{name}"));
                file.plugin.clone()
            }
            None => {
                let version = desired.version(name, pinned)?;
                let policy = desired.policy(name);
                let key = format!("{}#{}", version.sha256, fingerprint_of(&policy));
                let plugin = match state.plugins.get(&key).or_else(|| plugins_in_use.get(&key)) {
                    Some(plugin) => plugin.clone(),
                    None => {
                        let bytes = parts
                            .store
                            .plugin_file(&version.sha256)
                            .await
                            .map_err(|e| fault(e.to_string()))?
                            .ok_or_else(|| {
                                fault(format!(
                                    "the file of `{name}@{}` is missing",
                                    version.version
                                ))
                            })?;
                        parts
                            .runtime
                            .load(&bytes, policy.settings(name), parts.services.clone())
                            .await
                            .map_err(|e| {
                                fault(format!("plugin `{name}@{}`: {e}", version.version))
                            })?
                    }
                };
                plugins_in_use.insert(key.clone(), plugin.clone());
                fingerprint.push(key);
                plugin
            }
        })
    }

    /// Builds route `spec` (which runs subscription `subscription`, if given).
    async fn resolve_route(
        &self,
        state: &State,
        spec: &RouteConfig,
        subscription: Option<&crate::router::Subscription>,
        desired: &Desired,
        plugins_in_use: &mut HashMap<String, Plugin>,
        mut fingerprint: Vec<String>,
    ) -> Result<Resolved, Unbuildable> {
        let parts = &self.inner.parts;
        let mut transformers = Vec::new();
        let mut handler = None;
        let mut labels = Vec::new();
        fingerprint.push(fingerprint_of(spec));
        if let Some(subscription) = subscription {
            fingerprint.push(format!(
                "subscription:{}:{}:{}",
                subscription.exchange, subscription.pattern, subscription.queue
            ));
        }
        for (position, entry) in spec.through.iter().enumerate() {
            let plugin = self
                .resolve_plugin(state, entry, desired, plugins_in_use, &mut fingerprint)
                .await?;
            let name = plugin_ref(entry).0;
            labels.push(format!("{name}@{}", plugin.info().version));
            match plugin.info().kind {
                PluginKind::Transformer if handler.is_none() => transformers.push(plugin),
                PluginKind::Handler if position + 1 == spec.through.len() => handler = Some(plugin),
                kind => {
                    return Err(format!(
                        "`{entry}` is a {}; a chain is transformers, optionally ending in one handler",
                        kind.as_str()
                    )
                    .into());
                }
            }
        }
        if handler.is_none() && spec.to.is_none() {
            return Err(String::from("`to` is required unless the chain ends in a handler").into());
        }
        let parse = |text: &str| Address::parse(text).map_err(|e| e.to_string());
        let from = parse(&spec.from)?;
        let to = spec.to.as_deref().map(parse).transpose()?;
        let reply_to = spec.reply_to.as_deref().map(parse).transpose()?;
        let dead_letter = match &spec.dead_letter {
            Some(address) => parse(address)?,
            None => from.sibling(format!("{}.dead", from.address)),
        };
        for address in [
            Some(&from),
            to.as_ref(),
            Some(&dead_letter),
            reply_to.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            match desired.connections.get(&address.connection) {
                Some(connection) => fingerprint.push(format!(
                    "{}={}",
                    address.connection,
                    fingerprint_of(&connection.spec)
                )),
                None => {
                    return Err(format!(
                        "`{address}` names connection `{}`, which does not exist",
                        address.connection
                    )
                    .into());
                }
            }
        }
        // A limit declared on an embedded input queue holds for its route too.
        let max_deliveries = desired
            .connections
            .get(&from.connection)
            .and_then(|c| c.spec.max_deliveries(&from.address))
            .map_or(spec.max_deliveries, |q| q.min(spec.max_deliveries));
        let route = Route {
            name: spec.name.clone(),
            from,
            to,
            transformers,
            handler,
            concurrency: spec.concurrency,
            retry: spec.retry.clone(),
            dead_letter,
            max_message_bytes: parts.max_message_bytes,
            max_outputs: spec.max_outputs.unwrap_or(parts.max_outputs),
            max_deliveries,
            reply_to_allow: spec.reply_grants().map_err(|e| e.to_string())?,
            reply_to: reply_to.clone(),
            durable: spec.durable,
            inbox: spec.inbox,
            subscription: subscription.cloned(),
            filter: None,
            retry_in_place: false,
        };
        Ok(Resolved {
            runner: Runner::Route(Box::new(route)),
            fingerprint: fingerprint.join("\n"),
            plugins: labels,
        })
    }
}

/// A definition as text, to tell whether it changed.
fn fingerprint_of(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("definitions serialise")
}

/// Runs one route until its shutdown fires: if its runner stops with an error (a consumer
/// lost, a panic), it is started again after a backoff.
/// When a unit's runner starts and what it tells its successor.
struct Lifecycle {
    shutdown: Shutdown,
    /// The replaced unit's `closed`: this runner reads only once that is true (or the old unit
    /// has ended). A queue's consumer closes at once; a Kafka member has then left its group,
    /// so the group never holds the old and the new member of one route at once, and no
    /// partition's records are handled by both chains.
    after: Option<watch::Receiver<bool>>,
    closed: Arc<watch::Sender<bool>>,
}

async fn run_route(
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
async fn ensure_queues(
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
