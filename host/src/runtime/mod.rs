//! The plugin runtime: the only module that knows wasmtime.
//!
//! A [`Runtime`] holds the process-wide pieces: one engine with the pooling allocator, one
//! linker that provides every import of the `wharf:plugin@0.1` worlds plus WASI, and the
//! thread that ticks the engine's epoch. [`Runtime::load`] checks a plugin file, compiles it
//! once, pre-instantiates it and asks it to describe itself; the resulting [`Plugin`] is
//! called per message with a fresh instance (or a reused one, for plugins that declare
//! themselves reusable).
//!
//! Invariants:
//! - A plugin can never stop the host: a trap, a deadline or a memory breach ends that one
//!   call with a [`PluginError`] naming the plugin and the cause, and its instance is dropped.
//! - A spinning guest cannot starve other tasks: the epoch ticks on a plain OS thread, and at
//!   every tick a running guest is charged CPU time and yields to the async runtime.
//! - Nothing is granted by default: no files, no sockets, no environment; `publish`,
//!   `request` and `receive` only to what the plugin's grants match, outbound HTTP only to
//!   the origins its `http:` grants name.

mod bindings;
mod cache;
mod error;
mod journal;
mod load;
mod outbound;
mod plugin;
mod services;
mod state;

pub use crate::contract::{KvLimits, KvWrite, PluginInfo, PluginKind};
pub use bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION};
pub use error::{Exception, InvalidPlugin, PluginError};
pub use journal::{Level, LogLine, Source};
pub use plugin::{CallCost, CallReport, DaemonExit, Plugin, PluginSettings};
pub use services::{HostFuture, HostServices, Inbox, Settlement, Standalone, Taken};
pub use state::Publication;

use state::CallState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Process-wide limits of the runtime; each plugin's own limits are in [`PluginSettings`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances that may exist at once across all plugins (the pool's size). Each loaded
    /// plugin reserves its own `max_instances` of them, so no plugin can take another's.
    pub max_instances: u32,
    /// The most memory any plugin may be given; each plugin's limit is at most this.
    pub max_memory_bytes: usize,
    /// How often running guests are charged CPU time and yield. Smaller is fairer and finer
    /// grained deadlines; each tick costs a running guest one callback.
    pub tick: Duration,
    /// Largest plugin file accepted.
    pub max_plugin_bytes: usize,
    /// Where compiled components are kept across restarts and shared by hosts on this
    /// machine, by the file's hash and the engine's settings; `None` compiles every file at
    /// every start. Made private (0700); a folder another user could write is refused, and
    /// each artifact is checked against its recorded hash before it is loaded.
    pub cache_dir: Option<std::path::PathBuf>,
    /// A PEM file of CA certificates that plugins' outbound HTTPS trusts besides the
    /// system's (a private API's CA).
    pub outbound_ca: Option<std::path::PathBuf>,
}

pub use crate::settings::{DEFAULT_INSTANCE_POOL, default_cache_dir};

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: DEFAULT_INSTANCE_POOL,
            max_memory_bytes: 1024 * 1024 * 1024,
            tick: Duration::from_millis(1),
            max_plugin_bytes: 64 * 1024 * 1024,
            cache_dir: None,
            outbound_ca: None,
        }
    }
}

/// The runtime could not start (an engine setting the platform refuses).
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin runtime: {0}")]
pub struct RuntimeError(String);

