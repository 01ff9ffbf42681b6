//! `wharf route`: a route's options and how one prints; the commands are `unit`'s.

use super::unit::{UnitArgs, chain};
use clap::Args;
use serde_json::{Value, json};

/// A route's options, as in the file's `[[routes]]`.
#[derive(Debug, Args)]
pub struct RouteSpec {
    /// The whole route as JSON (a file, or `-`); the options below are applied over it.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
    /// CONNECTION:ADDRESS to consume.
    #[arg(long)]
    from: Option<String>,
    #[command(flatten)]
    chain: ChainArgs,
}

/// The options of a plugin chain, which routes and subscriptions share.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// The plugin chain, in order (`uppercase,json-filter` or repeated); `name@version` pins.
    #[arg(long, value_delimiter = ',')]
    through: Option<Vec<String>>,
    /// CONNECTION:ADDRESS for the outputs.
    #[arg(long)]
    to: Option<String>,
    /// Where dead letters go (default: the input's `.dead`).
    #[arg(long)]
    dead_letter: Option<String>,
    /// Messages in flight at once.
    #[arg(long)]
    concurrency: Option<u64>,
    /// Retries before a message is dead-lettered.
    #[arg(long)]
    retry_max: Option<u64>,
    /// The first retry's delay, doubling after.
    #[arg(long)]
    backoff_ms: Option<u64>,
    /// Deliveries before a message is dead-lettered unsettled.
    #[arg(long)]
    max_deliveries: Option<u64>,
    /// Outputs and kv writes through the outbox, with the input recorded in the inbox, in
    /// one transaction (`--durable false` to turn it off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    durable: Option<bool>,
    /// Remember handled inputs and skip one delivered again (`--inbox false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    inbox: Option<bool>,
}

impl ChainArgs {
    /// Each option, by its key in a route's or subscription's definition.
    pub fn options(self) -> Vec<(&'static str, Option<Value>)> {
        vec![
            ("through", self.through.map(|t| json!(t))),
            ("to", self.to.map(Value::from)),
            ("dead_letter", self.dead_letter.map(Value::from)),
            ("concurrency", self.concurrency.map(Value::from)),
            ("retry.max", self.retry_max.map(Value::from)),
            ("retry.backoff_ms", self.backoff_ms.map(Value::from)),
            ("max_deliveries", self.max_deliveries.map(Value::from)),
            ("durable", self.durable.map(Value::from)),
            ("inbox", self.inbox.map(Value::from)),
        ]
    }
}

impl UnitArgs for RouteSpec {
    const NOUNS: &'static str = "routes";
    const KIND: &'static str = "route";

    fn json(&self) -> Option<&str> {
        self.json.as_deref()
    }

    fn options(self) -> Vec<(&'static str, Option<Value>)> {
        let mut options = vec![("from", self.from.map(Value::from))];
        options.extend(self.chain.options());
        options
    }

    fn line(view: &Value) -> String {
        let route = &view["route"];
        format!(
            "{} → [{}] → {}{}",
            route["from"].as_str().unwrap_or(""),
            chain(route).join(", "),
            route["to"].as_str().unwrap_or("(replies)"),
            if route["durable"].as_bool() == Some(true) {
                "  (durable)"
            } else {
                ""
            },
        )
    }
}
