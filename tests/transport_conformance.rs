//! The transport conformance suite: what every transport must do, run against each real one
//! through the same `Connections` API the routes use: the embedded broker (SQLite), AMQP (the
//! local RabbitMQ), Kafka (the local nisshi that `./dev test` starts), HTTP, NATS with
//! JetStream and MQTT (the local nats-server and Mosquitto).
//!
//! Kafka runs every check but two, whose form does not fit a log: consumers of one group
//! share a topic by its partitions, and a partition goes to one member at a time, so "two
//! competing consumers each get a share" of a one-partition topic does not hold (two hosts
//! sharing a route's partitions is tested in `tests/kafka.rs`); and a consumer hands out one
//! record of a partition at a time, to keep its order and its offsets, so "prefetch bounds the
//! unsettled deliveries" holds across partitions, not within one. A dead letter goes to the
//! topic `{topic}.dead` with the `exception` headers; a delayed send waits in the host's
//! database until it is due.
//!
//! HTTP runs through a real host: its `http` connection's base URL is the host's own
//! `/ingress/t/`, so a send is a request out, answered by the ingress, which holds the message
//! in the database for the consumer. Every check applies to it, one in its own form: a round
//! trip keeps the id, topic, correlation id, reply-to, content type, timestamp, payload and
//! every header, but each header's value arrives as text (HTTP headers carry nothing else),
//! and a key, priority, expiry and persistence do not travel. "The connection drops" is, as
//! for the embedded broker, a consumer vanishing with messages unacked: ingress keeps no
//! connection open to drop, and a request that fails is the sender's to repeat (the routes
//! retry it; `tests/http.rs`).
//!
//! MQTT runs every check against the local Mosquitto (MQTT 5). A message is kept for the
//! sessions that subscribed before it was sent, so the harness starts its reading sessions
//! first, as a route does when it starts. A retry is held by the reader (MQTT has no negative
//! acknowledgement), a dead letter is a copy sent to `{topic}.dead` with the `exception`
//! headers, and a delivery dropped unsettled goes back to the reader at once; what a host
//! holds unacked when its connection drops the broker sends again when it is back
//! (`tests/mqtt.rs` restarts a broker of its own).
//!
//! Each test runs once per transport (`for_every_transport!`). A test that drops the broker
//! connection holds the `RABBIT` lock for writing, so it never disturbs another AMQP test.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;
use support::{Backend, TestDb};
use wharf::broker::amqp::AmqpConfig;
use wharf::broker::amqp::Topology;
use wharf::broker::amqp::config::AmqpQueueConfig;
use wharf::broker::{
    Address, AmqpBroker, BrokerError, Connections, Consumer, DeadLetter, Delivery, EmbeddedBroker,
    EmbeddedConfig, Nack,
};
use wharf::message::{HeaderValue, Message};
use wharf::store::{QueueOptions, Store};

macro_rules! for_every_transport {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Transport::Embedded).await } )*
        }
        mod amqp {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Transport::Amqp).await } )*
        }
        mod http {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Transport::Http).await } )*
        }
        mod kafka {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Transport::Kafka).await } )*
        }
        mod nats {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Transport::Nats).await } )*
        }
        mod mqtt {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Transport::Mqtt).await } )*
        }
    };
}

/// The checks whose form does not fit Kafka (see the module's comment).
macro_rules! for_every_transport_but_kafka {
    ($($name:ident),* $(,)?) => {
        mod queues_only {
            mod embedded {
                $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                   async fn $name() { super::super::$name(super::super::Transport::Embedded).await } )*
            }
            mod amqp {
                $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                   async fn $name() { super::super::$name(super::super::Transport::Amqp).await } )*
            }
            mod http {
                $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                   async fn $name() { super::super::$name(super::super::Transport::Http).await } )*
            }
            mod nats {
                $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                   async fn $name() { super::super::$name(super::super::Transport::Nats).await } )*
            }
            mod mqtt {
                $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                   async fn $name() { super::super::$name(super::super::Transport::Mqtt).await } )*
            }
        }
    };
}

