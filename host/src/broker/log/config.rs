//! A `log` connection's definition.

use serde::{Deserialize, Serialize};

/// `kind = "log"`: each message sent is written to the host's log instead of a broker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The level of each line: `debug`, `info` (the default) or `warn`.
    pub level: LogLevel,
    /// Whether a line shows the payload (up to 1 KiB); off unless said, since payloads may
    /// hold what a log should not.
    pub payload: bool,
}

/// The level a `log` connection writes at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
}
