//! One loaded plugin: its checks at load time, its instances, and its calls.

use super::bindings::{Daemon, DaemonPre, Handler, HandlerPre, Transformer, TransformerPre, types};
use super::error::PluginError;
use super::error::error_chain;
use super::journal::{LogLine, Source};
use super::state::{CallState, DaemonRun, PluginContext, Publication};
use super::{Reservation, Runtime};
use crate::contract::{KvWrite, PluginInfo, PluginKind};
use crate::message::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use wasmtime::{CallHook, Store, UpdateDeadline};

impl From<types::Kind> for PluginKind {
    fn from(kind: types::Kind) -> Self {
        match kind {
            types::Kind::Transformer => PluginKind::Transformer,
            types::Kind::Handler => PluginKind::Handler,
            types::Kind::Daemon => PluginKind::Daemon,
        }
    }
}

/// What the admin gives one plugin. The defaults are safe: small limits, nothing granted.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Overrides the name the plugin declares.
    pub name: Option<String>,
    pub memory_bytes: usize,
    /// CPU time one call may use before it is stopped.
    pub cpu_limit: Duration,
    /// Wall-clock time one call may take, time waiting in host calls (`request`, WASI's
    /// `poll`) included; `None`: ten times the CPU limit.
    pub wall_limit: Option<Duration>,
    /// The most bytes one call may hand the host: its results, publications, requests and kv
    /// writes, each message counted whole (payload, key, headers). Checked from the guest's
    /// lengths before anything is copied.
    pub max_output_bytes: usize,
    /// Instances of this plugin that may exist at once (its concurrency).
    pub max_instances: u32,
    /// Reuse instances when the plugin declares itself reusable.
    pub reuse: bool,
    /// A reused instance is replaced after this many calls.
    pub recycle_after: u32,
    /// Upper bound on one `request` or `receive` wait, and on one outbound HTTP exchange.
    pub max_wait: Duration,
    pub config: BTreeMap<String, String>,
    pub grants: Vec<String>,
}

/// A call's output budget unless its settings say otherwise.
pub const DEFAULT_OUTPUT_BYTES: usize = 16 * 1024 * 1024;
/// The most `describe()` may hand the host: a name, a version, a line and a few grants.
const DESCRIBE_BYTES: usize = 64 * 1024;
/// What lifting a value costs in hostcall fuel besides its bytes: wasmtime also counts the
/// host's own structures (a few hundred bytes a message), which the budget does not.
const FUEL_SLACK: usize = 1024 * 1024;

impl PluginSettings {
    /// The wall-clock limit of one call: as set, else ten times the CPU limit.
    pub fn wall_limit(&self) -> Duration {
        self.wall_limit.unwrap_or(self.cpu_limit.saturating_mul(10))
    }
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            name: None,
            memory_bytes: 64 * 1024 * 1024,
            cpu_limit: Duration::from_secs(1),
            wall_limit: None,
            max_output_bytes: DEFAULT_OUTPUT_BYTES,
            max_instances: 64,
            reuse: true,
            recycle_after: 10_000,
            max_wait: Duration::from_secs(30),
            config: BTreeMap::new(),
            grants: Vec::new(),
        }
    }
}

/// What one call cost.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CallCost {
    /// From asking for an instance to having the result.
    pub wall: Duration,
    /// Guest CPU time charged against the deadline.
    pub cpu: Duration,
    /// Time spent making a fresh instance (zero when one was reused).
    pub instantiate: Duration,
    pub fresh_instance: bool,
    /// The instance's largest linear memory size, in bytes.
    pub memory_bytes: usize,
}

/// The result of one call, with what the plugin said and what it cost.
#[derive(Debug)]
pub struct CallReport<T> {
    pub result: Result<T, PluginError>,
    /// Messages the plugin published during the call; empty unless the call succeeded.
    pub published: Vec<Publication>,
    /// The kv writes the call made, held for its caller to apply with the rest of its work;
    /// empty unless the call succeeded.
    pub kv_writes: Vec<KvWrite>,
    pub logs: Vec<LogLine>,
    /// Log lines past the journal's bound, counted but not kept.
    pub dropped_logs: usize,
    pub cost: CallCost,
}

