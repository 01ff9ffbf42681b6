//! Routes fed a mix of good messages and poison keep moving the good ones: every input ends
//! in the output or the dead letters (with the reason), the counts add up, and nothing loops.
//! On the embedded broker (SQLite and PostgreSQL) and on RabbitMQ.

#[macro_use]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use support::{Backend, TestDb};
use wharf::broker::amqp::AmqpConfig;
use wharf::broker::amqp::config::AmqpQueueConfig;
use wharf::broker::amqp::config::{BindingConfig, ExchangeConfig};
use wharf::broker::{EmbeddedBroker, EmbeddedConfig};
use wharf::config::{Config, ConnectionConfig, PluginConfig, RetryConfig, RouteConfig};
use wharf::host::RunningHost;
use wharf::message::{HeaderValue, Message};
use wharf::store::Store;

on_every_backend!(
    a_route_keeps_moving_good_messages_past_poison,
    replies_stay_on_the_inputs_connection,
    each_embedded_connection_has_its_own_queues,
    a_message_that_never_settles_is_dead_lettered_after_the_default_limit,
    one_bad_publish_fails_only_itself,
    a_routes_delivery_limit_holds_on_its_embedded_input,
);

fn plugin(name: &str) -> PluginConfig {
    PluginConfig {
        path: support::plugin_path(name),
        ..PluginConfig::default()
    }
}

fn quick_retry() -> RetryConfig {
    RetryConfig {
        max: 2,
        backoff_ms: 10,
        max_backoff_ms: 50,
    }
}

async fn host(db: &TestDb, config: Config) -> (RunningHost, EmbeddedBroker) {
    support::start_host(db, config).await
}

fn text(msg: &Message, header: &str) -> String {
    match msg.header(header) {
        Some(HeaderValue::Text(t)) => t.clone(),
        Some(HeaderValue::Int(i)) => i.to_string(),
        other => panic!("header {header} is {other:?} in {msg:?}"),
    }
}

/// Takes messages from `queue` until `count` have arrived (panics after 30 s).
async fn take(broker: &EmbeddedBroker, queue: &str, count: usize) -> Vec<Message> {
    let mut consumer = broker.consume(queue, count.max(1)).await.unwrap();
    let mut out = Vec::new();
    while out.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{queue}: only {} of {count} arrived", out.len()))
            .unwrap();
        out.push(delivery.message.clone());
        delivery.ack.ack().await.unwrap();
    }
    consumer.close().await;
    out
}

fn with_header(mut msg: Message, name: &str, value: &str) -> Message {
    msg.set_header(name, HeaderValue::Text(value.into()));
    msg
}

