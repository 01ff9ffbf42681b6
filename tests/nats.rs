//! NATS end to end, against the machine's NATS server with JetStream (`./dev test` starts it;
//! `WHARF_TEST_NATS` names another): an independent `async-nats` client feeds a route and
//! reads its outputs in order; a failing route retries (a NAK with a delay) and dead-letters
//! with the `exception` headers; model events reach each subscription once and only the keys
//! it wants, while a plain core-NATS subscriber of the same subject sees them too; an RPC
//! through the API is answered by a route on NATS; a server killed and started again twice
//! mid-stream loses nothing; user and password, token, and NKey over TLS sign in. Each test's
//! streams on the machine's server carry a prefix of their own and are deleted at the end.

#[macro_use]
mod support;

use futures::StreamExt as _;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Backend, TestDb, all_running, unique};
use wharf::broker::nats::NatsConfig;
use wharf::config::{
    Config, ConnectionConfig, EventsConfig, PluginConfig, RetryConfig, RouteConfig,
};

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
    let subscriptions = support::events::booking_subscriptions(&billing, &audit);
    let mut config = Config {
        routes: Vec::new(),
        events: EventsConfig {
            connection: "nats".into(),
            exchange: exchange.clone(),
            prefix: None,
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

    support::events::publish_three(&client, &base).await;
    support::events::each_service_got_the_booking_events(&broker).await;
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

/// Calls through the API to a queue on NATS are answered by the route that reads it, and so
/// is an independent client's request naming its own NATS inbox as the reply subject.
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
    support::fifty_calls_each_get_their_own_reply(&client, &base, &format!("nats:{q}")).await;

    // An independent client asks with a reply subject of its own (an inbox, as NATS's
    // request/reply uses) and its correlation id: the answer comes to that inbox as a core
    // message, and no stream keeps it.
    let nc = async_nats::connect(support::nats_url()).await.unwrap();
    let inbox = nc.new_inbox();
    let mut answers = nc.subscribe(inbox.clone()).await.unwrap();
    let js = async_nats::jetstream::new(nc.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("x-wharf-reply-to", inbox.as_str());
    headers.insert("x-wharf-correlation-id", "ask-1");
    js.publish_with_headers(q.clone(), headers, "from a plain client".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(15), answers.next())
        .await
        .expect("the answer reaches the inbox")
        .unwrap();
    assert_eq!(answer.payload, "from a plain client".as_bytes());
    assert_eq!(
        answer
            .headers
            .as_ref()
            .and_then(|h| h.get("x-wharf-correlation-id"))
            .map(|v| v.as_str()),
        Some("ask-1"),
        "{:?}",
        answer.headers
    );
    assert!(
        js.stream_by_subject(inbox.clone()).await.is_err(),
        "no stream keeps the inbox's answers"
    );
    host.stop().await;
    support::delete_nats_streams(&prefix).await;
}

/// A NATS server of the test's own with JetStream, on a free port and a store of its own,
/// started with `args` (nats-server's flags: how it signs in); killed when dropped.
struct AuthServer {
    child: std::process::Child,
    port: u16,
    args: Vec<String>,
    url: String,
    dir: tempfile::TempDir,
}

impl AuthServer {
    async fn start(auth: &[&str]) -> AuthServer {
        let port = support::free_port();
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = auth.iter().map(|a| a.to_string()).collect();
        let child = Self::spawn(port, dir.path(), &args).await;
        AuthServer {
            child,
            port,
            args,
            url: format!("nats://127.0.0.1:{port}"),
            dir,
        }
    }

    async fn spawn(port: u16, dir: &std::path::Path, args: &[String]) -> std::process::Child {
        let binary = if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let mut child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs (./dev test installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nats-server did not listen on {port} within 10 s");
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and starts it again on the same
    /// port and store.
    async fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(self.port, self.dir.path(), &self.args).await;
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// NATS killed and started again twice while a route moves a stream of messages between two
/// of its queues: the host and an independent client reconnect by themselves, and every
/// message the client's sends were confirmed for arrives, upper-cased (some may arrive twice:
/// the route sent them before the server went down and could not ack their inputs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_server_restarts_mid_stream() {
    let mut server = AuthServer::start(&[]).await;
    let q = unique("restart");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![RouteConfig {
            name: "upper".into(),
            from: format!("nats:{q}.in"),
            through: vec!["uppercase".into()],
            to: Some(format!("nats:{q}.out")),
            concurrency: 4,
            ..RouteConfig::default()
        }],
        ..Config::default()
    };
    config.connections.insert(
        "nats".into(),
        ConnectionConfig::Nats(Box::new(NatsConfig {
            url: server.url.clone(),
            ack_wait_ms: 3_000,
            timeout_ms: 2_000,
            ..NatsConfig::default()
        })),
    );
    let (host, _) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;

    let nc = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(&server.url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nc);
    // Sends message `i` until the stream confirms it (a send cut off by the restart may have
    // been stored: the route then sees it twice, which the check allows).
    let send = |i: usize| {
        let js = js.clone();
        let subject = format!("{q}.in");
        async move {
            let started = std::time::Instant::now();
            loop {
                let sent = match js.publish(subject.clone(), format!("m{i}").into()).await {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match sent {
                    Ok(()) => return,
                    Err(error) => {
                        assert!(
                            started.elapsed() < Duration::from_secs(60),
                            "message {i} was never stored: {error}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    };
    let (batches, per_batch) = (3, 100);
    for batch in 0..batches {
        for i in batch * per_batch..(batch + 1) * per_batch {
            send(i).await;
        }
        if batch + 1 < batches {
            // Killed while the route holds some of the batch and has sent others.
            server.restart().await;
        }
    }
    let total = batches * per_batch;
    let mut seen = std::collections::BTreeSet::new();
    let mut copies = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let stream = loop {
        match js.stream_by_subject(format!("{q}.out")).await {
            Ok(name) => break js.get_stream(&name).await.unwrap(),
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no output stream: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let reader: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "reader",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("reader".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    while seen.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} arrived within 120 s",
            seen.len()
        );
        let Ok(mut batch) = reader
            .batch()
            .max_messages(total)
            .expires(Duration::from_secs(1))
            .messages()
            .await
        else {
            continue;
        };
        while let Some(Ok(message)) = batch.next().await {
            let _ = message.ack().await;
            copies += 1;
            seen.insert(String::from_utf8(message.payload.to_vec()).unwrap());
        }
    }
    let expected: std::collections::BTreeSet<String> =
        (0..total).map(|i| format!("M{i}")).collect();
    assert_eq!(seen, expected, "every message, upper-cased");
    // At least once: what the route sent and could not ack before a kill (and acks the
    // killed server had not written down) come again, each at most once more.
    assert!(copies <= 2 * total, "{copies} copies of {total}");
    let status = support::get_json(&client, &format!("{base}/api/v1/status")).await;
    let nats = status["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "nats")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(nats["state"], "up", "{status}");
    host.stop().await;
}

/// Sends `payload` to `address` through a NATS connection opened from `config` and takes it
/// back: its credentials carry a message there and back.
async fn round_trip(name: &str, config: NatsConfig, address: &str, payload: &[u8]) {
    use wharf::broker::Transport as _;
    let broker = wharf::broker::nats::NatsBroker::start(name, config)
        .await
        .unwrap();
    broker.started().await.unwrap();
    broker
        .send(address, wharf::message::Message::new("", payload.to_vec()))
        .await
        .unwrap();
    let mut consumer = broker
        .consume(address, wharf::broker::ConsumeOptions::new(1))
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery")
        .unwrap();
    assert_eq!(delivery.message.payload, payload);
    delivery.ack.ack().await.unwrap();
    consumer.close().await;
    broker.close().await;
}

/// Servers that sign in by user and password, and by token: the right credentials carry a
/// message there and back, wrong ones make the connection test fail without showing them,
/// and a definition shown back hides them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_password_and_token_sign_in() {
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

        round_trip("signed", good, "signed.in", b"signed in").await;

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

/// A server on TLS that asks for a client certificate and signs users in by NKey: the right
/// seed with the client's certificate carries a message there and back; another seed, or no
/// certificate, is refused, and the seed is never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_sign_in_over_tls_with_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    support::make_certificates(certs.path());
    let at = |file: &str| certs.path().join(file);
    let user = nkeys::KeyPair::new_user();
    let conf = certs.path().join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\nauthorization {{\n  users = [ {{ nkey: \"{}\" }} ]\n}}\n",
            at("server.pem").display(),
            at("server.key").display(),
            at("ca.pem").display(),
            user.public_key()
        ),
    )
    .unwrap();
    let server = AuthServer::start(&["-c", conf.to_str().unwrap()]).await;
    let url = server.url.replace("nats://127.0.0.1", "tls://localhost");
    let with = |seed: String, cert: bool| NatsConfig {
        url: url.clone(),
        nkey: Some(seed),
        tls: Some(wharf::tls::TlsConfig {
            ca: Some(at("ca.pem")),
            cert: cert.then(|| at("client.pem")),
            key: cert.then(|| at("client.key")),
            pkcs12: None,
            pkcs12_password: String::new(),
        }),
        stream_prefix: unique("k"),
        timeout_ms: 2_000,
        ..NatsConfig::default()
    };
    let seed = user.seed().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let spec = ConnectionConfig::Nats(Box::new(with(seed.clone(), true)));
    spec.check("").unwrap();
    let shown = serde_json::to_string(&spec.redacted()).unwrap();
    assert!(!shown.contains(&seed) && shown.contains("***"), "{shown}");
    let tested = spec.test("nkey", &store).await;
    assert!(tested.ok, "{}", tested.detail);

    round_trip(
        "nkey",
        with(seed.clone(), true),
        "secure.in",
        b"signed by nkey",
    )
    .await;

    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    for (config, why) in [
        (with(stranger.clone(), true), "another user's seed"),
        (with(seed.clone(), false), "no client certificate"),
    ] {
        let refused = ConnectionConfig::Nats(Box::new(config))
            .test("nkey", &store)
            .await;
        assert!(!refused.ok, "{why} was let in");
        assert!(
            !refused.detail.contains(&seed) && !refused.detail.contains(&stranger),
            "{}",
            refused.detail
        );
    }
}

/// A JWT of NATS's decentralised auth: `claims` (with `nats` its own part) signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = json!({
        "jti": unique("jti"),
        "iat": wharf::message::now_ms() / 1000,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", b64.encode(claims.to_string()));
    let signature = b64.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

/// A user's `.creds` file, as `nsc` writes it: the user's JWT signed by `account`, and its seed.
fn creds_file(dir: &std::path::Path, name: &str, account: &nkeys::KeyPair) -> std::path::PathBuf {
    let user = nkeys::KeyPair::new_user();
    let jwt = nats_jwt(
        account,
        &user.public_key(),
        name,
        json!({ "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2 }),
    );
    let path = dir.join(format!("{name}.creds"));
    std::fs::write(
        &path,
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    path
}

/// A server run by an operator (decentralised auth, its account preloaded): a user's `.creds`
/// file signs in and carries a message there and back through JetStream; a user of an account
/// the server does not know is refused; the definition shows the file's path, never its
/// contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_signs_in_to_a_server_run_by_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "operator",
        json!({ "type": "operator", "version": 2 }),
    );
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "wharf",
        json!({
            "limits": { "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                        "wildcards": true, "conn": -1, "leaf": -1, "mem_storage": -1,
                        "disk_storage": -1, "streams": -1, "consumer": -1 },
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account",
            "version": 2,
        }),
    );
    // JetStream in operator mode needs a system account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = nats_jwt(
        &operator,
        &system.public_key(),
        "SYS",
        json!({ "type": "account", "version": 2 }),
    );
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {system}\nresolver: MEMORY\nresolver_preload: {{\n  {account}: \"{account_jwt}\"\n  {system}: \"{system_jwt}\"\n}}\n",
            account = account.public_key(),
            system = system.public_key(),
        ),
    )
    .unwrap();
    let server = AuthServer::start(&["-c", conf.to_str().unwrap()]).await;
    let creds = creds_file(dir.path(), "service", &account);
    let stranger = creds_file(dir.path(), "stranger", &nkeys::KeyPair::new_account());
    let with = |creds: &std::path::Path| NatsConfig {
        url: server.url.clone(),
        creds_file: Some(creds.to_owned()),
        timeout_ms: 2_000,
        ..NatsConfig::default()
    };
    let db = TestDb::new(Backend::Sqlite).await;
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let spec = ConnectionConfig::Nats(Box::new(with(&creds)));
    spec.check("").unwrap();
    let seed = std::fs::read_to_string(&creds).unwrap();
    let seed = seed
        .lines()
        .find(|line| line.starts_with("SU"))
        .expect("a user seed");
    let shown = serde_json::to_string(&spec.redacted()).unwrap();
    assert!(
        shown.contains("service.creds") && !shown.contains(seed),
        "{shown}"
    );
    let tested = spec.test("creds", &store).await;
    assert!(tested.ok, "{}", tested.detail);

    round_trip("creds", with(&creds), "signed.in", b"signed by creds").await;

    let refused = ConnectionConfig::Nats(Box::new(with(&stranger)))
        .test("creds", &store)
        .await;
    assert!(!refused.ok, "a user of an unknown account was let in");
    assert!(!refused.detail.contains(seed), "{}", refused.detail);
}
