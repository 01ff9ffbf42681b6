//! Per-plugin and per-call state, and the host side of every import.
//!
//! Three tiers, as in Spin: the process-wide engine and linker live in [`super::Runtime`];
//! what one plugin was given (name, config, grants, limits, services) is a [`PluginContext`]
//! behind an `Arc`; what one call or one instance needs is a [`CallState`], the data of a
//! fresh `Store`. A reused instance keeps its `CallState`, reset at the start of every call.

use super::bindings::{config, daemon_host, exception, host, log, types};
use super::journal::{Journal, Level, LogGate, LogLine, SharedJournal, Source};
use super::outbound::{Outbound, Policy};
use super::services::HostServices;
use crate::contract::KvWrite;
use crate::grant::{Access, Grants};
use crate::message::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The most messages one call may publish: a handler that loops on `publish` fails its call
/// instead of filling the host's memory. Their bytes count toward the call's output budget.
const MAX_PUBLISHED: usize = 1_000;

/// A daemon may use at most its CPU limit in each window of this much wall-clock time: its
/// share of a core is the limit over the window (10% with the default limit of 1 s).
pub(crate) const DAEMON_CPU_WINDOW: Duration = Duration::from_secs(10);

/// What one plugin was given by the admin; shared by all its instances.
pub(crate) struct PluginContext {
    pub name: Arc<str>,
    pub config: BTreeMap<String, String>,
    pub grants: Grants,
    pub memory_limit: usize,
    pub cpu_limit: Duration,
    /// Wall-clock time one call may take, its waits in host calls included.
    pub wall_limit: Duration,
    /// The most bytes one call may hand the host (see [`CallState::charge_output`]).
    pub max_output_bytes: usize,
    /// Upper bound on one `request`/`receive` wait, whatever the plugin asks.
    pub max_wait: Duration,
    /// The plugin's log rate, shared by its instances.
    pub log_gate: Arc<LogGate>,
    pub services: Arc<dyn HostServices>,
    /// What it may do over outbound HTTP (see [`super::outbound`]).
    pub outbound: Arc<Policy>,
    pub shutdown: watch::Receiver<bool>,
}

/// A message a handler or daemon published during a call, held until the call succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// `connection:address`, already checked against the plugin's grants.
    pub destination: String,
    pub message: Message,
}

