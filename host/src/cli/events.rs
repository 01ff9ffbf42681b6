//! `wharf event` (publish a model event) and `wharf drain`, through a running host's API.

use super::api::HostArg;
use super::api::{Api, read_json, segment};
use anyhow::Context;
use clap::Args;
use serde_json::json;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct EventArgs {
    /// The model: a class name or a dotted path (`shop.models.Booking`); its last part and
    /// the event make the routing key (`Booking.created`).
    model: String,
    /// The event: `created`, `updated`, …
    event: String,
    /// The event's data, as JSON (`'{"id": 7}'`), `@FILE`, or `-` for standard input.
    data: String,
    /// Through the outbox: committed now, sent when the broker takes it.
    #[arg(long)]
    durable: bool,
    #[command(flatten)]
    host: HostArg,
}

/// `wharf event MODEL EVENT DATA`.
pub async fn event(args: EventArgs) -> anyhow::Result<ExitCode> {
    let data = match args.data.strip_prefix('@') {
        Some(file) => read_json(file)?,
        None if args.data == "-" => read_json("-")?,
        None => serde_json::from_str(&args.data)
            .context("DATA is not JSON (quote a string as '\"text\"', or give @FILE)")?,
    };
    let path = format!(
        "events/{}/{}{}",
        segment(&args.model),
        segment(&args.event),
        if args.durable { "?durable=true" } else { "" }
    );
    let published = Api::new(&args.host)?
        .send(reqwest::Method::POST, &path, Some(data))
        .await?;
    println!(
        "{} {} to {}{}",
        published["id"].as_str().unwrap_or(""),
        published["routing_key"].as_str().unwrap_or(""),
        published["to"].as_str().unwrap_or(""),
        if args.durable { " (in the outbox)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// A route to drain (repeat for more).
    #[arg(long = "route", value_name = "NAME")]
    routes: Vec<String>,
    /// A subscription to drain (repeat for more).
    #[arg(long = "subscription", value_name = "NAME")]
    subscriptions: Vec<String>,
    /// Give up after this many seconds (the count so far is still printed; exit status 4).
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[command(flatten)]
    host: HostArg,
}

/// `wharf drain`: processes every message outstanding on the units given (none: every route
/// and subscription of the host), then prints how many this host took.
pub async fn drain(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let units: Vec<String> = args.routes.into_iter().chain(args.subscriptions).collect();
    let report = Api::new(&args.host)?
        .send(
            reqwest::Method::POST,
            "drain",
            Some(json!({ "units": units, "timeout_secs": args.timeout })),
        )
        .await?;
    for unit in report["units"].as_array().into_iter().flatten() {
        println!(
            "{} {}: {} processed{}",
            unit["kind"].as_str().unwrap_or(""),
            unit["name"].as_str().unwrap_or(""),
            unit["processed"],
            if unit["empty"].as_bool() == Some(true) {
                ""
            } else {
                ", not empty when the time ran out"
            }
        );
    }
    println!("{}", report["processed"]);
    Ok(if report["complete"].as_bool() == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    })
}
