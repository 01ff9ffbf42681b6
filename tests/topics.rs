//! Model events and subscriptions: two services subscribed to `Booking.*` each get every
//! `Booking.created` and `Booking.updated` and no `Order.created`, on the embedded broker (on
//! SQLite and PostgreSQL), on RabbitMQ (where an independent AMQP client binding its own
//! queue to the exchange sees the same events) and on Kafka; subscriptions through the API
//! and the CLI; bad input refused with its field; `wharf drain`.

#[macro_use]
mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::events::{booking_events, parsed, publish, publish_three, subscription, topics_in};
use support::{Backend, TestDb, all_running};
use wharf::config::{Config, ConnectionConfig, EventsConfig};
use wharf::message::Message;

on_every_backend!(two_services_each_get_every_booking_event_on_the_embedded_broker,);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Runs `wharf ARGS --url BASE`: its exit code, standard output and standard error.
fn wharf(base: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .args(["--url", base])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A host whose events go to `events`, running `subscriptions`.
fn config_with(events: EventsConfig, subscriptions: Vec<Value>) -> Config {
    Config {
        routes: Vec::new(),
        events,
        subscriptions: subscriptions.into_iter().map(parsed).collect(),
        ..Config::default()
    }
}

/// A route `payments` on `local:payments.in` through `relay`, a handler that publishes the
/// model event `Booking.paid` of its own (`publish-event`, under a `Booking.*` grant).
fn with_relay(config: &mut Config) {
    config.plugins.insert(
        "relay".into(),
        wharf::config::PluginConfig {
            path: support::plugin_path("relay"),
            publish: vec!["local:events/Booking.*".into()],
            config: [("event".to_string(), "shop.models.Booking:paid".to_string())].into(),
            ..wharf::config::PluginConfig::default()
        },
    );
    config.routes.push(wharf::config::RouteConfig {
        name: "payments".into(),
        from: "local:payments.in".into(),
        through: vec!["relay".into()],
        to: Some("local:payments.out".into()),
        ..wharf::config::RouteConfig::default()
    });
}

async fn two_services_each_get_every_booking_event_on_the_embedded_broker(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = config_with(
        EventsConfig::default(),
        vec![
            subscription(
                "billing-bookings",
                "billing",
                "Booking.*",
                &["uppercase"],
                "local:billing.out",
            ),
            subscription(
                "audit-bookings",
                "audit",
                "Booking.*",
                &["uppercase"],
                "local:audit.out",
            ),
            subscription("audit-everything", "audit", "#", &[], "local:audit.all"),
        ],
    );
    // A handler that publishes a model event of its own (`publish-event`, under a grant).
    let mut config = config;
    with_relay(&mut config);
    let (host, broker) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;

    // Each subscription has its queue, named from its service, its chain and its pattern.
    let queues = broker.queues().await.unwrap();
    for queue in [
        "billing.uppercase.Booking.any",
        "audit.uppercase.Booking.any",
        "audit.forward.all",
    ] {
        assert!(
            queues.iter().any(|q| q == queue),
            "{queue} missing: {queues:?}"
        );
    }

    publish_three(&client, &base).await;
    assert_eq!(topics_in(&broker, "billing.out", 2).await, booking_events());
    assert_eq!(topics_in(&broker, "audit.out", 2).await, booking_events());
    assert_eq!(
        topics_in(&broker, "audit.all", 3).await,
        vec!["Booking.created", "Booking.updated", "Order.created"]
    );
    // The chain ran: uppercase turned the JSON's text to capitals.
    let out = broker.peek("billing.out", 10, 1 << 20).await.unwrap();
    assert!(
        out.iter()
            .all(|m| String::from_utf8_lossy(&m.payload).contains("BOOKING")),
        "{out:?}"
    );
    // Each event keeps its model and event in headers.
    let all = broker.peek("audit.all", 10, 1 << 20).await.unwrap();
    let order = all.iter().find(|m| m.topic == "Order.created").unwrap();
    assert_eq!(
        order.header("x-wharf-model"),
        Some(&wharf::message::HeaderValue::Text(
            "shop.models.Order".into()
        ))
    );

    // A plugin's event reaches the subscriptions its key matches.
    broker
        .publish("payments.in", Message::new("t", br#"{"id": 9}"#.to_vec()))
        .await
        .unwrap();
    assert_eq!(
        topics_in(&broker, "billing.out", 3).await,
        vec!["Booking.created", "Booking.paid", "Booking.updated"]
    );
    assert_eq!(topics_in(&broker, "audit.all", 4).await.len(), 4);

    // The status and the metrics show each unit with its kind.
    let status: Value = client
        .get(format!("{base}/api/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        status["units"].as_array().unwrap().iter().all(|u| u["kind"]
            == if u["name"] == "payments" {
                "route"
            } else {
                "subscription"
            }),
        "{status}"
    );
    let metrics = support::scrape(host.addr).await;
    assert!(
        metrics.contains("wharf_units{kind=\"subscription\",state=\"running\"} 3"),
        "{metrics}"
    );
    // Counters are the process's: other tests of this binary publish too.
    let published: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wharf_events_published_total "))
        .expect("the events counter")
        .parse()
        .unwrap();
    assert!(published >= 3.0, "{metrics}");
    host.stop().await;
}

/// Subscriptions made, refused, stopped, started and deleted through the API; events and bad
/// input through the API and the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_through_the_api_and_the_cli() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) =
        support::start_host(&db, config_with(EventsConfig::default(), vec![])).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}/api/v1/{path}"))
            .json(&body)
            .send()
    };

    let made = post(
        "subscriptions",
        subscription(
            "shipping",
            "shipping",
            "Booking.updated",
            &[],
            "local:shipping.out",
        ),
    )
    .await
    .unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["queue"], "shipping.forward.Booking.updated");
    assert_eq!(made["status"]["state"], "running", "{made}");
    assert_eq!(made["status"]["kind"], "subscription");

    // Refused, each with its field or why.
    for (body, status, field) in [
        (
            subscription("bad pattern", "s", "Booking.*", &[], "local:x"),
            400,
            "name",
        ),
        (
            subscription("p", "s", "Booking.*x", &[], "local:x"),
            400,
            "pattern",
        ),
        (subscription("p", "s", "", &[], "local:x"), 400, "pattern"),
        (
            subscription("p", "s", "Booking.*", &[], "nowhere:x"),
            400,
            "to",
        ),
        (
            subscription("p", "s", "Booking.*", &["no-such-plugin"], "local:x"),
            400,
            "through[0]",
        ),
        (
            subscription("p", "", "Booking.*", &[], "local:x"),
            400,
            "service",
        ),
        // The same service, chain and pattern: the same queue.
        (
            subscription("again", "shipping", "Booking.updated", &[], "local:x"),
            409,
            "",
        ),
        (
            subscription("shipping", "other", "Booking.updated", &[], "local:x"),
            409,
            "",
        ),
    ] {
        let answer = post("subscriptions", body.clone()).await.unwrap();
        let code = answer.status().as_u16();
        let error: Value = answer.json().await.unwrap();
        assert_eq!(code, status, "{body} → {error}");
        if !field.is_empty() {
            assert_eq!(error["error"]["field"], field, "{body} → {error}");
        }
    }
    let unknown = post(
        "subscriptions",
        json!({"name": "u", "service": "s", "pattern": "#", "to": "local:x", "colour": "red"}),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 400);

    // Events with a bad model or event are refused with their field; nothing is published.
    for (model, event, field) in [
        ("Book%20ing", "created", "model"),
        ("Booking", "created.late", "event"),
        ("Booking.%2A", "created", "model"),
    ] {
        let answer = client
            .post(format!("{base}/api/v1/events/{model}/{event}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{model} {event}");
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let not_json = client
        .post(format!("{base}/api/v1/events/Booking/updated"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let anonymous = reqwest::Client::new()
        .post(format!("{base}/api/v1/events/Booking/updated"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        broker
            .peek("shipping.out", 10, 1 << 20)
            .await
            .unwrap()
            .is_empty()
    );

    // The CLI publishes an event; the subscription gets it.
    let cli = |args: &[&str]| {
        let (code, stdout, stderr) = wharf(&base, args);
        (code == Some(0), stdout, stderr)
    };
    let (ok, stdout, stderr) = cli(&["event", "shop.Booking", "updated", r#"{"id": 7}"#]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("Booking.updated to local:events/Booking.updated"),
        "{stdout}"
    );
    let arrived = support::arrived(&broker, "shipping.out").await;
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].payload, br#"{"id":7}"#);
    let (ok, _, stderr) = cli(&["event", "Booking", "updated", "not json"]);
    assert!(!ok && stderr.contains("not JSON"), "{stderr}");
    // Durable: through the outbox, and the relay sends it.
    let (ok, stdout, stderr) = cli(&["event", "--durable", "Booking", "updated", r#"{"id": 8}"#]);
    assert!(ok && stdout.contains("(in the outbox)"), "{stdout}{stderr}");
    let started = std::time::Instant::now();
    while broker
        .peek("shipping.out", 10, 1 << 20)
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the durable event never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The Queues list: the subscription's queue with who reads it; a filter too long is refused.
    let list: Value = client
        .get(format!("{base}/api/v1/queues?filter=shipping"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = list["queues"].as_array().unwrap();
    let queue = rows
        .iter()
        .find(|r| r["address"] == "local:shipping.forward.Booking.updated")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(queue["used_by"][0]["unit"], "shipping");
    assert_eq!(queue["used_by"][0]["role"], "reads");
    assert_eq!(
        queue["dead_letter_address"],
        "local:shipping.forward.Booking.updated.dead"
    );
    assert!(
        rows.iter()
            .all(|r| r["address"].as_str().unwrap().contains("shipping")),
        "{list}"
    );
    let long = client
        .get(format!("{base}/api/v1/queues?filter={}", "x".repeat(300)))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
    let (ok, stdout, _) = cli(&["queue", "list", "--filter", "shipping"]);
    assert!(
        ok && stdout.contains("reads by subscription shipping"),
        "{stdout}"
    );

    // Create, list, stop, start and delete with the CLI.
    let (ok, stdout, stderr) = cli(&[
        "subscription",
        "create",
        "cli-sub",
        "--service",
        "crm",
        "--pattern",
        "Order.#",
        "--to",
        "local:crm.out",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("crm.forward.Order.all"), "{stdout}");
    let (ok, stdout, _) = cli(&["subscription", "list"]);
    assert!(
        ok && stdout.contains("cli-sub") && stdout.contains("shipping"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = cli(&["subscription", "stop", "cli-sub"]);
    assert!(ok && stdout.contains("stopped"), "{stdout}{stderr}");
    // While it is stopped its queue keeps the events.
    publish(&client, &base, "Order", "paid").await;
    let held = support::arrived(&broker, "crm.forward.Order.all").await;
    assert_eq!(held[0].topic, "Order.paid");
    let (ok, stdout, stderr) = cli(&["subscription", "start", "cli-sub"]);
    assert!(ok && stdout.contains("running"), "{stdout}{stderr}");
    let out = support::arrived(&broker, "crm.out").await;
    assert_eq!(out[0].topic, "Order.paid");
    // Restarted by an operator, as any unit is.
    let (ok, stdout, stderr) = cli(&["subscription", "restart", "cli-sub"]);
    assert!(
        ok && stdout.contains("cli-sub: running"),
        "{stdout}{stderr}"
    );
    // Moved to another pattern: a new queue, and the supervisor unbinds the old one once the
    // runner that read it has closed.
    let (ok, stdout, stderr) = cli(&[
        "subscription",
        "update",
        "cli-sub",
        "--pattern",
        "Order.paid",
    ]);
    assert!(
        ok && stdout.contains("crm.forward.Order.paid"),
        "{stdout}{stderr}"
    );
    let exchange = EventsConfig::default().exchange;
    let bound = |queue: &'static str| {
        let broker = broker.clone();
        let exchange = exchange.clone();
        async move {
            broker
                .bindings(&exchange)
                .await
                .unwrap()
                .iter()
                .any(|(q, _)| q == queue)
        }
    };
    let started = std::time::Instant::now();
    while bound("crm.forward.Order.all").await || !bound("crm.forward.Order.paid").await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the old queue stayed bound: {:?}",
            broker.bindings(&exchange).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, _, stderr) = cli(&["subscription", "delete", "cli-sub"]);
    assert!(ok, "{stderr}");
    // Deleted: its queue is unbound and takes no more events.
    let started = std::time::Instant::now();
    while bound("crm.forward.Order.paid").await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the deleted subscription's queue stayed bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    support::drained(&broker, "crm.forward.Order.all").await;
    support::drained(&broker, "crm.forward.Order.paid").await;
    publish(&client, &base, "Order", "paid").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for queue in ["crm.forward.Order.all", "crm.forward.Order.paid"] {
        assert!(
            broker.peek(queue, 10, 1 << 20).await.unwrap().is_empty(),
            "{queue} took an event after it was unbound"
        );
    }
    let (ok, _, stderr) = cli(&["subscription", "delete", "cli-sub"]);
    assert!(!ok && stderr.contains("no subscription named"), "{stderr}");
    host.stop().await;
}

/// The embedded broker's topic exchange on its own: AMQP's binding rules, one copy per queue,
/// an event nobody wants taken, an undeclared exchange refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_topic_exchange_routes_by_amqp_rules() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let broker =
        wharf::broker::EmbeddedBroker::new(store, wharf::broker::EmbeddedConfig::default());
    broker.bind("ex", "one", "Booking.*").await.unwrap();
    broker.bind("ex", "one", "#").await.unwrap();
    broker.bind("ex", "two", "*.created").await.unwrap();
    broker.declare_exchange("quiet").await.unwrap();
    for key in [
        "Booking.created",
        "Booking.updated",
        "Order.created",
        "Order.paid.late",
    ] {
        broker
            .publish(
                &format!("ex/{key}"),
                Message::new("", key.as_bytes().to_vec()),
            )
            .await
            .unwrap();
    }
    let topics = |messages: Vec<Message>| messages.into_iter().map(|m| m.topic).collect::<Vec<_>>();
    // One copy in `one` for each key, though two of its patterns match the Booking keys.
    assert_eq!(
        topics(broker.peek("one", 10, 1 << 20).await.unwrap()),
        vec![
            "Booking.created",
            "Booking.updated",
            "Order.created",
            "Order.paid.late"
        ]
    );
    assert_eq!(
        topics(broker.peek("two", 10, 1 << 20).await.unwrap()),
        vec!["Booking.created", "Order.created"]
    );
    // Nobody bound to `quiet`: taken, kept nowhere. `nowhere` was never declared: refused.
    broker
        .publish("quiet/Booking.created", Message::new("", b"x".to_vec()))
        .await
        .unwrap();
    let refused = broker
        .publish("nowhere/Booking.created", Message::new("", b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("no such exchange"),
        "{refused}"
    );
    // A queue name cannot hold `/`.
    assert!(broker.stats("a/b").await.is_err());
}

/// On RabbitMQ: two services' subscriptions each get every Booking event and no Order one,
/// and an independent client binding its own queue to the exchange sees the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_each_get_every_booking_event_on_rabbitmq() {
    use futures::StreamExt as _;
    let _shared = support::RABBIT.read().await;
    let exchange = unique("events");
    let (billing, audit) = (unique("billing"), unique("audit"));
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = config_with(
        EventsConfig {
            connection: "rabbit".into(),
            exchange: exchange.clone(),
            prefix: None,
        },
        vec![
            subscription(
                "billing-bookings",
                &billing,
                "Booking.*",
                &["uppercase"],
                "local:billing.out",
            ),
            subscription(
                "audit-bookings",
                &audit,
                "Booking.*",
                &["uppercase"],
                "local:audit.out",
            ),
        ],
    );
    config.connections.insert(
        "rabbit".into(),
        ConnectionConfig::Amqp(Box::new(wharf::broker::amqp::AmqpConfig {
            url: Some(support::amqp_url()),
            ..wharf::broker::amqp::AmqpConfig::default()
        })),
    );
    let (host, broker) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;

    // An independent service binds a queue of its own to the exchange.
    let own = support::amqp_client().await;
    let channel = own.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.as_str().into(),
            "Booking.*".into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "independent".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();

    publish_three(&client, &base).await;
    assert_eq!(topics_in(&broker, "billing.out", 2).await, booking_events());
    assert_eq!(topics_in(&broker, "audit.out", 2).await, booking_events());
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("the independent client's queue gets the events")
            .unwrap()
            .unwrap();
        seen.push(delivery.routing_key.to_string());
    }
    seen.sort();
    assert_eq!(seen, booking_events());
    assert!(
        tokio::time::timeout(Duration::from_secs(1), consumer.next())
            .await
            .is_err(),
        "Order.created reached a Booking.* binding"
    );
    // The subscriptions' queues are on RabbitMQ, named from service, chain and pattern.
    for name in [&billing, &audit] {
        channel
            .queue_declare(
                format!("{name}.uppercase.Booking.any").as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}'s queue is missing: {e}"));
    }
    let _ = own.close(200, "done".into()).await;
    host.stop().await;
    support::delete_amqp_queues(&[
        format!("{billing}.uppercase.Booking.any"),
        format!("{audit}.uppercase.Booking.any"),
    ])
    .await;
    support::delete_amqp_exchange(&exchange).await;
}

/// `wharf drain` runs a stopped subscription until its queue is empty, holds it stopped again
/// and prints the count; a running route is waited for; with no names it drains every route
/// and subscription; an unknown unit is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_empties_and_exits_with_the_count() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = config_with(
        EventsConfig::default(),
        vec![subscription(
            "nightly",
            "reports",
            "Booking.#",
            &["uppercase"],
            "local:reports.out",
        )],
    );
    config.routes.push(wharf::config::RouteConfig {
        name: "copy".into(),
        from: "local:copy.in".into(),
        to: Some("local:copy.out".into()),
        ..wharf::config::RouteConfig::default()
    });
    let (host, broker) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;
    let cli = |args: &[&str]| wharf(&base, args);
    // Held stopped (as a cron job's subscription is): events wait in its queue.
    let (code, _, stderr) = cli(&["subscription", "stop", "nightly"]);
    assert_eq!(code, Some(0), "{stderr}");
    for i in 0..7 {
        publish(
            &client,
            &base,
            "Booking",
            if i % 2 == 0 { "created" } else { "updated" },
        )
        .await;
    }
    for i in 0..3 {
        broker
            .publish("copy.in", Message::new("t", format!("{i}").into_bytes()))
            .await
            .unwrap();
    }
    assert_eq!(
        broker
            .stats("reports.uppercase.Booking.all")
            .await
            .unwrap()
            .depth(),
        7
    );

    let (code, stdout, stderr) = cli(&["drain", "--subscription", "nightly", "--timeout", "30"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("subscription nightly: 7 processed"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("7"), "{stdout}");
    assert_eq!(
        broker
            .stats("reports.uppercase.Booking.all")
            .await
            .unwrap()
            .depth(),
        0
    );
    assert_eq!(
        broker
            .peek("reports.out", 100, 1 << 20)
            .await
            .unwrap()
            .len(),
        7
    );
    // Held stopped again: a new event waits.
    publish(&client, &base, "Booking", "created").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        broker
            .stats("reports.uppercase.Booking.all")
            .await
            .unwrap()
            .depth(),
        1
    );

    // A running route is waited for until its queue is empty (its three may be done already).
    let (code, stdout, stderr) = cli(&["drain", "--route", "copy", "--timeout", "30"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    support::drained(&broker, "copy.in").await;
    assert_eq!(broker.peek("copy.out", 10, 1 << 20).await.unwrap().len(), 3);

    let (code, _, stderr) = cli(&["drain", "--route", "no-such-route"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no unit named"), "{stderr}");
    // None named: every route and subscription of the host (pubsubpy's `drain()`): the
    // event waiting for the stopped subscription, which is held stopped again.
    let (code, stdout, stderr) = cli(&["drain", "--timeout", "30"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("subscription nightly: 1 processed"),
        "{stdout}"
    );
    assert!(stdout.contains("route copy: 0 processed"), "{stdout}");
    assert_eq!(
        broker
            .stats("reports.uppercase.Booking.all")
            .await
            .unwrap()
            .depth(),
        0
    );
    let held = support::get_json(&client, &format!("{base}/api/v1/subscriptions/nightly")).await;
    assert!(held["status"]["stopped_by"].is_string(), "{held}");
    let too_long = client
        .post(format!("{base}/api/v1/drain"))
        .json(&json!({ "units": ["copy"], "timeout_secs": 999_999 }))
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), 400);

    // A drain whose caller goes away is cancelled, and the unit it started is held stopped
    // again at once, not left running until its timeout. While it runs, a second drain of
    // the same unit is refused. Events keep coming, so the drain would not end by itself.
    let flowing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let publisher = tokio::spawn({
        let (client, base, flowing) = (client.clone(), base.clone(), flowing.clone());
        async move {
            while flowing.load(std::sync::atomic::Ordering::Relaxed) {
                publish(&client, &base, "Booking", "created").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(2_500))
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", support::local_token(host.addr).trim())
                    .parse()
                    .unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let long = impatient
        .post(format!("{base}/api/v1/drain"))
        .json(&json!({ "units": ["nightly"], "timeout_secs": 600 }))
        .send();
    let second = async {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        client
            .post(format!("{base}/api/v1/drain"))
            .json(&json!({ "units": ["nightly"], "timeout_secs": 5 }))
            .send()
            .await
            .unwrap()
            .status()
    };
    let (gone, second) = tokio::join!(long, second);
    assert!(gone.is_err(), "the impatient caller gave up: {gone:?}");
    assert_eq!(second, 409, "one drain at a time per unit");
    let mut held = false;
    for _ in 0..100 {
        let status: Value = client
            .get(format!("{base}/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        held = status["units"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "nightly" && u["state"] == "stopped");
        if held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flowing.store(false, std::sync::atomic::Ordering::Relaxed);
    publisher.await.unwrap();
    assert!(
        held,
        "the unit the cancelled drain started is held stopped again"
    );
    host.stop().await;
}

/// PDC's topic prefix: with `[events] prefix = "pdc.prod"` every event goes out as
/// `pdc.prod.{Model}.{event}` (from the API and from a plugin, whose grant names the key
/// without it), and a subscription's `Booking.*` takes the prefixed events only: an event of
/// another environment on the same exchange (`Booking.created` bare, or under `pdc.stage`)
/// does not reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_keeps_one_environments_events_apart() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = config_with(
        EventsConfig {
            prefix: Some("pdc.prod".into()),
            ..EventsConfig::default()
        },
        vec![subscription(
            "billing-bookings",
            "billing",
            "Booking.*",
            &[],
            "local:billing.out",
        )],
    );
    with_relay(&mut config);
    let (host, broker) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;

    let created = publish(&client, &base, "shop.models.Booking", "created").await;
    assert_eq!(
        created["routing_key"], "pdc.prod.Booking.created",
        "{created}"
    );
    publish(&client, &base, "shop.models.Order", "created").await;
    broker
        .publish("payments.in", Message::new("t", br#"{"id": 9}"#.to_vec()))
        .await
        .unwrap();
    // Another environment's events on the same exchange, sent as plain messages.
    let connections = host.connections();
    for key in ["Booking.created", "pdc.stage.Booking.created"] {
        let to = wharf::broker::Address::parse(&format!("local:events/{key}")).unwrap();
        connections
            .send(&to, Message::new(key, b"{}".to_vec()))
            .await
            .unwrap();
    }
    assert_eq!(
        topics_in(&broker, "billing.out", 2).await,
        vec!["pdc.prod.Booking.created", "pdc.prod.Booking.paid"]
    );
    host.stop().await;

    // A prefix that is not words is refused, naming the setting.
    let mut bad = Config::default();
    bad.events.prefix = Some("pdc..prod".into());
    let error = bad.validate().unwrap_err().to_string();
    assert!(error.contains("events.prefix"), "{error}");
}
