//! Shared by the integration tests: where the built plugins are, and small helpers.
#![allow(dead_code)] // each test binary uses its own subset

pub mod events;

use std::path::PathBuf;
use std::sync::Arc;
use wharf::message::Message;
use wharf::runtime::{Plugin, PluginSettings, Runtime, RuntimeConfig, Standalone};

/// Runs each named `async fn NAME(backend: Backend)` of the test file on both databases, as
/// `sqlite::NAME` and `postgres::NAME` (the file declares `#[macro_use] mod support;`).
#[allow(unused_macros)]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Postgres).await } )*
        }
    };
}

/// The folder `./dev plugins` copies the example plugins into (test plugins: `test/` in it).
pub fn plugin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist")
}

/// The path of a built plugin; panics with what to run when it is missing, so a test never
/// passes (or fails obscurely) because the plugins were not built.
pub fn plugin_path(name: &str) -> PathBuf {
    let example = plugin_dir().join(format!("{name}.wasm"));
    let path = if example.is_file() {
        example
    } else {
        plugin_dir().join("test").join(format!("{name}.wasm"))
    };
    assert!(
        path.is_file(),
        "{} is missing: build the plugins with `./dev plugins` (./dev test does it)",
        path.display()
    );
    path
}

pub fn plugin_bytes(name: &str) -> Vec<u8> {
    std::fs::read(plugin_path(name)).expect("reading a built plugin")
}

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("the runtime starts")
}

pub async fn load(runtime: &Runtime, name: &str, settings: PluginSettings) -> Plugin {
    runtime
        .load(
            &plugin_bytes(name),
            settings,
            Arc::new(Standalone::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

pub fn text_message(payload: &str) -> Message {
    Message::new("test.in", payload.as_bytes().to_vec())
}

/// A database of one kind for one test: a temporary SQLite file, or a fresh PostgreSQL
/// database created on the server named by `WHARF_TEST_POSTGRES` (default: the local one)
/// and dropped when the test ends.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var("WHARF_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                TestDb {
                    url: format!("sqlite://{}/wharf.db", dir.path().display()),
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let admin = postgres_admin_url();
                let name = format!("wharf_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL at {admin} is needed for this test (./dev test starts it): {e}")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("creating a test database");
                let base = admin.rsplit_once('/').expect("a database URL").0;
                TestDb {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    postgres: Some((admin, name)),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop is synchronous: clean up on a thread of its own with a small runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            })
        })
        .join();
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a `wharf serve` starting on `port` answers `/healthz`; panics after 60 s. A
/// connection alone is not enough: the host listens before it has written its CLI's token and
/// started serving, and the kernel accepts connections for it in between.
pub fn wait_ready(port: u16) {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        if answers_health(port) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("wharf serve did not answer /healthz on port {port} within 60 s");
}

/// Whether plain HTTP `GET /healthz` on `port` answers 200.
fn answers_health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// `wharf serve --config CONFIG` in `dir`, once it listens on `port`.
pub fn serve_config(
    config: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting wharf serve");
    wait_ready(port);
    child
}

