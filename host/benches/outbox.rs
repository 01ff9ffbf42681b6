//! The outbox: how fast its relay empties a backlog into RabbitMQ, on SQLite and on
//! PostgreSQL, beside bare lapin publishing the same messages with confirms in the same run;
//! and what a durable route adds to a message's latency over the same route without it.
//! Prints figures; checks only that every message arrived.
//!
//! Relay: 20,000 persistent 256-byte messages (20 keys, in order per key) committed to a fresh
//! database's outbox in units of 1,000 (as `POST /api/v1/outbox` takes them), then a host
//! started on it relays them to a durable queue; measured from the first message on the queue
//! to the last. Bare: one lapin channel in confirm mode publishing the same messages to a
//! durable queue, up to 1,000 confirms outstanding. Latency: one message at a time through
//! `rabbit:in` → `uppercase` → `rabbit:out`, 300 times, on a route and on a durable one
//! (outputs committed to the outbox, then relayed), from the publish to the output's arrival.

mod common;

use common::amqp::{amqp_url, clean, connect, measure};
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use std::time::{Duration, Instant};
use wharf::broker::amqp::AmqpConfig;
use wharf::broker::amqp::config::AmqpQueueConfig;
use wharf::config::{ConnectionConfig, RouteConfig};
use wharf::message::Message;
use wharf::store::{OutboxEntry, Store, UnitOfWork};

const MESSAGES: u32 = 20_000;
const LATENCY_MESSAGES: usize = 300;

fn payload(i: u32) -> Vec<u8> {
    let mut text = format!(r#"{{"n":{i:>6},"text":""#);
    while text.len() < 254 {
        text.push('a');
    }
    text.push_str("\"}");
    text.into_bytes()
}

async fn declare(client: &Connection, queue: &str) {
    let channel = client.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = channel.close(200, "declared".into()).await;
}

async fn bare(client: &Connection) -> f64 {
    let queue = "wharf.bench.outbox.bare";
    clean(client, &[queue]).await;
    declare(client, queue).await;
    let channel = client.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    let mut pending = Vec::new();
    for i in 0..MESSAGES {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &payload(i),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("m{i}").into()),
            )
            .await
            .unwrap();
        pending.push(confirm);
        if pending.len() == 1000 {
            for confirm in pending.drain(..) {
                assert!(confirm.await.unwrap().is_ack());
            }
        }
    }
    for confirm in pending {
        assert!(confirm.await.unwrap().is_ack());
    }
    let rate = f64::from(MESSAGES) / started.elapsed().as_secs_f64();
    clean(client, &[queue]).await;
    rate
}

fn rabbit(queues: &[&str]) -> ConnectionConfig {
    ConnectionConfig::Amqp(Box::new(AmqpConfig {
        url: Some(amqp_url()),
        queues: queues.iter().map(|q| AmqpQueueConfig::named(*q)).collect(),
        ..AmqpConfig::default()
    }))
}

/// The relay's rate on the database at `url`.
async fn relay(client: &Connection, dir: &std::path::Path, url: &str) -> (f64, f64) {
    let queue = "wharf.bench.outbox.relay";
    clean(client, &[queue]).await;
    declare(client, queue).await;
    let store = Store::open(url).await.unwrap();
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(1000) {
        let work = UnitOfWork {
            outbox: chunk
                .iter()
                .map(|i| {
                    let mut message = Message::new(queue, payload(*i));
                    message.key = Some(format!("k{}", i % 20).into_bytes());
                    OutboxEntry {
                        destination: format!("rabbit:{queue}"),
                        origin: "bench".into(),
                        message,
                    }
                })
                .collect(),
            ..UnitOfWork::default()
        };
        store
            .commit_work(&work, &Default::default(), 0)
            .await
            .unwrap();
    }
    store.close().await;
    let mut config = common::host_config(dir, "unused.db");
    config.server.database = url.to_owned();
    config.connections.insert("rabbit".into(), rabbit(&[queue]));
    let host = wharf::host::start(config).await.unwrap();
    let figures = measure(client, queue, MESSAGES).await;
    host.stop().await;
    clean(client, &[queue]).await;
    (figures.rate, figures.cpu_us)
}

