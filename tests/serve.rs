//! The `wharf` binary as people run it: the first run from the README, SIGTERM with messages
//! in flight, and SIGKILL mid-stream followed by a restart.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::plugin_dir;
use wharf::broker::{EmbeddedBroker, EmbeddedConfig};
use wharf::message::Message;
use wharf::store::Store;

/// `wharf serve` in `dir`, with no config file: the embedded defaults, on `port`.
fn serve(dir: &Path, port: u16, extra_env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
    command
        .arg("serve")
        .current_dir(dir)
        .env("WHARF_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WHARF_SERVER__PLUGIN_DIR", plugin_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let child = command.spawn().expect("starting wharf serve");
    support::wait_ready(port);
    child
}

use support::wharf_cli as wharf;

/// A plain HTTP/1.1 GET; returns the whole response.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_first_run_from_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut host = serve(dir.path(), port, &[]);
    let out = wharf(&["publish", "local:demo.in", "hello"], port);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wharf(&["consume", "local:demo.out", "--count", "1"], port);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO\n");

    let stats = wharf(&["queue", "stats", "local:demo.in"], port);
    assert!(String::from_utf8_lossy(&stats.stdout).contains("depth 0"));
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    // Anyone may ask whether the host is ready; only a viewer hears of its connections.
    let ready = http_get(port, "/readyz");
    assert!(
        ready.starts_with("HTTP/1.1 200")
            && ready.contains(r#""ready":true"#)
            && !ready.contains("local"),
        "{ready}"
    );

    wharf(&["publish", "local:scratch", "a"], port);
    wharf(&["publish", "local:scratch", "b"], port);
    let out = wharf(&["queue", "purge", "local:scratch"], port);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "purged 2 messages from local:scratch\n"
    );
    let out = wharf(&["publish", "nowhere:q", "x"], port);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("no connection named")
    );
    sigterm(&host);
    assert!(
        host.wait().unwrap().success(),
        "wharf serve exits cleanly on SIGTERM"
    );
    assert!(
        dir.path().join("wharf.db").is_file(),
        "the default database is wharf.db in the working directory"
    );
}

async fn broker(dir: &Path) -> EmbeddedBroker {
    let url = format!("sqlite://{}/wharf.db", dir.display());
    EmbeddedBroker::new(Store::open(&url).await.unwrap(), EmbeddedConfig::default())
}

async fn publish_inputs(broker: &EmbeddedBroker, count: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for i in 0..count {
        let mut msg = Message::new("demo.in", format!("message {i}"));
        msg.id = format!("in-{i}");
        broker.publish("demo.in", msg).await.unwrap();
        ids.insert(msg_id(i));
    }
    ids
}

fn msg_id(i: usize) -> String {
    format!("in-{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_messages_in_flight_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut host = serve(dir.path(), port, &[]);
    let broker = broker(dir.path()).await;
    let inputs = publish_inputs(&broker, 2_000).await;
    // Stop while the route is busy.
    while broker.stats("demo.out").await.unwrap().depth() < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sigterm(&host);
    assert!(host.wait().unwrap().success());

    let store = broker.store();
    let outputs = store.queue_message_ids("local:demo.out").await.unwrap();
    let left = store.queue_message_ids("local:demo.in").await.unwrap();
    let stats = broker.stats("demo.in").await.unwrap();
    assert_eq!(
        stats.in_flight, 0,
        "nothing was left claimed: every message in flight was finished"
    );
    assert_eq!(
        outputs.len() + left.len(),
        inputs.len(),
        "each input either produced its output or is still queued"
    );
    assert!(
        !left.is_empty() && !outputs.is_empty(),
        "stopped mid-stream"
    );
    assert_eq!(outputs.iter().collect::<HashSet<_>>().len(), outputs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_and_the_restart_reproduces_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    // A short visibility timeout, so the messages the killed host held come back soon.
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
plugin_dir = "{}"

[connections.local]
kind = "embedded"
[[connections.local.queues]]
name = "demo.in"
visibility_timeout_ms = 1000

[[routes]]
name = "demo"
from = "local:demo.in"
through = ["uppercase"]
to = "local:demo.out"
"#,
            plugin_dir().display()
        ),
    )
    .unwrap();
    let start = || support::serve_config(&config, dir.path(), port);
    let mut host = start();
    let broker = broker(dir.path()).await;
    let inputs = publish_inputs(&broker, 3_000).await;
    while broker.stats("demo.out").await.unwrap().depth() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    host.kill().unwrap(); // SIGKILL
    host.wait().unwrap();
    assert!(
        broker.stats("demo.in").await.unwrap().depth() > 0,
        "killed mid-stream"
    );

    let mut host = start();
    let started = Instant::now();
    while broker.stats("demo.in").await.unwrap().depth() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the restarted host did not drain the input"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&host);
    assert!(host.wait().unwrap().success());

    // Every input produced an output; a message redelivered after the kill produced the same
    // id again, so the set of ids is exactly one per input.
    let outputs = broker
        .store()
        .queue_message_ids("local:demo.out")
        .await
        .unwrap();
    let unique: HashSet<&String> = outputs.iter().collect();
    assert_eq!(
        unique.len(),
        inputs.len(),
        "one distinct output id per input"
    );
    let duplicates = outputs.len() - unique.len();
    eprintln!(
        "{} outputs for {} inputs: {duplicates} duplicates from redelivery",
        outputs.len(),
        inputs.len()
    );
    assert!(
        duplicates <= 300,
        "duplicates are bounded by what was in flight: {duplicates}"
    );
}
