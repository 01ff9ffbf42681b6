//! The Python worker (`wharf_client.Worker`) beside pika doing the same work in the same run:
//! `sdk/python/bench/worker_vs_pika.py` against a host started here with a RabbitMQ
//! connection. Prints both rates and the worker's share of pika's.
//!
//! Run with `./dev bench` or `cargo bench -p wharf --bench python_worker` (RabbitMQ at
//! `WHARF_TEST_AMQP`, by default amqp://guest:guest@127.0.0.1:5672/%2f; Python 3 with venv:
//! the client and pika are installed into `~/.cache/wharf-python-bench`).

mod common;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A virtual environment with the client from this clone and pika; its `python`.
fn python() -> PathBuf {
    let venv =
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/wharf-python-bench");
    let python = venv.join("bin/python");
    if !python.is_file() {
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed");
        assert!(made.success(), "python3 -m venv failed");
    }
    let installed = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "pika==1.3.2",
        ])
        .arg(root().join("sdk/python"))
        .status()
        .unwrap();
    assert!(installed.success(), "pip install pika ./sdk/python failed");
    python
}

#[tokio::main]
async fn main() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let queue = format!("bench.worker.{}", uuid::Uuid::new_v4().simple());
    let mut config = common::host_config(dir.path(), "wharf.db");
    config.connections.insert(
        "rabbit".into(),
        serde_json::from_value(serde_json::json!({
            "kind": "amqp",
            "url": common::amqp::amqp_url(),
            "queues": [{"name": queue}],
        }))
        .unwrap(),
    );
    let host = wharf::host::start(config).await.expect("the host starts");
    let token_file = wharf::auth::local_token_path(host.addr).expect("a state folder");
    let token = std::fs::read_to_string(token_file).expect("the host keeps its CLI's token");
    let status = tokio::process::Command::new(&python)
        .arg(root().join("sdk/python/bench/worker_vs_pika.py"))
        .env("WHARF_URL", format!("http://{}", host.addr))
        .env("WHARF_TOKEN", token)
        .env("WHARF_QUEUE", &queue)
        .env("AMQP_URL", common::amqp::amqp_url())
        .status()
        .await
        .unwrap();
    host.stop().await;
    let client = common::amqp::connect().await;
    common::amqp::clean(&client, &[queue.as_str()]).await;
    assert!(status.success(), "worker_vs_pika.py failed");
}