/// Sends one message at a time to `input`, waiting for each on `output`; the latencies.
async fn latencies(client: &Connection, input: &str, output: &str) -> Vec<Duration> {
    let channel = client.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            output.into(),
            "latency".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let publishing = client.create_channel().await.unwrap();
    publishing
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut taken = Vec::with_capacity(LATENCY_MESSAGES);
    // Fresh ids each call: a durable route's inbox acks an id it has handled without
    // running it again.
    let run = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..LATENCY_MESSAGES as u32 {
        let started = Instant::now();
        publishing
            .basic_publish(
                "".into(),
                input.into(),
                BasicPublishOptions::default(),
                &payload(i),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("{run}-{i}").into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("message {i} sent to {input} did not reach {output}"))
            .unwrap()
            .unwrap();
        taken.push(started.elapsed());
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let _ = channel.close(200, "done".into()).await;
    let _ = publishing.close(200, "done".into()).await;
    taken.sort();
    taken
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3
}

async fn latency(client: &Connection, dir: &std::path::Path) {
    let queues = [
        "wharf.bench.lat.in",
        "wharf.bench.lat.out",
        "wharf.bench.latd.in",
        "wharf.bench.latd.out",
    ];
    clean(client, &queues).await;
    let mut config = common::host_config(dir, "latency.db");
    config.connections.insert("rabbit".into(), rabbit(&queues));
    for (name, from, to, durable) in [
        ("plain", queues[0], queues[1], false),
        ("durable", queues[2], queues[3], true),
    ] {
        config.routes.push(RouteConfig {
            name: name.into(),
            from: format!("rabbit:{from}"),
            through: vec!["uppercase".into()],
            to: Some(format!("rabbit:{to}")),
            durable,
            ..RouteConfig::default()
        });
    }
    let host = wharf::host::start(config).await.unwrap();
    // Warm up both routes (plugin instances, channels).
    latencies(client, queues[0], queues[1]).await;
    latencies(client, queues[2], queues[3]).await;
    let plain = latencies(client, queues[0], queues[1]).await;
    let durable = latencies(client, queues[2], queues[3]).await;
    println!(
        "latency, one message at a time: route p50 {:.2} ms p99 {:.2} ms; durable route p50 {:.2} ms p99 {:.2} ms; the outbox adds {:.2} ms at p50",
        quantile(&plain, 0.5),
        quantile(&plain, 0.99),
        quantile(&durable, 0.5),
        quantile(&durable, 0.99),
        quantile(&durable, 0.5) - quantile(&plain, 0.5)
    );
    host.stop().await;
    clean(client, &queues).await;
}

/// A fresh PostgreSQL database for one phase (`WHARF_TEST_POSTGRES`'s server), dropped after.
async fn postgres_database() -> (String, impl AsyncFnOnce()) {
    use sqlx::Connection as _;
    let admin = std::env::var("WHARF_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("wharf_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0.to_owned();
    let url = format!("{base}/{name}");
    (url, async move || {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    })
}

fn main() {
    // RUST_LOG=wharf=debug shows what the hosts do.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let client = connect().await;
        let dir = tempfile::tempdir().unwrap();
        println!(
            "{MESSAGES} persistent 256-byte messages (20 keys) relayed from the outbox to a durable RabbitMQ queue with confirms, beside bare lapin publishing them with confirms; two rounds"
        );
        for round in 1..=2 {
            let bare = bare(&client).await;
            let sqlite_url = format!("sqlite://{}/outbox-{round}.db", dir.path().display());
            let (sqlite, sqlite_cpu) = relay(&client, dir.path(), &sqlite_url).await;
            let (pg_url, drop_pg) = postgres_database().await;
            let (postgres, postgres_cpu) = relay(&client, dir.path(), &pg_url).await;
            drop_pg().await;
            println!("round {round}: bare lapin, confirmed publishing   {bare:>7.0} msg/s");
            println!(
                "round {round}: outbox relay on SQLite           {sqlite:>7.0} msg/s   {sqlite_cpu:>6.1} µs CPU/msg   {:.2} of bare",
                sqlite / bare
            );
            println!(
                "round {round}: outbox relay on PostgreSQL       {postgres:>7.0} msg/s   {postgres_cpu:>6.1} µs CPU/msg   {:.2} of bare",
                postgres / bare
            );
        }
        latency(&client, dir.path()).await;
        let _ = client.close(200, "done".into()).await;
    });
}
