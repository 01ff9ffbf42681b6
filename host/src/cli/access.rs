//! `wharf user` and `wharf token`: the people and services that may use a host's API. They
//! work on the database directly, so the first admin is made before any host runs (and with
//! none running); a running host sees the change at once, because it checks every request
//! against the database.

use super::plugin::DatabaseArg;
use crate::auth::{self, Role};
use crate::message::now_ms;
use crate::store::Store;
use anyhow::{Context, bail};
use clap::Subcommand;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from a prompt, or from standard input's first line.
    Add {
        name: String,
        /// admin (everything), operator (publish, take, purge) or viewer (read only).
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// List the users and their roles.
    List {
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Set a user's password (from a prompt or standard input).
    Passwd {
        name: String,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Remove a user.
    Remove {
        name: String,
        #[command(flatten)]
        database: DatabaseArg,
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
        database: DatabaseArg,
    },
    /// List the tokens (never the tokens themselves), revoked ones included.
    List {
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Revoke every live token with this id or name.
    Revoke {
        id_or_name: String,
        #[command(flatten)]
        database: DatabaseArg,
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

async fn hashed(password: String) -> anyhow::Result<String> {
    Ok(tokio::task::spawn_blocking(move || auth::hash_password(&password)).await??)
}

pub async fn user(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add {
            name,
            role,
            database,
        } => {
            auth::check_name(&name)?;
            let store = Store::open(&database.database).await?;
            let hash = hashed(read_password(&format!("password for {name}"))?).await?;
            if !store.add_user(&name, &hash, role, now_ms() as i64).await? {
                bail!("a user named `{name}` exists already");
            }
            println!("added {name} ({role})");
        }
        UserCommand::List { database } => {
            let store = Store::open(&database.database).await?;
            for user in store.users().await? {
                let state = if user.disabled { " (disabled)" } else { "" };
                println!("{}\t{}{state}", user.name, user.role);
            }
        }
        UserCommand::Passwd { name, database } => {
            let store = Store::open(&database.database).await?;
            let hash = hashed(read_password(&format!("new password for {name}"))?).await?;
            if !store.set_password(&name, &hash, now_ms() as i64).await? {
                bail!("there is no user named `{name}`");
            }
            // Whoever signed in with the old password is signed out.
            store.remove_sessions_of(&name).await?;
            println!("changed the password of {name}");
        }
        UserCommand::Remove { name, database } => {
            let store = Store::open(&database.database).await?;
            if !store.remove_user(&name).await? {
                bail!("there is no user named `{name}`");
            }
            println!("removed {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            name,
            role,
            database,
        } => {
            auth::check_name(&name)?;
            let store = Store::open(&database.database).await?;
            let (token, digest) = auth::new_token();
            let id = store
                .add_token(&name, role, &digest, false, now_ms() as i64)
                .await?;
            eprintln!("token {id} for {name} ({role}); it is shown this once:");
            println!("{token}");
        }
        TokenCommand::List { database } => {
            let store = Store::open(&database.database).await?;
            for token in store.tokens().await? {
                let state = match token.revoked_ms {
                    Some(_) => " (revoked)",
                    None if token.local => " (the host's CLI)",
                    None => "",
                };
                println!("{}\t{}\t{}{state}", token.id, token.name, token.role);
            }
        }
        TokenCommand::Revoke {
            id_or_name,
            database,
        } => {
            let store = Store::open(&database.database).await?;
            match store.revoke_tokens(&id_or_name, now_ms() as i64).await? {
                0 => bail!("no live token has the id or name `{id_or_name}`"),
                n => println!("revoked {n} token(s)"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
