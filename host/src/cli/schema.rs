//! `wharf schema show|apply`: the AMQP topology the configuration wants, and declaring it.

use crate::config::Config;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Print the exchanges, queues and bindings the configuration declares on each AMQP
    /// connection (the queues its routes use included), without connecting.
    Show {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only this connection.
        #[arg(long)]
        connection: Option<String>,
    },
    /// Declare them on the brokers and print what was created and what existed. Safe to run
    /// again; a queue that exists with other arguments is reported as an error.
    Apply {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        connection: Option<String>,
    },
}

pub async fn run(command: SchemaCommand) -> anyhow::Result<ExitCode> {
    let (config_path, only, apply) = match command {
        SchemaCommand::Show { config, connection } => (config, connection, false),
        SchemaCommand::Apply { config, connection } => (config, connection, true),
    };
    let config = Config::load(config_path.as_deref())?;
    let mut found = false;
    for (name, connection) in &config.connections {
        if only.as_ref().is_some_and(|only| only != name) {
            continue;
        }
        let Some(described) = connection.schema(name, &config.routes) else {
            continue;
        };
        found = true;
        if !apply {
            println!("{name}:");
            for line in described {
                println!("  {line}");
            }
            continue;
        }
        let applied = connection
            .apply_schema(name, &config.routes)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some((url, report)) = applied {
            println!("{name} ({url}):");
            for (item, outcome) in report {
                println!("  {item}: {outcome}");
            }
        }
    }
    if !found {
        match only {
            Some(only) => anyhow::bail!(
                "there is no connection named `{only}` that declares anything (AMQP) in the configuration"
            ),
            None => println!("the configuration has no connections that declare anything (AMQP)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
