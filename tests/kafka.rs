//! Wharf on Kafka, end to end, against a real Kafka-protocol broker (`./dev test` starts
//! nisshi on 127.0.0.1:9092; `WHARF_TEST_KAFKA` names another). Every record a test reads or
//! writes on the broker's side goes through bare rdkafka, an independent client: keyed
//! records in, ordered per key out; the host killed with SIGKILL and restarted; the broker
//! restarted; routes mixing Kafka with RabbitMQ and HTTP; two hosts in one group; a route
//! created and upgraded through the API; an RPC over Kafka; bad input.

mod support;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};
use support::plugin_dir;
use wharf::config::Config;

fn brokers() -> String {
    std::env::var("WHARF_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let result = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("the broker answers");
    assert!(result[0].is_ok(), "creating {name}: {:?}", result[0]);
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// The key of record `i` among `keys`, and its payload: `m-{key}-{seq}`, seq counting per key.
fn keyed(i: usize, keys: usize) -> (String, String) {
    let key = format!("k{}", i % keys);
    (key.clone(), format!("m-{key}-{}", i / keys))
}

/// Produces records `from..to` (see [`keyed`]) to `topic`, waiting for every delivery.
async fn produce(topic: &str, from: usize, to: usize, keys: usize) {
    let producer = producer();
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in from..to {
        let (key, payload) = keyed(i, keys);
        let producer = producer.clone();
        let topic = topic.to_owned();
        pending.push(async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
        });
        if pending.len() >= 500 {
            use futures::StreamExt as _;
            pending.next().await.unwrap().expect("delivered");
        }
    }
    use futures::StreamExt as _;
    while let Some(result) = pending.next().await {
        result.expect("delivered");
    }
}

/// One record read back: key, payload, partition, offset, headers.
#[derive(Debug, Clone)]
struct Read {
    key: String,
    payload: String,
    partition: i32,
    offset: i64,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads a topic from its start with a group of its own, keeping what it read.
struct Reader {
    consumer: StreamConsumer,
    read: Vec<Read>,
}

impl Reader {
    fn new(topic: &str) -> Reader {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", unique("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Reader {
            consumer,
            read: Vec::new(),
        }
    }

    /// Reads until `count` records in all arrived, or `quiet` passed with none once some
    /// arrived, or `limit` passed.
    async fn until(&mut self, count: usize, quiet: Duration, limit: Duration) -> &[Read] {
        let started = Instant::now();
        while self.read.len() < count && started.elapsed() < limit {
            match tokio::time::timeout(quiet, self.consumer.recv()).await {
                Ok(Ok(m)) => self.read.push(Read {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Ok(Err(e)) => panic!("reading: {e}"),
                Err(_) if !self.read.is_empty() => break,
                Err(_) => {}
            }
        }
        &self.read
    }
}

/// Reads `topic` from the start with a group of its own until `count` records arrived or
/// `quiet` passes with none (after `limit` at most).
async fn read_topic(topic: &str, count: usize, quiet: Duration, limit: Duration) -> Vec<Read> {
    let mut reader = Reader::new(topic);
    reader.until(count, quiet, limit).await;
    reader.read
}

/// Waits until `reader` has read `count` records; panics naming `what` after `limit`.
async fn wait_for(reader: &mut Reader, count: usize, limit: Duration, what: &str) {
    let started = Instant::now();
    while reader
        .until(count, Duration::from_secs(1), limit)
        .await
        .len()
        < count
    {
        assert!(
            started.elapsed() < limit,
            "{what}: only {} of {count} records within {limit:?}",
            reader.read.len()
        );
    }
}

/// How many of each payload arrived, and whether each key's records came in order.
fn check_order(read: &[Read]) -> (BTreeMap<String, u32>, Vec<String>) {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut out_of_order = Vec::new();
    for r in read {
        *seen.entry(r.payload.clone()).or_default() += 1;
        let seq: i64 = r.payload.rsplit('-').next().unwrap().parse().unwrap();
        let previous = last.insert(r.key.clone(), seq);
        // A duplicate replays from the last commit: it may go back, but never skips ahead.
        if let Some(previous) = previous
            && seq > previous + 1
        {
            out_of_order.push(format!("{}: {previous} then {seq}", r.key));
        }
    }
    (seen, out_of_order)
}

fn expected(total: usize, keys: usize) -> Vec<String> {
    let mut all: Vec<String> = (0..total)
        .map(|i| keyed(i, keys).1.to_uppercase())
        .collect();
    all.sort();
    all
}

fn write_config(dir: &Path, group: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join("wharf.toml");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
database = "sqlite://{db}"
plugin_dir = "{plugins}"
shutdown_grace_ms = 2000

[connections.kafka]
kind = "kafka"
brokers = "{brokers}"
group = "{group}"
{body}
"#,
        port = support::free_port(),
        db = dir.join("wharf.db").display(),
        plugins = plugin_dir().display(),
        brokers = brokers(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn route_body(input: &str, output: &str) -> String {
    format!(
        r#"
[[connections.kafka.topics]]
name = "{input}"
partitions = 3
[[connections.kafka.topics]]
name = "{output}"
partitions = 3

[[routes]]
name = "shout"
from = "kafka:{input}"
through = ["uppercase"]
to = "kafka:{output}"
concurrency = 8
"#
    )
}

async fn start(dir: &Path, group: &str, body: &str) -> wharf::host::RunningHost {
    let config = Config::load(Some(&write_config(dir, group, body))).expect("a valid config");
    wharf::host::start(config).await.expect("the host starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keyed_records_arrive_in_order_per_key() {
    let _exclusive = BROKER.lock().await;
    let (input, output) = (unique("in"), unique("out"));
    let (total, keys) = (10_000, 50);
    create_topic(&input, 3).await;
    create_topic(&output, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), &unique("g"), &route_body(&input, &output)).await;
    let started = Instant::now();
    produce(&input, 0, total, keys).await;
    let read = read_topic(
        &output,
        total,
        Duration::from_secs(60),
        Duration::from_secs(400),
    )
    .await;
    let (seen, out_of_order) = check_order(&read);
    println!(
        "{total} records in; {} read back after {:.1} s",
        read.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(out_of_order.is_empty(), "out of order: {out_of_order:?}");
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        expected(total, keys)
    );
    assert!(
        seen.values().all(|&n| n == 1),
        "no duplicates without a failure"
    );
    // Each output keeps its input's key, so a key stays on one partition.
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    for r in &read {
        assert_eq!(
            *partition_of.entry(&r.key).or_insert(r.partition),
            r.partition
        );
    }
    host.stop().await;
}

/// A `wharf serve` process, killed (SIGKILL) when dropped, so a failing test leaves none
/// running.
struct Serve(std::process::Child);

impl Serve {
    fn start(config: &Path, dir: &Path) -> (Serve, u16) {
        let port = Config::load(Some(config)).unwrap().server.listen.port();
        (Serve(support::serve_config(config, dir, port)), port)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One test at a time uses the broker: a restart must not hit another test, and the broker's
/// SQLite storage serves one pipeline well, not eight.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Restarts the local broker (nisshi, as `./dev test` starts it) from its data directory
/// (`WHARF_TEST_KAFKA_DIR`, by default `~/.cache/wharf-kafka`): killed, started again on the
/// same storage; panics if it does not come back.
fn restart_broker() {
    let dir = std::env::var("WHARF_TEST_KAFKA_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/wharf-kafka", std::env::var("HOME").unwrap()));
    // The broker keeps running on SIGTERM; SIGKILL stops it, and its SQLite storage keeps
    // what it acknowledged.
    let stopped = std::process::Command::new("pkill")
        .args(["-KILL", "-x", BROKER_PROGRAM])
        .status()
        .unwrap();
    assert!(
        stopped.success(),
        "no {BROKER_PROGRAM} broker was running to restart"
    );
    let started = Instant::now();
    while std::net::TcpStream::connect("127.0.0.1:9092").is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{BROKER_PROGRAM} did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(Path::new(&dir).join("broker.log"))
        .unwrap();
    let broker = std::process::Command::new(BROKER_PROGRAM)
        .args([
            "broker",
            "--listener-url",
            "tcp://127.0.0.1:9092",
            "--advertised-listener-url",
            "tcp://127.0.0.1:9092",
            "--storage-engine",
            "sqlite://kafka.db",
        ])
        .current_dir(&dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {BROKER_PROGRAM} again: {e}"));
    // The broker outlives the test, as `./dev test` started it; its next start kills it.
    std::mem::forget(broker);
    while std::net::TcpStream::connect("127.0.0.1:9092").is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{BROKER_PROGRAM} did not come back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The broker `./dev test` builds and starts (on `PATH`, or in `~/.cargo/bin`).
const BROKER_PROGRAM: &str = "nisshi";

/// The committed offset of each partition of `topic` for `group`.
fn committed(group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let offsets = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    offsets
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            (e.partition(), offset)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_killed_mid_stream_loses_nothing_and_repeats_only_what_followed_the_last_commit() {
    let _exclusive = BROKER.lock().await;
    let (input, output, group) = (unique("kill-in"), unique("kill-out"), unique("g"));
    let (total, keys) = (6_000, 50);
    create_topic(&input, 3).await;
    create_topic(&output, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &group, &route_body(&input, &output));
    let spawn = || Serve::start(&config, dir.path()).0;
    let mut host = spawn();
    produce(&input, 0, total, keys).await;
    let mut reader = Reader::new(&output);
    wait_for(
        &mut reader,
        1_500,
        Duration::from_secs(180),
        "before the kill",
    )
    .await;
    host.kill(); // SIGKILL
    let before: usize = read_topic(
        &output,
        total,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .await
    .len();
    let at_kill = committed(&format!("{group}.shout"), &input, 3);
    let mut host = spawn();
    let read = read_topic(
        &output,
        total + 5_000,
        Duration::from_secs(60),
        Duration::from_secs(400),
    )
    .await;
    let (seen, out_of_order) = check_order(&read);
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!(
        "{total} records; {before} out at the kill; committed then: {at_kill:?}; {} distinct, {duplicates} duplicates",
        seen.len()
    );
    assert!(before < total, "killed mid-stream");
    assert!(out_of_order.is_empty(), "out of order: {out_of_order:?}");
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        expected(total, keys)
    );
    // Every duplicate is of an input at or after its partition's last commit.
    let mut inputs = Reader::new(&input);
    wait_for(&mut inputs, total, Duration::from_secs(180), "the inputs").await;
    let origin: HashMap<String, (i32, i64)> = inputs
        .read
        .iter()
        .map(|r| (r.payload.to_uppercase(), (r.partition, r.offset)))
        .collect();
    let repeated_before_commit: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(payload, _)| payload)
        .filter(|payload| {
            let (partition, offset) = origin[*payload];
            offset < at_kill.get(&partition).copied().unwrap_or(0)
        })
        .collect();
    assert!(
        repeated_before_commit.is_empty(),
        "repeated though committed: {repeated_before_commit:?}"
    );
    host.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_restarted_mid_stream_loses_nothing() {
    let _exclusive = BROKER.lock().await;
    let (input, output) = (unique("restart-in"), unique("restart-out"));
    let (total, keys) = (4_000, 30);
    create_topic(&input, 3).await;
    create_topic(&output, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), &unique("g"), &route_body(&input, &output)).await;
    produce(&input, 0, total / 2, keys).await;
    let mut reader = Reader::new(&output);
    wait_for(
        &mut reader,
        1_000,
        Duration::from_secs(120),
        "before the restart",
    )
    .await;
    tokio::task::spawn_blocking(restart_broker).await.unwrap();
    produce(&input, total / 2, total, keys).await;
    let read = read_topic(
        &output,
        total,
        Duration::from_secs(30),
        Duration::from_secs(300),
    )
    .await;
    let (seen, out_of_order) = check_order(&read);
    println!(
        "{total} records; {} distinct out, {} read",
        seen.len(),
        read.len()
    );
    assert!(out_of_order.is_empty(), "out of order: {out_of_order:?}");
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        expected(total, keys)
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_mix_kafka_with_rabbitmq_and_http() {
    let _exclusive = BROKER.lock().await;
    let (input, back, queue, path) = (
        unique("mix-in"),
        unique("mix-back"),
        unique("mix.q"),
        unique("hook"),
    );
    create_topic(&input, 1).await;
    create_topic(&back, 1).await;
    // An HTTP endpoint that keeps what it is sent.
    let received = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().await.push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let host = start(
        dir.path(),
        &unique("g"),
        &format!(
            r#"
[connections.rabbit]
kind = "amqp"
url = "{amqp}"

[connections.web]
kind = "http"
base_url = "http://{endpoint}/"

[[connections.rabbit.queues]]
name = "{queue}"

[[routes]]
name = "to-rabbit"
from = "kafka:{input}"
through = ["uppercase"]
to = "rabbit:{queue}"

[[routes]]
name = "to-kafka"
from = "rabbit:{queue}"
to = "kafka:{back}"

[[routes]]
name = "to-http"
from = "kafka:{back}"
to = "web:{path}"
"#,
            amqp = support::amqp_url(),
        ),
    )
    .await;
    produce(&input, 0, 100, 5).await;
    let read = read_topic(
        &back,
        100,
        Duration::from_secs(20),
        Duration::from_secs(120),
    )
    .await;
    let (seen, _) = check_order(&read);
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), expected(100, 5));
    let started = Instant::now();
    while received.lock().await.len() < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} reached HTTP",
            received.lock().await.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut bodies = received.lock().await.clone();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies, expected(100, 5));
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

/// The partitions a host's consumers of `group` hold, from its `/metrics`.
async fn assigned(port: u16, group: &str) -> u32 {
    let text = support::scrape(([127, 0, 0, 1], port).into()).await;
    text.lines()
        .find(|l| {
            l.starts_with("wharf_kafka_assigned_partitions")
                && l.contains(&format!("group=\"{group}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_in_one_group_share_the_partitions_and_one_takes_over_from_the_other() {
    let _exclusive = BROKER.lock().await;
    let (input, output, group) = (unique("pair-in"), unique("pair-out"), unique("g"));
    let (total, keys) = (2_000, 40);
    create_topic(&input, 4).await;
    create_topic(&output, 4).await;
    let body = route_body(&input, &output).replace("partitions = 3", "partitions = 4");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_config = write_config(a_dir.path(), &group, &body);
    let b_config = write_config(b_dir.path(), &group, &body);
    let (mut a, a_port) = Serve::start(&a_config, a_dir.path());
    let (mut b, b_port) = Serve::start(&b_config, b_dir.path());
    let route_group = format!("{group}.shout");
    // The group settles with the partitions split between the two.
    let started = Instant::now();
    loop {
        let (on_a, on_b) = (
            assigned(a_port, &route_group).await,
            assigned(b_port, &route_group).await,
        );
        if on_a > 0 && on_b > 0 && on_a + on_b == 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no split: {on_a} and {on_b}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    produce(&input, 0, total / 2, keys).await;
    a.kill();
    // b takes every partition over, and everything arrives.
    let started = Instant::now();
    while assigned(b_port, &route_group).await < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "b did not take a's partitions over"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // `wharf status` says so, partition by partition.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["status", "--url", &format!("http://127.0.0.1:{b_port}")])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&status.stdout);
    assert!(
        printed.contains("consumer groups")
            && printed.contains(&route_group)
            && printed.contains("4 partition(s), for shout"),
        "{printed}"
    );
    for partition in 0..4 {
        assert!(
            printed.contains(&format!("{input}[{partition}]  lag")),
            "{printed}"
        );
    }
    produce(&input, total / 2, total, keys).await;
    let read = read_topic(
        &output,
        total,
        Duration::from_secs(60),
        Duration::from_secs(400),
    )
    .await;
    let (seen, out_of_order) = check_order(&read);
    assert!(out_of_order.is_empty(), "out of order: {out_of_order:?}");
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        expected(total, keys)
    );
    b.kill();
}

/// A host with the Kafka connection and no routes, and its API as the local admin.
async fn api_host(
    db: &support::TestDb,
    group: &str,
) -> (wharf::host::RunningHost, reqwest::Client, String) {
    let mut config = Config::default();
    config.routes.clear();
    config.connections.insert(
        "kafka".into(),
        wharf::config::ConnectionConfig::Kafka(Box::new(wharf::broker::kafka::KafkaConfig {
            brokers: brokers(),
            group: group.into(),
            ..Default::default()
        })),
    );
    let (host, _) = support::start_host(db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}/api/v1", host.addr);
    (host, client, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_created_and_updated_through_the_api_drains_and_loses_nothing() {
    let _exclusive = BROKER.lock().await;
    let (input, output) = (unique("api-in"), unique("api-out"));
    let (total, keys) = (2_000, 30);
    create_topic(&input, 3).await;
    create_topic(&output, 3).await;
    let db = support::TestDb::new(support::Backend::Sqlite).await;
    let (host, api, base) = api_host(&db, &unique("g")).await;
    let spec = serde_json::json!({
        "name": "shout", "from": format!("kafka:{input}"), "through": ["uppercase"],
        "to": format!("kafka:{output}"), "concurrency": 8,
    });
    let created = api
        .post(format!("{base}/routes"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    produce(&input, 0, total / 2, keys).await;
    // Updated while records flow (once the first have come through: a member that leaves the
    // group before its first join is answered stalls the group on nisshi, see
    // tests/README.md): the old runner drains, the new one goes on from its commits.
    let mut reader = Reader::new(&output);
    wait_for(
        &mut reader,
        1,
        Duration::from_secs(120),
        "before the update",
    )
    .await;
    let mut changed = spec.clone();
    changed["concurrency"] = serde_json::json!(4);
    let updated = api
        .put(format!("{base}/routes/shout"))
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200, "{}", updated.text().await.unwrap());
    produce(&input, total / 2, total, keys).await;
    wait_for(
        &mut reader,
        total,
        Duration::from_secs(400),
        "after the update",
    )
    .await;
    let (seen, out_of_order) = check_order(&reader.read);
    assert!(out_of_order.is_empty(), "out of order: {out_of_order:?}");
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        expected(total, keys)
    );
    // Stats of a topic: its partitions' offsets.
    let stats: serde_json::Value = api
        .get(format!("{base}/queues/kafka/{input}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["depth"], total, "{stats}");
    assert_eq!(stats["partitions"].as_array().unwrap().len(), 3, "{stats}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_over_kafka_is_answered_through_the_hosts_reply_topic() {
    let _exclusive = BROKER.lock().await;
    let requests = unique("rpc-in");
    create_topic(&requests, 1).await;
    let db = support::TestDb::new(support::Backend::Sqlite).await;
    let (host, api, base) = api_host(&db, &unique("g")).await;
    // An independent service answers each request at its reply topic, with its correlation id.
    let answering = requests.clone();
    let service = tokio::spawn(async move {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", unique("service"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[&answering]).unwrap();
        let producer = producer();
        loop {
            let request = consumer.recv().await.unwrap();
            let header = |name: &str| {
                request.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
            };
            let (Some(reply_to), Some(correlation)) =
                (header("x-wharf-reply-to"), header("x-wharf-correlation-id"))
            else {
                continue;
            };
            let answer = format!(
                "answer to {}",
                String::from_utf8_lossy(request.payload().unwrap_or_default())
            );
            producer
                .send(
                    FutureRecord::to(&reply_to)
                        .payload(&answer)
                        .key("reply")
                        .headers(OwnedHeaders::new().insert(Header {
                            key: "x-wharf-correlation-id",
                            value: Some(&correlation),
                        })),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    });
    let reply = api
        .post(format!("{base}/rpc/kafka/{requests}?timeout_ms=30000"))
        .json(&serde_json::json!({ "payload": "question" }))
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["payload"], "answer to question", "{body}");
    service.abort();
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error_or_passes_through_without_stalling_its_partition() {
    let _exclusive = BROKER.lock().await;
    let (input, output) = (unique("bad-in"), unique("bad-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let db = support::TestDb::new(support::Backend::Sqlite).await;
    let (host, api, base) = api_host(&db, &unique("g")).await;
    // An unknown topic: refused at once, naming it.
    let missing = api
        .post(format!(
            "{base}/queues/kafka/no-such-topic-{}/messages",
            uuid::Uuid::new_v4().simple()
        ))
        .json(&serde_json::json!({ "payload": "x" }))
        .send()
        .await
        .unwrap();
    let status = missing.status().as_u16();
    let text = missing.text().await.unwrap();
    assert!((400..500).contains(&status), "{status} {text}");
    assert!(text.contains("topic"), "{text}");
    // A 2 MiB key: refused before it reaches the broker.
    let big = api
        .post(format!("{base}/queues/kafka/{input}/messages"))
        .json(&serde_json::json!({ "payload": "x", "key": "k".repeat(2 << 20) }))
        .send()
        .await
        .unwrap();
    assert!(
        (400..500).contains(&big.status().as_u16()),
        "{}",
        big.status()
    );
    // A header that is not UTF-8, from another client: carried through as bytes, and the
    // records behind it are not held up.
    let spec = serde_json::json!({
        "name": "pass", "from": format!("kafka:{input}"), "to": format!("kafka:{output}"),
    });
    let created = api
        .post(format!("{base}/routes"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let producer = producer();
    producer
        .send(
            FutureRecord::to(&input)
                .key("k0")
                .payload("m-k0-0")
                .headers(OwnedHeaders::new().insert(Header {
                    key: "raw",
                    value: Some(&[0xff_u8, 0xfe, 0x00, 0x80][..]),
                })),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    produce(&input, 1, 20, 1).await;
    let read = read_topic(
        &output,
        20,
        Duration::from_secs(20),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(read.len(), 20, "every record passed");
    let raw = read[0]
        .headers
        .iter()
        .find(|(k, _)| k == "raw")
        .and_then(|(_, v)| v.clone());
    assert_eq!(
        raw,
        Some(vec![0xff, 0xfe, 0x00, 0x80]),
        "the bytes kept as they were"
    );
    host.stop().await;
}

/// Model events on Kafka: one topic holds every event (its routing key in `x-wharf-topic`);
/// two services subscribed to `Booking.*` each read it in a consumer group of their own and
/// get every `Booking.created` and `Booking.updated` and no `Order.created`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_each_get_every_booking_event_on_kafka() {
    let _exclusive = BROKER.lock().await;
    let db = support::TestDb::new(support::Backend::Sqlite).await;
    let topic = unique("events");
    let mut config = Config::default();
    config.routes.clear();
    config.connections.insert(
        "kafka".into(),
        wharf::config::ConnectionConfig::Kafka(Box::new(wharf::broker::kafka::KafkaConfig {
            brokers: brokers(),
            group: unique("wharf"),
            ..Default::default()
        })),
    );
    config.events = wharf::config::EventsConfig {
        connection: "kafka".into(),
        exchange: topic.clone(),
        prefix: None,
    };
    let (host, broker) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}/api/v1", host.addr);
    for service in ["billing", "audit"] {
        let made = client
            .post(format!("{base}/subscriptions"))
            .json(&serde_json::json!({
                "name": format!("{service}-bookings"),
                "service": service,
                "pattern": "Booking.*",
                "through": ["uppercase"],
                "to": format!("local:{service}.out"),
            }))
            .send()
            .await
            .unwrap();
        let status = made.status();
        let made: serde_json::Value = made.json().await.unwrap();
        assert_eq!(status, 201, "{made}");
    }
    for (model, event) in [
        ("shop.models.Booking", "created"),
        ("Booking", "updated"),
        ("Order", "created"),
    ] {
        let answer = client
            .post(format!("{base}/events/{model}/{event}"))
            .json(&serde_json::json!({ "event": event }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    }
    for service in ["billing", "audit"] {
        let queue = format!("{service}.out");
        let started = Instant::now();
        let topics = loop {
            let found = broker.peek(&queue, 10, 1 << 20).await.unwrap();
            if found.len() >= 2 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let found = broker.peek(&queue, 10, 1 << 20).await.unwrap();
                let mut topics: Vec<String> = found.into_iter().map(|m| m.topic).collect();
                topics.sort();
                break topics;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "{queue} got {} of 2 events within 90 s",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            topics,
            vec!["Booking.created", "Booking.updated"],
            "{queue}"
        );
    }
    // Each subscription is its own consumer group on the events topic.
    let status: serde_json::Value = client
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups: Vec<&str> = status["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["group"].as_str())
        .collect();
    for queue in [
        "billing.uppercase.Booking.any",
        "audit.uppercase.Booking.any",
    ] {
        assert!(
            groups.iter().any(|g| g.ends_with(queue)),
            "{queue} not in {groups:?}"
        );
    }
    host.stop().await;
}

/// Peeking a topic counts whole records against the budget (a record of a few bytes of
/// payload and 100 KiB of headers counts as 100 KiB), keeps only the newest that fit, and
/// reads with one client the connection keeps: many peeks, of this topic and another, answer
/// the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peeking_a_topic_counts_whole_records_and_reuses_one_client() {
    let topic = unique("peek");
    let other = unique("peek-other");
    create_topic(&topic, 2).await;
    create_topic(&other, 1).await;
    let producer = producer();
    let bulky = "h".repeat(100 * 1024);
    for i in 0..4 {
        let payload = format!("p{i}");
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .payload(&payload)
                    .key(&key)
                    .headers(OwnedHeaders::new().insert(Header {
                        key: "bulk",
                        value: Some(&bulky),
                    })),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        // Distinct times, so "newest" is well defined across partitions.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    producer
        .send(
            FutureRecord::to(&other).payload("small").key("k"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let db = support::TestDb::new(support::Backend::Sqlite).await;
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let spec: wharf::config::ConnectionConfig =
        serde_json::from_value(serde_json::json!({"kind": "kafka", "brokers": brokers()})).unwrap();
    let at = wharf::broker::registry::Opening {
        store: &store,
        routes: &[],
        host: "kafka-test",
    };
    let kafka = spec.open("kafka", &at).await.unwrap();
    let peek = |address: &str, count: usize, budget: usize| {
        let kafka = &kafka;
        let address = address.to_owned();
        async move {
            kafka
                .transport()
                .peek(&address, count, budget)
                .await
                .unwrap()
                .into_iter()
                .map(|m| String::from_utf8(m.payload).unwrap())
                .collect::<Vec<_>>()
        }
    };
    // All four fit in 1 MiB; 250 KiB holds the newest two; 10 KiB still answers the newest.
    assert_eq!(peek(&topic, 10, 1 << 20).await, ["p0", "p1", "p2", "p3"]);
    assert_eq!(peek(&topic, 10, 250 * 1024).await, ["p2", "p3"]);
    assert_eq!(peek(&topic, 10, 10 * 1024).await, ["p3"]);
    assert_eq!(peek(&topic, 3, 1 << 20).await, ["p1", "p2", "p3"]);
    for _ in 0..20 {
        assert_eq!(peek(&other, 10, 1 << 20).await, ["small"]);
        assert_eq!(peek(&topic, 2, 1 << 20).await, ["p2", "p3"]);
    }
    kafka.close().await;
}

/// Leased takes of one topic share one member of the take group: three leases of one record
/// each, on a topic of three partitions, hold the three records at once (no take rebalances
/// another's partitions away), and once all are acked each partition's offset is committed past its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_takes_of_a_topic_share_one_member() {
    let _exclusive = BROKER.lock().await;
    let topic = unique("leases");
    create_topic(&topic, 3).await;
    let producer = producer();
    for partition in 0..3 {
        let payload = format!("r{partition}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(partition)
                    .payload(&payload)
                    .key("k"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let db = support::TestDb::new(support::Backend::Sqlite).await;
    let group = unique("lease-group");
    let (host, client, base) = api_host(&db, &group).await;
    let lease = |count: usize, timeout_ms: u64| {
        let (client, url) = (
            client.clone(),
            format!(
                "{base}/queues/kafka/{topic}/lease?count={count}&timeout_ms={timeout_ms}&lease_ms=60000"
            ),
        );
        async move {
            let answer = client.post(url).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<Vec<serde_json::Value>>().await.unwrap()
        }
    };
    let mut held = Vec::new();
    let started = Instant::now();
    while held.len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} of 3 records leased within 90 s",
            held.len()
        );
        held.extend(lease(1, 5_000).await);
    }
    let mut payloads: Vec<String> = held
        .iter()
        .map(|l| l["message"]["payload"].as_str().unwrap().to_owned())
        .collect();
    payloads.sort();
    assert_eq!(payloads, ["r0", "r1", "r2"]);
    for leased in &held {
        let acked = client
            .post(format!(
                "{base}/leases/{}/ack",
                leased["lease"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert!(acked.status().is_success(), "{}", acked.status());
    }
    // Every ack stored its offset in the one member's generation, and was committed.
    let take_group = format!("{group}.take");
    let started = Instant::now();
    loop {
        let offsets = committed(&take_group, &topic, 3);
        if (0..3).all(|p| offsets.get(&p) == Some(&1)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "committed offsets {offsets:?}, not 1 on each partition"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    host.stop().await;
}

/// A plugin's `request` over Kafka: `asker` asks a route reading a Kafka topic; the request
/// crosses the broker and the reply comes back through the host's reply topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_request_over_kafka_is_answered() {
    let _exclusive = BROKER.lock().await;
    let requests = unique("ask-in");
    create_topic(&requests, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::load(Some(&write_config(
        dir.path(),
        &unique("g"),
        &format!(
            r#"
[[routes]]
name = "echo"
from = "kafka:{requests}"
through = ["echo"]
"#
        ),
    )))
    .expect("a valid config");
    support::asker(&mut config, &format!("kafka:{requests}"), "kafka:**");
    let host = wharf::host::start(config).await.expect("the host starts");
    let reply = support::ask(host.addr, "over kafka").await;
    assert_eq!(reply["payload"], "asked: over kafka", "{reply}");
    host.stop().await;
}