async fn a_route_keeps_moving_good_messages_past_poison(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = Config {
        plugins: BTreeMap::from([("splitter".into(), plugin("splitter"))]),
        routes: vec![RouteConfig {
            name: "mix".into(),
            from: "local:mix.in".into(),
            through: vec!["splitter".into()],
            to: Some("local:mix.out".into()),
            retry: quick_retry(),
            max_outputs: Some(5),
            ..RouteConfig::default()
        }],
        ..Config::default()
    };
    let (host, broker) = host(&db, config).await;

    let mut expected_out = 0;
    let mut expected_dead: HashMap<String, &str> = HashMap::new();
    for i in 0..60 {
        let mut msg = Message::new("mix", format!("good {i}"));
        msg.id = format!("m{i}");
        let msg = match i % 6 {
            // Poison: asks for more outputs than the route allows.
            1 => with_header(msg, "x-copies", "1000"),
            // Poison: larger than the route's max_message_bytes.
            2 => Message {
                payload: vec![b'x'; 4096],
                ..msg
            },
            // Poison: its outputs carry a topic with a NUL byte, which no store keeps.
            3 => with_header(msg, "x-output-topic", "bad\0topic"),
            // Good, split in three (within the limit).
            4 => with_header(msg, "x-copies", "3"),
            _ => msg,
        };
        match i % 6 {
            1 => expected_dead.insert(msg.id.clone(), "TooManyOutputs"),
            2 => expected_dead.insert(msg.id.clone(), "TooLarge"),
            3 => expected_dead.insert(msg.id.clone(), "InvalidMessage"),
            4 => {
                expected_out += 3;
                None
            }
            _ => {
                expected_out += 1;
                None
            }
        };
        broker.publish("mix.in", msg).await.unwrap();
    }

    let out = take(&broker, "mix.out", expected_out).await;
    assert!(
        out.iter().all(|m| m.payload.starts_with(b"good")),
        "only good messages come out"
    );
    let dead = take(&broker, "mix.in.dead", expected_dead.len()).await;
    for msg in &dead {
        let id = msg.id.clone();
        let wanted = expected_dead
            .get(&id)
            .unwrap_or_else(|| panic!("{id} was dead-lettered: {:?}", msg.headers));
        assert_eq!(&text(msg, "exception_name"), wanted, "{:?}", msg.headers);
        assert!(!text(msg, "exception").is_empty());
        // Not retried: each of these would fail the same way again.
        assert_eq!(text(msg, "x-wharf-attempts"), "1", "{id}");
    }
    support::drained(&broker, "mix.in").await;
    // Nothing more arrived anywhere.
    assert_eq!(broker.stats("mix.out").await.unwrap().depth(), 0);
    assert_eq!(broker.stats("mix.in.dead").await.unwrap().depth(), 0);
    host.stop().await;
}

async fn replies_stay_on_the_inputs_connection(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = Config::default();
    config
        .connections
        .insert("other".into(), ConnectionConfig::embedded());
    config.routes = vec![
        RouteConfig {
            name: "rpc".into(),
            from: "local:rpc.in".into(),
            through: vec!["echo".into()],
            retry: quick_retry(),
            ..RouteConfig::default()
        },
        RouteConfig {
            name: "allowed".into(),
            from: "local:rpc2.in".into(),
            through: vec!["echo".into()],
            retry: quick_retry(),
            reply_to_allow: vec!["other:replies.*".into()],
            ..RouteConfig::default()
        },
    ];
    let (host, broker) = host(&db, config).await;
    let other = EmbeddedBroker::new(
        Store::open(&db.url).await.unwrap(),
        EmbeddedConfig {
            connection: "other".into(),
            ..EmbeddedConfig::default()
        },
    );
    let request = |id: &str, reply_to: &str| {
        let mut msg = Message::new("rpc", format!("ping {id}"));
        msg.id = id.into();
        msg.reply_to = Some(reply_to.into());
        msg
    };
    // Good: a queue name, and the input's own connection named in full.
    broker
        .publish("rpc.in", request("a", "replies"))
        .await
        .unwrap();
    broker
        .publish("rpc.in", request("b", "local:replies"))
        .await
        .unwrap();
    // Poison: another connection, which this route does not allow.
    broker
        .publish("rpc.in", request("c", "other:stolen"))
        .await
        .unwrap();
    // Poison: a reply-to no broker takes as a name (over 255 bytes).
    broker
        .publish("rpc.in", request("d", &"r".repeat(300)))
        .await
        .unwrap();
    // Allowed by the second route's reply_to_allow.
    broker
        .publish("rpc2.in", request("e", "other:replies.e"))
        .await
        .unwrap();

    let replies = take(&broker, "replies", 2).await;
    let mut payloads: Vec<_> = replies
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    payloads.sort();
    assert_eq!(payloads, ["ping a", "ping b"]);
    let dead = take(&broker, "rpc.in.dead", 2).await;
    let reasons: HashMap<String, String> = dead
        .iter()
        .map(|m| (m.id.clone(), text(m, "exception_name")))
        .collect();
    assert_eq!(reasons["c"], "ReplyRefused", "{dead:?}");
    assert_eq!(reasons["d"], "InvalidAddress", "{dead:?}");
    assert!(
        text(
            &dead.iter().find(|m| m.id == "c").unwrap().clone(),
            "exception"
        )
        .contains("reply_to_allow")
    );
    let allowed = take(&other, "replies.e", 1).await;
    assert_eq!(allowed[0].payload, b"ping e");
    assert_eq!(
        other.stats("stolen").await.unwrap().depth(),
        0,
        "nothing reached a connection the route does not allow"
    );
    host.stop().await;
}

