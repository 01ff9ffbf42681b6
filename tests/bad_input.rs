//! Bad input over every HTTP endpoint and CLI command, against a real host on the embedded
//! broker and RabbitMQ: each answer is a clear 4xx (or a CLI error) in JSON naming what is
//! wrong; nothing crashes, nothing is half-written, a GET changes nothing, a waiting request
//! ends with the host. Also: no password in a store error or `Debug`, and the kv quota holds
//! under concurrent writers on both databases.

#[macro_use]
mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Backend, TestDb};
use wharf::broker::amqp::AmqpConfig;
use wharf::broker::amqp::config::AmqpQueueConfig;
use wharf::config::{Config, ConnectionConfig};
use wharf::host::{RunningHost, start};
use wharf::runtime::KvLimits;
use wharf::store::Store;

struct Host {
    host: RunningHost,
    base: String,
    /// Presents the admin token the host keeps for its CLI.
    client: reqwest::Client,
    _db: TestDb,
    queue: String,
}

async fn host(configure: impl FnOnce(&mut Config)) -> Host {
    let db = TestDb::new(Backend::Sqlite).await;
    let queue = format!("bad.{}", uuid::Uuid::new_v4().simple());
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = db.url.clone();
    config.server.plugin_dir = None;
    // Nor the defaults' heartbeat daemon and its plugin, which come from that folder.
    config.daemons.clear();
    config.plugins.clear();
    config.server.max_request_bytes = 64 * 1024;
    config.routes.clear();
    config.connections.insert(
        "rabbit".into(),
        ConnectionConfig::Amqp(Box::new(AmqpConfig {
            url: Some(support::amqp_url()),
            queues: vec![
                AmqpQueueConfig::named(&queue),
                AmqpQueueConfig {
                    kind: Some("quorum".into()),
                    ..AmqpQueueConfig::named(format!("{queue}.quorum"))
                },
            ],
            ..AmqpConfig::default()
        })),
    );
    configure(&mut config);
    config.validate().unwrap();
    let host = start(config).await.expect("the host starts");
    Host {
        base: format!("http://{}", host.addr),
        client: support::client_with_token(&support::local_token(host.addr)),
        host,
        _db: db,
        queue,
    }
}

/// Sends a request; returns the status and the JSON body (every answer is JSON).
async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the host answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text:?}"));
    (status, body)
}

fn error(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"))
}

