//! Wharf on RabbitMQ against a bare lapin program doing the same work, in the same run, on the
//! same broker. Prints figures; checks only that every message arrived.
//!
//! Workload, both runs: 20,000 persistent 256-byte JSON messages waiting on a durable queue,
//! consumed with prefetch 256, uppercased, published to another durable queue with publisher
//! confirms, each input acked after its output's confirm. (a) Wharf: a route through the
//! `uppercase` plugin. (b) Bare lapin: the same pipeline with the transform in native Rust and
//! as many publishing channels as Wharf keeps (4). Measured from the first output to the last;
//! CPU is this process's user + system time over that span (the broker's own CPU is not in
//! either figure). Two rounds of bare then Wharf; each phase's queues are deleted before the
//! next starts, so every phase finds the broker holding the same messages.
//!
//! Run with `./dev bench` (RabbitMQ at `WHARF_TEST_AMQP`, default the local one).

mod common;

use common::cpu_time;
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wharf::config::{
    AmqpConfig, AmqpQueueConfig, Config, ConnectionConfig, RetryConfig, RouteConfig,
};

const MESSAGES: u32 = 20_000;
const PREFETCH: u16 = 256;
const CHANNELS: usize = 4;
const ROUNDS: u32 = 2;

fn amqp_url() -> String {
    std::env::var("WHARF_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn connect() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ at {} is needed: {e}", amqp_url()))
}

/// Fresh durable queues `in` and `out`, with `in` holding the workload.
async fn prepare(client: &Connection, input: &str, output: &str) {
    let channel = client.create_channel().await.unwrap();
    for queue in [input, output] {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..MESSAGES {
        // 256 bytes of JSON.
        let mut payload = format!(r#"{{"n":{i:>6},"text":""#);
        while payload.len() < 254 {
            payload.push('a');
        }
        payload.push_str("\"}");
        let confirm = channel
            .basic_publish(
                "".into(),
                input.into(),
                BasicPublishOptions::default(),
                payload.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("m{i}").into())
                    .with_content_type("application/json".into()),
            )
            .await
            .unwrap();
        pending.push(confirm);
        if pending.len() == 1000 {
            for confirm in pending.drain(..) {
                confirm.await.unwrap();
            }
        }
    }
    for confirm in pending {
        confirm.await.unwrap();
    }
    let _ = channel.close(200, "filled".into()).await;
}

struct Figures {
    rate: f64,
    cpu_us: f64,
}

/// From the first output to the last, counting `output`'s ready messages.
async fn measure(client: &Connection, output: &str) -> Figures {
    let channel = client.create_channel().await.unwrap();
    let count = || async {
        channel
            .queue_declare(
                output.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    };
    let mut first = count().await;
    while first == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        first = count().await;
    }
    let (cpu, started) = (cpu_time(), Instant::now());
    while count().await < MESSAGES {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu);
    let counted = f64::from(MESSAGES - first);
    Figures {
        rate: counted / elapsed.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / counted,
    }
}

async fn bare_lapin(client: &Connection) -> Figures {
    let (input, output) = ("wharf.bench.bare.in", "wharf.bench.bare.out");
    prepare(client, input, output).await;
    let worker_connection = connect().await;
    let mut publishers: Vec<Channel> = Vec::new();
    for _ in 0..CHANNELS {
        let channel = worker_connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        publishers.push(channel);
    }
    let consuming = worker_connection.create_channel().await.unwrap();
    consuming
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consuming
        .basic_consume(
            input.into(),
            "bare".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let worker = tokio::spawn(async move {
        let mut in_flight = tokio::task::JoinSet::new();
        for i in 0..MESSAGES as usize {
            let delivery = consumer.next().await.unwrap().unwrap();
            let channel = publishers[i % CHANNELS].clone();
            in_flight.spawn(async move {
                let payload = delivery.data.to_ascii_uppercase();
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        output.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &payload,
                        delivery.properties.clone(),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                assert!(confirm.is_ack());
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .unwrap();
            });
            while in_flight.try_join_next().is_some() {}
        }
        in_flight.join_all().await;
    });
    let figures = measure(client, output).await;
    worker.await.unwrap();
    let _ = worker_connection.close(200, "done".into()).await;
    figures
}

async fn through_wharf(client: &Connection, dir: &std::path::Path) -> Figures {
    let (input, output) = ("wharf.bench.route.in", "wharf.bench.route.out");
    prepare(client, input, output).await;
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = format!("sqlite://{}/wharf.db", dir.display());
    config.server.plugin_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist"));
    config.connections.insert(
        "rabbit".into(),
        ConnectionConfig::Amqp(Box::new(AmqpConfig {
            url: Some(amqp_url()),
            channels: CHANNELS,
            queues: vec![
                AmqpQueueConfig::named(input),
                AmqpQueueConfig::named(output),
            ],
            ..AmqpConfig::default()
        })),
    );
    config.routes = vec![RouteConfig {
        name: "bench".into(),
        from: format!("rabbit:{input}"),
        through: vec!["uppercase".into()],
        to: Some(format!("rabbit:{output}")),
        concurrency: usize::from(PREFETCH),
        retry: RetryConfig::default(),
        dead_letter: None,
        durable: false,
        ..RouteConfig::default()
    }];
    let host = wharf::host::start(config).await.unwrap();
    let figures = measure(client, output).await;
    host.stop().await;
    figures
}

/// Deletes a phase's queues, so the next phase finds the broker as empty as this one did.
async fn clean(client: &Connection, queues: &[&str]) {
    let channel = client.create_channel().await.unwrap();
    for queue in queues {
        let _ = channel
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = channel.close(200, "cleaned".into()).await;
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let client = connect().await;
        println!(
            "{MESSAGES} persistent 256-byte JSON messages, durable queues, prefetch {PREFETCH}, confirms, ack after confirm; two rounds, queues emptied between phases"
        );
        let (mut bare_total, mut wharf_total) = ((0.0, 0.0), (0.0, 0.0));
        for round in 1..=ROUNDS {
            let bare = bare_lapin(&client).await;
            clean(&client, &["wharf.bench.bare.in", "wharf.bench.bare.out"]).await;
            let wharf = through_wharf(&client, dir.path()).await;
            clean(&client, &["wharf.bench.route.in", "wharf.bench.route.out", "wharf.bench.route.in.dead"]).await;
            println!(
                "round {round}: bare lapin, native uppercase   {:>7.0} msg/s   {:>6.1} µs CPU/msg",
                bare.rate, bare.cpu_us
            );
            println!(
                "round {round}: wharf route, uppercase plugin  {:>7.0} msg/s   {:>6.1} µs CPU/msg",
                wharf.rate, wharf.cpu_us
            );
            bare_total = (bare_total.0 + bare.rate, bare_total.1 + bare.cpu_us);
            wharf_total = (wharf_total.0 + wharf.rate, wharf_total.1 + wharf.cpu_us);
        }
        println!(
            "wharf/bare over {ROUNDS} rounds: throughput {:.2}, CPU per message {:.2}",
            wharf_total.0 / bare_total.0,
            wharf_total.1 / bare_total.1
        );
    });
}