/// Refuses memory growth past the plugin's limit and remembers that it did, because the
/// guest usually turns a refused growth into an `unreachable` trap that says nothing of memory.
pub(crate) struct MemoryGuard {
    limit: usize,
    pub peak: usize,
    pub refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryGuard {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Time a call's guest code has been running. Charged at every epoch tick; the time a call
/// spends yielded to other tasks, or waiting in a host call such as `request`, is not charged.
/// A call's budget is its limit; a daemon's is its limit in each [`DAEMON_CPU_WINDOW`] of
/// wall-clock time, so calling the host (even `log`) does not give a spinning daemon more.
pub(crate) struct CpuClock {
    pub limit: Duration,
    pub used: Duration,
    pub exceeded: bool,
    /// All the CPU time charged, earlier windows too (a daemon's).
    pub total: Duration,
    /// For a daemon: when its current window began; `used` counts that window only.
    window_start: Option<Instant>,
    origin: Instant,
    /// Nanoseconds after `origin` when the guest last started or resumed running. Shared with
    /// the future that resumes the guest after a yield, which sets it.
    resumed_at: Arc<AtomicU64>,
}

impl CpuClock {
    fn new(limit: Duration) -> Self {
        CpuClock {
            limit,
            used: Duration::ZERO,
            exceeded: false,
            total: Duration::ZERO,
            window_start: None,
            origin: Instant::now(),
            resumed_at: Arc::new(AtomicU64::new(0)),
        }
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Charges the time since the guest last resumed; returns whether it is over its limit.
    pub fn charge(&mut self) -> bool {
        let now = self.now_ns();
        let since = self.resumed_at.swap(now, Ordering::Relaxed);
        let spent = Duration::from_nanos(now.saturating_sub(since));
        self.used += spent;
        self.total += spent;
        self.exceeded = self.used >= self.limit;
        // A daemon's window that has run out starts a new one, unless this charge already
        // put it over its budget.
        if let Some(start) = self.window_start
            && !self.exceeded
            && start.elapsed() >= DAEMON_CPU_WINDOW
        {
            self.window_start = Some(Instant::now());
            self.used = Duration::ZERO;
        }
        self.exceeded
    }

    /// Budgets the clock per [`DAEMON_CPU_WINDOW`], from now.
    pub fn windowed(&mut self) {
        self.window_start = Some(Instant::now());
    }

    /// Marks the guest as running again from now.
    pub fn resume(&self) {
        self.resumed_at.store(self.now_ns(), Ordering::Relaxed);
    }

    /// A handle the yield future uses to mark the guest as running again.
    pub fn resume_handle(&self) -> impl FnOnce() + Send + 'static {
        let resumed_at = self.resumed_at.clone();
        let origin = self.origin;
        move || resumed_at.store(origin.elapsed().as_nanos() as u64, Ordering::Relaxed)
    }
}

/// The data of one `Store`: one instance, one call at a time.
pub(crate) struct CallState {
    pub plugin: Arc<PluginContext>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: MemoryGuard,
    pub cpu: CpuClock,
    pub journal: SharedJournal,
    pub published: Vec<Publication>,
    /// Bytes the call has handed the host so far (see [`CallState::charge_output`]).
    pub output_used: usize,
    /// Set when the call went over its output budget, with what went over: the call fails
    /// with an output-limit error even if the plugin ignored the refusal.
    pub over_output: Option<String>,
    /// Set when a host import failed in a way the plugin cannot see (too many publications);
    /// reported as the call's error.
    pub refused: Option<String>,
    /// When the current call must be over, waits in host calls included.
    pub wall_deadline: Option<Instant>,
    /// kv writes held until the call succeeds, by key: each value, and the bytes the key held
    /// in the store when it was written (for the quota of later writes in the same call).
    pub kv_held: BTreeMap<String, (Vec<u8>, usize)>,
    /// Whether kv writes are held (a call on a message) or written at once (a daemon).
    pub hold_kv: bool,
    /// Set while the instance runs a daemon: publications go out at once, and what it takes
    /// is held here until it settles it.
    pub daemon: Option<DaemonRun>,
    /// The plugin's own name for the failure it is about to return.
    pub exception: Option<super::error::Exception>,
    http: WasiHttpCtx,
    /// Outbound HTTP: the grants checked, the requests counted.
    pub outbound: Outbound,
}

/// The most messages a daemon may hold taken and unsettled; past it `take` refuses until it
/// settles some.
const MAX_HELD: usize = 1_000;
/// The most sources one run of a daemon may have open (each a consumer on its broker).
const MAX_SOURCES: usize = 64;

/// What one run of a daemon holds: its stop signal, its open sources and what it took.
pub(crate) struct DaemonRun {
    /// The daemon's name (its unit's): what its events queues are named after.
    unit: String,
    stop: watch::Receiver<bool>,
    inboxes: std::collections::HashMap<String, Box<dyn super::services::Inbox>>,
    held: std::collections::HashMap<u64, Box<dyn super::services::Settlement>>,
    next_tag: u64,
}

impl DaemonRun {
    pub fn new(unit: &str, stop: watch::Receiver<bool>) -> Self {
        DaemonRun {
            unit: unit.to_owned(),
            stop,
            inboxes: Default::default(),
            held: Default::default(),
            next_tag: 0,
        }
    }

    /// Gives back everything still held and closes every source: what a daemon that
    /// returned, failed or was stopped had not settled goes back to where it came from.
    /// Returns how many messages went back.
    pub async fn release(self) -> usize {
        let returned = self.held.len();
        for (_, settle) in self.held {
            if let Err(error) = settle.nack(true, None).await {
                tracing::warn!(%error, "could not give a daemon's unsettled message back; the broker returns it when the consumer closes");
            }
        }
        for (_, inbox) in self.inboxes {
            inbox.close().await;
        }
        returned
    }
}

/// Resolves when `stop` turns true (never, if its sender is gone without it).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl CallState {
    pub fn new(plugin: Arc<PluginContext>) -> Self {
        let journal = Journal::shared(plugin.name.clone(), plugin.log_gate.clone());
        // No preopened directories, no environment, no arguments, no network: the sandbox
        // gives a plugin clocks, randomness and its own stdout/stderr, which go to the log.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(super::journal::GuestOutput {
            journal: journal.clone(),
            source: Source::Stdout,
        })
        .stderr(super::journal::GuestOutput {
            journal: journal.clone(),
            source: Source::Stderr,
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
        let journal_for_http = journal.clone();
        CallState {
            memory: MemoryGuard {
                limit: plugin.memory_limit,
                peak: 0,
                refused: None,
            },
            cpu: CpuClock::new(plugin.cpu_limit),
            wasi: wasi.build(),
            table: ResourceTable::new(),
            journal,
            published: Vec::new(),
            output_used: 0,
            over_output: None,
            refused: None,
            wall_deadline: None,
            kv_held: BTreeMap::new(),
            hold_kv: true,
            daemon: None,
            exception: None,
            http: WasiHttpCtx::new(),
            outbound: Outbound::new(plugin.outbound.clone(), journal_for_http),
            plugin,
        }
    }

    /// Readies a (possibly reused) instance's state for the next call.
    pub fn begin_call(&mut self) {
        self.cpu = CpuClock::new(self.plugin.cpu_limit);
        self.memory.refused = None;
        self.published.clear();
        self.output_used = 0;
        self.over_output = None;
        self.refused = None;
        self.wall_deadline = None;
        self.outbound.begin_call();
        self.exception = None;
        self.kv_held.clear();
    }

    /// The kv writes the call held, taken.
    pub fn take_kv_writes(&mut self) -> Vec<KvWrite> {
        std::mem::take(&mut self.kv_held)
            .into_iter()
            .map(|(key, (value, _))| KvWrite {
                plugin: self.plugin.name.to_string(),
                key,
                value,
            })
            .collect()
    }

    /// What the call said, flushed and taken.
    pub fn take_logs(&mut self) -> (Vec<LogLine>, usize) {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn log(&self, level: Level, text: String) {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(level, Source::Log, text);
    }

    fn check_grant(&self, access: Access, destination: &str) -> Result<(), String> {
        match destination.split_once(':') {
            Some((connection, address)) if !connection.is_empty() && !address.is_empty() => {}
            _ => {
                return Err(format!(
                    "`{destination}` is not a destination: write it as connection:address"
                ));
            }
        }
        if self.plugin.grants.allows(access, destination) {
            Ok(())
        } else {
            Err(format!(
                "plugin `{}` has no grant to {access} `{destination}` (grant `{access}:{destination}` or a glob matching it)",
                self.plugin.name
            ))
        }
    }

    /// A host call: a daemon's lines logged so far, which went to the host's log as they
    /// came, are let go (a daemon's run never ends, so its journal would otherwise hold its
    /// first thousand lines for ever). Its CPU budget is per window, not per host call.
    fn touch(&mut self) {
        if self.daemon.is_some() {
            self.take_logs();
        }
    }

    /// Counts `bytes` that the plugin hands the host (`what`: results, a publication, a
    /// request, a kv write) against the call's output budget. Past it the import is refused
    /// and the call fails with an output-limit error, whatever the plugin does next. Each
    /// handover was already bounded before it was copied: the store's hostcall fuel is the
    /// same budget, and wasmtime checks it from the guest's list and string lengths. A
    /// daemon's run never ends, so each of its handovers is checked alone.
    pub fn charge_output(&mut self, what: &str, bytes: usize) -> Result<(), String> {
        let limit = self.plugin.max_output_bytes;
        let total = if self.daemon.is_some() {
            bytes
        } else {
            self.output_used.saturating_add(bytes)
        };
        if total > limit {
            let why = format!(
                "{what} of {bytes} bytes would take the call's output to {total} bytes, over its limit of {limit} bytes (output_mb)"
            );
            self.over_output.get_or_insert_with(|| why.clone());
            return Err(why);
        }
        if self.daemon.is_none() {
            self.output_used = total;
        }
        Ok(())
    }

    /// Whether the daemon was asked to stop (by its supervisor or the host's shutdown).
    fn stopping(&self) -> bool {
        *self.plugin.shutdown.borrow() || self.daemon.as_ref().is_some_and(|d| *d.stop.borrow())
    }

    /// Resolves when the daemon is asked to stop.
    fn stop_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut shutdown = self.plugin.shutdown.clone();
        let mut stop = self.daemon.as_ref().map(|d| d.stop.clone());
        async move {
            match &mut stop {
                Some(stop) => tokio::select! {
                    _ = stopped(&mut shutdown) => {}
                    _ = stopped(stop) => {}
                },
                None => stopped(&mut shutdown).await,
            }
        }
    }

    /// How long a host call may wait: what the plugin asks, at most `max_wait`, and never
    /// past the call's wall-clock deadline (the wait counts toward it).
    fn wait_bound(&self, timeout_ms: u32) -> Duration {
        let asked = Duration::from_millis(timeout_ms.into()).min(self.plugin.max_wait);
        match self.wall_deadline {
            Some(deadline) => asked.min(deadline.saturating_duration_since(Instant::now())),
            None => asked,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl types::Host for CallState {}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, text: String) {
        self.touch();
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        CallState::log(self, level, text);
    }
}

impl exception::Host for CallState {
    async fn name_failure(&mut self, name: String, kind: String) {
        // Both strings came through the hostcall fuel, bounded by the output budget; what is
        // kept is at most 255 bytes each.
        self.exception = super::error::Exception::new(name, kind);
    }
}

impl config::Host for CallState {
    async fn get(&mut self, key: String) -> Option<String> {
        self.plugin.config.get(&key).cloned()
    }

    async fn keys(&mut self) -> Vec<String> {
        self.plugin.config.keys().cloned().collect()
    }
}

impl CallState {
    /// A daemon's message goes out now; a handler's is held until its call succeeds.
    async fn send_or_hold(&mut self, destination: String, message: Message) -> Result<(), String> {
        if self.daemon.is_none() {
            return self.hold(destination, message);
        }
        self.cpu.charge();
        let plugin = self.plugin.clone();
        let sent = plugin
            .services
            .publish(&plugin.name, &destination, message)
            .await;
        self.cpu.resume();
        sent
    }

    /// Holds `message` for `destination` until the call succeeds, within the call's limits.
    fn hold(&mut self, destination: String, message: Message) -> Result<(), String> {
        if self.published.len() >= MAX_PUBLISHED {
            let why = format!("one call may publish at most {MAX_PUBLISHED} messages");
            self.refused = Some(why.clone());
            return Err(why);
        }
        self.published.push(Publication {
            destination,
            message,
        });
        Ok(())
    }
}

impl host::Host for CallState {
    async fn publish(&mut self, destination: String, msg: types::Message) -> Result<(), String> {
        self.touch();
        let message = Message::from(msg);
        self.charge_output("a publication", destination.len() + message.size_bytes())?;
        self.check_grant(Access::Publish, &destination)?;
        self.send_or_hold(destination, message).await
    }

    async fn publish_event(
        &mut self,
        model: String,
        event: String,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        self.touch();
        self.charge_output("an event", model.len() + event.len() + payload.len())?;
        let mut message =
            crate::event::message(&model, &event, payload).map_err(|e| e.to_string())?;
        // Grants name the key as the plugin wrote it; it goes out behind the host's prefix.
        let granted = self.plugin.services.event_destination(&message.topic)?;
        self.check_grant(Access::Publish, &granted)?;
        message.topic = self.plugin.services.event_key(&message.topic);
        let destination = self.plugin.services.event_destination(&message.topic)?;
        self.send_or_hold(destination, message).await
    }

    async fn request(
        &mut self,
        destination: String,
        msg: types::Message,
        timeout_ms: u32,
    ) -> Result<types::Message, String> {
        self.touch();
        let message = Message::from(msg);
        self.charge_output("a request", destination.len() + message.size_bytes())?;
        self.check_grant(Access::Request, &destination)?;
        let timeout = self.wait_bound(timeout_ms);
        self.cpu.charge();
        let plugin = self.plugin.clone();
        let reply = plugin
            .services
            .request(&plugin.name, &destination, message, timeout)
            .await;
        self.cpu.resume();
        reply.map(|m| (&m).into())
    }

    async fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.touch();
        if let Some((value, _)) = self.kv_held.get(&key) {
            return Some(value.clone());
        }
        let plugin = self.plugin.clone();
        match plugin.services.kv_get(&plugin.name, &key).await {
            Ok(value) => value,
            Err(e) => {
                self.log(Level::Warn, format!("kv-get `{key}` failed: {e}"));
                None
            }
        }
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.touch();
        self.charge_output("a kv write", key.len() + value.len())?;
        let plugin = self.plugin.clone();
        if !self.hold_kv {
            return plugin.services.kv_set(&plugin.name, &key, value).await;
        }
        // Held until the call succeeds. The quota counts the store as it is now with this
        // call's other held writes in place of what their keys held.
        let (stored_total, stored_key) = plugin.services.kv_usage(&plugin.name, &key).await?;
        let delta: isize = self
            .kv_held
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(k, (v, was))| (k.len() + v.len()) as isize - *was as isize)
            .sum();
        let total = (stored_total as isize + delta).max(stored_key as isize) as usize;
        plugin
            .services
            .kv_limits()
            .check(&key, &value, total, stored_key)?;
        self.kv_held.insert(key, (value, stored_key));
        Ok(())
    }
}

