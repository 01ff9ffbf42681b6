//! `wharf route|subscription|daemon`: the units of a running host, through its API, with the
//! same commands for every kind (list, show, create, update, stop, start, restart, delete).
//! What differs between kinds is [`UnitArgs`]: its options and how one prints.

use super::api::{Api, HostArg, read_json, segment};
use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

/// One kind of unit's part of the CLI.
pub trait UnitArgs: clap::Args + std::fmt::Debug {
    /// Its collection in the API: `routes`.
    const NOUNS: &'static str;
    /// Its kind: `route`, the key of its definition in the API's view of one.
    const KIND: &'static str;
    /// The whole definition as JSON, when given (`--json FILE`, or `-`).
    fn json(&self) -> Option<&str>;
    /// Each option, by its key in the definition (`retry.max` for one inside another); those
    /// not given are `None`.
    fn options(self) -> Vec<(&'static str, Option<Value>)>;
    /// What its line shows after its name, source and state.
    fn line(view: &Value) -> String;
    /// Lines under it, beside its last error.
    fn notes(_view: &Value) -> Vec<String> {
        Vec::new()
    }
}

/// `unit` (a definition as JSON), or the `--json` one given, with the options given laid
/// over it.
fn apply<S: UnitArgs>(spec: S, mut unit: Value) -> anyhow::Result<Value> {
    if let Some(source) = spec.json() {
        unit = read_json(source)?;
    }
    let kind = S::KIND;
    let object = unit
        .as_object_mut()
        .with_context(|| format!("a {kind} is a JSON object"))?;
    for (key, value) in spec.options() {
        let Some(value) = value else { continue };
        match key.split_once('.') {
            Some((outer, inner)) => {
                let outer = object.entry(outer).or_insert_with(|| json!({}));
                if !outer.is_object() {
                    *outer = json!({});
                }
                outer[inner] = value;
            }
            None => {
                object.insert(key.to_owned(), value);
            }
        }
    }
    Ok(unit)
}

/// Prints one unit (the API's view of it): its name, source, state and its kind's line, then
/// its notes and last error.
fn print<S: UnitArgs>(view: &Value) {
    println!(
        "{:<20} {:<5} {:<11} {}",
        view["name"].as_str().unwrap_or(""),
        view["source"].as_str().unwrap_or(""),
        state(view),
        S::line(view)
    );
    let error = view["status"]["error"]
        .as_str()
        .or(view["refused"].as_str())
        .map(|error| format!("last error: {error}"));
    for note in S::notes(view).into_iter().chain(error) {
        println!("{:<20} {note}", "");
    }
}

/// A unit's state on the host: `not run` when refused, `pending` until applied.
pub fn state(view: &Value) -> &str {
    view["status"]["state"]
        .as_str()
        .or(view["refused"].as_str().map(|_| "not run"))
        .unwrap_or("pending")
}

/// A plugin chain as the API shows it.
pub fn chain(unit: &Value) -> Vec<&str> {
    unit["through"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum UnitCommand<S: UnitArgs> {
    /// List every one with its state on the host.
    List {
        #[command(flatten)]
        host: HostArg,
        #[arg(long)]
        json: bool,
    },
    /// Show one, as JSON.
    Show {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Create one (admin): it runs on every host on the database at once (a daemon on one of
    /// them at a time, unless it runs on each).
    Create {
        name: String,
        #[command(flatten)]
        spec: S,
        #[command(flatten)]
        host: HostArg,
    },
    /// Change one (admin): the options given replace its own; what its runner holds finishes
    /// on the old definition.
    Update {
        name: String,
        #[command(flatten)]
        spec: S,
        #[command(flatten)]
        host: HostArg,
    },
    /// Hold one stopped on every host (operator): it finishes what it holds and takes no
    /// more until `start`; its input keeps filling.
    Stop {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Let a stopped one run again (operator).
    Start {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Start one anew on every host (operator): its runner is replaced (the old one finishes
    /// what it holds); a daemon marked failed runs again, its failures forgotten.
    Restart {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Delete one (admin): it stops taking messages, finishes those it holds, and lets go of
    /// what it kept on the broker (a subscription's queue is unbound).
    Delete {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
}

/// Runs one unit command of kind `S`.
pub async fn run<S: UnitArgs>(command: UnitCommand<S>) -> anyhow::Result<ExitCode> {
    let one = |name: &str| format!("{}/{}", S::NOUNS, segment(name));
    match command {
        UnitCommand::List { host, json } => {
            super::control::list(&host, S::NOUNS, json, print::<S>).await?
        }
        UnitCommand::Show { name, host } => super::control::show(&host, S::NOUNS, &name).await?,
        UnitCommand::Create { name, spec, host } => {
            let unit = apply(spec, json!({ "name": name }))?;
            let view = Api::new(&host)?
                .send(reqwest::Method::POST, S::NOUNS, Some(unit))
                .await?;
            print::<S>(&view);
        }
        UnitCommand::Update { name, spec, host } => {
            let api = Api::new(&host)?;
            let current = api.get(&one(&name)).await?[S::KIND].clone();
            let unit = apply(spec, current)?;
            let view = api
                .send(reqwest::Method::PUT, &one(&name), Some(unit))
                .await?;
            print::<S>(&view);
        }
        UnitCommand::Stop { name, host } => switch(&name, &host, "stop").await?,
        UnitCommand::Start { name, host } => switch(&name, &host, "start").await?,
        UnitCommand::Restart { name, host } => switch(&name, &host, "restart").await?,
        UnitCommand::Delete { name, host } => {
            Api::new(&host)?
                .send(reqwest::Method::DELETE, &one(&name), None)
                .await?;
            println!("deleted {} {name}", S::KIND);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops, starts or restarts unit `name` (`verb`) and prints its state.
async fn switch(name: &str, host: &HostArg, verb: &str) -> anyhow::Result<()> {
    let unit = Api::new(host)?
        .send(
            reqwest::Method::POST,
            &format!("units/{}/{verb}", segment(name)),
            None,
        )
        .await?;
    println!(
        "{name}: {}{}",
        unit["state"].as_str().unwrap_or(""),
        unit["stopped_by"]
            .as_str()
            .map(|by| format!(" (stopped by {by})"))
            .unwrap_or_default()
    );
    Ok(())
}
