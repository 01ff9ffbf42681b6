//! `wharf connection`: a host's broker connections through its API. A kind's flags are its
//! transport's declared fields ([`crate::broker::registry`]), so a new transport brings its
//! own flags.

use super::api::{Api, HostArg, print, read_json, segment};
use crate::broker::registry::{Field, Input, KINDS, set_field};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// List every connection with its state on the host (secrets hidden).
    List {
        #[command(flatten)]
        host: HostArg,
        #[arg(long)]
        json: bool,
    },
    /// Show one connection (secrets hidden).
    Show {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Add a connection: `--kind KIND` and that kind's flags (`--kind amqp --broker-url
    /// amqp://…`, `--kind kafka --brokers host:9092`; `wharf connection kinds` lists each
    /// kind's), or the whole definition as JSON.
    Add {
        name: String,
        #[command(flatten)]
        spec: ConnectionSpec,
        #[command(flatten)]
        host: HostArg,
    },
    /// Replace a connection's definition; its routes move to the new connection.
    Update {
        name: String,
        #[command(flatten)]
        spec: ConnectionSpec,
        #[command(flatten)]
        host: HostArg,
    },
    /// Remove a connection no route uses.
    Remove {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// The kinds of connection: each one's flags and what it can do.
    Kinds {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Connect afresh and say whether it works.
    Test {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
}

#[derive(Debug, Args)]
pub struct ConnectionSpec {
    /// The whole definition as JSON (a file, or `-`), as in the file's `[connections.NAME]`.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
    /// The kind of connection (`wharf connection kinds` lists them).
    #[arg(long)]
    kind: Option<String>,
    #[command(flatten)]
    fields: FieldArgs,
}

/// Every kind's [`Field`]s as flags, each flag once however many kinds have it: declared by
/// the transports, not here.
#[derive(Debug, Default)]
pub struct FieldArgs(Vec<(&'static str, Vec<String>)>);

/// A flag, its input, and each kind that takes it with its field there.
type Flag = (&'static str, Input, Vec<(&'static str, &'static Field)>);

/// Each flag of every kind, with its input and the kinds that take it.
fn flags() -> Vec<Flag> {
    let mut flags: Vec<Flag> = Vec::new();
    for kind in KINDS {
        for field in kind.fields {
            match flags.iter_mut().find(|(flag, ..)| *flag == field.flag) {
                Some((_, _, kinds)) => kinds.push((kind.name, field)),
                None => flags.push((field.flag, field.input, vec![(kind.name, field)])),
            }
        }
    }
    flags
}

impl clap::FromArgMatches for FieldArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for (flag, input, _) in flags() {
            if input == Input::Switch {
                if matches.get_flag(flag) {
                    given.push((flag, vec!["true".to_owned()]));
                }
            } else if let Some(values) = matches.get_many::<String>(flag) {
                given.push((flag, values.cloned().collect()));
            }
        }
        Ok(FieldArgs(given))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for FieldArgs {
    fn augment_args(mut command: clap::Command) -> clap::Command {
        for (flag, input, kinds) in flags() {
            let help: Vec<String> = kinds
                .iter()
                .map(|(kind, field)| match field.help {
                    "" => format!("for {kind}: {}", field.label),
                    help => format!("for {kind}: {} ({help})", field.label),
                })
                .collect();
            let arg = clap::Arg::new(flag).long(flag).help(help.join("; "));
            command = command.arg(match input {
                Input::Switch => arg.action(clap::ArgAction::SetTrue),
                Input::Pairs => arg.action(clap::ArgAction::Append).value_name("NAME=VALUE"),
                Input::Number => arg.value_name("N"),
                Input::Text | Input::Secret => arg,
            });
        }
        command
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl ConnectionSpec {
    fn build(self, mut base: Value) -> anyhow::Result<Value> {
        if let Some(source) = &self.json {
            base = read_json(source)?;
        }
        let object = base
            .as_object_mut()
            .context("a connection is a JSON object")?;
        if let Some(kind) = self.kind {
            object.insert("kind".into(), kind.into());
        }
        let kinds = crate::broker::registry::kind_list();
        let Some(named) = object.get("kind").and_then(Value::as_str) else {
            bail!("say which kind of connection: --kind with {kinds}");
        };
        let Some(kind) = crate::broker::registry::kind(named) else {
            bail!("`{named}` is not a kind of connection: use {kinds}");
        };
        for (flag, values) in self.fields.0 {
            let Some(field) = kind.fields.iter().find(|f| f.flag == flag) else {
                let own: Vec<String> = kind
                    .fields
                    .iter()
                    .map(|f| format!("--{}", f.flag))
                    .collect();
                bail!(
                    "--{flag} is not a field of a {} connection{}",
                    kind.name,
                    if own.is_empty() {
                        " (it has none: use --json for its definition)".to_owned()
                    } else {
                        format!(" (its flags: {})", own.join(", "))
                    }
                );
            };
            let values = match (field.input, values.last()) {
                (Input::Secret, Some(last)) if last == "-" => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    vec![line.trim_end_matches(['\r', '\n']).to_owned()]
                }
                _ => values,
            };
            let value = field
                .value(&values)
                .map_err(|e| anyhow::anyhow!("--{flag} {e}"))?;
            set_field(object, field.path, value).map_err(anyhow::Error::msg)?;
        }
        Ok(base)
    }
}

/// `wharf connection kinds`: each kind, what it can do and its flags.
fn kinds(json: bool) -> anyhow::Result<()> {
    if json {
        return print(&serde_json::to_value(KINDS)?);
    }
    for kind in KINDS {
        let can = kind.can;
        let mut cannot = Vec::new();
        for (able, what) in [
            (can.depth, "depth"),
            (can.purge, "purge"),
            (can.peek, "peek"),
            (can.leases, "leases"),
            (can.subscriptions, "subscriptions"),
        ] {
            if !able {
                cannot.push(what);
            }
        }
        println!(
            "{:<9} {}{}",
            kind.name,
            kind.title,
            if cannot.is_empty() {
                String::new()
            } else {
                format!(" (no {})", cannot.join(", "))
            }
        );
        for field in kind.fields {
            println!("  --{:<26} {}", field.flag, field.label);
        }
    }
    Ok(())
}

pub async fn connection(command: ConnectionCommand) -> anyhow::Result<ExitCode> {
    let line = |c: &Value| {
        println!(
            "{:<16} {:<9} {:<5} {:<5} {}",
            c["name"].as_str().unwrap_or(""),
            c["connection"]["kind"].as_str().unwrap_or(""),
            c["source"].as_str().unwrap_or(""),
            c["state"].as_str().unwrap_or(""),
            c["error"].as_str().unwrap_or("")
        )
    };
    match command {
        ConnectionCommand::List { host, json } => {
            super::control::list(&host, "connections", json, line).await?
        }
        ConnectionCommand::Show { name, host } => {
            super::control::show(&host, "connections", &name).await?
        }
        ConnectionCommand::Add { name, spec, host } => {
            let mut body = spec.build(json!({}))?;
            body["name"] = name.into();
            line(
                &Api::new(&host)?
                    .send(reqwest::Method::POST, "connections", Some(body))
                    .await?,
            );
        }
        ConnectionCommand::Update { name, spec, host } => {
            let api = Api::new(&host)?;
            let path = format!("connections/{}", segment(&name));
            let current = api.get(&path).await?["connection"].clone();
            let body = spec.build(current)?;
            line(&api.send(reqwest::Method::PUT, &path, Some(body)).await?);
        }
        ConnectionCommand::Remove { name, host } => {
            Api::new(&host)?
                .send(
                    reqwest::Method::DELETE,
                    &format!("connections/{}", segment(&name)),
                    None,
                )
                .await?;
            println!("removed connection {name}");
        }
        ConnectionCommand::Kinds { json } => kinds(json)?,
        ConnectionCommand::Test { name, host } => {
            let result = Api::new(&host)?
                .send(
                    reqwest::Method::POST,
                    &format!("connections/{}/test", segment(&name)),
                    None,
                )
                .await?;
            let ok = result["ok"].as_bool() == Some(true);
            println!(
                "{}: {}",
                if ok { "ok" } else { "failed" },
                result["detail"].as_str().unwrap_or("")
            );
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
