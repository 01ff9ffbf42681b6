//! Per-plugin and per-call state, and the host side of every import.
//!
//! Three tiers, as in Spin: the process-wide engine and linker live in [`super::Runtime`];
//! what one plugin was given (name, config, grants, limits, services) is a [`PluginContext`]
//! behind an `Arc`; what one call or one instance needs is a [`CallState`], the data of a
//! fresh `Store`. A reused instance keeps its `CallState`, reset at the start of every call.

use super::bindings::{config, daemon_host, host, log, types};
use super::journal::{Journal, Level, LogLine, SharedJournal, Source};
use super::services::{HostServices, KvWrite};
use crate::grant::{Access, Grants};
use crate::message::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The most messages one call may publish, and their total payload: a handler that loops on
/// `publish` fails its call instead of filling the host's memory.
const MAX_PUBLISHED: usize = 1_000;
const MAX_PUBLISHED_BYTES: usize = 16 * 1024 * 1024;

/// What one plugin was given by the admin; shared by all its instances.
pub(crate) struct PluginContext {
    pub name: Arc<str>,
    pub config: BTreeMap<String, String>,
    pub grants: Grants,
    pub memory_limit: usize,
    pub cpu_limit: Duration,
    /// Upper bound on one `request`/`receive` wait, whatever the plugin asks.
    pub max_wait: Duration,
    pub services: Arc<dyn HostServices>,
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
pub(crate) struct CpuClock {
    pub limit: Duration,
    pub used: Duration,
    pub exceeded: bool,
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
        self.used += Duration::from_nanos(now.saturating_sub(since));
        self.exceeded = self.used >= self.limit;
        self.exceeded
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
    published_bytes: usize,
    /// Set when a host import failed in a way the plugin cannot see (too many publications);
    /// reported as the call's error.
    pub refused: Option<String>,
    /// kv writes held until the call succeeds, by key: each value, and the bytes the key held
    /// in the store when it was written (for the quota of later writes in the same call).
    pub kv_held: BTreeMap<String, (Vec<u8>, usize)>,
    /// Whether kv writes are held (a call on a message) or written at once (a daemon).
    pub hold_kv: bool,
}

impl CallState {
    pub fn new(plugin: Arc<PluginContext>) -> Self {
        let journal = Journal::shared(plugin.name.clone());
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
            published_bytes: 0,
            refused: None,
            kv_held: BTreeMap::new(),
            hold_kv: true,
            plugin,
        }
    }

    /// Readies a (possibly reused) instance's state for the next call.
    pub fn begin_call(&mut self) {
        self.cpu = CpuClock::new(self.plugin.cpu_limit);
        self.memory.refused = None;
        self.published.clear();
        self.published_bytes = 0;
        self.refused = None;
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

    fn wait_bound(&self, timeout_ms: u32) -> Duration {
        Duration::from_millis(timeout_ms.into()).min(self.plugin.max_wait)
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

impl types::Host for CallState {}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, text: String) {
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

impl config::Host for CallState {
    async fn get(&mut self, key: String) -> Option<String> {
        self.plugin.config.get(&key).cloned()
    }

    async fn keys(&mut self) -> Vec<String> {
        self.plugin.config.keys().cloned().collect()
    }
}

impl CallState {
    /// Holds `message` for `destination` until the call succeeds, within the call's limits.
    fn hold(&mut self, destination: String, message: Message) -> Result<(), String> {
        if self.published.len() >= MAX_PUBLISHED
            || self.published_bytes + message.payload.len() > MAX_PUBLISHED_BYTES
        {
            let why = format!(
                "one call may publish at most {MAX_PUBLISHED} messages and {MAX_PUBLISHED_BYTES} bytes"
            );
            self.refused = Some(why.clone());
            return Err(why);
        }
        self.published_bytes += message.payload.len();
        self.published.push(Publication {
            destination,
            message,
        });
        Ok(())
    }
}

impl host::Host for CallState {
    async fn publish(&mut self, destination: String, msg: types::Message) -> Result<(), String> {
        self.check_grant(Access::Publish, &destination)?;
        self.hold(destination, msg.into())
    }

    async fn publish_event(
        &mut self,
        model: String,
        event: String,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        let message = crate::events::message(&model, &event, payload).map_err(|e| e.to_string())?;
        let destination = self.plugin.services.event_destination(&message.topic)?;
        self.check_grant(Access::Publish, &destination)?;
        self.hold(destination, message)
    }

    async fn request(
        &mut self,
        destination: String,
        msg: types::Message,
        timeout_ms: u32,
    ) -> Result<types::Message, String> {
        self.check_grant(Access::Request, &destination)?;
        let timeout = self.wait_bound(timeout_ms);
        self.cpu.charge();
        let plugin = self.plugin.clone();
        let reply = plugin
            .services
            .request(&plugin.name, &destination, msg.into(), timeout)
            .await;
        self.cpu.resume();
        reply.map(|m| (&m).into())
    }

    async fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
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

impl daemon_host::Host for CallState {
    async fn sleep(&mut self, ms: u32) -> bool {
        let mut shutdown = self.plugin.shutdown.clone();
        if *shutdown.borrow() {
            return false;
        }
        self.cpu.charge();
        let keep_running = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms.into())) => true,
            _ = shutdown.wait_for(|stop| *stop) => false,
        };
        self.cpu.resume();
        keep_running
    }

    async fn receive(
        &mut self,
        source: String,
        timeout_ms: u32,
    ) -> Result<Option<types::Message>, String> {
        self.check_grant(Access::Receive, &source)?;
        let timeout = self.wait_bound(timeout_ms);
        self.cpu.charge();
        let plugin = self.plugin.clone();
        let received = plugin
            .services
            .receive(&plugin.name, &source, timeout)
            .await;
        self.cpu.resume();
        received.map(|m| m.map(|m| (&m).into()))
    }
}
