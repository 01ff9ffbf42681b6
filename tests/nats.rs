//! NATS end to end, against the machine's NATS server with JetStream (`./dev test` starts it;
//! `WHARF_TEST_NATS` names another): an independent `async-nats` client feeds a route and
//! reads its outputs in order; a failing route retries (a NAK with a delay) and dead-letters
//! with the `exception` headers; model events reach each subscription once and only the keys
//! it wants, while a plain core-NATS subscriber of the same subject sees them too; an RPC
//! through the API is answered by a route on NATS. Each test's streams carry a prefix of their
//! own and are deleted at the end.

#[macro_use]
mod support;

use futures::StreamExt as _;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Backend, TestDb};
use wharf::broker::nats::NatsConfig;
use wharf::config::{
    Config, ConnectionConfig, EventsConfig, PluginConfig, RetryConfig, RouteConfig,
};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A NATS connection whose streams are named with `prefix`.
fn nats(prefix: &str) -> ConnectionConfig {
    ConnectionConfig::Nats(Box::new(NatsConfig {
        url: support::nats_url(),
        stream_prefix: prefix.to_owned(),
        ack_wait_ms: 5_000,
        ..NatsConfig::default()
    }))
}

async fn jetstream() -> async_nats::jetstream::Context {
    let client = async_nats::connect(support::nats_url())
        .await
        .expect("NATS answers (./dev test starts it)");
    async_nats::jetstream::new(client)
}

/// Waits until every unit of the host runs (20 s at most).
async fn all_running(client: &reqwest::Client, base: &str) {
    for _ in 0..400 {
        let status = support::get_json(client, &format!("{base}/api/v1/status")).await;
        let units = status["units"].as_array().unwrap();
        if !units.is_empty() && units.iter().all(|u| u["state"] == "running") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the host's units did not all run within 20 s");
}

/// Reads `count` messages of the stream that holds `subject`, through a consumer of its own.
async fn read_stream(
    js: &async_nats::jetstream::Context,
    subject: &str,
    count: usize,
) -> Vec<async_nats::jetstream::Message> {
    let name = js
        .stream_by_subject(subject)
        .await
        .unwrap_or_else(|e| panic!("a stream holds {subject}: {e}"));
    let stream = js.get_stream(&name).await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "reader",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("reader".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while found.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{subject}: {} of {count} within 60 s",
            found.len()
        );
        let mut batch = consumer
            .batch()
            .max_messages(count - found.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            message.ack().await.unwrap();
            found.push(message);
        }
    }
    found
}