async fn each_embedded_connection_has_its_own_queues(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let named = |connection: &str| {
        EmbeddedBroker::new(
            store.clone(),
            EmbeddedConfig {
                connection: connection.into(),
                ..EmbeddedConfig::default()
            },
        )
    };
    let (a, b) = (named("a"), named("b"));
    a.publish("jobs", Message::new("jobs", "for a"))
        .await
        .unwrap();
    b.publish("jobs", Message::new("jobs", "for b"))
        .await
        .unwrap();
    b.publish("jobs", Message::new("jobs", "for b too"))
        .await
        .unwrap();
    assert_eq!(a.stats("jobs").await.unwrap().ready, 1);
    assert_eq!(b.stats("jobs").await.unwrap().ready, 2);
    assert_eq!(take(&a, "jobs", 1).await[0].payload, b"for a");
    assert_eq!(a.purge("jobs").await.unwrap(), 0);
    assert_eq!(b.stats("jobs").await.unwrap().ready, 2, "b's queue is b's");
    assert_eq!(a.queues().await.unwrap(), ["jobs"]);
}

async fn a_message_that_never_settles_is_dead_lettered_after_the_default_limit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let broker = EmbeddedBroker::new(
        Store::open(&db.url).await.unwrap(),
        EmbeddedConfig {
            poll_interval: Duration::from_millis(20),
            ..EmbeddedConfig::default()
        },
    );
    broker
        .publish("loop", Message::new("loop", "again"))
        .await
        .unwrap();
    let mut consumer = broker.consume("loop", 1).await.unwrap();
    // Returned without being handled, again and again (as a consumer that fails before it can
    // settle would): the queue's default limit ends it.
    for n in 1..=wharf::store::DEFAULT_MAX_DELIVERIES {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("redelivered")
            .unwrap();
        assert_eq!(delivery.deliveries, n);
        delivery
            .ack
            .nack(wharf::broker::Nack::Requeue)
            .await
            .unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), consumer.next())
            .await
            .is_err(),
        "not delivered past the limit"
    );
    let dead = take(&broker, "loop.dead", 1).await;
    assert_eq!(text(&dead[0], "exception_name"), "MaxDeliveries");
}

/// Publishes from many callers share the embedded broker's batches; one that the database
/// would refuse (a NUL byte, which PostgreSQL's `text` rejects) fails alone.
async fn one_bad_publish_fails_only_itself(backend: Backend) {
    let db = TestDb::new(backend).await;
    let broker = EmbeddedBroker::new(
        Store::open(&db.url).await.unwrap(),
        EmbeddedConfig::default(),
    );
    let mut publishes = tokio::task::JoinSet::new();
    for i in 0..200 {
        let broker = broker.clone();
        publishes.spawn(async move {
            let mut msg = Message::new("batch", format!("m{i}"));
            if i == 100 {
                msg.topic = "poison\0".into();
            }
            (i, broker.publish("batch", msg).await)
        });
    }
    while let Some(joined) = publishes.join_next().await {
        let (i, result) = joined.unwrap();
        match (i, result) {
            (100, Err(e)) => assert!(e.to_string().contains("NUL"), "{e}"),
            (100, Ok(())) => panic!("a message with a NUL byte was accepted"),
            (i, Err(e)) => panic!("publish {i} failed with the poison: {e}"),
            _ => {}
        }
    }
    assert_eq!(broker.stats("batch").await.unwrap().ready, 199);
}

