//! `wharf daemon`: the daemons of a running host, through its API.

use super::api::HostArg;
use super::api::{Api, read_json, segment};
use super::control::switch;
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// List every daemon with its state on the host (and which host runs it).
    List {
        #[command(flatten)]
        host: HostArg,
        #[arg(long)]
        json: bool,
    },
    /// Show one daemon.
    Show {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Create a daemon: it starts on one host of the database (or on each, with --each-host).
    Create {
        name: String,
        #[command(flatten)]
        spec: DaemonSpec,
        #[command(flatten)]
        host: HostArg,
    },
    /// Change a daemon: the options given replace its own; the running one is asked to stop
    /// and the new definition starts.
    Update {
        name: String,
        #[command(flatten)]
        spec: DaemonSpec,
        #[command(flatten)]
        host: HostArg,
    },
    /// Hold a daemon stopped on every host (operator): it is asked to stop, and what it took
    /// and had not settled goes back.
    Stop {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Let a stopped daemon run again.
    Start {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Start a daemon anew, its failures forgotten (a daemon marked failed runs again).
    Restart {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Delete a daemon: it is asked to stop first.
    Delete {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
}

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

impl DaemonSpec {
    fn apply(self, mut daemon: Value) -> anyhow::Result<Value> {
        if let Some(source) = &self.json {
            daemon = read_json(source)?;
        }
        let object = daemon
            .as_object_mut()
            .context("a daemon is a JSON object")?;
        for (key, value) in [
            ("plugin", self.plugin.map(Value::from)),
            ("each_host", self.each_host.map(Value::from)),
            ("max_failures", self.max_failures.map(Value::from)),
            (
                "failure_window_secs",
                self.failure_window_secs.map(Value::from),
            ),
        ] {
            if let Some(value) = value {
                object.insert(key.to_owned(), value);
            }
        }
        Ok(daemon)
    }
}

fn print_daemon(view: &Value) {
    let daemon = &view["daemon"];
    let status = &view["status"];
    let state = status["state"]
        .as_str()
        .or(view["refused"].as_str().map(|_| "not run"))
        .unwrap_or("pending");
    let since = match (state, status["since_ms"].as_u64()) {
        ("running", Some(since)) => format!(
            ", up {}",
            crate::time::span_text(crate::message::now_ms().saturating_sub(since))
        ),
        _ => String::new(),
    };
    println!(
        "{:<20} {:<5} {:<11} {}{}, {}, restarts {}{}",
        view["name"].as_str().unwrap_or(""),
        view["source"].as_str().unwrap_or(""),
        state,
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
    );
    if let Some(runs_on) = view["runs_on"].as_str() {
        println!("{:<20} runs on {runs_on}", "");
    }
    if let Some(note) = status["note"].as_str() {
        println!("{:<20} {note}", "");
    }
    if let Some(error) = status["error"].as_str().or(view["refused"].as_str()) {
        println!("{:<20} last error: {error}", "");
    }
}

pub async fn daemon(command: DaemonCommand) -> anyhow::Result<ExitCode> {
    match command {
        DaemonCommand::List { host, json } => {
            super::control::list(&host, "daemons", json, print_daemon).await?
        }
        DaemonCommand::Show { name, host } => super::control::show(&host, "daemons", &name).await?,
        DaemonCommand::Create { name, spec, host } => {
            let daemon = spec.apply(json!({ "name": name }))?;
            let view = Api::new(&host)?
                .send(reqwest::Method::POST, "daemons", Some(daemon))
                .await?;
            print_daemon(&view);
        }
        DaemonCommand::Update { name, spec, host } => {
            let api = Api::new(&host)?;
            let path = format!("daemons/{}", segment(&name));
            let current = api.get(&path).await?["daemon"].clone();
            let daemon = spec.apply(current)?;
            let view = api.send(reqwest::Method::PUT, &path, Some(daemon)).await?;
            print_daemon(&view);
        }
        DaemonCommand::Stop { name, host } => switch(&name, &host, "stop").await?,
        DaemonCommand::Start { name, host } => switch(&name, &host, "start").await?,
        DaemonCommand::Restart { name, host } => switch(&name, &host, "restart").await?,
        DaemonCommand::Delete { name, host } => {
            Api::new(&host)?
                .send(
                    reqwest::Method::DELETE,
                    &format!("daemons/{}", segment(&name)),
                    None,
                )
                .await?;
            println!("deleted daemon {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