impl CallState {
    /// Waits up to `timeout_ms` for the next message of `source` and holds it, under a tag.
    async fn take_one(
        &mut self,
        source: String,
        timeout_ms: u32,
    ) -> Result<Option<(u64, Message)>, String> {
        self.touch();
        self.check_grant(Access::Receive, &source)?;
        let timeout = self.wait_bound(timeout_ms);
        let plugin = self.plugin.clone();
        let stop = self.stop_signal();
        tokio::pin!(stop);
        if self.stopping() {
            return Ok(None);
        }
        let Some(run) = self.daemon.as_mut() else {
            return Err("only a daemon can receive".into());
        };
        if run.held.len() >= MAX_HELD {
            return Err(format!(
                "the daemon holds {MAX_HELD} messages it has not acked or nacked; settle some first"
            ));
        }
        self.cpu.charge();
        let full = run.inboxes.len() >= MAX_SOURCES;
        let inbox = match run.inboxes.entry(source.clone()) {
            std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::hash_map::Entry::Vacant(_) if full => {
                self.cpu.resume();
                return Err(format!(
                    "a daemon may take from at most {MAX_SOURCES} sources in one run"
                ));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                let opened = tokio::select! {
                    opened = plugin.services.open_inbox(&run.unit, &source) => opened,
                    _ = &mut stop => {
                        self.cpu.resume();
                        return Ok(None);
                    }
                };
                match opened {
                    Ok(inbox) => slot.insert(inbox),
                    Err(error) => {
                        self.cpu.resume();
                        return Err(error);
                    }
                }
            }
        };
        let next = tokio::select! {
            next = inbox.next(timeout) => next,
            _ = &mut stop => Ok(None),
        };
        self.cpu.resume();
        match next {
            Ok(Some(taken)) => {
                run.next_tag += 1;
                run.held.insert(run.next_tag, taken.settle);
                Ok(Some((run.next_tag, taken.message)))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                // The source is gone (a dropped connection): the next take opens it again.
                if let Some(inbox) = run.inboxes.remove(&source) {
                    inbox.close().await;
                }
                Err(error)
            }
        }
    }