/// A route's `max_deliveries` is what ends a message on its embedded input, and the message
/// goes to the route's dead letters (not the queue's own), with the reason.
async fn a_routes_delivery_limit_holds_on_its_embedded_input(backend: Backend) {
    let db = TestDb::new(backend).await;
    let broker = EmbeddedBroker::new(
        Store::open(&db.url).await.unwrap(),
        EmbeddedConfig::default(),
    );
    let mut looped = Message::new("limited", "looped");
    looped.id = "looped".into();
    broker.publish("limited.in", looped).await.unwrap();
    // Delivered three times and returned each time, before the route runs.
    let mut consumer = broker.consume("limited.in", 1).await.unwrap();
    for _ in 0..3 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
            .unwrap();
        delivery
            .ack
            .nack(wharf::broker::Nack::Requeue)
            .await
            .unwrap();
    }
    consumer.close().await;
    let config = Config {
        routes: vec![RouteConfig {
            name: "limited".into(),
            from: "local:limited.in".into(),
            through: vec!["uppercase".into()],
            to: Some("local:limited.out".into()),
            max_deliveries: 3,
            dead_letter: Some("local:limited.rejects".into()),
            ..RouteConfig::default()
        }],
        ..Config::default()
    };
    let (host, broker) = host(&db, config).await;
    let dead = take(&broker, "limited.rejects", 1).await;
    assert_eq!(dead[0].id, "looped");
    assert_eq!(text(&dead[0], "exception_name"), "MaxDeliveries");
    assert_eq!(text(&dead[0], "x-wharf-route"), "limited");
    support::drained(&broker, "limited.in").await;
    assert_eq!(broker.stats("limited.out").await.unwrap().depth(), 0);
    assert_eq!(broker.stats("limited.in.dead").await.unwrap().depth(), 0);
    host.stop().await;
}

// --- RabbitMQ ---

fn amqp_connection(queues: Vec<AmqpQueueConfig>, exchange: &str, bound: &str) -> AmqpConfig {
    AmqpConfig {
        url: Some(support::amqp_url()),
        exchanges: vec![ExchangeConfig {
            name: exchange.into(),
            kind: "topic".into(),
            durable: true,
            auto_delete: false,
        }],
        queues,
        bindings: vec![BindingConfig {
            exchange: exchange.into(),
            queue: bound.into(),
            key: "#".into(),
        }],
        ..AmqpConfig::default()
    }
}

/// Reads `count` messages from a RabbitMQ queue with a plain client.
async fn amqp_take(channel: &lapin::Channel, queue: &str, count: usize) -> Vec<Message> {
    use futures::StreamExt;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            format!("test-{}", uuid::Uuid::new_v4()).as_str().into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{queue}: only {} of {count} arrived", out.len()))
            .unwrap()
            .unwrap();
        out.push(wharf::broker::amqp::map::from_amqp(
            delivery.routing_key.as_str(),
            &delivery.properties,
            delivery.data.clone(),
        ));
        delivery
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .unwrap();
    }
    out
}

