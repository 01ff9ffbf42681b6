//! Wharf on NATS against a bare `async-nats` program doing the same work, in the same run, on
//! the same server. Prints figures; checks only that every message arrived.
//!
//! Workload, both runs: 20,000 256-byte JSON messages waiting in a JetStream work-queue
//! stream, pulled by a durable consumer 256 at a time, uppercased, published to another
//! stream with the publish ack awaited, each input acked after its output's ack, 256 in
//! flight. (a) Wharf: a route through the `uppercase` plugin. (b) Bare async-nats: the same
//! pipeline with the transform in native Rust. Measured from the first output to the last; CPU
//! is this process's user + system time over that span (the server's own CPU is in neither
//! figure). Two rounds of bare then Wharf, each on streams of its own, deleted afterwards.
//!
//! Run with `./dev bench` (NATS at `WHARF_TEST_NATS`, default the local one).

mod common;

use common::Figures;

use async_nats::jetstream::{self, consumer::PullConsumer, stream};
use futures::StreamExt as _;
use std::time::{Duration, Instant};
use wharf::broker::nats::NatsConfig;
use wharf::config::{ConnectionConfig, RouteConfig};

const MESSAGES: usize = 20_000;
const IN_FLIGHT: usize = 256;
const ROUNDS: usize = 2;

fn url() -> String {
    std::env::var("WHARF_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A work-queue stream on `subject`, filled with `count` messages when asked.
async fn prepare(js: &jetstream::Context, name: &str, subject: &str, count: usize) {
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = common::payload();
    let acks: Vec<_> = futures::stream::iter(0..count)
        .map(|_| {
            let js = js.clone();
            let payload = payload.clone();
            async move {
                js.publish(subject.to_owned(), payload.into())
                    .await
                    .unwrap()
                    .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    assert!(acks.iter().all(Result::is_ok));
}

/// From the first output to the last, counting the output stream's messages.
async fn measure(js: &jetstream::Context, output: &str, count: usize) -> Figures {
    let mut first = None;
    loop {
        let stored = match js.get_stream(output).await {
            Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        } as usize;
        if stored > 0 && first.is_none() {
            first = Some((Instant::now(), common::cpu_time()));
        }
        if stored >= count {
            let (at, cpu) = first.unwrap();
            let elapsed = at.elapsed().as_secs_f64();
            let cpu = (common::cpu_time() - cpu).as_secs_f64();
            return Figures {
                rate: count as f64 / elapsed,
                cpu_us: cpu * 1e6 / count as f64,
            };
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn bare(js: &jetstream::Context, round: usize) -> Figures {
    let (input, output) = (format!("bare_in_{round}"), format!("bare_out_{round}"));
    let (in_subject, out_subject) = (
        format!("bench.bare.in.{round}"),
        format!("bench.bare.out.{round}"),
    );
    prepare(js, &input, &in_subject, MESSAGES).await;
    prepare(js, &output, &out_subject, 0).await;
    let consumer: PullConsumer = js
        .get_stream(&input)
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("bare".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let worker = {
        let js = js.clone();
        tokio::spawn(async move {
            let messages = consumer
                .stream()
                .max_messages_per_batch(IN_FLIGHT)
                .messages()
                .await
                .unwrap();
            messages
                .take(MESSAGES)
                .for_each_concurrent(IN_FLIGHT, |message| {
                    let js = js.clone();
                    let subject = out_subject.clone();
                    async move {
                        let message = message.unwrap();
                        let upper = message.payload.to_ascii_uppercase();
                        js.publish(subject, upper.into())
                            .await
                            .unwrap()
                            .await
                            .unwrap();
                        message.ack().await.unwrap();
                    }
                })
                .await;
        })
    };
    let figures = measure(js, &output, MESSAGES).await;
    worker.await.unwrap();
    let _ = js.delete_stream(&input).await;
    let _ = js.delete_stream(&output).await;
    figures
}

async fn through_wharf(js: &jetstream::Context, dir: &std::path::Path, round: usize) -> Figures {
    let prefix = format!("wharf_{round}_");
    let (in_subject, out_subject) = (
        format!("bench.wharf.in.{round}"),
        format!("bench.wharf.out.{round}"),
    );
    let mut config = common::host_config(dir, &format!("wharf-{round}.db"));
    config.connections.insert(
        "nats".into(),
        ConnectionConfig::Nats(Box::new(NatsConfig {
            url: url(),
            stream_prefix: prefix.clone(),
            ..NatsConfig::default()
        })),
    );
    config.routes = vec![RouteConfig {
        name: "bench".into(),
        from: format!("nats:{in_subject}"),
        through: vec!["uppercase".into()],
        to: Some(format!("nats:{out_subject}")),
        concurrency: IN_FLIGHT,
        ..RouteConfig::default()
    }];
    // The input waits before the host starts, as for the bare run: the host makes the streams
    // (it owns their names), so fill them through a first host, stopped at once.
    let host = wharf::host::start(config.clone()).await.unwrap();
    host.stop().await;
    let in_stream = js.stream_by_subject(&in_subject).await.unwrap();
    let out_stream = js.stream_by_subject(&out_subject).await.unwrap();
    let payload = common::payload();
    let acks: Vec<_> = futures::stream::iter(0..MESSAGES)
        .map(|_| {
            let js = js.clone();
            let payload = payload.clone();
            let subject = in_subject.clone();
            async move { js.publish(subject, payload.into()).await.unwrap().await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    assert!(acks.iter().all(Result::is_ok));
    let host = wharf::host::start(config).await.unwrap();
    let figures = measure(js, &out_stream, MESSAGES).await;
    host.stop().await;
    let _ = js.delete_stream(&in_stream).await;
    let _ = js.delete_stream(&out_stream).await;
    figures
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let client = async_nats::connect(url()).await.expect("NATS answers");
        let js = jetstream::new(client);
        println!(
            "{MESSAGES} 256-byte JSON messages in a JetStream work-queue stream, {IN_FLIGHT} in flight, publish ack awaited, input acked after its output's ack"
        );
        let mut comparison = common::Comparison::new("bare async-nats, native uppercase");
        for round in 1..=ROUNDS {
            let b = bare(&js, round).await;
            let w = through_wharf(&js, dir.path(), round).await;
            comparison.round(b, w);
        }
        comparison.finish();
    });
}
