//! `wharf outbox`: the backlog of a running host's outbox, and the messages their destination
//! refused for good (list, send again, delete).

use super::api::Api;
use super::api::HostArg;
use clap::Subcommand;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Messages not sent yet, per destination: how many, the oldest's age, the last error.
    Stats {
        #[command(flatten)]
        host: HostArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Messages their destination refused for good, newest first.
    Dead {
        /// How many to show (1 to 1,000).
        #[arg(long, default_value_t = 50)]
        count: usize,
        /// The dead rows of an application's outbox table (`[[sources]]`) instead.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[command(flatten)]
        host: HostArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send a dead message again (its number, SEQ, from `wharf outbox dead`).
    Retry {
        seq: i64,
        /// A dead row of this application's outbox table (`[[sources]]`).
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Delete a dead message.
    Delete {
        seq: i64,
        /// A dead row of this application's outbox table (`[[sources]]`).
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Print the DDL of an application's outbox table, for its migrations: a service writes
    /// its messages there in its own transactions, and a host with `[[sources]]` naming the
    /// database sends them.
    Schema {
        /// The application's database.
        #[arg(long, value_enum)]
        dialect: crate::settings::SourceDialect,
        /// The table's name (`name` or `schema.name`).
        #[arg(long, default_value = "wharf_outbox")]
        table: String,
    },
}

/// `?source=NAME` for a call about a source's row, or nothing.
fn source_query(source: &Option<String>) -> String {
    source
        .as_deref()
        .map(|name| format!("?source={}", super::api::segment(name)))
        .unwrap_or_default()
}

/// Milliseconds as people read an age.
pub(crate) fn age(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=119_999 => format!("{:.1} s", ms as f64 / 1000.0),
        120_000..=7_199_999 => format!("{} min", ms / 60_000),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// The backlog as text: a line in all, then one per destination.
pub(crate) fn describe(stats: &Value) -> Vec<String> {
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let mut lines = vec![format!(
        "{} pending{}, {} dead",
        count(&stats["pending"]),
        stats["oldest_age_ms"]
            .as_u64()
            .map(|ms| format!(" (oldest {})", age(ms)))
            .unwrap_or_default(),
        count(&stats["dead"])
    )];
    for d in stats["destinations"].as_array().into_iter().flatten() {
        let mut line = format!(
            "  {}  {} pending",
            d["destination"].as_str().unwrap_or("?"),
            count(&d["pending"])
        );
        if let Some(ms) = d["oldest_age_ms"].as_u64() {
            line.push_str(&format!(", oldest {}", age(ms)));
        }
        if count(&d["dead"]) > 0 {
            line.push_str(&format!(", {} dead", count(&d["dead"])));
        }
        if let Some(error) = d["last_error"].as_str() {
            line.push_str(&format!("; last error: {error}"));
        }
        lines.push(line);
    }
    for source in stats["sources"].as_array().into_iter().flatten() {
        let name = source["source"].as_str().unwrap_or("?");
        let line = match source["unreadable"].as_str() {
            Some(why) => format!("  source {name}: cannot read its table: {why}"),
            None => {
                let mut line = format!("  source {name}  {} pending", count(&source["pending"]));
                if let Some(ms) = source["oldest_age_ms"].as_u64() {
                    line.push_str(&format!(", oldest {}", age(ms)));
                }
                if count(&source["dead"]) > 0 {
                    line.push_str(&format!(", {} dead", count(&source["dead"])));
                }
                if let Some(error) = source["last_error"].as_str() {
                    line.push_str(&format!("; last error: {error}"));
                }
                line
            }
        };
        lines.push(line);
    }
    lines
}

pub async fn run(command: OutboxCommand) -> anyhow::Result<ExitCode> {
    match command {
        OutboxCommand::Stats { host, json } => {
            let stats = Api::new(&host)?.get("outbox").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                for line in describe(&stats) {
                    println!("{line}");
                }
            }
        }
        OutboxCommand::Dead {
            count,
            source,
            host,
            json,
        } => {
            let from = source_query(&source).replacen('?', "&", 1);
            let rows = Api::new(&host)?
                .get(&format!("outbox/dead?count={count}{from}"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for row in rows.as_array().into_iter().flatten() {
                    println!(
                        "{}  {}  {}  after {} attempt(s): {}",
                        row["seq"],
                        row["destination"].as_str().unwrap_or("?"),
                        row["message"]["id"].as_str().unwrap_or("-"),
                        row["attempts"],
                        row["error"].as_str().unwrap_or("")
                    );
                }
            }
        }
        OutboxCommand::Retry { seq, source, host } => {
            Api::new(&host)?
                .send(
                    reqwest::Method::POST,
                    &format!("outbox/dead/{seq}/retry{}", source_query(&source)),
                    None,
                )
                .await?;
            println!("outbox message {seq} is pending again");
        }
        OutboxCommand::Delete { seq, source, host } => {
            Api::new(&host)?
                .send(
                    reqwest::Method::DELETE,
                    &format!("outbox/dead/{seq}{}", source_query(&source)),
                    None,
                )
                .await?;
            println!("outbox message {seq} deleted");
        }
        OutboxCommand::Schema { dialect, table } => {
            if !crate::check::is_table_name(&table) {
                anyhow::bail!(
                    "`{table}` is not a table name: `name` or `schema.name`, letters, digits and `_`"
                );
            }
            print!("{}", crate::store::source_schema(dialect, &table));
        }
    }
    Ok(ExitCode::SUCCESS)
}
