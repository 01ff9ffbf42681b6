//! The Python client (`sdk/python`) against a real host: installed with pip into a virtual
//! environment (kept in `~/.cache/wharf-python`, outside the clone), then
//! `tests/python/client_test.py` runs its calls against a host on the embedded broker and
//! RabbitMQ: publish, an RPC answered by a route, an event reaching a subscription, a leased
//! take whose client dies before acking, typed errors, asyncio; and a durable send while
//! RabbitMQ is stopped, whose messages arrive once it is back. Then `tests/python/worker_test.py`
//! runs workers: handlers of the embedded broker and RabbitMQ retried, dead-lettered and
//! drained, requests answered, a lease outlived, and a worker stopped by SIGTERM.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{Backend, TestDb};
use wharf::config::{Config, RouteConfig, SubscriptionConfig};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The virtual environment with the client installed from this clone; its `python`.
fn python() -> PathBuf {
    support::python_venv(&[])
}

async fn run(python: &Path, part: &str, base: &str, token: &str, queue: &str) -> String {
    run_script("client_test.py", python, part, base, token, queue).await
}

async fn run_script(
    script: &str,
    python: &Path,
    part: &str,
    base: &str,
    token: &str,
    queue: &str,
) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(python)
        .arg(root().join("tests/python").join(script))
        .arg(part)
        .env("WHARF_TMP", tmp.path())
        .env("WHARF_URL", base)
        .env("WHARF_TOKEN", token)
        .env("WHARF_QUEUE", queue)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{script} {part}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_works_against_a_real_host() {
    let python = python();
    let _exclusive = support::RABBIT.write().await;
    let queue = format!("python.{}", uuid::Uuid::new_v4().simple());
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![RouteConfig {
            name: "echo".into(),
            from: "local:echo.in".into(),
            through: vec!["echo".into()],
            to: None,
            ..RouteConfig::default()
        }],
        subscriptions: vec![SubscriptionConfig {
            name: "py-bookings".into(),
            pattern: "Booking.*".into(),
            service: "py".into(),
            through: Vec::new(),
            to: Some("local:py.events".into()),
            concurrency: 4,
            retry: Default::default(),
            dead_letter: None,
            durable: false,
            inbox: false,
            max_outputs: None,
            max_deliveries: 10,
        }],
        ..Config::default()
    };
    config.connections.insert(
        "rabbit".into(),
        serde_json::from_value(serde_json::json!({
            "kind": "amqp",
            "url": support::amqp_url(),
            "queues": [{"name": queue}],
        }))
        .unwrap(),
    );
    let (host, _broker) = support::start_host(&db, config).await;
    let base = format!("http://{}", host.addr);
    let token = support::local_token(host.addr);
    run(&python, "basics", &base, &token, &queue).await;

    // A durable send while RabbitMQ is stopped: accepted, then sent once it is back.
    let restart = support::RestartRabbit;
    support::rabbitmqctl(&["stop_app"]).await;
    let out = run(&python, "durable", &base, &token, &queue).await;
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(ids.len(), 20, "{out}");
    support::rabbitmqctl(&["start_app"]).await;
    drop(restart);
    let client = support::amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..600 {
        match channel
            .basic_get(
                queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
        {
            Ok(Some(message)) => {
                let body: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
                seen.push(body["n"].as_u64().unwrap());
                if seen.len() == 20 {
                    break;
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        seen,
        (0..20).collect::<Vec<u64>>(),
        "all twenty, in order (one key)"
    );
    let _ = client.close(200, "done".into()).await;
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

/// The worker (`wharf_client.Worker`) against a real host: see `tests/python/worker_test.py`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_handles_retries_dead_letters_answers_and_stops_cleanly() {
    let python = python();
    let _shared = support::RABBIT.read().await;
    let queue = format!("python.worker.{}", uuid::Uuid::new_v4().simple());
    let dead = format!("{queue}.dead");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config::default();
    config.connections.insert(
        "rabbit".into(),
        serde_json::from_value(serde_json::json!({
            "kind": "amqp",
            "url": support::amqp_url(),
            "queues": [
                {"name": queue, "dead_letter_exchange": "", "dead_letter_routing_key": dead},
                {"name": dead},
            ],
        }))
        .unwrap(),
    );
    let (host, _broker) = support::start_host(&db, config).await;
    let base = format!("http://{}", host.addr);
    let token = support::local_token(host.addr);
    for part in ["consume", "respond", "lease", "subscribe", "sigterm"] {
        let out = run_script("worker_test.py", &python, part, &base, &token, &queue).await;
        assert!(out.contains(&format!("{part} ok")), "{out}");
    }
    // RabbitMQ's dead letters: the permanent failure and the one out of deliveries, each
    // carrying the worker's exception headers (the host sends a copy to the dead-letter
    // exchange, as RabbitMQ's own dead-lettering cannot add them).
    let client = support::amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    let mut numbers = Vec::new();
    let mut names = Vec::new();
    for _ in 0..100 {
        match channel
            .basic_get(
                dead.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
        {
            Ok(Some(message)) => {
                let body: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
                numbers.push(body["n"].as_u64().unwrap());
                let header = |name: &str| {
                    message
                        .properties
                        .headers()
                        .as_ref()
                        .and_then(|h| h.inner().get(name).cloned())
                        .map(|v| match v {
                            lapin::types::AMQPValue::LongString(s) => {
                                String::from_utf8_lossy(s.as_bytes()).into_owned()
                            }
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default()
                };
                names.push((
                    body["n"].as_u64().unwrap(),
                    header("exception_name"),
                    header("x-wharf-queue"),
                ));
                if numbers.len() == 2 {
                    break;
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    numbers.sort();
    assert_eq!(numbers, vec![8, 9], "RabbitMQ's dead letters");
    names.sort();
    assert_eq!(
        names,
        vec![
            (8, "KeyError".to_owned(), queue.clone()),
            (9, "RuntimeError".to_owned(), queue.clone())
        ],
        "RabbitMQ's dead letters name the worker's exceptions"
    );
    let _ = client.close(200, "done".into()).await;
    host.stop().await;
    support::delete_amqp_queues(&[queue, dead]).await;
}
