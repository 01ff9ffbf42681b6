//! Per-message cost of the `uppercase` plugin on a 256-byte JSON payload, in one run:
//! a fresh instance per call (instantiate + call + drop), a reused instance, and the same
//! transform as a native Rust function. Prints figures; asserts only that the results agree.
//!
//! Run with `./dev bench` (or `cargo bench -p wharf --bench plugin_call` after `./dev plugins`).

mod common;

use common::payload;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf::message::Message;
use wharf::runtime::{Plugin, PluginSettings, Runtime, RuntimeConfig, Standalone};

const CALLS: usize = 20_000;
const WARMUP: usize = 2_000;

/// The same work as the plugin, natively: the message is copied in (the host hands the guest
/// its own copy) and the payload upper-cased.
fn native_uppercase(msg: &Message) -> Vec<Message> {
    let mut out = msg.clone();
    out.payload = match std::str::from_utf8(&out.payload) {
        Ok(text) => text.to_uppercase().into_bytes(),
        Err(_) => out.payload.to_ascii_uppercase(),
    };
    vec![out]
}

struct Figures {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Figures {
    fn mean_us(&self) -> f64 {
        self.samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / self.samples.len() as f64
    }

    fn percentile_us(&self, p: f64) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index].as_secs_f64() * 1e6
    }

    fn print(&self, baseline_us: f64) {
        let mean = self.mean_us();
        println!(
            "{:<28} {:>9.2} µs/msg  p50 {:>8.2} µs  p99 {:>8.2} µs  {:>10.0} msg/s  {:>7.1}x native",
            self.name,
            mean,
            self.percentile_us(0.50),
            self.percentile_us(0.99),
            1e6 / mean,
            mean / baseline_us,
        );
    }
}

async fn measure_plugin(
    name: &'static str,
    plugin: &Plugin,
    input: &Message,
    expected: &[u8],
) -> Figures {
    for _ in 0..WARMUP {
        plugin.transform(input).await.result.expect("warm-up call");
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let out = plugin
            .transform(input)
            .await
            .result
            .expect("uppercase succeeds");
        samples.push(started.elapsed());
        assert_eq!(out[0].payload, expected);
    }
    Figures { name, samples }
}

fn measure_native(input: &Message, expected: &[u8]) -> Figures {
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let out = std::hint::black_box(native_uppercase(std::hint::black_box(input)));
        samples.push(started.elapsed());
        assert_eq!(out[0].payload, expected);
    }
    Figures {
        name: "native Rust function",
        samples,
    }
}

fn main() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/uppercase.wasm");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build the plugins with ./dev plugins)",
            path.display()
        )
    });
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let services = Arc::new(Standalone::default());
        let load = |reuse| {
            let settings = PluginSettings { reuse, ..PluginSettings::default() };
            runtime.load(&bytes, settings, services.clone())
        };
        let fresh = load(false).await.unwrap();
        let reused = load(true).await.unwrap();

        let input = Message::new("bench.in", payload());
        let expected = native_uppercase(&input).remove(0).payload;

        println!(
            "uppercase.wasm ({} bytes), {}-byte payload, {CALLS} sequential calls each after {WARMUP} warm-up calls",
            bytes.len(),
            input.payload.len()
        );
        let native = measure_native(&input, &expected);
        let fresh = measure_plugin("fresh instance per message", &fresh, &input, &expected).await;
        let reused = measure_plugin("reused instance", &reused, &input, &expected).await;
        let baseline = native.mean_us();
        for figures in [&fresh, &reused, &native] {
            figures.print(baseline);
        }
    });
}
