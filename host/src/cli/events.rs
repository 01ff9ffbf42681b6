//! `wharf event` (publish a model event) and `wharf subscription` (the subscriptions of a
//! running host), through its API.

use super::api::HostArg;
use super::api::{Api, read_json, segment};
use super::control::switch;
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
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

#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// List every subscription with its queue and state on the host.
    List {
        #[command(flatten)]
        host: HostArg,
        #[arg(long)]
        json: bool,
    },
    /// Show one subscription.
    Show {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Create a subscription (it runs on every host on the database at once).
    Create {
        name: String,
        #[command(flatten)]
        spec: SubscriptionSpec,
        #[command(flatten)]
        host: HostArg,
    },
    /// Change a subscription: the options given replace its own. A new service, chain or
    /// pattern moves it to a new queue.
    Update {
        name: String,
        #[command(flatten)]
        spec: SubscriptionSpec,
        #[command(flatten)]
        host: HostArg,
    },
    /// Hold a subscription stopped on every host (operator); its queue keeps filling.
    Stop {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Let a stopped subscription run again.
    Start {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Delete a subscription: it finishes what it holds and its queue is unbound.
    Delete {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
}

/// A subscription's options, as in the file's `[[subscriptions]]`.
#[derive(Debug, Args)]
pub struct SubscriptionSpec {
    /// The whole subscription as JSON (a file, or `-`); the options below apply over it.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
    /// Routing keys to take: `Booking.*` (one word), `Booking.#` or `#` (any number).
    #[arg(long)]
    pattern: Option<String>,
    /// The subscribing service (part of the queue's name).
    #[arg(long)]
    service: Option<String>,
    /// The plugin chain, in order (`notify,audit` or repeated); `name@version` pins.
    #[arg(long, value_delimiter = ',')]
    through: Option<Vec<String>>,
    /// CONNECTION:ADDRESS for the outputs.
    #[arg(long)]
    to: Option<String>,
    /// Where dead letters go (default `{queue}.dead` on the events connection).
    #[arg(long)]
    dead_letter: Option<String>,
    /// Events in flight at once.
    #[arg(long)]
    concurrency: Option<u64>,
    /// Effects through the outbox (`--durable false` to turn it off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    durable: Option<bool>,
    /// Remember handled events and skip one delivered again.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    inbox: Option<bool>,
}

impl SubscriptionSpec {
    fn apply(self, mut subscription: Value) -> anyhow::Result<Value> {
        if let Some(source) = &self.json {
            subscription = read_json(source)?;
        }
        let object = subscription
            .as_object_mut()
            .context("a subscription is a JSON object")?;
        for (key, value) in [
            ("pattern", self.pattern.map(Value::from)),
            ("service", self.service.map(Value::from)),
            ("through", self.through.map(|t| json!(t))),
            ("to", self.to.map(Value::from)),
            ("dead_letter", self.dead_letter.map(Value::from)),
            ("concurrency", self.concurrency.map(Value::from)),
            ("durable", self.durable.map(Value::from)),
            ("inbox", self.inbox.map(Value::from)),
        ] {
            if let Some(value) = value {
                object.insert(key.to_owned(), value);
            }
        }
        Ok(subscription)
    }
}

fn print_subscription(view: &Value) {
    let subscription = &view["subscription"];
    let through: Vec<&str> = subscription["through"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!(
        "{:<20} {:<5} {:<11} {} {} from queue {} → [{}]{}",
        view["name"].as_str().unwrap_or(""),
        view["source"].as_str().unwrap_or(""),
        view["status"]["state"]
            .as_str()
            .or(view["refused"].as_str().map(|_| "not run"))
            .unwrap_or("pending"),
        subscription["service"].as_str().unwrap_or(""),
        subscription["pattern"].as_str().unwrap_or(""),
        view["queue"].as_str().unwrap_or(""),
        if through.is_empty() {
            "no plugins".to_owned()
        } else {
            through.join(", ")
        },
        subscription["to"]
            .as_str()
            .map(|to| format!(" → {to}"))
            .unwrap_or_default(),
    );
    if let Some(error) = view["status"]["error"]
        .as_str()
        .or(view["refused"].as_str())
    {
        println!("{:<20} last error: {error}", "");
    }
}

pub async fn subscription(command: SubscriptionCommand) -> anyhow::Result<ExitCode> {
    match command {
        SubscriptionCommand::List { host, json } => {
            super::control::list(&host, "subscriptions", json, print_subscription).await?
        }
        SubscriptionCommand::Show { name, host } => {
            super::control::show(&host, "subscriptions", &name).await?
        }
        SubscriptionCommand::Create { name, spec, host } => {
            let subscription = spec.apply(json!({ "name": name }))?;
            let view = Api::new(&host)?
                .send(reqwest::Method::POST, "subscriptions", Some(subscription))
                .await?;
            print_subscription(&view);
        }
        SubscriptionCommand::Update { name, spec, host } => {
            let api = Api::new(&host)?;
            let path = format!("subscriptions/{}", segment(&name));
            let current = api.get(&path).await?["subscription"].clone();
            let subscription = spec.apply(current)?;
            let view = api
                .send(reqwest::Method::PUT, &path, Some(subscription))
                .await?;
            print_subscription(&view);
        }
        SubscriptionCommand::Stop { name, host } => switch(&name, &host, "stop").await?,
        SubscriptionCommand::Start { name, host } => switch(&name, &host, "start").await?,
        SubscriptionCommand::Delete { name, host } => {
            Api::new(&host)?
                .send(
                    reqwest::Method::DELETE,
                    &format!("subscriptions/{}", segment(&name)),
                    None,
                )
                .await?;
            println!("deleted subscription {name}");
        }
    }
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

/// `wharf drain`: processes every message outstanding on the units given, then prints how
/// many this host took.
pub async fn drain(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let units: Vec<String> = args.routes.into_iter().chain(args.subscriptions).collect();
    if units.is_empty() {
        anyhow::bail!("name what to drain: --route NAME or --subscription NAME (repeatable)");
    }
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
