//! Wharf on MQTT against a bare `rumqttc` program doing the same work, in the same run, on
//! the same broker. Prints figures; checks only that every message arrived.
//!
//! Workload, both runs: 20,000 256-byte JSON messages published at QoS 1 to an input topic by
//! a producer in this process that keeps at most 500 ahead of the outputs (Mosquitto drops
//! QoS 1 messages past 1,000 queued for one client by default); the reader takes them through
//! a shared subscription with manual acks, uppercases each, publishes it at QoS 1 to an output
//! topic, and acks the input after the broker has acknowledged the output; a counter in this
//! process subscribes to the output. (a) Wharf: a route through the `uppercase` plugin, 256 in
//! flight. (b) Bare rumqttc: the same pipeline with the transform in native Rust, 256 in
//! flight. Measured from the first output to the last; CPU is this process's user + system
//! time over that span, the producer's and the counter's included on both sides (the
//! broker's own CPU is in neither figure). Two rounds of bare then Wharf.
//!
//! Run with `./dev bench` (Mosquitto at `WHARF_TEST_MQTT`, default the local one).

mod common;

use common::Figures;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wharf::broker::mqtt::MqttConfig;
use wharf::config::{ConnectionConfig, RouteConfig};

const MESSAGES: usize = 20_000;
const IN_FLIGHT: usize = 256;
const AHEAD: usize = 500;
const ROUNDS: usize = 2;

fn url() -> String {
    std::env::var("WHARF_TEST_MQTT").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
}

fn options(id: &str) -> MqttOptions {
    let port = url().rsplit(':').next().unwrap().parse().unwrap();
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_max_packet_size(Some(1 << 20));
    options
}

/// A client whose event loop runs in a task; publishes and acks it receives come back on
/// the channel.
fn client(options: MqttOptions) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>) {
    let (client, mut events) = AsyncClient::new(options, 4096);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(packet)) => {
                    if tx.send(packet).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    (client, rx)
}

async fn subscribed(
    client: &AsyncClient,
    events: &mut mpsc::UnboundedReceiver<Packet>,
    filter: &str,
) {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    while let Some(packet) = events.recv().await {
        if matches!(packet, Packet::SubAck(_)) {
            return;
        }
    }
}

/// Counts the outputs (their first and last arrival) while a producer publishes the inputs,
/// keeping at most `AHEAD` of them unanswered.
async fn drive(input: &str, output: &str) -> Figures {
    let (counter, mut counted) = client(options(&format!("count-{}", uuid())));
    subscribed(&counter, &mut counted, output).await;
    let (producer, mut acks) = client(options(&format!("produce-{}", uuid())));
    let done = Arc::new(AtomicUsize::new(0));
    let producing = {
        let done = done.clone();
        let input = input.to_owned();
        tokio::spawn(async move {
            let payload = common::payload();
            for sent in 0..MESSAGES {
                while sent >= done.load(Ordering::Relaxed) + AHEAD {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                producer
                    .publish(&input, QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .unwrap();
            }
            let mut acked = 0;
            while acked < MESSAGES {
                if let Some(Packet::PubAck(_)) = acks.recv().await {
                    acked += 1;
                }
            }
        })
    };
    let mut first = None;
    let mut seen = 0;
    while seen < MESSAGES {
        match tokio::time::timeout(Duration::from_secs(60), counted.recv()).await {
            Ok(Some(Packet::Publish(_))) => {
                if first.is_none() {
                    first = Some((Instant::now(), common::cpu_time()));
                }
                seen += 1;
                done.store(seen, Ordering::Relaxed);
            }
            Ok(Some(_)) => {}
            _ => panic!("{seen} of {MESSAGES} outputs within a minute of the last"),
        }
    }
    let (at, cpu) = first.unwrap();
    let elapsed = at.elapsed().as_secs_f64();
    let cpu = (common::cpu_time() - cpu).as_secs_f64();
    producing.await.unwrap();
    Figures {
        rate: MESSAGES as f64 / elapsed,
        cpu_us: cpu * 1e6 / MESSAGES as f64,
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

async fn bare(round: usize) -> Figures {
    let (input, output) = (
        format!("bench/bare/in/{round}/{}", uuid()),
        format!("bench/bare/out/{round}/{}", uuid()),
    );
    let mut reading = options(&format!("bare-{}", uuid()));
    reading.set_manual_acks(true);
    reading.set_receive_maximum(Some(IN_FLIGHT as u16));
    let (worker, mut events) = client(reading);
    subscribed(&worker, &mut events, &format!("$share/bare/{input}")).await;
    let to = output.clone();
    let running = tokio::spawn(async move {
        // Inputs waiting for their output's acknowledgement, by the output's publish order.
        let mut waiting: VecDeque<rumqttc::v5::mqttbytes::v5::Publish> = VecDeque::new();
        let mut handled = 0;
        while handled < MESSAGES {
            match events.recv().await {
                Some(Packet::Publish(input)) => {
                    let upper = input.payload.to_ascii_uppercase();
                    worker
                        .publish(&to, QoS::AtLeastOnce, false, upper)
                        .await
                        .unwrap();
                    waiting.push_back(input);
                }
                Some(Packet::PubAck(_)) => {
                    // The broker acknowledges QoS 1 publishes in the order they were sent.
                    if let Some(input) = waiting.pop_front() {
                        worker.ack(&input).await.unwrap();
                        handled += 1;
                    }
                }
                Some(_) => {}
                None => return,
            }
        }
    });
    let figures = drive(&input, &output).await;
    running.abort();
    figures
}

async fn through_wharf(dir: &std::path::Path, round: usize) -> Figures {
    let (input, output) = (
        format!("bench/wharf/in/{round}/{}", uuid()),
        format!("bench/wharf/out/{round}/{}", uuid()),
    );
    let mut config = common::host_config(dir, &format!("wharf-{round}.db"));
    config.connections.insert(
        "mqtt".into(),
        ConnectionConfig::Mqtt(Box::new(MqttConfig {
            url: url(),
            session_expiry_s: 60,
            ..MqttConfig::default()
        })),
    );
    config.routes = vec![RouteConfig {
        name: "bench".into(),
        from: format!("mqtt:{input}"),
        through: vec!["uppercase".into()],
        to: Some(format!("mqtt:{output}")),
        concurrency: IN_FLIGHT,
        ..RouteConfig::default()
    }];
    let host = wharf::host::start(config).await.unwrap();
    // The route's session subscribes as it starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let figures = drive(&input, &output).await;
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
            "{MESSAGES} 256-byte JSON messages at QoS 1 through a shared subscription, {IN_FLIGHT} in flight, the output's PUBACK awaited before the input's"
        );
        let mut comparison = common::Comparison::new("bare rumqttc, native uppercase");
        for round in 1..=ROUNDS {
            let b = bare(round).await;
            let w = through_wharf(dir.path(), round).await;
            comparison.round(b, w);
        }
        comparison.finish();
    });
}