for_every_transport!(
    a_round_trip_maps_every_field,
    an_acked_message_is_gone,
    a_nacked_message_is_delivered_again,
    every_redelivery_is_counted,
    a_delivery_dropped_unsettled_comes_back,
    nothing_is_lost_when_the_connection_drops_mid_stream,
    a_dead_lettered_message_reaches_the_dead_letter_queue,
    one_consumer_sees_the_order_messages_were_sent_in,
    a_delayed_send_arrives_after_its_delay,
);

for_every_transport_but_kafka!(
    competing_consumers_each_get_a_share,
    prefetch_bounds_unsettled_deliveries,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Embedded,
    Amqp,
    Kafka,
    Http,
    Nats,
    Mqtt,
}

/// One transport, set up with fresh queues for one test.
struct Harness {
    transport: Transport,
    connections: Connections,
    queues: Vec<String>,
    host: Option<wharf::host::RunningHost>,
    _db: Option<TestDb>,
    _shared: Option<tokio::sync::RwLockReadGuard<'static, ()>>,
}

const CONNECTION: &str = "t";

impl Harness {
    /// `count` fresh queues, each with a dead-letter queue `{name}.dead`.
    async fn new(transport: Transport, count: usize) -> Harness {
        let guard = match transport {
            Transport::Amqp => Some(support::RABBIT.read().await),
            Transport::Embedded
            | Transport::Http
            | Transport::Kafka
            | Transport::Nats
            | Transport::Mqtt => None,
        };
        Harness::with_guard(transport, count, guard).await
    }

