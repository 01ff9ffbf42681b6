//! The admin UI under data. Prints figures; checks only that pages answer 200.
//!
//! 1. Page load times: the dashboard and the Queues page (a dead-letter queue peeked) of a host
//!    on SQLite with 50 routes and 100,000 dead letters, 50 loads each, p50 and p99.
//! 2. The RabbitMQ route workload (`common/amqp.rs`) with the Queues page open on the output
//!    queue and reloaded every second (as a person watching does), beside the same run with no
//!    page open and bare lapin doing the same work.
//!
//! Run with `./dev bench` (RabbitMQ at `WHARF_TEST_AMQP`).

mod common;

use common::amqp::{
    MESSAGES, PREFETCH, bare_lapin, clean, connect, measure, prepare, wharf_config,
};
use serde_json::json;
use std::time::{Duration, Instant};
use wharf::broker::{EmbeddedBroker, EmbeddedConfig};
use wharf::host::RunningHost;
use wharf::message::Message;

const ROUTES: usize = 50;
const DEAD_LETTERS: usize = 100_000;

/// An admin's session cookie on `host` (the first user, made on the database).
async fn session(host: &RunningHost, database: &str) -> String {
    let store = wharf::store::Store::open(database).await.unwrap();
    let hash = wharf::auth::hash_password("benchmark password").unwrap();
    store
        .add_user("bench", &hash, wharf::auth::Role::Admin, 0)
        .await
        .unwrap();
    let answer = reqwest::Client::new()
        .post(format!("http://{}/api/v1/login", host.addr))
        .json(&json!({"name": "bench", "password": "benchmark password"}))
        .send()
        .await
        .unwrap();
    answer.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn load_times(client: &reqwest::Client, url: &str, cookie: &str) -> (f64, f64) {
    let mut times = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let page = client
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{url}");
        page.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100]),
    )
}

async fn pages_under_data(dir: &std::path::Path) {
    let config = common::host_config(dir, "ui.db");
    let host = wharf::host::start(config.clone()).await.unwrap();
    let cookie = session(&host, &config.server.database).await;
    let token = std::fs::read_to_string(wharf::auth::local_token_path(host.addr).unwrap()).unwrap();
    let client = reqwest::Client::new();
    for i in 0..ROUTES {
        let answer = client
            .post(format!("http://{}/api/v1/routes", host.addr))
            .bearer_auth(token.trim())
            .json(&json!({
                "name": format!("r{i}"), "from": format!("local:r{i}.in"),
                "through": ["uppercase"], "to": format!("local:r{i}.out"),
            }))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }
    let broker = EmbeddedBroker::new(
        wharf::store::Store::open(&config.server.database)
            .await
            .unwrap(),
        EmbeddedConfig::default(),
    );
    let filling = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..DEAD_LETTERS {
        let broker = broker.clone();
        pending.spawn(async move {
            let mut msg = Message::new("dl", format!("{{\"n\": {i}}}").into_bytes());
            msg.set_header(
                "exception",
                wharf::message::HeaderValue::Text("plugin `x` rejected it".into()),
            );
            broker.publish("dl.dead", msg).await.unwrap();
        });
        if pending.len() >= 512 {
            pending.join_next().await;
        }
    }
    pending.join_all().await;
    let depth = broker.stats("dl.dead").await.unwrap().depth();
    assert_eq!(depth as usize, DEAD_LETTERS);
    println!(
        "{ROUTES} routes and {DEAD_LETTERS} dead letters in the database (filled in {:.1} s)",
        filling.elapsed().as_secs_f64()
    );
    let base = format!("http://{}", host.addr);
    let (p50, p99) = load_times(&client, &format!("{base}/"), &cookie).await;
    println!("dashboard load:                         p50 {p50:>6.1} ms, p99 {p99:>6.1} ms");
    let (p50, p99) = load_times(
        &client,
        &format!("{base}/queue?address=local:dl.dead"),
        &cookie,
    )
    .await;
    println!("Queues page, 100,000 dead letters:      p50 {p50:>6.1} ms, p99 {p99:>6.1} ms");
    host.stop().await;
}

/// The workload through a file route, with the Queues page on the output reloaded every
/// second if `watching`.
async fn route_run(
    client: &lapin::Connection,
    dir: &std::path::Path,
    watching: bool,
) -> common::amqp::Figures {
    let (input, output) = ("wharf.bench.ui.in", "wharf.bench.ui.out");
    prepare(client, input, output, MESSAGES).await;
    let _ = std::fs::remove_file(dir.join("wharf.db"));
    let mut config = wharf_config(dir, input, output);
    config.routes = vec![wharf::config::RouteConfig {
        name: "bench".into(),
        from: format!("rabbit:{input}"),
        through: vec!["uppercase".into()],
        to: Some(format!("rabbit:{output}")),
        concurrency: usize::from(PREFETCH),
        ..wharf::config::RouteConfig::default()
    }];
    let database = config.server.database.clone();
    let host = wharf::host::start(config).await.unwrap();
    let watcher = if watching {
        let cookie = session(&host, &database).await;
        let url = format!("http://{}/queue?address=rabbit:{output}", host.addr);
        Some(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let page = client
                    .get(&url)
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(page.status(), 200);
                page.bytes().await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    } else {
        None
    };
    let figures = measure(client, output, MESSAGES).await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    host.stop().await;
    clean(client, &[input, output, "wharf.bench.ui.in.dead"]).await;
    figures
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        pages_under_data(dir.path()).await;
        let client = connect().await;
        let bare = bare_lapin(&client, MESSAGES).await;
        clean(&client, &["wharf.bench.bare.in", "wharf.bench.bare.out"]).await;
        let alone = route_run(&client, dir.path(), false).await;
        let watched = route_run(&client, dir.path(), true).await;
        println!("{MESSAGES} persistent messages on RabbitMQ through `uppercase`, prefetch {PREFETCH}, confirms:");
        println!("bare lapin                                {:>7.0} msg/s   {:>6.1} µs CPU/msg", bare.rate, bare.cpu_us);
        println!("wharf, no page open                       {:>7.0} msg/s   {:>6.1} µs CPU/msg", alone.rate, alone.cpu_us);
        println!("wharf, Queues page on the output, 1/s     {:>7.0} msg/s   {:>6.1} µs CPU/msg", watched.rate, watched.cpu_us);
        println!("watched / alone: throughput {:.2}", watched.rate / alone.rate);
    });
}
