//! The RabbitMQ workload the route benchmarks share, and the bare lapin program that does the
//! same work: `MESSAGES` (20,000; more where a run must last) persistent 256-byte JSON messages waiting on a durable queue, consumed
//! with prefetch 256, uppercased, published to another durable queue with publisher confirms,
//! each input acked after its output's confirm.

use super::cpu_time;
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::time::{Duration, Instant};
use wharf::broker::amqp::AmqpConfig;
use wharf::broker::amqp::config::AmqpQueueConfig;
use wharf::config::{Config, ConnectionConfig};

pub const MESSAGES: u32 = 20_000;
pub const PREFETCH: u16 = 256;
pub const CHANNELS: usize = 4;
pub const ROUNDS: u32 = 2;

pub fn amqp_url() -> String {
    std::env::var("WHARF_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub async fn connect() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ at {} is needed: {e}", amqp_url()))
}

/// Fresh durable queues `in` and `out`, with `in` holding `messages` of the workload.
pub async fn prepare(client: &Connection, input: &str, output: &str, messages: u32) {
    let channel = client.create_channel().await.unwrap();
    for queue in [input, output] {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..messages {
        // 256 bytes of JSON.
        let mut payload = format!(r#"{{"n":{i:>6},"text":""#);
        while payload.len() < 254 {
            payload.push('a');
        }
        payload.push_str("\"}");
        let confirm = channel
            .basic_publish(
                "".into(),
                input.into(),
                BasicPublishOptions::default(),
                payload.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("m{i}").into())
                    .with_content_type("application/json".into()),
            )
            .await
            .unwrap();
        pending.push(confirm);
        if pending.len() == 1000 {
            for confirm in pending.drain(..) {
                confirm.await.unwrap();
            }
        }
    }
    for confirm in pending {
        confirm.await.unwrap();
    }
    let _ = channel.close(200, "filled".into()).await;
}

pub use super::Figures;

/// From the first output to the last, counting `output`'s ready messages.
pub async fn measure(client: &Connection, output: &str, messages: u32) -> Figures {
    let channel = client.create_channel().await.unwrap();
    let count = || async {
        channel
            .queue_declare(
                output.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    };
    let mut first = count().await;
    while first == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        first = count().await;
    }
    let (cpu, started) = (cpu_time(), Instant::now());
    while count().await < messages {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu);
    let counted = f64::from(messages - first);
    Figures {
        rate: counted / elapsed.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / counted,
    }
}

pub async fn bare_lapin(client: &Connection, messages: u32) -> Figures {
    let (input, output) = ("wharf.bench.bare.in", "wharf.bench.bare.out");
    prepare(client, input, output, messages).await;
    let worker_connection = connect().await;
    let mut publishers: Vec<Channel> = Vec::new();
    for _ in 0..CHANNELS {
        let channel = worker_connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        publishers.push(channel);
    }
    let consuming = worker_connection.create_channel().await.unwrap();
    consuming
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consuming
        .basic_consume(
            input.into(),
            "bare".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let worker = tokio::spawn(async move {
        let mut in_flight = tokio::task::JoinSet::new();
        for i in 0..messages as usize {
            let delivery = consumer.next().await.unwrap().unwrap();
            let channel = publishers[i % CHANNELS].clone();
            in_flight.spawn(async move {
                let payload = delivery.data.to_ascii_uppercase();
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        output.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &payload,
                        delivery.properties.clone(),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                assert!(confirm.is_ack());
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .unwrap();
            });
            while in_flight.try_join_next().is_some() {}
        }
        in_flight.join_all().await;
    });
    let figures = measure(client, output, messages).await;
    worker.await.unwrap();
    let _ = worker_connection.close(200, "done".into()).await;
    figures
}

/// Deletes a phase's queues, so the next phase finds the broker as empty as this one did.
pub async fn clean(client: &Connection, queues: &[&str]) {
    let channel = client.create_channel().await.unwrap();
    for queue in queues {
        let _ = channel
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = channel.close(200, "cleaned".into()).await;
}

/// A host's configuration for a route benchmark: SQLite in `dir`, the example plugins, and
/// connection `rabbit` declaring `input` and `output`, with as many publishing channels as the
/// bare program uses.
pub fn wharf_config(dir: &std::path::Path, input: &str, output: &str) -> Config {
    let mut config = super::host_config(dir, "wharf.db");
    config.connections.insert(
        "rabbit".into(),
        ConnectionConfig::Amqp(Box::new(AmqpConfig {
            url: Some(amqp_url()),
            channels: CHANNELS,
            queues: vec![
                AmqpQueueConfig::named(input),
                AmqpQueueConfig::named(output),
            ],
            ..AmqpConfig::default()
        })),
    );
    config
}