    async fn with_guard(
        transport: Transport,
        count: usize,
        guard: Option<tokio::sync::RwLockReadGuard<'static, ()>>,
    ) -> Harness {
        let queues: Vec<String> = (0..count)
            .map(|i| format!("conformance.{}.{i}", uuid::Uuid::new_v4().simple()))
            .collect();
        let mut connections = Connections::default();
        let mut db = None;
        let mut host = None;
        match transport {
            Transport::Http => {
                let test_db = TestDb::new(Backend::Sqlite).await;
                // The connection sends with an operator's token, as a service would.
                let (token, digest) = wharf::auth::new_token();
                Store::open(&test_db.url)
                    .await
                    .unwrap()
                    .add_token(
                        "conformance",
                        wharf::auth::Role::Operator,
                        &digest,
                        false,
                        0,
                    )
                    .await
                    .unwrap();
                let port = support::free_port();
                let mut config = wharf::config::Config::default();
                config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
                config.server.database = test_db.url.clone();
                config.server.plugin_dir = Some(support::plugin_dir());
                config.connections.insert(
                    CONNECTION.into(),
                    wharf::config::ConnectionConfig::Http(Box::new(
                        wharf::broker::http::HttpConfig {
                            base_url: Some(format!(
                                "http://127.0.0.1:{port}/ingress/{CONNECTION}/"
                            )),
                            headers: [("Authorization".to_owned(), format!("Bearer {token}"))]
                                .into(),
                            ..wharf::broker::http::HttpConfig::default()
                        },
                    )),
                );
                let running = wharf::host::start(config).await.expect("the host starts");
                connections = running.connections().clone();
                let held = connections.embedded(CONNECTION).expect("ingress is held");
                for queue in &queues {
                    held.declare(
                        queue,
                        QueueOptions {
                            visibility_timeout: Duration::from_secs(1),
                            ..QueueOptions::default()
                        },
                    )
                    .await
                    .unwrap();
                }
                host = Some(running);
                db = Some(test_db);
            }
            Transport::Embedded => {
                let test_db = TestDb::new(Backend::Sqlite).await;
                let store = Store::open(&test_db.url).await.expect("the store opens");
                let broker = EmbeddedBroker::new(
                    store,
                    EmbeddedConfig {
                        poll_interval: Duration::from_millis(50),
                        ..EmbeddedConfig::default()
                    },
                );
                for queue in &queues {
                    broker
                        .declare(
                            queue,
                            QueueOptions {
                                // A dead consumer's messages come back this soon (and a
                                // held one stays held this long, on a loaded machine too).
                                visibility_timeout: Duration::from_secs(3),
                                ..QueueOptions::default()
                            },
                        )
                        .await
                        .unwrap();
                }
                connections.insert(CONNECTION, wharf::broker::Producer::new(broker));
                db = Some(test_db);
            }
            Transport::Kafka => {
                let test_db = TestDb::new(Backend::Sqlite).await;
                let store = Store::open(&test_db.url).await.unwrap();
                let config = wharf::broker::kafka::KafkaConfig {
                    brokers: std::env::var("WHARF_TEST_KAFKA")
                        .unwrap_or_else(|_| "127.0.0.1:9092".into()),
                    group: format!("conformance-{}", uuid::Uuid::new_v4().simple()),
                    ..wharf::broker::kafka::KafkaConfig::default()
                };
                let broker =
                    wharf::broker::KafkaBroker::start(CONNECTION, config, store, &[]).unwrap();
                let mut topics: Vec<String> = queues.clone();
                topics.extend(queues.iter().map(|q| format!("{q}.dead")));
                wharf::broker::Transport::ensure(&broker, &topics)
                    .await
                    .unwrap_or_else(|e| panic!("Kafka is needed (./dev test starts tansu): {e}"));
                connections.insert(CONNECTION, wharf::broker::Producer::new(broker));
                db = Some(test_db);
            }
            Transport::Nats => {
                // Streams of this test's own, removed at the end.
                let config = wharf::broker::nats::NatsConfig {
                    url: support::nats_url(),
                    stream_prefix: nats_prefix(&queues[..]),
                    ack_wait_ms: 3_000,
                    ..wharf::broker::nats::NatsConfig::default()
                };
                let broker = wharf::broker::nats::NatsBroker::start(CONNECTION, config)
                    .await
                    .unwrap();
                let mut all: Vec<String> = queues.clone();
                all.extend(queues.iter().map(|q| format!("{q}.dead")));
                wharf::broker::Transport::ensure(&broker, &all)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("NATS with JetStream is needed (./dev test starts it): {e}")
                    });
                connections.insert(CONNECTION, wharf::broker::Producer::new(broker));
            }
            Transport::Mqtt => {
                let config = wharf::broker::mqtt::MqttConfig {
                    url: support::mqtt_url(),
                    // The test's sessions go from the broker soon after it ends.
                    session_expiry_s: 120,
                    ..wharf::broker::mqtt::MqttConfig::default()
                };
                let broker = wharf::broker::mqtt::MqttBroker::start(
                    CONNECTION,
                    config,
                    &format!("conformance-{}", uuid::Uuid::new_v4().simple()),
                )
                .unwrap();
                wharf::broker::Transport::started(&broker).await.unwrap();
                wharf::broker::Transport::check(&broker)
                    .await
                    .unwrap_or_else(|e| panic!("Mosquitto is needed (./dev test starts it): {e}"));
                connections.insert(CONNECTION, wharf::broker::Producer::new(broker));
                // MQTT keeps messages for the sessions that subscribed: this host's reading
                // sessions start before anything is sent, as a route's do when it starts (and,
                // read by a unit, stay when their readers close).
                for queue in queues.iter().flat_map(|q| [q.clone(), format!("{q}.dead")]) {
                    let address = Address {
                        connection: CONNECTION.into(),
                        address: queue,
                    };
                    let as_a_route = wharf::broker::ConsumeOptions {
                        unit: Some("conformance".into()),
                        ..wharf::broker::ConsumeOptions::new(1)
                    };
                    let reader = connections
                        .consume_with(&address, as_a_route)
                        .await
                        .unwrap();
                    reader.close().await;
                }
            }
            Transport::Amqp => {
                let topology = Topology {
                    queues: queues
                        .iter()
                        .map(|name| AmqpQueueConfig {
                            dead_letter_exchange: Some(String::new()),
                            dead_letter_routing_key: Some(format!("{name}.dead")),
                            ..AmqpQueueConfig::named(name.clone())
                        })
                        .collect(),
                    ensured: queues.iter().map(|name| format!("{name}.dead")).collect(),
                    ..Topology::default()
                };
                let config = AmqpConfig {
                    url: Some(support::amqp_url()),
                    connect_timeout_ms: 10_000,
                    reconnect_max_ms: 1_000,
                    ..AmqpConfig::default()
                };
                let broker = AmqpBroker::start(CONNECTION, config, topology).unwrap();
                broker.wait_first_attempt().await.unwrap();
                broker
                    .check()
                    .unwrap_or_else(|e| panic!("RabbitMQ is needed (./dev test starts it): {e}"));
                connections.insert(CONNECTION, wharf::broker::Producer::new(broker));
            }
        }
        Harness {
            transport,
            connections,
            queues,
            host,
            _db: db,
            _shared: guard,
        }
    }

    fn queue(&self, i: usize) -> &str {
        &self.queues[i]
    }

    fn address(&self, queue: &str) -> Address {
        Address {
            connection: CONNECTION.into(),
            address: queue.into(),
        }
    }

    async fn send(&self, queue: &str, msg: Message) {
        self.connections
            .producer(&self.address(queue))
            .unwrap()
            .send(queue, msg)
            .await
            .unwrap_or_else(|e| panic!("sending to {queue}: {e}"));
    }

    async fn consume(&self, queue: &str, prefetch: usize) -> Consumer {
        self.connections
            .consume(&self.address(queue), prefetch)
            .await
            .unwrap_or_else(|e| panic!("consuming {queue}: {e}"))
    }

    async fn finish(self) {
        self.connections.close().await;
        if let Some(host) = self.host {
            host.stop().await;
        }
        if self.transport == Transport::Amqp {
            support::delete_amqp_queues(&self.queues).await;
        }
        if self.transport == Transport::Nats {
            support::delete_nats_streams(&nats_prefix(&self.queues)).await;
        }
    }
}

