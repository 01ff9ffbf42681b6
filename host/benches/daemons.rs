//! A route's throughput beside daemons: `local:` → `uppercase` → `local:` on SQLite with 0, 10
//! and 100 idle daemons running on the same host, and with one daemon spinning (never calling
//! the host, with a CPU budget it never reaches); and the host's memory per idle daemon.
//! Prints figures; checks only that every message arrived.
//!
//! Each run: 5,000 messages of 256 bytes queued before the host starts, the route held stopped
//! while the daemons start; the daemons are added through the database once the host runs
//! (the resident memory before and after, divided by their number, is the memory per idle
//! daemon); then the route is started and measured from its first output to its last. An
//! idle daemon is the `heartbeat` example with a one-hour interval: it beats once, then sleeps
//! in the host, holding an instance and no thread. CPU is the whole process's, daemons'
//! included (the spinning one burns a core, so its CPU figure says little).

mod common;

use common::cpu_time;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wharf::broker::{EmbeddedBroker, EmbeddedConfig};
use wharf::config::{Config, DaemonConfig, PluginConfig, RouteConfig};
use wharf::message::Message;
use wharf::store::{Documents, Store};

const MESSAGES: u64 = 5_000;
const CONCURRENCY: usize = 64;

fn dist() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist")
}

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn fill(broker: &EmbeddedBroker) {
    let payload = vec![b'a'; 256];
    for i in 0..MESSAGES {
        let mut msg = Message::new("bench.in", payload.clone());
        msg.id = format!("m{i}");
        broker.publish("bench.in", msg).await.unwrap();
    }
}

struct Figures {
    rate: f64,
    cpu_us: f64,
    memory_per_daemon: Option<f64>,
}

/// Starts a host with the route held stopped, adds `idle` idle daemons (and a spinning one if
/// `spin`) and waits until they run, then starts the route and measures it.
async fn run(dir: &std::path::Path, name: &str, idle: usize, spin: bool) -> Figures {
    let url = format!("sqlite://{}/{name}.db", dir.display());
    let store = Store::open(&url).await.unwrap();
    let broker = EmbeddedBroker::new(store.clone(), EmbeddedConfig::default());
    fill(&broker).await;
    let now = || wharf::message::now_ms() as i64;
    store.stop_unit("bench", "bench", now()).await.unwrap();
    let mut config = Config::default();
    config.daemons.clear();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = url;
    config.server.plugin_dir = Some(dist());
    config.server.shutdown_grace_ms = 1_000;
    config.routes = vec![RouteConfig {
        name: "bench".into(),
        from: "local:bench.in".into(),
        through: vec!["uppercase".into()],
        to: Some("local:bench.out".into()),
        concurrency: CONCURRENCY,
        ..RouteConfig::default()
    }];
    config.plugins.insert(
        "heartbeat".into(),
        PluginConfig {
            max_instances: 128,
            publish: vec!["local:beats".into()],
            config: [
                ("to".to_string(), "local:beats".to_string()),
                ("interval_ms".to_string(), "3600000".to_string()),
            ]
            .into(),
            ..PluginConfig::default()
        },
    );
    config.plugins.insert(
        "spinner".into(),
        PluginConfig {
            path: dist().join("test/daemon-probe.wasm"),
            timeout_ms: 3_600_000,
            config: [("mode".to_string(), "spin".to_string())].into(),
            ..PluginConfig::default()
        },
    );
    let host = wharf::host::start(config).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = resident();
    let mut daemons: Vec<DaemonConfig> = (0..idle)
        .map(|i| daemon(format!("idle-{i}"), "heartbeat"))
        .collect();
    if spin {
        daemons.push(daemon("spinning".into(), "spinner"));
    }
    for daemon in &daemons {
        let spec = serde_json::to_string(daemon).unwrap();
        store
            .create_document(Documents::Daemons, &daemon.name, &spec, now())
            .await
            .unwrap();
    }
    // Every idle daemon has beaten once: all are running.
    while (broker.stats("beats").await.unwrap().depth() as usize) < idle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory_per_daemon =
        (idle > 0).then(|| resident().saturating_sub(before) as f64 / idle as f64);
    store.start_unit("bench").await.unwrap();
    let depth = || async { broker.stats("bench.out").await.unwrap().depth() };
    let mut first = depth().await;
    while first == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        first = depth().await;
    }
    let (cpu, started) = (cpu_time(), Instant::now());
    while depth().await < MESSAGES {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu);
    host.stop().await;
    let counted = (MESSAGES - first) as f64;
    Figures {
        rate: counted / elapsed.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / counted,
        memory_per_daemon,
    }
}

fn daemon(name: String, plugin: &str) -> DaemonConfig {
    DaemonConfig {
        name,
        plugin: plugin.into(),
        each_host: false,
        max_failures: 5,
        failure_window_secs: 300,
    }
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        println!("{MESSAGES} queued 256-byte messages routed through uppercase, {CONCURRENCY} in flight, SQLite");
        let alone = run(dir.path(), "alone", 0, false).await;
        let print = |label: &str, f: &Figures| {
            println!(
                "{label:<28} {:>7.0} msg/s  {:>6.1} µs CPU/msg  ({:.2} of the route alone){}",
                f.rate,
                f.cpu_us,
                f.rate / alone.rate,
                f.memory_per_daemon
                    .map(|m| format!("  {:.0} KiB resident per idle daemon", m / 1024.0))
                    .unwrap_or_default()
            )
        };
        print("route alone", &alone);
        for idle in [10, 100] {
            let figures = run(dir.path(), &format!("idle{idle}"), idle, false).await;
            print(&format!("beside {idle} idle daemons"), &figures);
        }
        let spinning = run(dir.path(), "spin", 0, true).await;
        print("beside 1 spinning daemon", &spinning);
    });
}