/// The RabbitMQ the AMQP tests use: `WHARF_TEST_AMQP`, by default the local one
/// (`./dev test` starts it).
pub fn amqp_url() -> String {
    std::env::var("WHARF_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The NATS server the tests use: `WHARF_TEST_NATS`, else the machine's own (JetStream on).
#[allow(dead_code)]
pub fn nats_url() -> String {
    std::env::var("WHARF_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// `prefix` and 12 random hex digits: a name of the test's own.
#[allow(dead_code)]
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Waits until every unit of the host at `base` runs (20 s at most).
#[allow(dead_code)]
pub async fn all_running(client: &reqwest::Client, base: &str) {
    for _ in 0..400 {
        let status = get_json(client, &format!("{base}/api/v1/status")).await;
        let units = status["units"].as_array().unwrap();
        if !units.is_empty() && units.iter().all(|u| u["state"] == "running") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the host's units did not all run within 20 s");
}

/// The MQTT broker the tests use: `WHARF_TEST_MQTT`, else the machine's Mosquitto.
#[allow(dead_code)]
pub fn mqtt_url() -> String {
    std::env::var("WHARF_TEST_MQTT").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
}

/// Deletes every JetStream stream whose name starts with `prefix` (a test's own).
#[allow(dead_code)]
pub async fn delete_nats_streams(prefix: &str) {
    use futures::StreamExt as _;
    let client = async_nats::connect(nats_url()).await.expect("NATS answers");
    let js = async_nats::jetstream::new(client);
    let names: Vec<String> = js
        .stream_names()
        .filter_map(|n| async move { n.ok() })
        .collect()
        .await;
    for name in names.into_iter().filter(|n| n.starts_with(prefix)) {
        let _ = js.delete_stream(&name).await;
    }
}

/// Tests that drop every AMQP connection hold this for writing; every other AMQP test of the
/// same binary holds it for reading, so a drop never hits a test that does not expect it.
pub static RABBIT: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Closes every client connection to the local RabbitMQ, as `rabbitmqctl
/// close_all_connections` does to a live system; panics if it cannot.
pub async fn drop_amqp_connections() {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["close_all_connections", "wharf test: dropping connections"])
        .output()
        .await
        .expect("running rabbitmqctl (is RabbitMQ installed? ./dev test starts it)");
    assert!(
        out.status.success(),
        "rabbitmqctl close_all_connections failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plain lapin connection, as an independent service would open.
pub async fn amqp_client() -> lapin::Connection {
    lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ at {} is needed (./dev test starts it): {e}",
                amqp_url()
            )
        })
}

/// Deletes a test exchange with a plain client.
pub async fn delete_amqp_exchange(name: &str) {
    let client = amqp_client().await;
    let channel = client.create_channel().await.expect("a channel");
    let _ = channel
        .exchange_delete(
            name.into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await;
    let _ = client.close(200, "done".into()).await;
}

/// Deletes test queues (and their `.dead` queues) with a plain client.
pub async fn delete_amqp_queues(names: &[String]) {
    let client = amqp_client().await;
    let channel = client.create_channel().await.expect("a channel");
    for name in names {
        for queue in [name.clone(), format!("{name}.dead")] {
            let _ = channel
                .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
                .await;
        }
    }
    let _ = client.close(200, "done".into()).await;
}

/// Waits until `queue` holds nothing (ready, delayed or leased): an input is acked only after
/// its outputs or dead letter are confirmed, so a reader can see those a moment before the
/// ack lands. Panics after 30 s with the queue's stats.
pub async fn drained(broker: &wharf::broker::EmbeddedBroker, queue: &str) {
    let started = std::time::Instant::now();
    loop {
        let stats = broker.stats(queue).await.unwrap();
        if stats.depth() == 0 {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{queue} never drained: {stats:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The admin token a host on `addr` keeps for the CLI on this machine.
pub fn local_token(addr: std::net::SocketAddr) -> String {
    let path = wharf::auth::local_token_path(addr).expect("a state folder");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the host keeps its CLI's token in {}: {e}", path.display()))
}

/// A host's `/metrics` text (open, like `/healthz`: no token).
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every sample of a `/metrics` text: its series (a name and its labels, as written) and value.
pub fn samples(text: &str) -> Vec<(&str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series, value.trim().parse().ok()?))
        })
        .collect()
}

/// The value of `series` (a name and its labels, as `/metrics` writes them) in `text`.
pub fn metric(text: &str, series: &str) -> f64 {
    samples(text)
        .into_iter()
        .find_map(|(name, value)| (name == series).then_some(value))
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// The sum of every series of metric `name` in `text` (0 when there is none).
#[allow(dead_code)]
pub fn metric_sum(text: &str, name: &str) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(_, value)| value)
        .sum()
}

/// An HTTP client that presents `token`.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A host started in-process on `db` and a free port, with `config`'s connections, plugins,
/// routes and daemons (but not the defaults' heartbeat, whose events would reach the tests'
/// subscriptions), the example plugins, and routes' messages limited to 1,024 bytes; and a
/// second handle on the same database's `local` connection, as a service would publish and
/// read.
pub async fn start_host(
    db: &TestDb,
    mut config: wharf::config::Config,
) -> (wharf::host::RunningHost, wharf::broker::EmbeddedBroker) {
    let defaults = wharf::config::Config::default().daemons;
    config.daemons.retain(|d| !defaults.contains(d));
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = db.url.clone();
    config.server.plugin_dir = Some(plugin_dir());
    config.server.max_message_bytes = 1024;
    config.validate().unwrap();
    let host = wharf::host::start(config).await.expect("the host starts");
    let broker = wharf::broker::EmbeddedBroker::new(
        wharf::store::Store::open(&db.url).await.unwrap(),
        wharf::broker::EmbeddedConfig::default(),
    );
    (host, broker)
}

/// Waits (20 s at most) until `queue` holds a message; returns up to 10 of them, left there.
pub async fn arrived(broker: &wharf::broker::EmbeddedBroker, queue: &str) -> Vec<Message> {
    for _ in 0..400 {
        let found = broker.peek(queue, 10, 1 << 20).await.unwrap();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("nothing arrived in {queue} within 20 s");
}

/// Runs `args` in `dir`; panics with its standard error if it fails.
pub fn run_in(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`), a server certificate for localhost and 127.0.0.1 (`server.pem`,
/// `server.key`) and a client certificate (`client.pem`, `client.key`), made with `openssl` in
/// `dir`.
pub fn make_certificates(dir: &std::path::Path) {
    let days = ["-days", "2"];
    run_in(
        dir,
        &[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            days[0],
            days[1],
            "-subj",
            "/CN=wharf test CA",
        ],
    );
    for (name, cn, usage) in [
        (
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "wharf client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), usage).unwrap();
        run_in(
            dir,
            &[
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        run_in(
            dir,
            &[
                "openssl",
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                days[0],
                days[1],
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

/// Runs `rabbitmqctl ARGS` on the local RabbitMQ; panics if it fails.
pub async fn rabbitmqctl(args: &[&str]) {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .expect("running rabbitmqctl (./dev test installs RabbitMQ)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts RabbitMQ's application again when dropped, so a failing test leaves it running.
pub struct RestartRabbit;

impl Drop for RestartRabbit {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .output();
    }
}

/// A host's JSON API, as the CLI token the host keeps on this machine.
pub struct Api {
    pub client: reqwest::Client,
    /// `http://ADDRESS/api/v1`.
    pub base: String,
}

impl Api {
    pub fn new(addr: std::net::SocketAddr) -> Api {
        Api {
            client: client_with_token(&local_token(addr)),
            base: format!("http://{addr}/api/v1"),
        }
    }

    /// `method path` with an optional JSON body: the status and the JSON answer (null if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.client.request(method, format!("{}/{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// As [`Api::call`], panicking unless the status is 2xx.
    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer
    }

    /// Unit `name` as `GET /api/v1/status` shows it.
    pub async fn unit(&self, name: &str) -> Option<serde_json::Value> {
        let status = self.ok(reqwest::Method::GET, "status", None).await;
        status["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
    }

    /// Waits (30 s at most) until unit `name` is in `state`.
    pub async fn wait_unit(&self, name: &str, state: &str) -> serde_json::Value {
        let started = std::time::Instant::now();
        loop {
            let unit = self.unit(name).await;
            if let Some(unit) = &unit
                && unit["state"] == state
            {
                return unit.clone();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "unit {name} never became {state}: {unit:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Uploads the built plugin `plugin`; panics unless it is stored.
    pub async fn upload(&self, plugin: &str) -> serde_json::Value {
        self.upload_to("plugins", plugin).await
    }

    /// Uploads the built plugin `plugin` as a new version of the installed plugin `of`.
    pub async fn upgrade(&self, plugin: &str, of: &str) -> serde_json::Value {
        self.upload_to(&format!("plugins?upgrade={of}"), plugin)
            .await
    }

    async fn upload_to(&self, path: &str, plugin: &str) -> serde_json::Value {
        let response = self
            .client
            .post(format!("{}/{path}", self.base))
            .header("content-type", "application/wasm")
            .body(plugin_bytes(plugin))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        assert!(
            (200..300).contains(&status),
            "upload {plugin}: {status} {body}"
        );
        body
    }
}

/// `GET url` with `client`, answered as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Fifty calls at once through the API to `address` (`connection:queue`, read by a route that
/// answers with `echo`): each gets its own payload back.
pub async fn fifty_calls_each_get_their_own_reply(
    client: &reqwest::Client,
    base: &str,
    address: &str,
) {
    use futures::StreamExt as _;
    let url = format!(
        "{base}/api/v1/rpc/{}?timeout_ms=30000",
        address.replacen(':', "/", 1)
    );
    let replies: Vec<serde_json::Value> = futures::stream::iter(0..50)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let answer = client
                    .post(&url)
                    .json(&serde_json::json!({ "payload": format!("call {i}") }))
                    .send()
                    .await
                    .unwrap();
                let status = answer.status();
                let body: serde_json::Value = answer.json().await.unwrap();
                assert_eq!(status, 200, "{body}");
                body
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let mut payloads: Vec<String> = replies
        .iter()
        .map(|r| r["payload"].as_str().unwrap().to_owned())
        .collect();
    payloads.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("call {i}")).collect();
    expected.sort();
    assert_eq!(payloads, expected, "each call got its own reply");
}

/// Reads `count` messages from `queue` with a plain client (acking each); checks each key's
/// payloads count up from 0 with none twice; returns the ids seen.
pub async fn read_in_order(queue: &str, count: usize) -> Vec<String> {
    read_in_order_with_payloads(queue, count)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// [`read_in_order`], answering each message's id and payload.
pub async fn read_in_order_with_payloads(queue: &str, count: usize) -> Vec<(String, String)> {
    use futures::StreamExt as _;
    let client = amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "outbox-test".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut next: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut ids = Vec::new();
    while ids.len() < count {
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(60), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} arrived within 60 s", ids.len()))
            .unwrap()
            .unwrap();
        let text = String::from_utf8(delivery.data.clone()).unwrap();
        let (key, n) = text.split_once(':').unwrap();
        let expected = next.entry(key.to_owned()).or_default();
        assert_eq!(
            n.parse::<u64>().unwrap(),
            *expected,
            "{key} out of order or twice"
        );
        *expected += 1;
        ids.push((
            delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            text.clone(),
        ));
        delivery
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .unwrap();
    }
    // Nothing more comes: none was sent twice.
    let extra = tokio::time::timeout(std::time::Duration::from_secs(2), consumer.next()).await;
    assert!(extra.is_err(), "a message arrived twice");
    let _ = client.close(200, "done".into()).await;
    ids
}

/// The virtual environment the Python tests share (`~/.cache/wharf-python`, or
/// `WHARF_PYTHON_VENV`), with the client installed from this clone and `extra` packages
/// (pinned requirements); its `python`.
pub fn python_venv(extra: &[&str]) -> std::path::PathBuf {
    let venv = std::env::var_os("WHARF_PYTHON_VENV").map_or_else(
        || {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache")
                .join("wharf-python")
        },
        std::path::PathBuf::from,
    );
    let python = venv.join("bin").join("python");
    // Two tests (in two processes) may install at once: one at a time.
    std::fs::create_dir_all(venv.parent().expect("a parent")).unwrap();
    let lock = std::fs::File::create(venv.with_extension("lock")).unwrap();
    lock.lock().expect("locking the virtual environment");
    if !python.is_file() {
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .expect("python3 is needed for the Python client's test");
        assert!(
            made.status.success(),
            "python3 -m venv: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let installed = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(extra)
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("sdk")
                .join("python"),
        )
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "pip install {extra:?} ./sdk/python: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    python
}

/// Declares `queue` durable on the local RabbitMQ, so it is there when the broker comes back
/// from a stop.
pub async fn declare_durable_queue(queue: &str) {
    let client = amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = client.close(200, "done".into()).await;
}

/// The `asker` test plugin, granted `request` on `grant` and asking `to`, with the route
/// `asking` that runs it on `local:ask.in`: a plugin's `request` through the host.
pub fn asker(config: &mut wharf::config::Config, to: &str, grant: &str) {
    config.routes.push(wharf::config::RouteConfig {
        name: "asking".into(),
        from: "local:ask.in".into(),
        through: vec!["asker".into()],
        ..Default::default()
    });
    config.plugins.insert(
        "asker".into(),
        wharf::config::PluginConfig {
            path: plugin_path("asker"),
            request: vec![grant.into()],
            config: [("to".to_owned(), to.to_owned())].into(),
            ..Default::default()
        },
    );
}

/// What the host at `addr` answers to an RPC with `payload` to `local:ask.in` (see [`asker`]).
pub async fn ask(addr: std::net::SocketAddr, payload: &str) -> serde_json::Value {
    client_with_token(&local_token(addr))
        .post(format!(
            "http://{addr}/api/v1/rpc/local/ask.in?timeout_ms=30000"
        ))
        .json(&serde_json::json!({ "payload": payload }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `wharf ARGS --url http://127.0.0.1:PORT`: the CLI against a host on this machine.
pub fn wharf_cli(args: &[&str], port: u16) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap()
}