/// The stream prefix of a NATS harness: one per test, from its first queue's name.
fn nats_prefix(queues: &[String]) -> String {
    let id = queues
        .first()
        .and_then(|q| q.split('.').nth(1))
        .unwrap_or("none");
    format!("t{}_", &id[..id.len().min(12)])
}

async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .expect("a delivery within 20 s")
        .expect("a delivery")
}

/// Waits `wait` and returns what arrived meanwhile, if anything.
async fn quiet(consumer: &mut Consumer, wait: Duration) -> Option<Delivery> {
    tokio::time::timeout(wait, consumer.next())
        .await
        .ok()
        .map(|d| d.expect("a delivery"))
}

fn numbered(i: usize) -> Message {
    let mut msg = Message::new("", format!("message {i}").into_bytes());
    msg.id = format!("id-{i}");
    msg
}

fn sorted(mut headers: Vec<(String, HeaderValue)>) -> Vec<(String, HeaderValue)> {
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers
}

async fn a_round_trip_maps_every_field(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    let sent = Message {
        id: "m-1".into(),
        topic: "orders.created".into(),
        key: Some(vec![0, 1, 254, 255]),
        headers: vec![
            ("text".into(), HeaderValue::Text("ünï".into())),
            ("bytes".into(), HeaderValue::Bytes(vec![0, 159])),
            ("int".into(), HeaderValue::Int(-42)),
            ("float".into(), HeaderValue::Float(2.5)),
            ("bool".into(), HeaderValue::Boolean(true)),
            (
                "list".into(),
                HeaderValue::List(vec!["a".into(), "b".into()]),
            ),
            (
                "table".into(),
                HeaderValue::Json(r#"{"nested":[1,2],"s":"x"}"#.into()),
            ),
            ("text".into(), HeaderValue::Text("repeated name".into())),
        ],
        content_type: Some("application/json".into()),
        correlation_id: Some("corr-7".into()),
        reply_to: Some("replies".into()),
        priority: Some(9),
        expiration_ms: Some(3_600_000),
        persistent: false,
        payload: vec![0, 1, 2, 255],
        timestamp_ms: 1_700_000_000_123,
    };
    h.send(&q, sent.clone()).await;
    let mut consumer = h.consume(&q, 1).await;
    let delivery = next(&mut consumer).await;
    let got = delivery.message.clone();
    if transport == Transport::Http {
        // Every header arrives, its value as text; the fields HTTP carries are kept.
        let text = |value: &HeaderValue| match value {
            HeaderValue::Text(t) | HeaderValue::Json(t) => t.clone(),
            HeaderValue::Bytes(b) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(b)
            }
            HeaderValue::Int(n) => n.to_string(),
            HeaderValue::Float(x) => x.to_string(),
            HeaderValue::Boolean(b) => b.to_string(),
            HeaderValue::List(items) => items.join(", "),
        };
        for (name, value) in &sent.headers {
            let expected = HeaderValue::Text(text(value));
            assert!(
                got.headers.iter().any(|(n, v)| n == name && *v == expected),
                "header {name} = {expected:?} in {:?}",
                got.headers
            );
        }
        assert_eq!(
            (&got.id, &got.topic, &got.correlation_id, &got.reply_to),
            (&sent.id, &sent.topic, &sent.correlation_id, &sent.reply_to)
        );
        assert_eq!(
            (&got.content_type, &got.payload, got.timestamp_ms),
            (&sent.content_type, &sent.payload, sent.timestamp_ms)
        );
        delivery.ack.ack().await.unwrap();
        consumer.close().await;
        h.finish().await;
        return;
    }
    // AMQP tables are sorted by name; every transport keeps the values and their types.
    assert_eq!(sorted(got.headers.clone()), sorted(sent.headers.clone()));
    assert_eq!(
        Message {
            headers: Vec::new(),
            ..got
        },
        Message {
            headers: Vec::new(),
            ..sent
        }
    );
    assert_eq!(delivery.deliveries, 1);
    assert!(!delivery.redelivered());
    delivery.ack.ack().await.unwrap();
    consumer.close().await;
    h.finish().await;
}

