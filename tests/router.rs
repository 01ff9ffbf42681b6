//! Routes in a host started in-process: chains, replies, retries, dead letters, derived ids
//! and backpressure, on the embedded broker and real plugins.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::{Backend, TestDb, plugin_path};
use wharf::broker::{Address, Connections, EmbeddedBroker, EmbeddedConfig, EmbeddedConsumer};
use wharf::config::{Config, PluginConfig, RetryConfig, RouteConfig};
use wharf::host::RunningHost;
use wharf::message::{HeaderValue, Message};
use wharf::router::{Route, RouteRunner};
use wharf::runtime::{PluginSettings, Standalone};
use wharf::store::Store;

fn route(name: &str, from: &str, through: &[&str], to: Option<&str>) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        from: from.into(),
        through: through.iter().map(|s| s.to_string()).collect(),
        to: to.map(str::to_owned),
        concurrency: 8,
        retry: RetryConfig {
            max: 2,
            backoff_ms: 10,
            max_backoff_ms: 50,
        },
        dead_letter: None,
        durable: false,
        ..RouteConfig::default()
    }
}

fn plugin(name: &str, config: &[(&str, &str)], publish: &[&str]) -> PluginConfig {
    PluginConfig {
        path: plugin_path(name),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        publish: publish.iter().map(|s| s.to_string()).collect(),
        ..PluginConfig::default()
    }
}

/// A host on a fresh database and a free port, with the example plugins and `plugins`.
async fn host(
    db: &TestDb,
    plugins: BTreeMap<String, PluginConfig>,
    routes: Vec<RouteConfig>,
) -> (RunningHost, EmbeddedBroker) {
    let config = Config {
        plugins,
        routes,
        ..Config::default()
    };
    support::start_host(db, config).await
}

async fn take(broker: &EmbeddedBroker, queue: &str, count: usize) -> Vec<Message> {
    let mut consumer: EmbeddedConsumer = broker.consume(queue, count).await.unwrap();
    let mut out = Vec::new();
    for _ in 0..count {
        let Ok(d) = tokio::time::timeout(Duration::from_secs(20), consumer.next()).await else {
            // Say where the missing ones went, if they were dead-lettered.
            let mut dead = Vec::new();
            for queue in broker.queues().await.unwrap_or_default() {
                if queue.ends_with(".dead") {
                    let mut c = broker.consume(&queue, 100).await.unwrap();
                    while let Ok(Ok(d)) =
                        tokio::time::timeout(Duration::from_millis(300), c.next()).await
                    {
                        dead.push((queue.clone(), d.message.headers.clone()));
                    }
                }
            }
            panic!(
                "{queue}: only {} of {count} messages arrived; dead letters: {dead:?}",
                out.len()
            );
        };
        let d = d.unwrap();
        out.push(d.message.clone());
        d.ack.ack().await.unwrap();
    }
    out
}

fn text(msg: &Message, header: &str) -> Option<String> {
    match msg.header(header) {
        Some(HeaderValue::Text(t)) => Some(t.clone()),
        Some(HeaderValue::Int(i)) => Some(i.to_string()),
        _ => None,
    }
}

