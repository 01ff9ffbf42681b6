//! What can go wrong with a plugin: refusing a file ([`InvalidPlugin`]) and a call that did
//! not succeed ([`PluginError`]). Both name the plugin or the check, so an admin reading a log
//! line or a dead letter's `exception` header knows what to fix.

use std::time::Duration;

/// Why one call of a plugin did not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The plugin returned `failure::retry`: transient, try again later.
    #[error("plugin `{plugin}` asked to retry: {reason}")]
    Retry {
        plugin: String,
        reason: String,
        /// The plugin's own name for the error, if it gave one (`exception.name-failure`).
        exception: Option<Exception>,
    },
    /// The plugin returned `failure::reject`: the message will never succeed.
    #[error("plugin `{plugin}` rejected the message: {reason}")]
    Rejected {
        plugin: String,
        reason: String,
        exception: Option<Exception>,
    },
    /// The call used more CPU time than its limit and was stopped.
    #[error("plugin `{plugin}` was stopped at its CPU deadline of {} ms", limit.as_millis())]
    Deadline { plugin: String, limit: Duration },
    /// The plugin asked for more memory than its limit.
    #[error(
        "plugin `{plugin}` hit its memory limit: it asked for {requested_bytes} bytes, the limit is {limit_bytes} bytes"
    )]
    MemoryLimit {
        plugin: String,
        limit_bytes: usize,
        requested_bytes: usize,
    },
    /// The call ran past its wall-clock limit (waits in host calls count) and was ended.
    #[error(
        "plugin `{plugin}` ran past its wall-clock limit of {} ms (time waiting in host calls counts) and was stopped",
        limit.as_millis()
    )]
    TimedOut { plugin: String, limit: Duration },
    /// The call handed the host more than its output budget (results, publications,
    /// requests, kv writes, counted whole), or one handover alone was larger. Refused before
    /// it was copied; the same input would do it again, so it is not retried.
    #[error("plugin `{plugin}` went over its output limit: {detail}")]
    OutputLimit { plugin: String, detail: String },
    /// The guest trapped: a panic, an `unreachable`, an out-of-bounds access.
    #[error("plugin `{plugin}` trapped: {detail}")]
    Trap { plugin: String, detail: String },
    /// No instance could be made (the pool is full, the host is shutting down).
    #[error("plugin `{plugin}` could not be instantiated: {detail}")]
    Instantiate { plugin: String, detail: String },
    /// A daemon's `run` returned an error (named by the daemon where it gave one).
    #[error("daemon `{plugin}` failed: {}{reason}", named(exception))]
    Failed {
        plugin: String,
        reason: String,
        exception: Option<Exception>,
    },
    /// A daemon used more than its CPU budget within one window of wall-clock time.
    #[error(
        "daemon `{plugin}` used more than {} ms of CPU within {} s and was stopped",
        limit.as_millis(),
        window.as_secs()
    )]
    Spinning {
        plugin: String,
        limit: Duration,
        window: Duration,
    },
    /// The call does not fit the plugin's world, e.g. `transform` on a handler.
    #[error("plugin `{plugin}` is a {actual}, it cannot {wanted}")]
    WrongKind {
        plugin: String,
        actual: &'static str,
        wanted: &'static str,
    },
}

/// `KeyError: ` before a failure's reason when the plugin named it, else nothing.
fn named(exception: &Option<Exception>) -> String {
    exception
        .as_ref()
        .map(|e| format!("{}: ", e.name))
        .unwrap_or_default()
}

/// A plugin's own name for the error it failed with: a Python plugin raising `KeyError` says
/// `KeyError` and `<class 'KeyError'>` (edeposit's `exception_name` and `exception_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub name: String,
    pub kind: String,
}

impl Exception {
    /// The longest name or type kept, in bytes.
    pub const MAX_BYTES: usize = 255;

    /// `name` and `kind` if each is 1 to 255 bytes without control characters.
    pub fn new(name: String, kind: String) -> Option<Exception> {
        let fits = |text: &str| {
            !text.is_empty() && text.len() <= Self::MAX_BYTES && !text.chars().any(char::is_control)
        };
        (fits(&name) && fits(&kind)).then_some(Exception { name, kind })
    }
}