async fn an_acked_message_is_gone(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    h.send(&q, numbered(1)).await;
    let mut consumer = h.consume(&q, 4).await;
    next(&mut consumer).await.ack.ack().await.unwrap();
    consumer.close().await;
    let mut again = h.consume(&q, 4).await;
    assert!(
        quiet(&mut again, Duration::from_millis(700))
            .await
            .is_none(),
        "an acked message came back"
    );
    again.close().await;
    h.finish().await;
}

async fn a_nacked_message_is_delivered_again(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    h.send(&q, numbered(1)).await;
    let mut consumer = h.consume(&q, 4).await;
    let first = next(&mut consumer).await;
    assert!(!first.redelivered());
    first.ack.nack(Nack::Requeue).await.unwrap();
    let second = next(&mut consumer).await;
    assert_eq!(second.message.id, "id-1");
    assert!(
        second.redelivered(),
        "a requeued message is marked redelivered"
    );
    assert!(second.deliveries >= 2);
    second.ack.ack().await.unwrap();
    consumer.close().await;
    h.finish().await;
}

/// Each return of a message raises its delivery count by one, on every transport (AMQP
/// classic queues only say "redelivered": the host counts), so a delivery limit can end a
/// message that keeps coming back.
async fn every_redelivery_is_counted(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    h.send(&q, numbered(1)).await;
    h.send(&q, numbered(2)).await;
    let mut consumer = h.consume(&q, 1).await;
    let first = next(&mut consumer).await;
    assert_eq!((first.message.id.as_str(), first.deliveries), ("id-1", 1));
    first.ack.ack().await.unwrap();
    for expected in 1..=5 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.message.id, "id-2");
        assert_eq!(delivery.deliveries, expected, "delivery {expected}");
        delivery.ack.nack(Nack::Requeue).await.unwrap();
    }
    next(&mut consumer).await.ack.ack().await.unwrap();
    consumer.close().await;
    h.finish().await;
}

/// A delivery whose task panicked or was cancelled is dropped unsettled: it comes back (on
/// AMQP at once; on the embedded broker after its visibility timeout), and does not hold its
/// consumer's prefetch.
async fn a_delivery_dropped_unsettled_comes_back(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    h.send(&q, numbered(1)).await;
    let mut consumer = h.consume(&q, 1).await;
    drop(next(&mut consumer).await);
    let again = next(&mut consumer).await;
    assert_eq!(again.message.id, "id-1");
    assert!(again.redelivered());
    again.ack.ack().await.unwrap();
    consumer.close().await;
    h.finish().await;
}

async fn competing_consumers_each_get_a_share(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    let total = 200;
    for i in 0..total {
        h.send(&q, numbered(i)).await;
    }
    let mut tasks = Vec::new();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    for c in 0..2 {
        let mut consumer = h.consume(&q, 5).await;
        let seen = seen_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Ok(delivery)) =
                tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
            {
                seen.send((c, delivery.message.id.clone())).unwrap();
                // A little work, so both consumers are busy at once.
                tokio::time::sleep(Duration::from_millis(2)).await;
                delivery.ack.ack().await.unwrap();
            }
            consumer.close().await;
        }));
    }
    drop(seen_tx);
    for task in tasks {
        task.await.unwrap();
    }
    let mut per_consumer = [0usize; 2];
    let mut ids = HashSet::new();
    while let Ok((c, id)) = seen_rx.try_recv() {
        per_consumer[c] += 1;
        assert!(ids.insert(id.clone()), "{id} was delivered twice");
    }
    assert_eq!(ids.len(), total, "every message was consumed once");
    assert!(
        per_consumer.iter().all(|&n| n > 0),
        "each consumer got a share: {per_consumer:?}"
    );
    h.finish().await;
}

