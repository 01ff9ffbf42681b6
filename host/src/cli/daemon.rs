//! `wharf daemon`: a daemon's options and how one prints; the commands are `unit`'s.

use super::unit::{UnitArgs, state};
use clap::Args;
use serde_json::Value;

/// A daemon's options, as in the file's `[[daemons]]`.
#[derive(Debug, Args)]
pub struct DaemonSpec {
    /// The whole daemon as JSON (a file, or `-`); the options below apply over it.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
    /// The daemon plugin to run: `name`, or `name@version` to pin.
    #[arg(long)]
    plugin: Option<String>,
    /// Run on every host of the database, not on one at a time (`--each-host false` to
    /// turn it off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    each_host: Option<bool>,
    /// Failures within --failure-window-secs that mark it failed (default 5).
    #[arg(long)]
    max_failures: Option<u32>,
    /// The window failures are counted in (default 300 s).
    #[arg(long)]
    failure_window_secs: Option<u64>,
}

impl UnitArgs for DaemonSpec {
    const NOUNS: &'static str = "daemons";
    const KIND: &'static str = "daemon";

    fn json(&self) -> Option<&str> {
        self.json.as_deref()
    }

    fn options(self) -> Vec<(&'static str, Option<Value>)> {
        vec![
            ("plugin", self.plugin.map(Value::from)),
            ("each_host", self.each_host.map(Value::from)),
            ("max_failures", self.max_failures.map(Value::from)),
            (
                "failure_window_secs",
                self.failure_window_secs.map(Value::from),
            ),
        ]
    }

    fn line(view: &Value) -> String {
        let daemon = &view["daemon"];
        let status = &view["status"];
        let since = match (state(view), status["since_ms"].as_u64()) {
            ("running", Some(since)) => format!(
                ", up {}",
                crate::time::span_text(crate::message::now_ms().saturating_sub(since))
            ),
            _ => String::new(),
        };
        format!(
            "{}{}, {}, restarts {}{}",
            daemon["plugin"].as_str().unwrap_or(""),
            status["plugins"][0]
                .as_str()
                .and_then(|label| label.split_once('@'))
                .map(|(_, version)| format!(" {version}"))
                .unwrap_or_default(),
            if daemon["each_host"].as_bool() == Some(true) {
                "on each host"
            } else {
                "on one host at a time"
            },
            status["restarts"].as_u64().unwrap_or(0),
            since,
        )
    }

    fn notes(view: &Value) -> Vec<String> {
        let runs_on = view["runs_on"]
            .as_str()
            .map(|host| format!("runs on {host}"));
        let note = view["status"]["note"].as_str().map(str::to_owned);
        runs_on.into_iter().chain(note).collect()
    }
}