/// The process-wide tier: engine, linker, epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<CallState>,
    config: RuntimeConfig,
    shutdown: watch::Sender<bool>,
    /// Pool slots reserved by the plugins loaded now (each its `max_instances`).
    reserved: std::sync::Mutex<u32>,
    /// Compiled components by the SHA-256 of their file: loading a file again (other
    /// settings, another version's rollback) skips the compile.
    components: std::sync::Mutex<std::collections::HashMap<String, wasmtime::component::Component>>,
    /// Compiled components on disk (`cache_dir`), checked before they are loaded.
    disk: Option<Arc<cache::CompileCache>>,
    /// Plugins' outbound HTTP client (`wasi:http`), shared by every instance.
    http: reqwest::Client,
    /// Held for its `Drop`, which stops the epoch thread.
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let engine_config = engine_config(&config);
        let engine = Engine::new(&engine_config).map_err(|e| RuntimeError(e.to_string()))?;
        // Native code is loaded from the cache: the folder is this user's alone (made 0700),
        // one that another user could write is refused, and each artifact is checked.
        let disk = match &config.cache_dir {
            Some(dir) => Some(Arc::new(cache::CompileCache::open(dir, &engine).map_err(
                |e| RuntimeError(format!("the compile cache in {}: {e}", dir.display())),
            )?)),
            None => None,
        };
        let linker = linker(&engine).map_err(|e| RuntimeError(e.to_string()))?;
        let http = outbound::client(config.outbound_ca.as_deref())
            .map_err(|e| RuntimeError(format!("server.outbound_ca: {e}")))?;
        let ticker = EpochTicker::start(engine.clone(), config.tick);
        let (shutdown, _) = watch::channel(false);
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                config,
                shutdown,
                reserved: std::sync::Mutex::new(0),
                components: Default::default(),
                disk,
                http,
                _ticker: ticker,
            }),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Tells daemons to return (their `sleep` answers false).
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    fn linker(&self) -> &Linker<CallState> {
        &self.inner.linker
    }

    /// The compiled component of the file with this hash, if one was compiled.
    fn compiled(&self, sha256: &str) -> Option<wasmtime::component::Component> {
        let components = self
            .inner
            .components
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        components.get(sha256).cloned()
    }

    /// Keeps a compiled component. At most 256 are kept; past that the map starts again
    /// (recompiling is always correct, only slower).
    fn keep_compiled(&self, sha256: String, component: wasmtime::component::Component) {
        let mut components = self
            .inner
            .components
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if components.len() >= 256 {
            components.clear();
        }
        components.insert(sha256, component);
    }

    fn http_client(&self) -> reqwest::Client {
        self.inner.http.clone()
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Reserves `instances` slots of the pool for one plugin, for as long as the returned
    /// reservation lives. A plugin whose instances would not fit beside those of the plugins
    /// loaded already is refused: otherwise a plugin that holds its instances (waiting, or
    /// kept idle for reuse) could leave the others none.
    fn reserve(&self, instances: u32) -> Result<Reservation, InvalidPlugin> {
        let pool = self.config().max_instances;
        let mut reserved = self
            .inner
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if reserved.saturating_add(instances) > pool {
            return Err(InvalidPlugin::Settings(format!(
                "max_instances {instances} does not fit: the host's instance pool holds {pool} and the plugins loaded reserve {} of them (lower this plugin's max_instances, or raise server.instance_pool)",
                *reserved
            )));
        }
        *reserved += instances;
        Ok(Reservation {
            runtime: self.clone(),
            instances,
        })
    }

    /// Pool slots the loaded plugins reserve, and the pool's size.
    pub fn pool_usage(&self) -> (u32, u32) {
        let reserved = *self
            .inner
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (reserved, self.config().max_instances)
    }
}

/// A plugin's share of the instance pool, given back when the plugin is dropped.
pub(crate) struct Reservation {
    runtime: Runtime,
    instances: u32,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self
            .runtime
            .inner
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *reserved = reserved.saturating_sub(self.instances);
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let instances = config.max_instances.max(1);
    pool.total_component_instances(instances)
        // A Rust plugin is a handful of core instances (its module and WASI glue).
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memory_size(config.max_memory_bytes)
        // Keeping a small plugin's memory and tables resident and zeroing it on reuse is
        // cheaper than returning the pages to the kernel on every message.
        .linear_memory_keep_resident(1024 * 1024)
        .table_keep_resident(64 * 1024);
    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        .wasm_component_model(true)
        .memory_reservation(config.max_memory_bytes as u64)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    wasm
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    bindings::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    bindings::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    bindings::config::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    bindings::exception::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    bindings::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    bindings::daemon_host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    // Outbound HTTP for handlers and daemons; each request is checked by `outbound`.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Increments the engine's epoch from a plain OS thread. A tokio task would share the
/// runtime's threads with the guests it is meant to interrupt, and a spinning guest on a
/// two-core machine could starve it.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("wharf-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