    /// The settlement of tag `tag`, taken out of what the daemon holds.
    fn settlement(&mut self, tag: u64) -> Result<Box<dyn super::services::Settlement>, String> {
        self.touch();
        self.daemon
            .as_mut()
            .and_then(|run| run.held.remove(&tag))
            .ok_or_else(|| format!("no message taken with tag {tag} is held (settled already?)"))
    }
}

impl daemon_host::Host for CallState {
    async fn sleep(&mut self, ms: u32) -> bool {
        self.touch();
        if self.stopping() {
            return false;
        }
        let stop = self.stop_signal();
        self.cpu.charge();
        let keep_running = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms.into())) => true,
            _ = stop => false,
        };
        self.cpu.resume();
        keep_running
    }

    async fn receive(
        &mut self,
        source: String,
        timeout_ms: u32,
    ) -> Result<Option<types::Message>, String> {
        let Some((tag, message)) = self.take_one(source, timeout_ms).await? else {
            return Ok(None);
        };
        self.settlement(tag)?.ack().await?;
        Ok(Some((&message).into()))
    }

    async fn take(
        &mut self,
        source: String,
        timeout_ms: u32,
    ) -> Result<Option<daemon_host::Delivery>, String> {
        Ok(self
            .take_one(source, timeout_ms)
            .await?
            .map(|(tag, message)| daemon_host::Delivery {
                tag,
                msg: (&message).into(),
            }))
    }

    async fn ack(&mut self, tag: u64) -> Result<(), String> {
        self.settlement(tag)?.ack().await
    }

    async fn nack(&mut self, tag: u64, requeue: bool) -> Result<(), String> {
        // A name the daemon gave just before (`name-failure`) names this dead letter.
        let exception = self.exception.take();
        self.settlement(tag)?.nack(requeue, exception).await
    }
}