impl<T> CallReport<T> {
    /// The same report with its result mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> CallReport<U> {
        CallReport {
            result: self.result.map(f),
            published: self.published,
            kv_writes: self.kv_writes,
            logs: self.logs,
            dropped_logs: self.dropped_logs,
            cost: self.cost,
        }
    }

    fn failed(error: PluginError, started: Instant) -> Self {
        CallReport {
            result: Err(error),
            published: Vec::new(),
            kv_writes: Vec::new(),
            logs: Vec::new(),
            dropped_logs: 0,
            cost: CallCost {
                wall: started.elapsed(),
                ..CallCost::default()
            },
        }
    }
}

/// How one run of a daemon ended.
#[derive(Debug)]
pub struct DaemonExit {
    /// `Ok` when `run` returned `ok` or was stopped; the failure otherwise.
    pub result: Result<(), PluginError>,
    /// Guest CPU time the run used in all.
    pub cpu: Duration,
    /// Messages it had taken and not settled, given back to their sources.
    pub returned: usize,
    /// How long it ran.
    pub ran: Duration,
}

/// A loaded plugin. Cheap to clone; calls may run concurrently up to its instance limit.
#[derive(Clone)]
pub struct Plugin {
    pub(super) inner: Arc<PluginInner>,
}

pub(super) struct PluginInner {
    pub(super) runtime: Runtime,
    pub(super) ctx: Arc<PluginContext>,
    pub(super) info: PluginInfo,
    pub(super) pre: Pre,
    pub(super) permits: Semaphore,
    /// Its share of the runtime's instance pool, held as long as the plugin is loaded.
    pub(super) _reservation: Reservation,
    /// Idle instances of a reusable plugin, each with the number of calls it has served.
    pub(super) idle: Mutex<Vec<Worker>>,
    pub(super) reuse: bool,
    pub(super) recycle_after: u32,
}

pub(super) enum Pre {
    Transformer(TransformerPre<CallState>),
    Handler(HandlerPre<CallState>),
    Daemon(DaemonPre<CallState>),
}

pub(super) enum Exports {
    Transformer(Transformer),
    Handler(Handler),
    Daemon(Daemon),
}

/// One instance and its store.
pub(super) struct Worker {
    store: Store<CallState>,
    exports: Exports,
    calls: u32,
}

pub(super) enum Call {
    Describe,
    Run,
    Transform(types::Message),
    Handle(types::Message),
}

pub(super) enum Returned {
    Info(types::Info),
    Ran,
    Messages(Vec<types::Message>),
    Reply(Option<types::Message>),
}

impl Plugin {
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    pub fn name(&self) -> &str {
        &self.inner.info.name
    }

    /// Whether calls reuse instances (the plugin is reusable and the settings allow it).
    pub fn reuses_instances(&self) -> bool {
        self.inner.reuse
    }

    /// Runs a transformer on `msg`: zero, one or several outputs.
    pub async fn transform(&self, msg: &Message) -> CallReport<Vec<Message>> {
        if self.inner.info.kind != PluginKind::Transformer {
            return CallReport::failed(self.wrong_kind("transform"), Instant::now());
        }
        self.call(Call::Transform(msg.into()))
            .await
            .map(|returned| match returned {
                Returned::Messages(out) => out.into_iter().map(Message::from).collect(),
                _ => unreachable!("transform returns messages"),
            })
    }

    /// Runs a handler on `msg`: an optional reply, and what it published.
    pub async fn handle(&self, msg: &Message) -> CallReport<Option<Message>> {
        if self.inner.info.kind != PluginKind::Handler {
            return CallReport::failed(self.wrong_kind("handle a message"), Instant::now());
        }
        self.call(Call::Handle(msg.into()))
            .await
            .map(|returned| match returned {
                Returned::Reply(reply) => reply.map(Message::from),
                _ => unreachable!("handle returns a reply"),
            })
    }

