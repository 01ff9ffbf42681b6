//! The same transformer (upper-case a 256-byte JSON payload) written in Rust, Python
//! (componentize-py) and JavaScript (componentize-js), in one run: component size, compile
//! time, per-message cost with a fresh instance per call and with a reused instance, the
//! linear memory one instance uses, and the resident memory each idle pooled instance adds.
//! Prints figures; asserts only that the three agree on the output.
//!
//! Run with `./dev bench` (or `cargo bench -p wharf --bench polyglot` after `./dev plugins`).

mod common;

use common::payload;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf::message::Message;
use wharf::runtime::{Plugin, PluginSettings, Runtime, RuntimeConfig, Standalone};

/// Each measurement runs this long (after a warm-up of a tenth of it), or 20,000 calls.
const MEASURE_FOR: Duration = Duration::from_secs(3);
const MAX_CALLS: usize = 20_000;
/// Instances held at once to measure the resident memory each adds.
const HELD: usize = 16;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

struct Cost {
    calls: usize,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    memory_bytes: usize,
}

async fn per_message(plugin: &Plugin, input: &Message, expected: &[u8]) -> Cost {
    let warm_until = Instant::now() + MEASURE_FOR / 10;
    while Instant::now() < warm_until {
        plugin.transform(input).await.result.expect("warm-up call");
    }
    let mut samples = Vec::new();
    let mut memory_bytes = 0;
    let until = Instant::now() + MEASURE_FOR;
    while Instant::now() < until && samples.len() < MAX_CALLS {
        let started = Instant::now();
        let report = plugin.transform(input).await;
        samples.push(started.elapsed());
        memory_bytes = memory_bytes.max(report.cost.memory_bytes);
        let out = report.result.expect("the transform succeeds");
        assert_eq!(out[0].payload, expected, "{}", plugin.name());
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    Cost {
        calls: samples.len(),
        mean_us: samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / samples.len() as f64,
        p50_us: at(0.5).as_secs_f64() * 1e6,
        p99_us: at(0.99).as_secs_f64() * 1e6,
        memory_bytes,
    }
}

fn main() {
    let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let input = Message::new("bench.in", payload());
    let expected = String::from_utf8(payload())
        .unwrap()
        .to_uppercase()
        .into_bytes();
    println!(
        "the same transformer in three languages, {}-byte JSON payload, each measured for {} s",
        input.payload.len(),
        MEASURE_FOR.as_secs()
    );
    println!(
        "{:<10} {:>9} {:>10} {:>26} {:>26} {:>9} {:>12}",
        "language",
        "size",
        "compile",
        "fresh µs/msg (p50, p99)",
        "reused µs/msg (p50, p99)",
        "memory",
        "RSS/instance"
    );
    tokio.block_on(async {
        for (language, file) in [
            ("Rust", "uppercase.wasm"),
            ("Python", "test/py-uppercase.wasm"),
            ("JavaScript", "test/js-uppercase.wasm"),
        ] {
            let path = dist.join(file);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (build the plugins with ./dev plugins)", path.display())
            });
            // A runtime of its own each, so one language's compiled code and pool do not
            // count against the next.
            let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
            let services = Arc::new(Standalone::default());
            let settings = |reuse| PluginSettings {
                reuse,
                memory_bytes: 256 << 20,
                max_instances: HELD as u32,
                cpu_limit: Duration::from_secs(5),
                ..PluginSettings::default()
            };
            let started = Instant::now();
            let fresh = runtime
                .load(&bytes, settings(false), services.clone())
                .await
                .unwrap();
            let compile = started.elapsed();
            let reused = runtime
                .load(&bytes, settings(true), services.clone())
                .await
                .unwrap();
            let fresh_cost = per_message(&fresh, &input, &expected).await;
            let reused_cost = per_message(&reused, &input, &expected).await;
            // HELD plugins loaded from the same compiled code, one call each: each keeps its
            // instance idle in its pool afterwards, so HELD instances are alive at once.
            let mut held = Vec::new();
            for _ in 0..HELD {
                held.push(
                    runtime
                        .load(&bytes, settings(true), services.clone())
                        .await
                        .unwrap(),
                );
            }
            let before = resident_bytes();
            for plugin in &held {
                plugin
                    .transform(&input)
                    .await
                    .result
                    .expect("a held instance's call");
            }
            let per_instance = resident_bytes().saturating_sub(before) / HELD as u64;
            println!(
                "{:<10} {:>6.1} MB {:>8.2} s {:>9.0} ({:>6.0}, {:>6.0}) {:>9.1} ({:>6.1}, {:>6.1}) {:>6.1} MB {:>9.2} MB",
                language,
                bytes.len() as f64 / 1e6,
                compile.as_secs_f64(),
                fresh_cost.mean_us,
                fresh_cost.p50_us,
                fresh_cost.p99_us,
                reused_cost.mean_us,
                reused_cost.p50_us,
                reused_cost.p99_us,
                reused_cost.memory_bytes.max(fresh_cost.memory_bytes) as f64 / 1e6,
                per_instance as f64 / 1e6,
            );
            println!(
                "{:<10} ({} fresh and {} reused calls measured)",
                "", fresh_cost.calls, reused_cost.calls
            );
        }
    });
}