/// A route on NATS between two queues an independent client writes and reads: every message
/// once, upper-cased, in order; and a route whose plugin panics retries once and dead-letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_client_feeds_a_route_and_reads_its_outputs_in_order() {
    let prefix = unique("n");
    let q = unique("orders");
    let boom = unique("boom");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![
            RouteConfig {
                name: "upper".into(),
                from: format!("nats:{q}.in"),
                through: vec!["uppercase".into()],
                to: Some(format!("nats:{q}.out")),
                concurrency: 1,
                ..RouteConfig::default()
            },
            RouteConfig {
                name: "boom".into(),
                from: format!("nats:{boom}.in"),
                through: vec!["panicker".into()],
                to: Some(format!("nats:{boom}.out")),
                retry: RetryConfig {
                    max: 1,
                    backoff_ms: 200,
                    max_backoff_ms: 200,
                },
                ..RouteConfig::default()
            },
        ],
        ..Config::default()
    };
    config.connections.insert("nats".into(), nats(&prefix));
    config.plugins.insert(
        "panicker".into(),
        PluginConfig {
            path: support::plugin_path("panicker"),
            ..PluginConfig::default()
        },
    );
    let (host, _) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;

    let js = jetstream().await;
    let total = 300;
    for i in 0..total {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("n", i.to_string().as_str());
        js.publish_with_headers(format!("{q}.in"), headers, format!("order {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let outputs = read_stream(&js, &format!("{q}.out"), total).await;
    for (i, message) in outputs.iter().enumerate() {
        assert_eq!(message.payload, format!("ORDER {i}").as_bytes(), "in order");
        assert_eq!(
            message
                .headers
                .as_ref()
                .and_then(|h| h.get("n"))
                .map(|v| v.as_str()),
            Some(i.to_string().as_str()),
            "the other client's header arrives"
        );
    }

    js.publish(format!("{boom}.in"), "bad".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let dead = read_stream(&js, &format!("{boom}.in.dead"), 1).await;
    let headers = dead[0].headers.clone().expect("dead letters carry headers");
    assert_eq!(dead[0].payload, "bad".as_bytes());
    assert_eq!(
        headers.get("exception_name").map(|v| v.as_str()),
        Some("Trap"),
        "{headers:?}"
    );
    assert_eq!(
        headers.get("x-wharf-attempts").map(|v| v.as_str()),
        Some("2"),
        "tried twice: {headers:?}"
    );

    // The Queues page's figures for the input: nothing left, nothing in flight.
    let depth = support::get_json(&client, &format!("{base}/api/v1/queues/nats/{q}.in")).await;
    assert_eq!(depth["ready"], 0, "{depth}");
    assert_eq!(depth["in_flight"], 0, "{depth}");
    host.stop().await;
    support::delete_nats_streams(&prefix).await;
}

/// Events on NATS: two services subscribed to `Booking.*` each get both Booking events and no
/// `Order.created`, and a plain core-NATS subscriber of `{exchange}.Booking.*` sees the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_each_get_every_booking_event_on_nats() {
    let prefix = unique("e");
    let exchange = unique("events");
    let (billing, audit) = (unique("billing"), unique("audit"));
    let db = TestDb::new(Backend::Sqlite).await;
    let subscriptions = [(&billing, "billing.out"), (&audit, "audit.out")]
        .into_iter()
        .map(|(service, to)| {
            serde_json::from_value(json!({
                "name": format!("{service}-bookings"),
                "service": service,
                "pattern": "Booking.*",
                "through": ["uppercase"],
                "to": format!("local:{to}"),
            }))
            .unwrap()
        })
        .collect();
    let mut config = Config {
        routes: Vec::new(),
        events: EventsConfig {
            connection: "nats".into(),
            exchange: exchange.clone(),
        },
        subscriptions,
        ..Config::default()
    };
    config.connections.insert("nats".into(), nats(&prefix));
    let (host, broker) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;

    let plain = async_nats::connect(support::nats_url()).await.unwrap();
    let mut watcher = plain
        .subscribe(format!("{exchange}.Booking.*"))
        .await
        .unwrap();
    plain.flush().await.unwrap();

    for (model, event) in [
        ("shop.models.Booking", "created"),
        ("Booking", "updated"),
        ("shop.models.Order", "created"),
    ] {
        let answer = client
            .post(format!("{base}/api/v1/events/{model}/{event}"))
            .json(&json!({ "model": model, "event": event }))
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    for queue in ["billing.out", "audit.out"] {
        let mut topics: Vec<String> = Vec::new();
        for _ in 0..400 {
            let found = broker.peek(queue, 10, 1 << 20).await.unwrap();
            topics = found.iter().map(|m| m.topic.clone()).collect();
            if topics.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut all: Vec<String> = broker
            .peek(queue, 10, 1 << 20)
            .await
            .unwrap()
            .iter()
            .map(|m| m.topic.clone())
            .collect();
        all.sort();
        assert_eq!(
            all,
            vec!["Booking.created".to_owned(), "Booking.updated".to_owned()],
            "{queue} (first seen {topics:?})"
        );
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .expect("the plain subscriber sees the events")
            .unwrap();
        seen.push(message.subject.to_string());
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            format!("{exchange}.Booking.created"),
            format!("{exchange}.Booking.updated")
        ]
    );
    host.stop().await;
    support::delete_nats_streams(&prefix).await;
}

/// A call through the API to a queue on NATS is answered by the route that reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_over_nats_gets_its_reply() {
    let prefix = unique("r");
    let q = unique("lookup");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![RouteConfig {
            name: "lookup".into(),
            from: format!("nats:{q}"),
            through: vec!["echo".into()],
            concurrency: 8,
            ..RouteConfig::default()
        }],
        ..Config::default()
    };
    config.connections.insert("nats".into(), nats(&prefix));
    let (host, _) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;
    let replies: Vec<Value> = futures::stream::iter(0..50)
        .map(|i| {
            let (client, url) = (
                client.clone(),
                format!("{base}/api/v1/rpc/nats/{q}?timeout_ms=30000"),
            );
            async move {
                let answer = client
                    .post(&url)
                    .json(&json!({ "payload": format!("call {i}") }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 200);
                answer.json::<Value>().await.unwrap()
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let mut payloads: Vec<String> = replies
        .iter()
        .map(|r| r["payload"].as_str().unwrap().to_owned())
        .collect();
    payloads.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("call {i}")).collect();
    expected.sort();
    assert_eq!(payloads, expected, "each call got its own reply");
    host.stop().await;
    support::delete_nats_streams(&prefix).await;
}

/// A NATS server of the test's own that signs in by `auth` (nats-server's flags), on a free
/// port; killed when dropped.
struct AuthServer {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    async fn start(auth: &[&str]) -> AuthServer {
        let port = support::free_port();
        let dir = tempfile::tempdir().unwrap();
        let binary = if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .args(auth)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs (./dev test installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        AuthServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Servers that sign in by user and password, and by token: the right credentials carry a
/// message there and back, wrong ones make the connection test fail without showing them,
/// and a definition shown back hides them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_password_and_token_sign_in() {
    use wharf::broker::Transport as _;
    let db = TestDb::new(Backend::Sqlite).await;
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let by_password = AuthServer::start(&["--user", "wharf", "--pass", "s3cret-pw"]).await;
    let by_token = AuthServer::start(&["--auth", "t0ken-value"]).await;
    let with =
        |url: &str, user: Option<&str>, password: Option<&str>, token: Option<&str>| NatsConfig {
            url: url.to_owned(),
            user: user.map(str::to_owned),
            password: password.map(str::to_owned),
            token: token.map(str::to_owned),
            timeout_ms: 2_000,
            ..NatsConfig::default()
        };
    for (good, bad, secret) in [
        (
            with(&by_password.url, Some("wharf"), Some("s3cret-pw"), None),
            with(&by_password.url, Some("wharf"), Some("wrong-pw"), None),
            "s3cret-pw",
        ),
        (
            with(&by_token.url, None, None, Some("t0ken-value")),
            with(&by_token.url, None, None, Some("wrong-token")),
            "t0ken-value",
        ),
    ] {
        let spec = ConnectionConfig::Nats(Box::new(good.clone()));
        spec.check("").unwrap();
        let shown = serde_json::to_string(&spec.redacted()).unwrap();
        assert!(!shown.contains(secret) && shown.contains("***"), "{shown}");
        let tested = spec.test("signed", &store).await;
        assert!(tested.ok, "{}", tested.detail);

        let broker = wharf::broker::nats::NatsBroker::start("signed", good)
            .await
            .unwrap();
        broker.started().await.unwrap();
        let mut msg = wharf::message::Message::new("", b"signed in".to_vec());
        msg.id = "m-1".into();
        broker.send("signed.in", msg).await.unwrap();
        let mut consumer = broker
            .consume("signed.in", wharf::broker::ConsumeOptions::new(1))
            .await
            .unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a delivery")
            .unwrap();
        assert_eq!(delivery.message.payload, b"signed in");
        delivery.ack.ack().await.unwrap();
        consumer.close().await;
        broker.close().await;

        let refused = ConnectionConfig::Nats(Box::new(bad))
            .test("signed", &store)
            .await;
        assert!(!refused.ok, "wrong credentials were let in");
        assert!(
            !refused.detail.contains("wrong-pw") && !refused.detail.contains("wrong-token"),
            "{}",
            refused.detail
        );
    }
}