    /// Runs a daemon on a fresh instance until its `run` returns, it fails, or `stop` turns
    /// true and it has had `grace` to return (then its call is ended where it stands).
    /// Whatever it took and had not settled goes back to its source.
    pub async fn run_daemon(
        &self,
        unit: &str,
        stop: watch::Receiver<bool>,
        grace: Duration,
    ) -> DaemonExit {
        let inner = &*self.inner;
        let started = Instant::now();
        let plugin = inner.info.name.clone();
        let exit = |result, cpu, returned| DaemonExit {
            result,
            cpu,
            returned,
            ran: started.elapsed(),
        };
        if inner.info.kind != PluginKind::Daemon {
            return exit(Err(self.wrong_kind("run as a daemon")), Duration::ZERO, 0);
        }
        let Ok(_permit) = inner.permits.acquire().await else {
            let error = inner.instantiate_error("the plugin is unloading");
            return exit(Err(error), Duration::ZERO, 0);
        };
        let mut worker = match inner.instantiate().await {
            Ok(worker) => worker,
            Err(error) => return exit(Err(error), Duration::ZERO, 0),
        };
        let state = worker.store.data_mut();
        state.begin_call();
        state.hold_kv = false;
        state.outbound.per_call = false;
        state.daemon = Some(DaemonRun::new(unit, stop.clone()));
        state.cpu.windowed();
        state.cpu.resume();
        let outcome = {
            let run = worker.invoke(Call::Run);
            let mut stop = stop.clone();
            let cut = async move {
                if stop.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(grace).await;
            };
            tokio::select! {
                outcome = run => Some(outcome),
                _ = cut => None,
            }
        };
        let state = worker.store.data_mut();
        state.cpu.charge();
        let cpu = state.cpu.total;
        let (logs, _) = state.take_logs();
        let returned = match state.daemon.take() {
            Some(run) => run.release().await,
            None => 0,
        };
        let result = match outcome {
            None => {
                tracing::warn!(daemon = %plugin, grace_ms = grace.as_millis() as u64, "the daemon did not return within the grace period; its call was ended");
                Ok(())
            }
            Some(Ok(Ok(_))) => Ok(()),
            Some(Ok(Err(types::Failure::Reject(reason) | types::Failure::Retry(reason)))) => {
                Err(PluginError::Failed {
                    plugin,
                    reason,
                    exception: state.exception.take(),
                })
            }
            Some(Err(error)) => Err(match classify(plugin, &error, state, &logs) {
                PluginError::Deadline { plugin, limit } => PluginError::Spinning {
                    plugin,
                    limit,
                    window: super::state::DAEMON_CPU_WINDOW,
                },
                other => other,
            }),
        };
        exit(result, cpu, returned)
    }

    fn wrong_kind(&self, wanted: &'static str) -> PluginError {
        PluginError::WrongKind {
            plugin: self.name().to_owned(),
            actual: self.inner.info.kind.as_str(),
            wanted,
        }
    }

    pub(super) async fn call(&self, call: Call) -> CallReport<Returned> {
        let inner = &*self.inner;
        let started = Instant::now();
        let Ok(_permit) = inner.permits.acquire().await else {
            return CallReport::failed(inner.instantiate_error("the plugin is unloading"), started);
        };
        let reused = inner
            .reuse
            .then(|| inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop())
            .flatten();
        let (mut worker, instantiate) = match reused {
            Some(worker) => (worker, Duration::ZERO),
            None => match inner.instantiate().await {
                Ok(worker) => (worker, started.elapsed()),
                Err(error) => return CallReport::failed(error, started),
            },
        };
        let fresh = worker.calls == 0;

        // What the guest hands the host is bounded before it is copied: wasmtime checks each
        // handover's lengths against the store's hostcall fuel. `describe` gets little.
        let describe = matches!(call, Call::Describe);
        worker.store.set_hostcall_fuel(if describe {
            DESCRIBE_BYTES
        } else {
            inner.ctx.max_output_bytes.saturating_add(FUEL_SLACK)
        });
        let wall = inner.ctx.wall_limit;
        worker.store.data_mut().begin_call();
        let deadline = Some(Instant::now() + wall);
        worker.store.data_mut().wall_deadline = deadline;
        worker.store.data_mut().outbound.deadline = deadline;
        worker.store.data().cpu.resume();
        // The CPU deadline fires only while wasm runs; a guest waiting in WASI's `poll` or in
        // a host call is ended here. Dropping the call's future unwinds the guest; its
        // instance is not used again.
        let outcome = match tokio::time::timeout(wall, worker.invoke(call)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(wasmtime::Error::new(WallClockExceeded)),
        };
        worker.calls += 1;

        let state = worker.store.data_mut();
        state.cpu.charge();
        let (logs, dropped_logs) = state.take_logs();
        let published = std::mem::take(&mut state.published);
        let kv_writes = state.take_kv_writes();
        let cost = CallCost {
            wall: started.elapsed(),
            cpu: state.cpu.used,
            instantiate,
            fresh_instance: fresh,
            memory_bytes: state.memory.peak,
        };
        let plugin = inner.info.name.clone();
        // A guest that caught its own out-of-memory (Python's MemoryError, a JavaScript
        // engine's "out of memory") and returned a failure or even a result still hit the
        // limit: the call is a MemoryLimit, and its instance, whose heap is in an unknown
        // state, is not used again.
        let hit_memory_limit = outcome.is_ok() && state.memory.refused.is_some();
        let trapped = outcome.is_err() || hit_memory_limit;
        let outcome = match outcome {
            Ok(_) if hit_memory_limit => Err(wasmtime::Error::msg("the memory limit was reached")),
            other => other,
        };
        let result = match outcome {
            Ok(Ok(returned)) => match state.refused.take() {
                Some(detail) => Err(PluginError::Trap { plugin, detail }),
                None => match state.charge_output("its results", returned.size_bytes()) {
                    Ok(()) => Ok(returned),
                    Err(detail) => Err(PluginError::OutputLimit { plugin, detail }),
                },
            },
            Ok(Err(types::Failure::Retry(reason))) => Err(PluginError::Retry {
                plugin,
                reason,
                exception: state.exception.take(),
            }),
            Ok(Err(types::Failure::Reject(reason))) => Err(PluginError::Rejected {
                plugin,
                reason,
                exception: state.exception.take(),
            }),
            Err(error) => Err(classify(plugin, &error, state, &logs)),
        };
        // Over its output budget: the call fails so, even if the plugin carried on after a
        // refused import and returned normally.
        let result = match (result, state.over_output.take()) {
            (Err(PluginError::OutputLimit { plugin, detail }), _) => {
                Err(PluginError::OutputLimit { plugin, detail })
            }
            (_, Some(detail)) => Err(PluginError::OutputLimit {
                plugin: inner.info.name.clone(),
                detail,
            }),
            (result, None) => result,
        };
        // An instance that trapped is never used again; a healthy one goes back to the pool
        // until it has served `recycle_after` calls.
        if inner.reuse && !trapped && worker.calls < inner.recycle_after {
            inner
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(worker);
        }
        let (published, kv_writes) = if result.is_ok() {
            (published, kv_writes)
        } else {
            (Vec::new(), Vec::new())
        };
        CallReport {
            published,
            kv_writes,
            result,
            logs,
            dropped_logs,
            cost,
        }
    }
}

