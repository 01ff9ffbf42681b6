//! `wharf subscription`: a subscription's options and how one prints; the commands are
//! `unit`'s.

use super::unit::{UnitArgs, chain};
use clap::Args;
use serde_json::Value;

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
    #[command(flatten)]
    chain: super::route::ChainArgs,
}

impl UnitArgs for SubscriptionSpec {
    const NOUNS: &'static str = "subscriptions";
    const KIND: &'static str = "subscription";

    fn json(&self) -> Option<&str> {
        self.json.as_deref()
    }

    fn options(self) -> Vec<(&'static str, Option<Value>)> {
        let mut options = vec![
            ("pattern", self.pattern.map(Value::from)),
            ("service", self.service.map(Value::from)),
        ];
        options.extend(self.chain.options());
        options
    }

    fn line(view: &Value) -> String {
        let subscription = &view["subscription"];
        let through = chain(subscription);
        format!(
            "{} {} from queue {} → [{}]{}",
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
        )
    }
}