async fn amqp_publish(channel: &lapin::Channel, queue: &str, msg: &Message) {
    let properties = wharf::broker::amqp::map::to_amqp(msg, queue).unwrap();
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            lapin::options::BasicPublishOptions::default(),
            &msg.payload,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// On RabbitMQ: an output whose topic is too long to be a routing key, an output with a JSON
/// header whose key is too long for an AMQP table (this used to panic inside lapin and stall
/// the route), too many outputs, and a quorum-queue message already delivered past the
/// route's limit; the good messages flow past all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_a_route_keeps_moving_good_messages_past_poison() {
    let _shared = support::RABBIT.read().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (input, output, exchange) = (
        format!("poison.in.{tag}"),
        format!("poison.out.{tag}"),
        format!("poison.events.{tag}"),
    );
    let counted = format!("poison.counted.{tag}");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config::default();
    let mut quorum = AmqpQueueConfig::named(&counted);
    quorum.kind = Some("quorum".into());
    config.connections.insert(
        "rabbit".into(),
        ConnectionConfig::Amqp(Box::new(amqp_connection(
            vec![
                AmqpQueueConfig::named(&input),
                AmqpQueueConfig::named(&output),
                quorum,
            ],
            &exchange,
            &output,
        ))),
    );
    config.plugins = BTreeMap::from([("splitter".into(), plugin("splitter"))]);
    config.routes = vec![
        RouteConfig {
            name: "amqp-mix".into(),
            from: format!("rabbit:{input}"),
            through: vec!["splitter".into()],
            to: Some(format!("rabbit:{exchange}/")),
            retry: quick_retry(),
            max_outputs: Some(5),
            ..RouteConfig::default()
        },
        RouteConfig {
            name: "to-amqp".into(),
            from: "local:to-amqp.in".into(),
            through: vec!["splitter".into()],
            to: Some(format!("rabbit:{output}")),
            retry: quick_retry(),
            ..RouteConfig::default()
        },
    ];

    // A message already delivered three times on a quorum queue, before the host starts.
    let client = support::amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    let (host, broker) = {
        // Declare the topology first (through a host that runs no routes), then nack the
        // counted message three times with a plain client.
        let mut declare_only = config.clone();
        declare_only.routes.clear();
        let (declarer, _) = host(&db, declare_only).await;
        declarer.stop().await;
        let mut looped = Message::new("counted", "looped");
        looped.id = "looped".into();
        amqp_publish(&channel, &counted, &looped).await;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let got = loop {
                let got = channel
                    .basic_get(
                        counted.as_str().into(),
                        lapin::options::BasicGetOptions { no_ack: false },
                    )
                    .await
                    .unwrap();
                match got {
                    Some(got) => break got,
                    None if started.elapsed() < Duration::from_secs(10) => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    None => panic!("the counted message never arrived"),
                }
            };
            got.delivery
                .nack(lapin::options::BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        config.routes.push(RouteConfig {
            name: "counted".into(),
            from: format!("rabbit:{counted}"),
            through: vec!["splitter".into()],
            to: Some(format!("rabbit:{output}")),
            max_deliveries: 2,
            dead_letter: Some("local:counted.dead".into()),
            ..RouteConfig::default()
        });
        host(&db, config).await
    };

    let mut good = 0;
    for i in 0..40 {
        let mut msg = Message::new("mix", format!("good {i}"));
        msg.id = format!("a{i}");
        let msg = match i % 4 {
            1 => with_header(msg, "x-output-topic", &"t".repeat(300)),
            2 => with_header(msg, "x-copies", "50"),
            // Good: an empty topic is an empty routing key, which an exchange takes.
            3 => {
                good += 1;
                with_header(msg, "x-output-topic", "")
            }
            _ => {
                good += 1;
                msg
            }
        };
        amqp_publish(&channel, &input, &msg).await;
    }
    for i in 0..20 {
        let mut msg = Message::new("to-amqp", format!("good {i}"));
        msg.id = format!("b{i}");
        if i % 2 == 1 {
            msg.headers.push((
                "nested".into(),
                HeaderValue::Json(format!(r#"{{"{}": 1}}"#, "k".repeat(300))),
            ));
        } else {
            good += 1;
        }
        broker.publish("to-amqp.in", msg).await.unwrap();
    }

    let out = amqp_take(&channel, &output, good).await;
    assert!(out.iter().all(|m| m.payload.starts_with(b"good")));
    let dead = amqp_take(&channel, &format!("{input}.dead"), 20).await;
    let mut reasons: Vec<String> = dead.iter().map(|m| text(m, "exception_name")).collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(reasons, ["InvalidAddress", "TooManyOutputs"], "{dead:?}");
    let dead_local = take(&broker, "to-amqp.in.dead", 10).await;
    for msg in &dead_local {
        assert_eq!(text(msg, "exception_name"), "InvalidMessage");
        assert!(text(msg, "exception").contains("255"), "{:?}", msg.headers);
    }
    let counted_dead = take(&broker, "counted.dead", 1).await;
    assert_eq!(text(&counted_dead[0], "exception_name"), "MaxDeliveries");
    assert_eq!(counted_dead[0].id, "looped");

    host.stop().await;
    let _ = client.close(200, "done".into()).await;
    support::delete_amqp_queues(&[input, output, counted]).await;
    support::delete_amqp_exchange(&exchange).await;
}