/// A call ran past its wall-clock limit.
#[derive(Debug)]
struct WallClockExceeded;

impl std::fmt::Display for WallClockExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the call ran past its wall-clock limit")
    }
}

impl std::error::Error for WallClockExceeded {}

/// What wasmtime says when a handover from the guest is over the store's hostcall fuel
/// (its own error type is private); a unit test holds it to the version in use.
const FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

impl Returned {
    /// The bytes the guest handed back, messages counted whole.
    fn size_bytes(&self) -> usize {
        match self {
            Returned::Messages(messages) => messages.iter().map(wit_message_size).sum(),
            Returned::Reply(Some(message)) => wit_message_size(message),
            Returned::Reply(None) | Returned::Ran => 0,
            Returned::Info(info) => {
                info.name.len()
                    + info.version.len()
                    + info.description.len()
                    + info.wants.iter().map(String::len).sum::<usize>()
            }
        }
    }
}

fn wit_message_size(m: &types::Message) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let headers: usize = m
        .headers
        .iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    types::Value::Text(s) | types::Value::Json(s) => s.len(),
                    types::Value::Bytes(b) => b.len(),
                    types::Value::Int(_) | types::Value::Float(_) => 8,
                    types::Value::Boolean(_) => 1,
                    types::Value::List(items) => items.iter().map(String::len).sum(),
                }
        })
        .sum();
    m.payload.len()
        + m.key.as_ref().map_or(0, Vec::len)
        + m.id.len()
        + m.topic.len()
        + text(&m.content_type)
        + text(&m.correlation_id)
        + text(&m.reply_to)
        + headers
}