async fn prefetch_bounds_unsettled_deliveries(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    for i in 0..20 {
        h.send(&q, numbered(i)).await;
    }
    let mut consumer = h.consume(&q, 5).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next(&mut consumer).await);
    }
    assert!(
        quiet(&mut consumer, Duration::from_millis(700))
            .await
            .is_none(),
        "a sixth delivery arrived while five were unsettled"
    );
    held.pop().unwrap().ack.ack().await.unwrap();
    held.push(next(&mut consumer).await);
    for delivery in held {
        delivery.ack.ack().await.unwrap();
    }
    consumer.close().await;
    h.finish().await;
}

/// At-least-once across a dropped connection: messages are taken and acked while the
/// connection is dropped twice mid-stream; every id arrives (duplicates are allowed and
/// counted). For the embedded broker, "dropping the connection" is a consumer vanishing with
/// unacked messages, which come back after the visibility timeout.
async fn nothing_is_lost_when_the_connection_drops_mid_stream(transport: Transport) {
    let exclusive = match transport {
        Transport::Amqp => Some(support::RABBIT.write().await),
        Transport::Embedded
        | Transport::Http
        | Transport::Kafka
        | Transport::Nats
        | Transport::Mqtt => None,
    };
    let h = Harness::with_guard(transport, 1, None).await;
    let q = h.queue(0).to_owned();
    let total = 600;
    for i in 0..total {
        h.send(&q, numbered(i)).await;
    }
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut received = 0usize;
    let mut drops = 0;
    // The deliveries in hand at each drop, never acked: each must come again.
    let mut dropped: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    'consumers: while seen.len() < total || dropped.iter().any(|id| seen[id] < 2) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {total} ids arrived",
            seen.len()
        );
        let Ok(mut consumer) = h.connections.consume(&h.address(&q), 50).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // How long a consumer may stay quiet before the test starts over: a Kafka consumer
        // first joins its group, which takes the broker seconds (nisshi waits half the
        // session timeout, 5 s), so a shorter wait would only churn the group.
        // A NATS delivery made to a reader that vanished comes back only after the
        // consumer's ack wait (3 s here), so a NATS reader waits longer than that.
        let quiet_for = match transport {
            Transport::Kafka => Duration::from_secs(20),
            Transport::Nats => Duration::from_secs(8),
            _ => Duration::from_secs(3),
        };
        loop {
            let delivery = match tokio::time::timeout(quiet_for, consumer.next()).await {
                Ok(Ok(delivery)) => delivery,
                // The connection dropped under the consumer, or it has gone quiet: start over.
                Ok(Err(_)) | Err(_) => continue 'consumers,
            };
            received += 1;
            *seen.entry(delivery.message.id.clone()).or_default() += 1;
            if drops < 2 && received >= (drops + 1) * total / 3 {
                drops += 1;
                dropped.push(delivery.message.id.clone());
                match transport {
                    Transport::Amqp => {
                        // The delivery in hand is never acked: the broker must redeliver it.
                        support::drop_amqp_connections().await;
                        drop(delivery);
                    }
                    Transport::Embedded
                    | Transport::Http
                    | Transport::Kafka
                    | Transport::Nats
                    | Transport::Mqtt => {
                        // The consumer vanishes with this and its prefetched messages unacked.
                        drop(delivery);
                        drop(consumer);
                        continue 'consumers;
                    }
                }
                continue;
            }
            // Acks on a dropped connection fail; those messages come again.
            let _ = delivery.ack.ack().await;
            if seen.len() == total && dropped.iter().all(|id| seen[id] >= 2) {
                break 'consumers;
            }
        }
    }
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!(
        "{transport:?}: {total} ids, {received} deliveries, {duplicates} duplicates, {drops} drops"
    );
    assert_eq!(drops, 2);
    assert_eq!(seen.len(), total, "every id arrived");
    assert!(
        duplicates > 0,
        "the messages unacked at each drop were delivered again"
    );
    h.finish().await;
    drop(exclusive);
}

