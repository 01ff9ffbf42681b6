//! Wharf on RabbitMQ, end to end: routes fed by an independent AMQP client while connections
//! are dropped and the host is killed, routes mixing RabbitMQ and the embedded broker,
//! retries and dead letters on RabbitMQ, topology at start-up and `wharf schema`, and the
//! health of a connection that is down.
//!
//! Tests that drop every connection hold `support::RABBIT` for writing; the others hold it
//! for reading.

mod support;

use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{amqp_client, amqp_url, plugin_dir};
use wharf::config::Config;

fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("wharf.toml");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
database = "sqlite://{db}"
plugin_dir = "{plugins}"
shutdown_grace_ms = 2000

[connections.rabbit]
kind = "amqp"
url = "{url}"
connect_timeout_ms = 10000
reconnect_max_ms = 1000
{body}
"#,
        port = support::free_port(),
        db = dir.join("wharf.db").display(),
        plugins = plugin_dir().display(),
        url = amqp_url(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(dir: &Path, body: &str) -> wharf::host::RunningHost {
    let config = Config::load(Some(&write_config(dir, body))).expect("a valid config");
    wharf::host::start(config).await.expect("the host starts")
}

/// Publishes `count` persistent JSON messages with ids `{prefix}-{i}` and waits for every
/// confirm, as a service with its own client would.
async fn publish_inputs(queue: &str, prefix: &str, count: usize) {
    let client = amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..count {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                format!(r#"{{"n":{i},"text":"message {i}"}}"#).as_bytes(),
                BasicProperties::default()
                    .with_message_id(format!("{prefix}-{i}").into())
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await
            .unwrap();
        pending.push(confirm);
        if pending.len() == 500 {
            for confirm in pending.drain(..) {
                assert!(confirm.await.unwrap().is_ack());
            }
        }
    }
    for confirm in pending {
        assert!(confirm.await.unwrap().is_ack());
    }
    let _ = client.close(200, "published".into()).await;
}

/// Messages ready in `queue`, through a fresh connection (it may have been dropped).
async fn ready(queue: &str) -> u32 {
    loop {
        if let Ok(client) =
            Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
        {
            let channel = client.create_channel().await.unwrap();
            let q = channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let _ = client.close(200, "counted".into()).await;
            return q.message_count();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `queue` with a plain client until `expected` distinct ids have arrived; returns
/// how often each id arrived and the payloads.
async fn collect(queue: &str, expected: usize) -> (HashMap<String, u32>, HashSet<Vec<u8>>) {
    let client = amqp_client().await;
    let channel: Channel = client.create_channel().await.unwrap();
    channel
        .basic_qos(500, lapin::options::BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "test-collector".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut payloads = HashSet::new();
    while ids.len() < expected {
        let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {expected} distinct ids arrived in {queue} within a minute of quiet",
                    ids.len()
                )
            })
            .unwrap()
            .unwrap();
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .expect("outputs carry a message id")
            .to_string();
        *ids.entry(id).or_default() += 1;
        payloads.insert(delivery.data.clone());
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    let _ = client.close(200, "collected".into()).await;
    (ids, payloads)
}

fn expected_payloads(count: usize) -> HashSet<Vec<u8>> {
    (0..count)
        .map(|i| format!(r#"{{"N":{i},"TEXT":"MESSAGE {i}"}}"#).into_bytes())
        .collect()
}

fn route_body(input: &str, output: &str, concurrency: usize) -> String {
    format!(
        r#"
[[connections.rabbit.queues]]
name = "{input}"
[[connections.rabbit.queues]]
name = "{output}"

[[routes]]
name = "shout"
from = "rabbit:{input}"
through = ["uppercase"]
to = "rabbit:{output}"
concurrency = {concurrency}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_arrive_while_connections_are_dropped_twice() {
    let _exclusive = support::RABBIT.write().await;
    let (input, output) = (unique("routes.in"), unique("routes.out"));
    let total = 10_000;
    let dir = tempfile::tempdir().unwrap();
    // Declares the queues; the route starts consuming at once.
    let host = start(dir.path(), &route_body(&input, &output, 8)).await;
    publish_inputs(&input, "in", total).await;

    let mut left_at_drop = Vec::new();
    for threshold in [2_000, 5_000] {
        let started = Instant::now();
        while (ready(&output).await as usize) < threshold {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the route stalled below {threshold} outputs"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        support::drop_amqp_connections().await;
        left_at_drop.push(ready(&input).await);
    }
    let (ids, payloads) = collect(&output, total).await;
    let duplicates: u32 = ids.values().map(|n| n - 1).sum();
    println!(
        "{total} inputs; input left at the drops: {left_at_drop:?}; {} distinct outputs, {duplicates} duplicates",
        ids.len()
    );
    assert!(
        left_at_drop.iter().all(|&left| left > 0),
        "both drops came mid-stream: {left_at_drop:?}"
    );
    assert_eq!(ids.len(), total, "every input produced its output");
    assert_eq!(
        payloads,
        expected_payloads(total),
        "each output is its input uppercased"
    );
    host.stop().await;
    support::delete_amqp_queues(&[input, output]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_arrive_when_the_host_is_sigkilled_and_restarted() {
    let _shared = support::RABBIT.read().await;
    let (input, output) = (unique("kill.in"), unique("kill.out"));
    let total = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &route_body(&input, &output, 16));
    let port = Config::load(Some(&config)).unwrap().server.listen.port();
    let spawn = || support::serve_config(&config, dir.path(), port);
    let mut host = spawn();
    publish_inputs(&input, "in", total).await;
    while ready(&output).await < 3_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.kill().unwrap(); // SIGKILL
    host.wait().unwrap();
    let left = ready(&input).await;
    let mut host = spawn();
    let (ids, payloads) = collect(&output, total).await;
    let duplicates: u32 = ids.values().map(|n| n - 1).sum();
    println!(
        "{total} inputs; {left} ready at the kill; {} distinct outputs, {duplicates} duplicates",
        ids.len()
    );
    assert!(left > 0, "killed mid-stream");
    assert_eq!(ids.len(), total, "every input produced its output");
    assert_eq!(payloads, expected_payloads(total));
    host.kill().unwrap();
    host.wait().unwrap();
    support::delete_amqp_queues(&[input, output]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_route_can_mix_rabbitmq_and_the_embedded_broker() {
    let _shared = support::RABBIT.read().await;
    let (input, output) = (unique("mixed.in"), unique("mixed.out"));
    let dir = tempfile::tempdir().unwrap();
    let host = start(
        dir.path(),
        &format!(
            r#"
[[connections.rabbit.queues]]
name = "{input}"
[[connections.rabbit.queues]]
name = "{output}"

[[routes]]
name = "in"
from = "rabbit:{input}"
through = ["uppercase"]
to = "local:mixed.middle"

[[routes]]
name = "out"
from = "local:mixed.middle"
to = "rabbit:{output}"
"#
        ),
    )
    .await;
    publish_inputs(&input, "mixed", 200).await;
    let (ids, payloads) = collect(&output, 200).await;
    assert_eq!(ids.len(), 200);
    assert_eq!(payloads, expected_payloads(200));
    host.stop().await;
    support::delete_amqp_queues(&[input, output]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_through_rabbitmq_and_dead_lettered_with_the_error() {
    let _shared = support::RABBIT.read().await;
    let (input, output, dead) = (unique("fail.in"), unique("fail.out"), unique("fail.dlq"));
    let dir = tempfile::tempdir().unwrap();
    let host = start(
        dir.path(),
        &format!(
            r#"
[plugins.panicker]
path = "{panicker}"

[[routes]]
name = "retrying"
from = "rabbit:{input}"
through = ["panicker"]
to = "rabbit:{output}"
dead_letter = "rabbit:{dead}"
retry = {{ max = 2, backoff_ms = 100 }}
"#,
            panicker = support::plugin_path("panicker").display()
        ),
    )
    .await;
    publish_inputs(&input, "doomed", 1).await;
    let client = amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            dead.as_str().into(),
            "test-dead".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("a dead letter within 30 s")
        .unwrap()
        .unwrap();
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let text = |name: &str| match headers.inner().get(name) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("header {name}: {other:?} in {headers:?}"),
    };
    assert_eq!(text("exception_type"), "plugin");
    assert_eq!(text("exception_name"), "Trap");
    assert!(!text("exception").is_empty());
    assert_eq!(text("x-wharf-route"), "retrying");
    assert_eq!(text("x-wharf-plugin"), "panicker");
    assert_eq!(
        headers.inner().get("x-wharf-attempts"),
        Some(&AMQPValue::LongLongInt(3)),
        "two retries, then the dead letter"
    );
    assert_eq!(delivery.data, br#"{"n":0,"text":"message 0"}"#);
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    let _ = client.close(200, "done".into()).await;
    host.stop().await;
    support::delete_amqp_queues(&[input, output, dead]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_with_other_arguments_stops_the_start_with_a_clear_error() {
    let _shared = support::RABBIT.read().await;
    let queue = unique("mismatch");
    let client = amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    // The same dead-letter exchange on both sides; only the TTL differs.
    let mut args = std::collections::BTreeMap::new();
    args.insert(
        "x-dead-letter-exchange".into(),
        lapin::types::AMQPValue::LongString("".into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::from(args),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[connections.rabbit.queues]]\nname = \"{queue}\"\nmessage_ttl_ms = 5000\ndead_letter_exchange = \"\"\n"
        ),
    );
    let error = match wharf::host::start(Config::load(Some(&config)).unwrap()).await {
        Ok(_) => panic!("the host started over a mismatched queue"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains(&queue)
            && error.contains("x-message-ttl")
            && error.contains("connections.rabbit"),
        "{error}"
    );
    // `wharf schema apply` says the same and fails.
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["schema", "apply", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("x-message-ttl"));
    let _ = client.close(200, "done".into()).await;
    support::delete_amqp_queues(&[queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_show_prints_the_topology_and_apply_declares_it_once() {
    let _shared = support::RABBIT.read().await;
    let (exchange, queue) = (unique("schema.events"), unique("schema.q"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[[connections.rabbit.exchanges]]
name = "{exchange}"
type = "topic"
[[connections.rabbit.queues]]
name = "{queue}"
type = "quorum"
dead_letter_exchange = ""
dead_letter_routing_key = "{queue}.dead"
[[connections.rabbit.bindings]]
exchange = "{exchange}"
queue = "{queue}"
key = "Booking.*"
"#
        ),
    );
    let schema = |verb: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["schema", verb, "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let shown = schema("show");
    assert!(
        shown.contains(&format!("exchange {exchange} (topic, durable)")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("queue {queue} (quorum, durable")),
        "{shown}"
    );
    assert!(shown.contains("Booking.*"), "{shown}");
    let first = schema("apply");
    assert!(
        first.contains(&format!("exchange `{exchange}`: created")),
        "{first}"
    );
    assert!(
        first.contains(&format!("queue `{queue}`: created")),
        "{first}"
    );
    let second = schema("apply");
    assert!(
        second.contains(&format!("exchange `{exchange}`: exists")),
        "{second}"
    );
    assert!(
        second.contains(&format!("queue `{queue}`: exists")),
        "{second}"
    );

    // The binding works: a message on the exchange with a matching key reaches the queue.
    let client = amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            exchange.as_str().into(),
            "Booking.created".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"booked",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        confirm,
        lapin::Confirmation::Ack(None),
        "routed by the binding"
    );
    assert_eq!(ready(&queue).await, 1);
    let _ = client.close(200, "done".into()).await;
    support::delete_amqp_exchange(&exchange).await;
    support::delete_amqp_queues(&[queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_leaves_the_host_up_and_degraded_and_urls_are_tried_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let dead_port = support::free_port();
    let path = dir.path().join("wharf.toml");
    let port = support::free_port();
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
database = "sqlite://{db}"
plugin_dir = "{plugins}"

[connections.down]
kind = "amqp"
url = "amqp://guest:guest@127.0.0.1:{dead_port}/%2f"
connect_timeout_ms = 500

[connections.fallback]
kind = "amqp"
url = "amqp://guest:guest@127.0.0.1:{dead_port}/%2f"
urls = ["{good}"]
connect_timeout_ms = 2000
"#,
            db = dir.path().join("wharf.db").display(),
            plugins = plugin_dir().display(),
            good = amqp_url(),
        ),
    )
    .unwrap();
    let host = wharf::host::start(Config::load(Some(&path)).unwrap())
        .await
        .expect("a broker that is down does not stop the host");
    // Anyone hears that the host is degraded; a viewer hears which connection and why.
    let anonymous = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(anonymous["status"], "degraded", "{anonymous}");
    assert!(anonymous.get("connections").is_none(), "{anonymous}");
    let token = std::fs::read_to_string(wharf::auth::local_token_path(host.addr).unwrap()).unwrap();
    let viewer = support::client_with_token(token.trim());
    let get = |path: &str| {
        let request = viewer.get(format!("http://127.0.0.1:{port}{path}"));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, health) = get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["connections"]["down"]["status"], "down", "{health}");
    assert!(
        health["connections"]["down"]["error"]
            .as_str()
            .unwrap()
            .contains(&dead_port.to_string()),
        "the error names the broker: {health}"
    );
    assert_eq!(
        health["connections"]["fallback"]["status"], "up",
        "the second URL was tried: {health}"
    );
    let (status, _) = get("/readyz").await;
    assert_eq!(status, 503);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_publishes_to_an_exchange_and_reads_a_queue_through_the_host() {
    let _shared = support::RABBIT.read().await;
    let (exchange, queue) = (unique("cli.events"), unique("cli.q"));
    let dir = tempfile::tempdir().unwrap();
    let host = start(
        dir.path(),
        &format!(
            r#"
[[connections.rabbit.exchanges]]
name = "{exchange}"
type = "topic"
[[connections.rabbit.queues]]
name = "{queue}"
[[connections.rabbit.bindings]]
exchange = "{exchange}"
queue = "{queue}"
key = "Booking.*"
"#
        ),
    )
    .await;
    let url = format!("http://{}", host.addr);
    let wharf = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_wharf"))
                    .args(&args)
                    .args(["--url", &url])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = wharf(&[
        "publish",
        &format!("rabbit:{exchange}/Booking.created"),
        "booked",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wharf(&[
        "publish",
        &format!("rabbit:{exchange}/Invoice.sent"),
        "nobody",
    ])
    .await;
    assert!(!out.status.success(), "an unroutable message is refused");
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("no queue takes") && error.contains("Invoice.sent"),
        "{error}"
    );
    let out = wharf(&["consume", &format!("rabbit:{queue}"), "--count", "1"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "booked");
    let out = wharf(&["queue", "stats", &format!("rabbit:{queue}")]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ready 0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    host.stop().await;
    support::delete_amqp_exchange(&exchange).await;
    support::delete_amqp_queues(&[queue]).await;
}