/// Names the cause of a failed call: the CPU deadline and the memory limit are read from the
/// store, because the trap they end in says nothing of them.
fn classify(
    plugin: String,
    error: &wasmtime::Error,
    state: &CallState,
    logs: &[LogLine],
) -> PluginError {
    if error.downcast_ref::<WallClockExceeded>().is_some() {
        return PluginError::TimedOut {
            plugin,
            limit: state.plugin.wall_limit,
        };
    }
    if state.cpu.exceeded {
        return PluginError::Deadline {
            plugin,
            limit: state.cpu.limit,
        };
    }
    if error
        .chain()
        .any(|cause| cause.to_string().contains(FUEL_EXHAUSTED))
    {
        let detail = state.over_output.clone().unwrap_or_else(|| {
            format!(
                "it handed the host more than {} bytes at once (output_mb)",
                state.plugin.max_output_bytes
            )
        });
        return PluginError::OutputLimit { plugin, detail };
    }
    if let Some(requested_bytes) = state.memory.refused {
        return PluginError::MemoryLimit {
            plugin,
            limit_bytes: state.plugin.memory_limit,
            requested_bytes,
        };
    }
    let mut detail = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error_chain(error),
    };
    // A Rust guest's panic message is on stderr: "panicked at FILE:LINE:COL:" then the message.
    let stderr: Vec<&str> = logs
        .iter()
        .filter(|l| l.source == Source::Stderr)
        .map(|l| l.text.as_str())
        .collect();
    if let Some(at) = stderr.iter().position(|l| l.contains("panicked at")) {
        let message = stderr.get(at + 1).copied().unwrap_or_default();
        detail = format!("{detail} (the plugin panicked: {message})");
    }
    PluginError::Trap { plugin, detail }
}

impl PluginInner {
    fn instantiate_error(&self, detail: &str) -> PluginError {
        PluginError::Instantiate {
            plugin: self.info.name.clone(),
            detail: detail.to_owned(),
        }
    }

    async fn instantiate(&self) -> Result<Worker, PluginError> {
        let mut store = Store::new(self.runtime.engine(), CallState::new(self.ctx.clone()));
        store.limiter(|state| &mut state.memory);
        // At every epoch tick a running guest is charged the time since it last resumed; past
        // its limit the call traps, otherwise it yields so that other tasks on this thread run.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let cpu = &mut ctx.data_mut().cpu;
            if cpu.charge() {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            let resumed = cpu.resume_handle();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    resumed();
                }),
            ))
        });
        // A host call's wait (a `request`, outbound HTTP, a WASI poll) is not the guest's CPU
        // time: the clock is charged when the guest calls out and resumed when it returns.
        store.call_hook(|mut ctx, hook| {
            match hook {
                CallHook::CallingHost => {
                    ctx.data_mut().cpu.charge();
                }
                CallHook::ReturningFromHost => ctx.data().cpu.resume(),
                CallHook::CallingWasm | CallHook::ReturningFromWasm => {}
            }
            Ok(())
        });
        store.data().cpu.resume();
        let exports = match &self.pre {
            Pre::Transformer(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Exports::Transformer),
            Pre::Handler(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Exports::Handler),
            Pre::Daemon(pre) => pre.instantiate_async(&mut store).await.map(Exports::Daemon),
        };
        match exports {
            Ok(exports) => Ok(Worker {
                store,
                exports,
                calls: 0,
            }),
            Err(error) => {
                let state = store.data_mut();
                let (logs, _) = state.take_logs();
                Err(
                    match classify(self.info.name.clone(), &error, state, &logs) {
                        PluginError::Trap { plugin, detail } => {
                            PluginError::Instantiate { plugin, detail }
                        }
                        other => other,
                    },
                )
            }
        }
    }
}

impl Worker {
    async fn invoke(&mut self, call: Call) -> wasmtime::Result<Result<Returned, types::Failure>> {
        let store = &mut self.store;
        Ok(match (&self.exports, call) {
            (Exports::Transformer(t), Call::Transform(msg)) => t
                .call_transform(&mut *store, &msg)
                .await?
                .map(Returned::Messages),
            (Exports::Handler(h), Call::Handle(msg)) => {
                h.call_handle(&mut *store, &msg).await?.map(Returned::Reply)
            }
            (Exports::Transformer(t), Call::Describe) => {
                Ok(Returned::Info(t.call_describe(&mut *store).await?))
            }
            (Exports::Handler(h), Call::Describe) => {
                Ok(Returned::Info(h.call_describe(&mut *store).await?))
            }
            (Exports::Daemon(d), Call::Run) => match d.call_run(&mut *store).await? {
                Ok(()) => Ok(Returned::Ran),
                Err(reason) => return Ok(Err(types::Failure::Reject(reason))),
            },
            (Exports::Daemon(d), Call::Describe) => {
                Ok(Returned::Info(d.call_describe(&mut *store).await?))
            }
            _ => unreachable!("the call was checked against the plugin's kind"),
        })
    }
}