async fn a_dead_lettered_message_reaches_the_dead_letter_queue(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    let mut msg = numbered(1);
    msg.set_header("kept", HeaderValue::Text("yes".into()));
    h.send(&q, msg).await;
    let mut consumer = h.consume(&q, 1).await;
    next(&mut consumer)
        .await
        .ack
        .nack(Nack::DeadLetter(DeadLetter::new(
            "no good", "Rejected", "host",
        )))
        .await
        .unwrap();
    consumer.close().await;
    let dead = format!("{q}.dead");
    let mut dead_consumer = h.consume(&dead, 1).await;
    let delivery = next(&mut dead_consumer).await;
    assert_eq!(delivery.message.id, "id-1");
    assert_eq!(delivery.message.payload, b"message 1");
    assert_eq!(
        delivery.message.header("kept"),
        Some(&HeaderValue::Text("yes".into()))
    );
    // Each broker says why in its own words: the embedded broker and Kafka in `exception`
    // headers, RabbitMQ in `x-death`.
    let why = match transport {
        Transport::Embedded
        | Transport::Http
        | Transport::Kafka
        | Transport::Nats
        | Transport::Mqtt => delivery.message.header("exception_name"),
        Transport::Amqp => delivery.message.header("x-death"),
    };
    assert!(
        why.is_some(),
        "the dead letter says why: {:?}",
        delivery.message.headers
    );
    delivery.ack.ack().await.unwrap();
    dead_consumer.close().await;
    h.finish().await;
}

async fn one_consumer_sees_the_order_messages_were_sent_in(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    for i in 0..100 {
        h.send(&q, numbered(i)).await;
    }
    let mut consumer = h.consume(&q, 10).await;
    for i in 0..100 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.message.id, format!("id-{i}"));
        delivery.ack.ack().await.unwrap();
    }
    consumer.close().await;
    h.finish().await;
}

async fn a_delayed_send_arrives_after_its_delay(transport: Transport) {
    let h = Harness::new(transport, 1).await;
    let q = h.queue(0).to_owned();
    let producer = h.connections.producer(&h.address(&q)).unwrap();
    producer
        .send_delayed(&q, numbered(1), Duration::from_millis(1_500))
        .await
        .unwrap();
    let mut consumer = h.consume(&q, 1).await;
    assert!(
        quiet(&mut consumer, Duration::from_millis(500))
            .await
            .is_none(),
        "a delayed message arrived before its delay"
    );
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.message.id, "id-1");
    delivery.ack.ack().await.unwrap();
    consumer.close().await;
    h.finish().await;
}

/// Sending to a queue that is not there: the embedded broker creates it, AMQP refuses the
/// message as unroutable instead of dropping it.
#[tokio::test]
async fn amqp_refuses_a_message_no_queue_takes() {
    let h = Harness::new(Transport::Amqp, 0).await;
    let address = h.address("conformance.nowhere");
    let error = h
        .connections
        .producer(&address)
        .unwrap()
        .send("conformance.nowhere", numbered(1))
        .await
        .unwrap_err();
    assert!(matches!(error, BrokerError::Unroutable { .. }), "{error}");
    assert!(error.to_string().contains("conformance.nowhere"), "{error}");
    h.finish().await;
}

/// A channel the broker closes (here: a publish to an exchange that does not exist) is
/// replaced; the sends after it go through.
#[tokio::test]
async fn amqp_replaces_a_publishing_channel_the_broker_closed() {
    let h = Harness::new(Transport::Amqp, 1).await;
    let q = h.queue(0).to_owned();
    let error = h
        .connections
        .producer(&h.address("no.such.exchange/key"))
        .unwrap()
        .send("no.such.exchange/key", numbered(0))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no.such.exchange"), "{error}");
    // More sends than there are publishing channels, so the closed one is used again.
    for i in 1..=10 {
        h.send(&q, numbered(i)).await;
    }
    let mut consumer = h.consume(&q, 10).await;
    for i in 1..=10 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.message.id, format!("id-{i}"));
        delivery.ack.ack().await.unwrap();
    }
    consumer.close().await;
    h.finish().await;
}
