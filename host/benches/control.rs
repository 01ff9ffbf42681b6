//! The control plane under load. Prints figures; checks only that every message arrived.
//!
//! 1. The RabbitMQ route workload (`common/amqp.rs`, here 80,000 persistent messages, prefetch
//!    256, confirms) through a route made through the API running the uploaded `stamp`
//!    plugin: once left alone, once with the plugin changed every second while the messages
//!    flow (2.0.0 enabled, then rolled back to 1.0.0, in turn), beside bare lapin doing the
//!    same work in the same run.
//! 2. From an API call to the changed route serving: a route's output address changed through
//!    `PUT /api/v1/routes/{name}`, then one message published and taken through the API; the
//!    time until the answer (the new runner started) and until that message is taken from the
//!    new output, 100 times.
//! 3. Two hosts on one PostgreSQL: a route changed through host A, the time until host B
//!    runs the new version of it (B hears the change by LISTEN/NOTIFY), 20 times.
//!
//! Run with `./dev bench` (RabbitMQ at `WHARF_TEST_AMQP`, PostgreSQL at `WHARF_TEST_POSTGRES`).

mod common;

use common::amqp::{Figures, PREFETCH, bare_lapin, clean, connect, measure, prepare, wharf_config};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wharf::config::Config;
use wharf::host::RunningHost;

/// Enough messages that the run lasts about ten seconds, so the plugin changes about ten times.
const MESSAGES: u32 = 80_000;

fn plugin(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist/test")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (./dev plugins)", path.display()))
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(host: &RunningHost) -> Api {
        let path = wharf::auth::local_token_path(host.addr).unwrap();
        let token = std::fs::read_to_string(path).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()).parse().unwrap(),
        );
        Api {
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
            base: format!("http://{}/api/v1", host.addr),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method.clone(), format!("{}/{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    async fn upload(&self, name: &str) {
        let response = self
            .client
            .post(format!("{}/plugins", self.base))
            .header("content-type", "application/wasm")
            .body(plugin(name))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "uploading {name}");
    }
}