fn url(base: &str, connection: &str, queue: &str, tail: &str) -> String {
    let mut url = reqwest::Url::parse(base).unwrap();
    url.path_segments_mut()
        .unwrap()
        .extend(["api", "v1", "queues", connection, queue]);
    format!("{url}{tail}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let _shared = support::RABBIT.read().await;
    let h = host(|_| {}).await;
    let client = h.client.clone();
    let messages = url(&h.base, "local", "q", "/messages");

    // Malformed, wrongly typed and oversized bodies.
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed JSON",
            client
                .post(&messages)
                .header("content-type", "application/json")
                .body("{\"payload\": "),
            400,
            "JSON",
        ),
        (
            "deeply nested JSON",
            client
                .post(&messages)
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"headers\": {{\"h\": {}1{}}}}}",
                    "[".repeat(5_000),
                    "]".repeat(5_000)
                )),
            400,
            "JSON",
        ),
        (
            "bad UTF-8",
            client
                .post(&messages)
                .header("content-type", "application/json")
                .body(b"{\"payload\": \"\xff\xfe\"}".to_vec()),
            400,
            "JSON",
        ),
        (
            "not JSON at all",
            client
                .post(&messages)
                .header("content-type", "text/plain")
                .body("hello"),
            415,
            "application/json",
        ),
        (
            "a huge body",
            client
                .post(&messages)
                .json(&json!({ "payload": "x".repeat(64 * 1024) })),
            413,
            "max_request_bytes",
        ),
        (
            "not an object",
            client.post(&messages).json(&json!([1, 2])),
            400,
            "object",
        ),
        (
            "an unknown field",
            client.post(&messages).json(&json!({ "payloda": "x" })),
            400,
            "payloda",
        ),
        (
            "an empty id",
            client
                .post(&messages)
                .json(&json!({ "id": "", "payload": "x" })),
            400,
            "`id`",
        ),
        (
            "a NUL byte in the topic",
            client
                .post(&messages)
                .json(&json!({ "topic": "a\u{0}b", "payload": "x" })),
            400,
            "NUL",
        ),
        (
            "a control character in a header name",
            client
                .post(&messages)
                .json(&json!({ "payload": "x", "headers": { "a\u{1}b": "v" } })),
            400,
            "header name",
        ),
        (
            "an unknown connection",
            client
                .post(url(&h.base, "nowhere", "q", "/messages"))
                .json(&json!({ "payload": "x" })),
            404,
            "nowhere",
        ),
        (
            "a 256-byte queue name",
            client
                .post(url(&h.base, "local", &"q".repeat(256), "/messages"))
                .json(&json!({ "payload": "x" })),
            400,
            "255",
        ),
        (
            "a 256-byte AMQP queue name",
            client
                .post(url(&h.base, "rabbit", &"q".repeat(256), "/messages"))
                .json(&json!({ "payload": "x" })),
            400,
            "255",
        ),
        (
            "a control character in a queue name",
            client
                .post(url(&h.base, "local", "q\u{7}", "/messages"))
                .json(&json!({ "payload": "x" })),
            400,
            "control",
        ),
        (
            "a reply-to too long for AMQP",
            client
                .post(url(&h.base, "rabbit", &h.queue, "/messages"))
                .json(&json!({ "payload": "x", "reply_to": "r".repeat(300) })),
            400,
            "reply_to",
        ),
        (
            "a JSON header whose key is too long for AMQP",
            client
                .post(url(&h.base, "rabbit", &h.queue, "/messages"))
                .json(&json!({ "payload": "x", "headers": { "h": { "k".repeat(300): 1 } } })),
            400,
            "255",
        ),
        (
            "a 256-byte AMQP queue to take from",
            client.post(url(&h.base, "rabbit", &"q".repeat(256), "/take")),
            400,
            "255",
        ),
        (
            "a peek at a quorum queue (it would count a delivery)",
            client.get(url(
                &h.base,
                "rabbit",
                &format!("{}.quorum", h.queue),
                "/messages",
            )),
            400,
            "quorum",
        ),
        (
            "a count of 0",
            client.post(url(&h.base, "local", "q", "/take?count=0")),
            400,
            "count",
        ),
        (
            "a count over the limit",
            client.post(url(&h.base, "local", "q", "/take?count=5000")),
            400,
            "count",
        ),
        (
            "a count that is not a number",
            client.get(url(&h.base, "local", "q", "/messages?count=lots")),
            400,
            "count",
        ),
        (
            "a wait over the limit",
            client.post(url(&h.base, "local", "q", "/take?timeout_ms=99999999")),
            400,
            "timeout_ms",
        ),
        (
            "an unknown query parameter",
            client.post(url(&h.base, "local", "q", "/take?cuont=1")),
            400,
            "cuont",
        ),
        (
            "a 256-byte queue's stats",
            client.get(url(&h.base, "local", &"q".repeat(256), "")),
            400,
            "255",
        ),
        (
            "an unknown endpoint",
            client.get(format!("{}/api/v1/nothing", h.base)),
            404,
            "api/v1",
        ),
    ];
    for (what, request, status, needle) in cases {
        let (got, body) = call(request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert!(body["error"]["code"].is_string(), "{what}: {body}");
        assert!(
            error(&body).contains(needle),
            "{what}: the error should mention `{needle}`: {body}"
        );
    }

    // Bad input in a field names the field.
    for (doc, field) in [
        (json!({ "payloda": "x" }), "payloda"),
        (json!({ "topic": "a\u{0}b", "payload": "x" }), "topic"),
        (json!({ "priority": 300, "payload": "x" }), "priority"),
    ] {
        let (status, body) = call(client.post(&messages).json(&doc)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid", "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let (_, body) = call(client.post(url(&h.base, "local", "q", "/take?count=0"))).await;
    assert_eq!(body["error"]["field"], "count", "{body}");

    // Nothing above was half-written.
    let (status, stats) = call(client.get(url(&h.base, "local", "q", ""))).await;
    assert_eq!(status, 200);
    assert_eq!(stats["depth"], 0, "{stats}");
    let (_, stats) = call(client.get(url(&h.base, "rabbit", &h.queue, ""))).await;
    assert_eq!(stats["ready"], 0, "{stats}");

    // A 255-byte name is fine on both.
    let long = "q".repeat(255);
    for connection in ["local", "rabbit"] {
        if connection == "rabbit" {
            // Declared by a plain client, as a service would.
            let client = support::amqp_client().await;
            let channel = client.create_channel().await.unwrap();
            channel
                .queue_declare(
                    long.as_str().into(),
                    lapin::options::QueueDeclareOptions::default(),
                    lapin::types::FieldTable::default(),
                )
                .await
                .unwrap();
        }
        let (status, body) = call(
            client
                .post(url(&h.base, connection, &long, "/messages"))
                .json(&json!({ "payload": "fits" })),
        )
        .await;
        assert_eq!(status, 201, "{connection}: {body}");
        let (status, body) = call(client.post(url(&h.base, connection, &long, "/take"))).await;
        assert_eq!(status, 200, "{connection}: {body}");
        assert_eq!(body[0]["payload"], "fits");
    }
    h.host.stop().await;
    support::delete_amqp_queues(&[h.queue.clone(), format!("{}.quorum", h.queue)]).await;
    let client = support::amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    channel
        .queue_delete(
            long.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_only_peeks_and_taking_is_bounded() {
    let _shared = support::RABBIT.read().await;
    let h = host(|config| config.server.max_response_bytes = 1_000).await;
    let client = h.client.clone();
    for (connection, queue) in [("local", "peek"), ("rabbit", h.queue.as_str())] {
        for i in 0..3 {
            let (status, body) = call(
                client
                    .post(url(&h.base, connection, queue, "/messages"))
                    .json(&json!({ "id": format!("p{i}"), "payload": "x".repeat(600) })),
            )
            .await;
            assert_eq!(status, 201, "{body}");
        }
        // A GET, twice: the same messages, still there.
        for _ in 0..2 {
            let (status, body) =
                call(client.get(url(&h.base, connection, queue, "/messages?count=10"))).await;
            assert_eq!(status, 200, "{body}");
            let ids: Vec<&str> = body
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap())
                .collect();
            // At most max_response_bytes of payload (but always one message).
            assert_eq!(ids, ["p0"], "{connection}");
        }
        // Taking three returns what fits in one answer; the rest stay queued, in order.
        let mut taken = Vec::new();
        for _ in 0..3 {
            let (status, body) = call(client.post(url(
                &h.base,
                connection,
                queue,
                "/take?count=3&timeout_ms=2000",
            )))
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body.as_array().unwrap().len(), 1, "{connection}: {body}");
            taken.push(body[0]["id"].as_str().unwrap().to_owned());
        }
        taken.sort();
        assert_eq!(taken, ["p0", "p1", "p2"], "{connection}");
    }
    support::delete_amqp_queues(&[h.queue.clone(), format!("{}.quorum", h.queue)]).await;
    h.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_ends_with_the_host() {
    let _shared = support::RABBIT.read().await;
    let h = host(|config| config.server.shutdown_grace_ms = 500).await;
    let waiting = tokio::spawn(
        h.client
            .post(url(&h.base, "local", "idle", "/take?timeout_ms=300000"))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    h.host.stop().await;
    let stopped = started.elapsed();
    assert!(
        stopped < Duration::from_secs(5),
        "stopping took {stopped:?} with a long-poll open"
    );
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the long-poll ended")
        .unwrap();
    // Either it answered with what it had (nothing), or the connection was closed.
    if let Ok(response) = answer {
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap(), json!([]));
    }
    support::delete_amqp_queues(&[h.queue.clone(), format!("{}.quorum", h.queue)]).await;
}

/// The CLI says what is wrong with its arguments, and exits non-zero, before or after it
/// reaches the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_bad_input_with_a_clear_message() {
    let _shared = support::RABBIT.read().await;
    let h = host(|_| {}).await;
    let wharf = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        command.args(args).arg("--url").arg(&h.base);
        command.stdin(std::process::Stdio::null());
        command.output().expect("running wharf")
    };
    let long = format!("local:{}", "q".repeat(256));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["publish", "no-colon", "x"], "connection:address"),
        (vec!["publish", &long, "x"], "255"),
        (vec!["publish", "nowhere:q", "x"], "nowhere"),
        (
            vec!["publish", "local:q", "x", "--header", "novalue"],
            "NAME=VALUE",
        ),
        (vec!["consume", "local:q", "--count", "0"], "count"),
        (vec!["consume", "local:q", "--timeout=-1"], "timeout"),
        (vec!["queue", "peek", "local:q", "--count", "5000"], "count"),
        (vec!["queue", "stats", &long], "255"),
        (vec!["queue", "purge", "nowhere:q"], "nowhere"),
        (
            vec!["publish", "local:q", "x", "--header", "a\u{1}b=v"],
            "header name",
        ),
        (vec!["publish", "local:q\u{7}", "x"], "control"),
    ];
    for (args, needle) in cases {
        let out = wharf(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(needle),
            "{args:?}: the error should mention `{needle}`: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // Arguments that are not UTF-8 are refused by name.
    {
        use std::os::unix::ffi::OsStrExt;
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("publish")
            .arg("local:q")
            .arg(std::ffi::OsStr::from_bytes(b"\xff\xfe"))
            .arg("--url")
            .arg(&h.base)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("UTF-8"),
            "{stderr}"
        );
    }
    // A good peek after all that: the queue is untouched.
    let out = wharf(&["queue", "peek", "local:q"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    support::delete_amqp_queues(&[h.queue.clone(), format!("{}.quorum", h.queue)]).await;
    h.host.stop().await;
}

/// The commands that work without a host (plugins, schema, serve) refuse bad files, bad
/// arguments and unreachable databases with an error that says what is wrong, and never show
/// a password.
#[test]
fn local_commands_refuse_bad_input_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("notes.wasm");
    std::fs::write(&text_file, "not a plugin").unwrap();
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "[server]\nlisten = 12\n").unwrap();
    let uppercase = support::plugin_path("uppercase");
    let (uppercase, text_file, bad_config) = (
        uppercase.to_str().unwrap(),
        text_file.to_str().unwrap(),
        bad_config.to_str().unwrap(),
    );
    let secret_db = "postgres://wharf:hunter2secret@127.0.0.1:1/db";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["plugin", "check", "/nonexistent/p.wasm"],
            "/nonexistent/p.wasm",
        ),
        (vec!["plugin", "check", text_file], "wasm"),
        (
            vec!["plugin", "run", uppercase, "--input", "{not json"],
            "input",
        ),
        (
            vec![
                "plugin",
                "run",
                uppercase,
                "--input",
                r#"{"payload": "x", "payload_base64": "eA=="}"#,
            ],
            "payload_base64",
        ),
        (vec!["user", "list", "--database", secret_db], "***"),
        (vec!["user", "list", "--database", "mysql://x"], "sqlite://"),
        (
            vec![
                "plugin",
                "install",
                uppercase,
                "--url",
                "http://127.0.0.1:9",
            ],
            "is `wharf serve` running?",
        ),
        (
            vec!["serve", "--config", "/nonexistent/wharf.toml"],
            "--config",
        ),
        (
            vec!["schema", "show", "--config", bad_config],
            "server.listen",
        ),
    ];
    for (args, needle) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(&args)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running wharf");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(needle),
            "{args:?}: the error should mention `{needle}`: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2secret"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn no_password_in_store_errors_or_debug() {
    let unreachable = "postgres://wharf:hunter2secret@127.0.0.1:1/db";
    let error = Store::open(unreachable).await.unwrap_err().to_string();
    assert!(!error.contains("hunter2secret"), "{error}");
    assert!(error.contains("***"), "{error}");
    let bad = Store::open("postgres://wharf:hunter2secret@[::1/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(!bad.contains("hunter2secret"), "{bad}");
    // A database of its own (this server trusts local connections, so the password is not
    // checked, but it is given).
    let db = TestDb::new(Backend::Postgres).await;
    let mut with_password = reqwest::Url::parse(&db.url).unwrap();
    with_password.set_password(Some("hunter2secret")).unwrap();
    let store = Store::open(with_password.as_str()).await.unwrap();
    let shown = format!("{store:?}");
    assert!(!shown.contains("hunter2secret"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
    store.close().await;
}

async fn kv_quota_holds_under_concurrent_writers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let limits = KvLimits {
        max_key_bytes: 64,
        max_value_bytes: 1_000,
        max_total_bytes: 2_000,
    };
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..24 {
        let store = store.clone();
        writers.spawn(async move {
            store
                .kv_set("racer", &format!("k{i:02}"), &[7u8; 300], &limits, 0)
                .await
        });
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(result) = writers.join_next().await {
        match result.unwrap() {
            Ok(Ok(())) => stored += 1,
            Ok(Err(reason)) => {
                assert!(
                    reason.contains("2000") || reason.contains("limit"),
                    "{reason}"
                );
                refused += 1
            }
            Err(e) => panic!("a kv write failed instead of waiting its turn: {e}"),
        }
    }
    // Each entry is 3 (key) + 300 (value) bytes: six fit in 2,000.
    assert_eq!((stored, refused), (6, 18));
}

on_every_backend!(kv_quota_holds_under_concurrent_writers);