impl PluginError {
    /// The plugin's own name for the error, where it gave one.
    pub fn exception(&self) -> Option<&Exception> {
        match self {
            PluginError::Retry { exception, .. }
            | PluginError::Rejected { exception, .. }
            | PluginError::Failed { exception, .. } => exception.as_ref(),
            _ => None,
        }
    }

    /// The error's name as a dead letter's `exception_name` says it: the plugin's own, if it
    /// gave one, else the kind of failure.
    pub fn exception_name(&self) -> &str {
        if let Some(exception) = self.exception() {
            return &exception.name;
        }
        self.kind_name()
    }

    /// The kind of failure: `Retry`, `Rejected`, `Deadline`, ...
    pub fn kind_name(&self) -> &'static str {
        match self {
            PluginError::Retry { .. } => "Retry",
            PluginError::Rejected { .. } => "Rejected",
            PluginError::Deadline { .. } => "Deadline",
            PluginError::MemoryLimit { .. } => "MemoryLimit",
            PluginError::TimedOut { .. } => "TimedOut",
            PluginError::OutputLimit { .. } => "OutputLimit",
            PluginError::Trap { .. } => "Trap",
            PluginError::Instantiate { .. } => "Instantiate",
            PluginError::Failed { .. } => "Failed",
            PluginError::Spinning { .. } => "Spinning",
            PluginError::WrongKind { .. } => "WrongKind",
        }
    }

    /// Whether trying the same message again may succeed. A trap, a deadline, a wall-clock
    /// limit or a memory breach counts as retryable: the route's retry budget decides when to
    /// give up. Going over the output limit does not: the same input makes the same output.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            PluginError::Rejected { .. }
                | PluginError::WrongKind { .. }
                | PluginError::OutputLimit { .. }
        )
    }

    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Retry { plugin, .. }
            | PluginError::Rejected { plugin, .. }
            | PluginError::Deadline { plugin, .. }
            | PluginError::MemoryLimit { plugin, .. }
            | PluginError::TimedOut { plugin, .. }
            | PluginError::OutputLimit { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::Instantiate { plugin, .. }
            | PluginError::Failed { plugin, .. }
            | PluginError::Spinning { plugin, .. }
            | PluginError::WrongKind { plugin, .. } => plugin,
        }
    }
}

/// Why a file is not a plugin this host can run. Each variant is one check, in the order
/// they are made; the message says which check failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPlugin {
    #[error("size check failed: the file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(
        "format check failed: not a WebAssembly file (it does not start with the bytes `\\0asm`)"
    )]
    NotWasm,
    #[error(
        "component check failed: this is a core WebAssembly module, not a component; build the plugin with the Wharf SDK for the wasm32-wasip2 target"
    )]
    CoreModule,
    #[error(
        "validation check failed: not a valid WebAssembly component, it may be truncated or corrupt: {detail}"
    )]
    Invalid { detail: String },
    #[error(
        "world check failed: the component exports [{exports}], which is no Wharf world (a transformer exports `describe` and `transform`, a handler `describe` and `handle`, a daemon `describe` and `run`)"
    )]
    UnknownWorld { exports: String },
    #[error(
        "version check failed: the plugin imports `{import}`, but this host serves wharf:plugin@0.1.x"
    )]
    UnsupportedVersion { import: String },
    #[error("world check failed: the component does not match the {world} world: {detail}")]
    WorldMismatch { world: &'static str, detail: String },
    #[error("import check failed: the plugin needs something this host does not provide: {detail}")]
    Imports { detail: String },
    #[error("describe check failed: {0}")]
    Describe(PluginError),
    #[error("describe check failed: {0}")]
    InvalidInfo(String),
    #[error(
        "kind check failed: the plugin implements the {world} world but describes itself as a {declared}"
    )]
    KindMismatch {
        world: &'static str,
        declared: &'static str,
    },
    #[error("settings check failed: {0}")]
    Settings(String),
}

/// An error and its causes on one line, without wasmtime's multi-line backtrace.
pub(super) fn error_chain(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let first = text.lines().next().unwrap_or_default().trim().to_owned();
        if !first.is_empty() && !parts.contains(&first) {
            parts.push(first);
        }
    }
    parts.join(": ")
}
