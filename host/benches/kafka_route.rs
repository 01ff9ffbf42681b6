//! Wharf on Kafka against a bare rdkafka consume-transform-produce loop doing the same work,
//! in the same run, on the same broker (the local tansu that `./dev bench` starts, or
//! `WHARF_TEST_KAFKA`). Prints figures; checks only that every record arrived.
//!
//! Workload, both runs: 5,000 keyed 256-byte records waiting on a 3-partition topic, consumed
//! by a consumer group, uppercased, produced to another 3-partition topic by an idempotent
//! producer (`acks=all`), each input's offset stored only after its output's delivery report
//! and committed every second. (a) Wharf: a route through the `uppercase` plugin. (b) Bare
//! rdkafka: the canonical at-least-once loop (rdkafka's `at_least_once` example) with the
//! transform in native Rust. Measured from the first record seen on the output topic until it
//! holds every record, so joining the group and starting the host count in neither; CPU is
//! this process's user + system time over that span (the broker's is in neither figure).
//! Two rounds of bare then Wharf, each on fresh topics.
//!
//! Wharf hands out one record per partition at a time (order per key), with its partitions in
//! flight together; the bare loop handles one record at a time, as the example does.

mod common;

use common::Figures;

use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};
use wharf::config::{RetryConfig, RouteConfig};

const RECORDS: usize = 5_000;
const PARTITIONS: i32 = 3;
const ROUNDS: usize = 2;

fn brokers() -> String {
    std::env::var("WHARF_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn topics(names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap();
}

async fn fill(topic: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let payload = format!("{{\"text\":\"{}\"}}", "x".repeat(256 - 12));
    let sends = (0..RECORDS).map(|i| {
        let producer = producer.clone();
        let (payload, key) = (payload.clone(), format!("k{}", i % 100));
        async move {
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
    futures::future::join_all(sends).await;
}

/// Records in `topic`, by its partitions' offsets.
fn held(producer: &FutureProducer, topic: &str) -> i64 {
    use rdkafka::producer::Producer as _;
    (0..PARTITIONS)
        .map(|p| {
            producer
                .client()
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map_or(0, |(low, high)| high - low)
        })
        .sum()
}

/// Waits until `output` holds every record. The figures run from the first output seen to
/// the last, so neither side's start (joining the group, a host loading its plugins) counts:
/// the rate is of the records that arrived in that span, the CPU this process spent in it.
async fn measure(output: &str, started: Instant) -> Figures {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let output = output.to_owned();
    let mut first: Option<(Instant, Duration, i64)> = None;
    loop {
        let (p, o) = (producer.clone(), output.clone());
        let count = tokio::task::spawn_blocking(move || held(&p, &o))
            .await
            .unwrap();
        if count > 0 && first.is_none() {
            first = Some((Instant::now(), common::cpu_time(), count));
        }
        if count >= RECORDS as i64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {count} of {RECORDS} records arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (since, cpu, before) = first.expect("records arrived");
    let records = RECORDS as f64 - before as f64;
    Figures {
        rate: records / since.elapsed().as_secs_f64(),
        cpu_us: (common::cpu_time() - cpu).as_secs_f64() * 1e6 / records,
    }
}

async fn bare_rdkafka() -> Figures {
    let (input, output) = (unique("bench-bare-in"), unique("bench-bare-out"));
    topics(&[&input, &output]).await;
    fill(&input).await;
    let started = Instant::now();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("bench-bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&input]).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let loop_output = output.clone();
    let worker = tokio::spawn(async move {
        for _ in 0..RECORDS {
            let m = consumer.recv().await.unwrap();
            let upper = m.payload().unwrap_or_default().to_ascii_uppercase();
            let mut record = FutureRecord::to(&loop_output).payload(&upper);
            if let Some(key) = m.key() {
                record = record.key(key);
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            consumer.store_offset_from_message(&m).unwrap();
        }
    });
    let figures = measure(&output, started).await;
    worker.await.unwrap();
    figures
}

async fn through_wharf(dir: &std::path::Path) -> Figures {
    let (input, output) = (unique("bench-route-in"), unique("bench-route-out"));
    topics(&[&input, &output]).await;
    fill(&input).await;
    let mut config =
        common::host_config(dir, &format!("wharf-{}.db", uuid::Uuid::new_v4().simple()));
    config.connections.insert(
        "kafka".into(),
        wharf::config::ConnectionConfig::Kafka(Box::new(wharf::broker::kafka::KafkaConfig {
            brokers: brokers(),
            group: unique("bench"),
            ..Default::default()
        })),
    );
    config.routes = vec![RouteConfig {
        name: "bench".into(),
        from: format!("kafka:{input}"),
        through: vec!["uppercase".into()],
        to: Some(format!("kafka:{output}")),
        concurrency: 16,
        retry: RetryConfig::default(),
        dead_letter: None,
        durable: false,
        ..RouteConfig::default()
    }];
    let started = Instant::now();
    let host = wharf::host::start(config).await.unwrap();
    let figures = measure(&output, started).await;
    host.stop().await;
    figures
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        println!(
            "{RECORDS} keyed 256-byte records, {PARTITIONS} partitions, idempotent producer, offsets stored after each delivery report and committed every second; two rounds, fresh topics each phase"
        );
        let mut comparison = common::Comparison::new("bare rdkafka, native uppercase");
        for _ in 1..=ROUNDS {
            let bare = bare_rdkafka().await;
            let wharf = through_wharf(dir.path()).await;
            comparison.round(bare, wharf);
        }
        comparison.finish();
    });
}
