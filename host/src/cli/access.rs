//! `wharf user` and `wharf token`: the people and services that may use a host's API. With
//! `--database` (or `WHARF_DATABASE`) they work on that database directly, so the first admin
//! is made before any host runs; without it they go through the host at `--url` (one path for
//! a change), or, when no host answers there, work on `sqlite://wharf.db` directly and say so.
//! A running host sees a change made on its database at once: it checks every request there.

use super::api::HostArg;
use super::api::{Api, segment};
use crate::auth::{self, Role};
use crate::message::now_ms;
use crate::store::Store;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

/// Where a change goes: a database directly, or a running host.
#[derive(Debug, Args)]
pub struct Target {
    /// Work on this database directly (sqlite://PATH or postgres://USER@HOST:PORT/DB), with or
    /// without a host running: how the first admin is made.
    #[arg(long, env = "WHARF_DATABASE")]
    database: Option<String>,
    #[command(flatten)]
    host: HostArg,
}

/// The database file `wharf serve` uses with no configuration.
const DEFAULT_DATABASE: &str = "sqlite://wharf.db";

enum Via {
    Database(Store),
    Host(Api),
}

impl Target {
    async fn via(&self) -> anyhow::Result<Via> {
        if let Some(url) = &self.database {
            return Ok(Via::Database(Store::open(url).await?));
        }
        let api = Api::new(&self.host)?;
        if api.answers().await {
            return Ok(Via::Host(api));
        }
        eprintln!(
            "no host answers at {}; changing {DEFAULT_DATABASE} directly (--database names another)",
            api.base()
        );
        Ok(Via::Database(Store::open(DEFAULT_DATABASE).await?))
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from a prompt, or from standard input's first line.
    Add {
        name: String,
        /// admin (everything), operator (publish, take, purge) or viewer (read only).
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        target: Target,
    },
    /// List the users and their roles.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Set a user's password (from a prompt or standard input).
    Passwd {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a user.
    Remove {
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token for a service; it is printed once and stored only as a digest.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        target: Target,
    },
    /// List the tokens (never the tokens themselves), revoked ones included.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Revoke every live token with this id or name.
    Revoke {
        id_or_name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// A new password: prompted twice on a terminal, else the first line of standard input.
/// Never an argument, so it stays out of the shell's history and the process list.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("{prompt}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Records a change made on the database directly in the audit log: by this machine's user,
/// through the CLI (a change through a host is recorded by the host).
pub(crate) async fn audited(store: &Store, action: &str, target: &str, detail: Value) {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let entry = crate::store::NewAudit {
        at_ms: now_ms() as i64,
        actor: format!("os:{user}"),
        via: "cli",
        peer: None,
        action,
        target: target.to_owned(),
        detail: detail.to_string(),
    };
    if let Err(error) = store.add_audit(&entry).await {
        eprintln!("warning: the change is made, but the audit log could not record it: {error}");
    }
}

async fn hashed(password: String) -> anyhow::Result<String> {
    Ok(tokio::task::spawn_blocking(move || auth::hash_password(&password)).await??)
}

pub async fn user(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add { name, role, target } => {
            auth::check_name(&name)?;
            let via = target.via().await?;
            let password = read_password(&format!("password for {name}"))?;
            match via {
                Via::Database(store) => {
                    let hash = hashed(password).await?;
                    if !store.add_user(&name, &hash, role, now_ms() as i64).await? {
                        bail!("a user named `{name}` exists already");
                    }
                    audited(
                        &store,
                        "user.create",
                        &name,
                        json!({ "role": role.as_str() }),
                    )
                    .await;
                }
                Via::Host(api) => {
                    let body = json!({ "name": name, "password": password, "role": role.as_str() });
                    api.send(reqwest::Method::POST, "users", Some(body)).await?;
                }
            }
            println!("added {name} ({role})");
        }
        UserCommand::List { target } => {
            let users: Vec<(String, String, bool)> = match target.via().await? {
                Via::Database(store) => store
                    .users()
                    .await?
                    .into_iter()
                    .map(|u| (u.name, u.role, u.disabled))
                    .collect(),
                Via::Host(api) => api
                    .get("users")
                    .await?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        (
                            text(&u["name"]),
                            text(&u["role"]),
                            u["disabled"].as_bool() == Some(true),
                        )
                    })
                    .collect(),
            };
            if users.is_empty() {
                eprintln!("no users");
            }
            for (name, role, disabled) in users {
                let state = if disabled { " (disabled)" } else { "" };
                println!("{name}\t{role}{state}");
            }
        }
        UserCommand::Passwd { name, target } => {
            let via = target.via().await?;
            let password = read_password(&format!("new password for {name}"))?;
            match via {
                Via::Database(store) => {
                    let hash = hashed(password).await?;
                    if !store.set_password(&name, &hash, now_ms() as i64).await? {
                        bail!("there is no user named `{name}`");
                    }
                    // Whoever signed in with the old password is signed out.
                    store.remove_sessions_of(&name).await?;
                    audited(&store, "user.password", &name, json!({})).await;
                }
                Via::Host(api) => {
                    api.send(
                        reqwest::Method::PUT,
                        &format!("users/{}/password", segment(&name)),
                        Some(json!({ "password": password })),
                    )
                    .await?;
                }
            }
            println!("changed the password of {name}");
        }
        UserCommand::Remove { name, target } => {
            match target.via().await? {
                Via::Database(store) => {
                    if !store.remove_user(&name).await? {
                        bail!("there is no user named `{name}`");
                    }
                    audited(&store, "user.delete", &name, json!({})).await;
                }
                Via::Host(api) => {
                    api.send(
                        reqwest::Method::DELETE,
                        &format!("users/{}", segment(&name)),
                        None,
                    )
                    .await?;
                }
            }
            println!("removed {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

pub async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create { name, role, target } => {
            auth::check_name(&name)?;
            let (id, token) = match target.via().await? {
                Via::Database(store) => {
                    let (token, digest) = auth::new_token();
                    let id = store
                        .add_token(&name, role, &digest, false, now_ms() as i64)
                        .await?;
                    audited(
                        &store,
                        "token.create",
                        &name,
                        json!({ "id": id, "role": role.as_str() }),
                    )
                    .await;
                    (id, token)
                }
                Via::Host(api) => {
                    let made = api
                        .send(
                            reqwest::Method::POST,
                            "tokens",
                            Some(json!({ "name": name, "role": role.as_str() })),
                        )
                        .await?;
                    (text(&made["id"]), text(&made["token"]))
                }
            };
            eprintln!("token {id} for {name} ({role}); it is shown this once:");
            println!("{token}");
        }
        TokenCommand::List { target } => {
            let tokens: Vec<(String, String, String, bool, bool)> = match target.via().await? {
                Via::Database(store) => store
                    .tokens()
                    .await?
                    .into_iter()
                    .map(|t| (t.id, t.name, t.role, t.revoked_ms.is_some(), t.local))
                    .collect(),
                Via::Host(api) => api
                    .get("tokens")
                    .await?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        (
                            text(&t["id"]),
                            text(&t["name"]),
                            text(&t["role"]),
                            !t["revoked_ms"].is_null(),
                            t["local"].as_bool() == Some(true),
                        )
                    })
                    .collect(),
            };
            if tokens.is_empty() {
                eprintln!("no tokens");
            }
            for (id, name, role, revoked, local) in tokens {
                let state = match (revoked, local) {
                    (true, _) => " (revoked)",
                    (false, true) => " (the host's CLI)",
                    _ => "",
                };
                println!("{id}\t{name}\t{role}{state}");
            }
        }
        TokenCommand::Revoke { id_or_name, target } => {
            let revoked = match target.via().await? {
                Via::Database(store) => {
                    let revoked = store.revoke_tokens(&id_or_name, now_ms() as i64).await?;
                    if revoked > 0 {
                        audited(
                            &store,
                            "token.revoke",
                            &id_or_name,
                            json!({ "revoked": revoked }),
                        )
                        .await;
                    }
                    revoked
                }
                Via::Host(api) => api
                    .send(
                        reqwest::Method::DELETE,
                        &format!("tokens/{}", segment(&id_or_name)),
                        None,
                    )
                    .await?["revoked"]
                    .as_u64()
                    .unwrap_or(0),
            };
            match revoked {
                0 => bail!("no live token has the id or name `{id_or_name}`"),
                n => println!("revoked {n} token(s)"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
