//! Messages per second through a route `local:` → `uppercase` → `local:` on SQLite, and the
//! host's CPU per message, beside a bare loop over the embedded broker doing the same work
//! with the transform in native Rust. Prints figures; checks only that every message arrived.
//!
//! Both runs: 10,000 messages of 256 bytes already queued, 64 in flight, each output committed
//! before its input is acked. CPU is the whole process's user + system time from the first output to the last.

mod common;

use common::cpu_time;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wharf::broker::{EmbeddedBroker, EmbeddedConfig};
use wharf::config::{Config, RetryConfig, RouteConfig};
use wharf::message::Message;
use wharf::store::Store;

const MESSAGES: u64 = 10_000;
const CONCURRENCY: usize = 64;

async fn fill(broker: &EmbeddedBroker) {
    let payload = vec![b'a'; 256];
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..64u64 {
        let (broker, payload) = (broker.clone(), payload.clone());
        tasks.spawn(async move {
            for i in (p..MESSAGES).step_by(64) {
                let mut msg = Message::new("bench.in", payload.clone());
                msg.id = format!("m{i}");
                broker.publish("bench.in", msg).await.unwrap();
            }
        });
    }
    tasks.join_all().await;
}

/// Measures from the first output to the last, so start-up (compiling plugins, opening
/// connections) is not counted as per-message work.
async fn measure(broker: &EmbeddedBroker) -> Figures {
    let depth = || async { broker.stats("bench.out").await.unwrap().depth() };
    let mut first = depth().await;
    while first == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        first = depth().await;
    }
    let (cpu, started) = (cpu_time(), Instant::now());
    while depth().await < MESSAGES {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu);
    let counted = (MESSAGES - first) as f64;
    Figures {
        rate: counted / elapsed.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / counted,
    }
}

struct Figures {
    rate: f64,
    cpu_us: f64,
}

async fn through_wharf(dir: &std::path::Path) -> Figures {
    let url = format!("sqlite://{}/wharf.db", dir.display());
    let broker = EmbeddedBroker::new(Store::open(&url).await.unwrap(), EmbeddedConfig::default());
    fill(&broker).await;
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = url;
    config.server.plugin_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist"));
    config.routes = vec![RouteConfig {
        name: "bench".into(),
        from: "local:bench.in".into(),
        through: vec!["uppercase".into()],
        to: Some("local:bench.out".into()),
        concurrency: CONCURRENCY,
        retry: RetryConfig::default(),
        dead_letter: None,
        durable: false,
        ..RouteConfig::default()
    }];
    let host = wharf::host::start(config).await.unwrap();
    let figures = measure(&broker).await;
    host.stop().await;
    figures
}

async fn bare_loop(dir: &std::path::Path) -> Figures {
    let url = format!("sqlite://{}/bare.db", dir.display());
    let broker = EmbeddedBroker::new(Store::open(&url).await.unwrap(), EmbeddedConfig::default());
    fill(&broker).await;
    let worker = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut consumer = broker.consume("bench.in", CONCURRENCY).await.unwrap();
            let mut in_flight = tokio::task::JoinSet::new();
            for _ in 0..MESSAGES {
                let delivery = consumer.next().await.unwrap();
                let broker = broker.clone();
                in_flight.spawn(async move {
                    let mut out = delivery.message.clone();
                    out.payload = String::from_utf8(out.payload)
                        .unwrap()
                        .to_uppercase()
                        .into_bytes();
                    broker.publish("bench.out", out).await.unwrap();
                    delivery.ack.ack().await.unwrap();
                });
                while in_flight.try_join_next().is_some() {}
            }
            in_flight.join_all().await;
        })
    };
    let figures = measure(&broker).await;
    worker.await.unwrap();
    figures
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        println!("{MESSAGES} queued 256-byte messages, {CONCURRENCY} in flight, SQLite, outputs committed before inputs are acked");
        let bare = bare_loop(dir.path()).await;
        let wharf = through_wharf(dir.path()).await;
        println!("bare loop, native uppercase   {:>7.0} msg/s   {:>6.1} µs CPU/msg", bare.rate, bare.cpu_us);
        println!("wharf route, uppercase plugin {:>7.0} msg/s   {:>6.1} µs CPU/msg", wharf.rate, wharf.cpu_us);
        println!("wharf/bare: throughput {:.2}, CPU per message {:.2}", wharf.rate / bare.rate, wharf.cpu_us / bare.cpu_us);
    });
}