/// Phase 1: the workload through an API-made route, changing the plugin every second if asked;
/// returns the figures and how many changes were made while it ran.
async fn through_wharf(
    client: &lapin::Connection,
    dir: &std::path::Path,
    upgrades: bool,
) -> (Figures, u32) {
    let (input, output) = ("wharf.bench.control.in", "wharf.bench.control.out");
    prepare(client, input, output, MESSAGES).await;
    let _ = std::fs::remove_file(dir.join("wharf.db"));
    let host = wharf::host::start(wharf_config(dir, input, output))
        .await
        .unwrap();
    let api = Api::new(&host);
    api.upload("stamp").await;
    api.upload("stamp-v2").await;
    api.call(reqwest::Method::POST, "plugins/stamp/rollback", None)
        .await;
    api.call(
        reqwest::Method::POST,
        "routes",
        Some(json!({
            "name": "bench", "from": format!("rabbit:{input}"), "through": ["stamp"],
            "to": format!("rabbit:{output}"), "concurrency": PREFETCH,
        })),
    )
    .await;
    let changes = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let changer = upgrades.then(|| {
        let (api, changes) = (Api::new(&host), changes.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let path = if changes.load(std::sync::atomic::Ordering::Relaxed) % 2 == 0 {
                    "plugins/stamp/versions/2.0.0/enable"
                } else {
                    "plugins/stamp/rollback"
                };
                api.call(reqwest::Method::POST, path, None).await;
                changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    });
    let figures = measure(client, output, MESSAGES).await;
    if let Some(task) = changer {
        task.abort();
        let _ = task.await;
    }
    let changes = changes.load(std::sync::atomic::Ordering::Relaxed);
    host.stop().await;
    clean(client, &[input, output, "wharf.bench.control.in.dead"]).await;
    (figures, changes)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Phase 2: from `PUT /api/v1/routes/{name}` to the new chain serving, on one host: the
/// answer, then a message published and taken through the API as a client would.
async fn change_latency(dir: &std::path::Path) {
    let config = common::host_config(dir, "latency.db");
    let host = wharf::host::start(config).await.unwrap();
    let api = Api::new(&host);
    let route = |to: &str| json!({ "name": "moving", "from": "local:lat.in", "through": ["uppercase"], "to": to });
    api.call(reqwest::Method::POST, "routes", Some(route("local:lat.a")))
        .await;
    let (mut answered, mut served) = (Vec::new(), Vec::new());
    for i in 0..100 {
        let to = if i % 2 == 0 { "lat.b" } else { "lat.a" };
        let started = Instant::now();
        api.call(
            reqwest::Method::PUT,
            "routes/moving",
            Some(route(&format!("local:{to}"))),
        )
        .await;
        answered.push(started.elapsed());
        api.call(
            reqwest::Method::POST,
            "queues/local/lat.in/messages",
            Some(json!({ "payload": "probe" })),
        )
        .await;
        let taken = api
            .call(
                reqwest::Method::POST,
                &format!("queues/local/{to}/take?timeout_ms=10000"),
                None,
            )
            .await;
        assert_eq!(taken[0]["payload"], "PROBE");
        served.push(started.elapsed());
    }
    host.stop().await;
    answered.sort();
    served.sort();
    println!(
        "API call to the changed route running (the answer), 100 changes: p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&answered, 0.5)),
        ms(percentile(&answered, 0.99))
    );
    println!(
        "API call to a message through the changed route (API publish + take): p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&served, 0.5)),
        ms(percentile(&served, 0.99))
    );
}

/// Phase 3: a change through host A running on host B, both on one PostgreSQL.
async fn across_hosts() {
    let admin = std::env::var("WHARF_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("wharf_bench_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let start = || {
        let mut config = Config::default();
        config.routes.clear();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.database = url.clone();
        config.server.plugin_dir =
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist"));
        wharf::host::start(config)
    };
    let (a, b) = (start().await.unwrap(), start().await.unwrap());
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let route = |through: &[&str]| json!({ "name": "shared", "from": "local:x.in", "through": through, "to": "local:x.out" });
    api_a
        .call(reqwest::Method::POST, "routes", Some(route(&[])))
        .await;
    let mut seen = Vec::new();
    for i in 0..20 {
        let through: &[&str] = if i % 2 == 0 { &["uppercase"] } else { &[] };
        // At any moment, not in step with B's own timers.
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..500))).await;
        let started = Instant::now();
        api_a
            .call(reqwest::Method::PUT, "routes/shared", Some(route(through)))
            .await;
        loop {
            let status = api_b.call(reqwest::Method::GET, "status", None).await;
            let unit = status["units"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["name"] == "shared")
                .cloned()
                .unwrap_or(Value::Null);
            if unit["state"] == "running"
                && unit["plugins"].as_array().unwrap().len() == through.len()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen.push(started.elapsed());
    }
    a.stop().await;
    b.stop().await;
    pool.close().await;
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&pool)
    .await;
    seen.sort();
    println!(
        "a change through host A running on host B (one PostgreSQL), 20 changes: p50 {:.0} ms, p99 {:.0} ms",
        ms(percentile(&seen, 0.5)),
        ms(percentile(&seen, 0.99))
    );
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
            "{MESSAGES} persistent 256-byte JSON messages on RabbitMQ, prefetch {PREFETCH}, confirms; route made through the API"
        );
        let bare = bare_lapin(&client, MESSAGES).await;
        clean(&client, &["wharf.bench.bare.in", "wharf.bench.bare.out"]).await;
        let (steady, _) = through_wharf(&client, dir.path(), false).await;
        let (changing, changes) = through_wharf(&client, dir.path(), true).await;
        println!(
            "bare lapin, native uppercase                 {:>7.0} msg/s   {:>6.1} µs CPU/msg",
            bare.rate, bare.cpu_us
        );
        println!(
            "wharf, stamp plugin, left alone              {:>7.0} msg/s   {:>6.1} µs CPU/msg",
            steady.rate, steady.cpu_us
        );
        println!(
            "wharf, stamp changed every second            {:>7.0} msg/s   {:>6.1} µs CPU/msg   ({changes} plugin changes while it ran)",
            changing.rate, changing.cpu_us
        );
        println!(
            "changing / left alone: throughput {:.2}, CPU per message {:.2}",
            changing.rate / steady.rate,
            changing.cpu_us / steady.cpu_us
        );
        change_latency(dir.path()).await;
        across_hosts().await;
    });
}
