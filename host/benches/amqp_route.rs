//! Wharf on RabbitMQ against a bare lapin program doing the same work, in the same run, on the
//! same broker. Prints figures; checks only that every message arrived.
//!
//! Workload, both runs: 20,000 persistent 256-byte JSON messages waiting on a durable queue,
//! consumed with prefetch 256, uppercased, published to another durable queue with publisher
//! confirms, each input acked after its output's confirm. (a) Wharf: a route through the
//! `uppercase` plugin. (b) Bare lapin: the same pipeline with the transform in native Rust and
//! as many publishing channels as Wharf keeps (4). Measured from the first output to the last;
//! CPU is this process's user + system time over that span (the broker's own CPU is not in
//! either figure). Two rounds of bare then Wharf; each phase's queues are deleted before the
//! next starts, so every phase finds the broker holding the same messages.
//!
//! Run with `./dev bench` (RabbitMQ at `WHARF_TEST_AMQP`, default the local one).

mod common;

use common::amqp::{
    Figures, MESSAGES, PREFETCH, ROUNDS, bare_lapin, clean, connect, measure, prepare, wharf_config,
};
use lapin::Connection;
use wharf::config::{RetryConfig, RouteConfig};

async fn through_wharf(client: &Connection, dir: &std::path::Path) -> Figures {
    let (input, output) = ("wharf.bench.route.in", "wharf.bench.route.out");
    prepare(client, input, output, MESSAGES).await;
    let mut config = wharf_config(dir, input, output);
    config.routes = vec![RouteConfig {
        name: "bench".into(),
        from: format!("rabbit:{input}"),
        through: vec!["uppercase".into()],
        to: Some(format!("rabbit:{output}")),
        concurrency: usize::from(PREFETCH),
        retry: RetryConfig::default(),
        dead_letter: None,
        durable: false,
        ..RouteConfig::default()
    }];
    let host = wharf::host::start(config).await.unwrap();
    let figures = measure(client, output, MESSAGES).await;
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
        let client = connect().await;
        println!(
            "{MESSAGES} persistent 256-byte JSON messages, durable queues, prefetch {PREFETCH}, confirms, ack after confirm; two rounds, queues emptied between phases"
        );
        let mut comparison = common::Comparison::new("bare lapin, native uppercase");
        for _ in 1..=ROUNDS {
            let bare = bare_lapin(&client, MESSAGES).await;
            clean(&client, &["wharf.bench.bare.in", "wharf.bench.bare.out"]).await;
            let wharf = through_wharf(&client, dir.path()).await;
            clean(&client, &["wharf.bench.route.in", "wharf.bench.route.out", "wharf.bench.route.in.dead"]).await;
            comparison.round(bare, wharf);
        }
        comparison.finish();
    });
}
