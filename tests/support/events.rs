//! The events scenario every transport runs: two services subscribed to `Booking.*`, three
//! events published through the API (two they want, one they do not), and what each got.
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::{Value, json};
use std::time::Duration;
use wharf::config::SubscriptionConfig;

/// A subscription of `service` to `pattern`, its outputs (the events, through `through`) to
/// `to`.
pub fn subscription(name: &str, service: &str, pattern: &str, through: &[&str], to: &str) -> Value {
    json!({
        "name": name,
        "service": service,
        "pattern": pattern,
        "through": through,
        "to": to,
    })
}

pub fn parsed(value: Value) -> SubscriptionConfig {
    serde_json::from_value(value).unwrap()
}

/// Publishes `model`'s `event` through the API; returns the answer's body.
pub async fn publish(client: &reqwest::Client, base: &str, model: &str, event: &str) -> Value {
    let answer = client
        .post(format!("{base}/api/v1/events/{model}/{event}"))
        .json(&json!({ "model": model, "event": event }))
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The three events every test publishes: two a `Booking.*` subscriber wants, one it does not.
pub async fn publish_three(client: &reqwest::Client, base: &str) {
    let created = publish(client, base, "shop.models.Booking", "created").await;
    assert_eq!(created["routing_key"], "Booking.created");
    publish(client, base, "Booking", "updated").await;
    publish(client, base, "shop.models.Order", "created").await;
}

/// Waits until `queue` of `broker` holds `count` messages (30 s at most), checks no more come
/// within a moment, and returns their topics, sorted.
pub async fn topics_in(
    broker: &wharf::broker::EmbeddedBroker,
    queue: &str,
    count: usize,
) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let found = broker.peek(queue, 100, 1 << 20).await.unwrap();
        if found.len() >= count {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let found = broker.peek(queue, 100, 1 << 20).await.unwrap();
            let mut topics: Vec<String> = found.iter().map(|m| m.topic.clone()).collect();
            topics.sort();
            return topics;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{queue} holds {} of {count} within 30 s: {:?}",
            found.len(),
            found.iter().map(|m| &m.topic).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events a `Booking.*` subscriber gets of [`publish_three`]'s, sorted.
pub fn booking_events() -> Vec<String> {
    vec!["Booking.created".into(), "Booking.updated".into()]
}

/// The two services' subscriptions to `Booking.*` (`billing` and `audit`, services of those
/// names), each through `uppercase` into `local:billing.out` and `local:audit.out`.
pub fn booking_subscriptions(billing: &str, audit: &str) -> Vec<SubscriptionConfig> {
    [(billing, "billing.out"), (audit, "audit.out")]
        .into_iter()
        .map(|(service, to)| {
            parsed(subscription(
                &format!("{service}-bookings"),
                service,
                "Booking.*",
                &["uppercase"],
                &format!("local:{to}"),
            ))
        })
        .collect()
}

/// Checks each of the two services got both Booking events and nothing else.
pub async fn each_service_got_the_booking_events(broker: &wharf::broker::EmbeddedBroker) {
    for queue in ["billing.out", "audit.out"] {
        assert_eq!(
            topics_in(broker, queue, 2).await,
            booking_events(),
            "{queue}"
        );
    }
}