fn order(id: &str, status: &str) -> Message {
    let mut msg = Message::new("orders", format!(r#"{{"status":"{status}","id":"{id}"}}"#));
    msg.id = id.into();
    msg.reply_to = Some("local:replies".into());
    msg.correlation_id = Some(format!("corr-{id}"));
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_two_transformers_and_a_handler() {
    let db = TestDb::new(Backend::Sqlite).await;
    let plugins = BTreeMap::from([
        (
            "shipped".to_string(),
            plugin(
                "json-filter",
                &[("field", "status"), ("value", "shipped")],
                &[],
            ),
        ),
        (
            "relay".to_string(),
            plugin("relay", &[("to", "local:relay.copies")], &["local:relay.*"]),
        ),
    ]);
    // This test is about the chain, not retries: a generous budget, so a retryable failure on
    // a loaded machine (a plugin deadline, a busy database) is retried rather than
    // dead-lettered.
    let routes = vec![RouteConfig {
        retry: RetryConfig {
            max: 10,
            backoff_ms: 50,
            max_backoff_ms: 1_000,
        },
        ..route(
            "orders",
            "local:orders",
            &["shipped", "uppercase", "relay"],
            None,
        )
    }];
    let (host, broker) = host(&db, plugins, routes).await;

    for (id, status) in [("o1", "shipped"), ("o2", "pending"), ("o3", "shipped")] {
        broker.publish("orders", order(id, status)).await.unwrap();
    }
    // The filter dropped o2; the uppercased o1 and o3 reached the handler, which published a
    // copy of each and replied to each request's reply-to with its correlation id.
    let mut copies = take(&broker, "relay.copies", 2).await;
    copies.sort_by(|a, b| a.payload.cmp(&b.payload));
    assert_eq!(copies[0].payload, br#"{"STATUS":"SHIPPED","ID":"O1"}"#);
    assert_eq!(copies[1].payload, br#"{"STATUS":"SHIPPED","ID":"O3"}"#);
    let replies = take(&broker, "replies", 2).await;
    let mut correlations: Vec<_> = replies
        .iter()
        .map(|r| r.correlation_id.clone().unwrap())
        .collect();
    correlations.sort();
    assert_eq!(correlations, ["corr-o1", "corr-o3"]);
    // Every input acked.
    support::drained(&broker, "orders").await;
    assert_eq!(broker.stats("orders.dead").await.unwrap().depth(), 0);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_then_dead_lettered_with_the_reason() {
    let db = TestDb::new(Backend::Sqlite).await;
    let plugins = BTreeMap::from([("panicker".to_string(), plugin("panicker", &[], &[]))]);
    let routes = vec![route(
        "boom",
        "local:boom",
        &["panicker"],
        Some("local:never"),
    )];
    let (host, broker) = host(&db, plugins, routes).await;
    let mut msg = Message::new("boom", "x");
    msg.id = "doomed".into();
    broker.publish("boom", msg).await.unwrap();

    let dead = take(&broker, "boom.dead", 1).await.remove(0);
    assert_eq!(dead.id, "doomed");
    assert_eq!(dead.payload, b"x", "the original payload is kept");
    assert_eq!(text(&dead, "exception_name").as_deref(), Some("Trap"));
    assert_eq!(text(&dead, "exception_type").as_deref(), Some("plugin"));
    assert_eq!(text(&dead, "x-wharf-plugin").as_deref(), Some("panicker"));
    assert_eq!(text(&dead, "x-wharf-route").as_deref(), Some("boom"));
    assert_eq!(
        text(&dead, "x-wharf-attempts").as_deref(),
        Some("3"),
        "the first try and two retries"
    );
    assert!(
        text(&dead, "exception")
            .unwrap()
            .contains("panicker always panics")
    );
    support::drained(&broker, "boom").await;
    assert_eq!(broker.stats("never").await.unwrap().depth(), 0);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_and_an_oversized_message_go_straight_to_dead_letters() {
    let db = TestDb::new(Backend::Sqlite).await;
    let plugins = BTreeMap::from([(
        "shipped".to_string(),
        plugin(
            "json-filter",
            &[("field", "status"), ("value", "shipped")],
            &[],
        ),
    )]);
    let mut r = route("filter", "local:in", &["shipped"], Some("local:out"));
    r.dead_letter = Some("local:rejects".into());
    let (host, broker) = host(&db, plugins, vec![r]).await;

    broker
        .publish("in", Message::new("in", "not json"))
        .await
        .unwrap();
    broker
        .publish("in", Message::new("in", vec![b'{'; 2048]))
        .await
        .unwrap();
    let dead = take(&broker, "rejects", 2).await;
    let names: Vec<_> = dead
        .iter()
        .map(|d| text(d, "exception_name").unwrap())
        .collect();
    assert!(
        names.contains(&"Rejected".to_string()) && names.contains(&"TooLarge".to_string()),
        "{names:?}"
    );
    for d in &dead {
        assert_eq!(
            text(d, "x-wharf-attempts").as_deref(),
            Some("1"),
            "no retries for {:?}",
            text(d, "exception_name")
        );
    }
    let too_large = dead
        .iter()
        .find(|d| text(d, "exception_name").as_deref() == Some("TooLarge"))
        .unwrap();
    assert_eq!(text(too_large, "exception_type").as_deref(), Some("host"));
    // The whole message counts: its 2,048 bytes of payload, and its id and topic besides.
    let said = text(too_large, "exception").unwrap();
    let size: usize = said
        .split("the message is ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(size > 2048, "{said}");
    assert!(said.contains("bytes (payload, key and headers)"), "{said}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_ids_derive_from_the_input_id() {
    let db = TestDb::new(Backend::Sqlite).await;
    let routes = vec![route(
        "shout",
        "local:in",
        &["uppercase"],
        Some("local:out"),
    )];
    let (host, broker) = host(&db, BTreeMap::new(), routes).await;
    for (id, payload) in [("same", "a"), ("same", "b"), ("other", "c")] {
        let mut msg = Message::new("in", payload);
        msg.id = id.into();
        broker.publish("in", msg).await.unwrap();
    }
    let out = take(&broker, "out", 3).await;
    let by_payload: BTreeMap<_, _> = out
        .iter()
        .map(|m| (m.payload.clone(), m.id.clone()))
        .collect();
    assert_eq!(
        by_payload[&b"A".to_vec()],
        by_payload[&b"B".to_vec()],
        "a redelivered input produces the same id"
    );
    assert_ne!(by_payload[&b"A".to_vec()], by_payload[&b"C".to_vec()]);
    assert_ne!(by_payload[&b"A".to_vec()], "same");
    host.stop().await;
}

/// The output's database is locked by another writer, so sends cannot complete: the route
/// holds only `concurrency` inputs and leaves the rest in the queue, then catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_output_applies_backpressure() {
    use sqlx::Connection;
    let input_db = TestDb::new(Backend::Sqlite).await;
    let output_db = TestDb::new(Backend::Sqlite).await;
    let input = EmbeddedBroker::new(
        Store::open(&input_db.url).await.unwrap(),
        EmbeddedConfig::default(),
    );
    let output = EmbeddedBroker::new(
        Store::open(&output_db.url).await.unwrap(),
        EmbeddedConfig::default(),
    );
    output
        .publish("out", Message::new("warm-up", "x"))
        .await
        .unwrap();
    output.purge("out").await.unwrap();
    let connections = Connections::default();
    connections.insert("in", wharf::broker::Producer::new(input.clone()));
    connections.insert("slow", wharf::broker::Producer::new(output.clone()));

    let runtime = support::runtime();
    let uppercase = runtime
        .load(
            &support::plugin_bytes("uppercase"),
            PluginSettings::default(),
            Arc::new(Standalone::default()),
        )
        .await
        .unwrap();
    let route = Route {
        name: "stalled".into(),
        from: Address::parse("in:work").unwrap(),
        transformers: vec![uppercase],
        handler: None,
        to: Some(Address::parse("slow:out").unwrap()),
        concurrency: 4,
        retry: RetryConfig::default(),
        dead_letter: Address::parse("in:work.dead").unwrap(),
        max_message_bytes: 1024,
        max_outputs: 1_000,
        max_deliveries: 10,
        reply_to_allow: Default::default(),
        reply_to: None,
        durable: false,
        inbox: false,
        subscription: None,
        filter: None,
        retry_in_place: false,
    };
    let outbox = wharf::outbox::Outbox::new(
        Store::open(&input_db.url).await.unwrap(),
        Default::default(),
        Default::default(),
    );
    for i in 0..100 {
        input
            .publish("work", Message::new("work", format!("m{i}")))
            .await
            .unwrap();
    }

    // Hold the output database's write lock.
    let mut locker = sqlx::SqliteConnection::connect(&output_db.url)
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();

    let (trigger, shutdown) = wharf::shutdown::channel();
    let runner = tokio::spawn(
        RouteRunner::new(Arc::new(route), connections, outbox)
            .run(shutdown, Duration::from_secs(30)),
    );
    // Wait for the route to fill its window, then give it time to (wrongly) take more.
    let started = std::time::Instant::now();
    while input.stats("work").await.unwrap().in_flight < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the route never took its first inputs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let stalled = input.stats("work").await.unwrap();
    assert_eq!(
        stalled.in_flight, 4,
        "only `concurrency` inputs are taken: {stalled:?}"
    );
    assert_eq!(stalled.ready, 96, "the rest wait in the queue: {stalled:?}");

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let out = take(&output, "out", 100).await;
    assert_eq!(out.len(), 100);
    assert_eq!(input.stats("work").await.unwrap().depth(), 0);
    trigger.fire();
    runner.await.unwrap().unwrap();
}
