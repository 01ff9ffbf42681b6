//! HTTP as a transport, end to end: ingress at `/ingress/{connection}/{path}` and egress to an
//! independent HTTP server (a plain axum app in this file, no Wharf code), in one route.
//! While the endpoint answers 503 the route retries; when it answers 400 the input is
//! dead-lettered with the status and body; a route that replies answers the ingress request
//! with its reply (or its failure); tokens, anonymous ingress, methods and unknown paths get
//! the answers they should; RPC to an HTTP endpoint returns its answer.

#[macro_use]
mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Backend, TestDb, client_with_token, local_token, start_host};
use wharf::broker::http::HttpConfig;
use wharf::config::{Config, ConnectionConfig, PluginConfig, RetryConfig, RouteConfig};

on_every_backend!(ingress_and_egress_in_one_route);

/// What the endpoint saw: path, headers and body of each request, and the status it answered.
type Seen = Arc<Mutex<Vec<(String, HeaderMap, Bytes, u16)>>>;

#[derive(Clone)]
struct Endpoint {
    seen: Seen,
    /// How many more requests to `/out` are answered 503.
    failures_left: Arc<AtomicU32>,
}

impl Endpoint {
    /// The requests to `path` so far: headers, body and the status answered, in order.
    fn requests_to(&self, path: &str) -> Vec<(HeaderMap, Bytes, u16)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, ..)| p == path)
            .map(|(_, headers, body, status)| (headers.clone(), body.clone(), *status))
            .collect()
    }
}

/// Waits (20 s at most) for dead letters in `web:{queue}` and returns them, as the queue API
/// shows them.
async fn dead_letters(client: &reqwest::Client, base: &str, queue: &str) -> Value {
    let url = format!("{base}/api/v1/queues/web/{queue}/messages");
    for _ in 0..400 {
        let dead: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        if dead.as_array().is_some_and(|m| !m.is_empty()) {
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing arrived in web:{queue} within 20 s");
}

/// The independent endpoint: `/out` answers 503 while `failures_left` lasts, then 200;
/// `/bad` answers 400 with a reason; `/upper` answers with the body upper-cased.
async fn endpoint(
    State(e): State<Endpoint>,
    method: axum::http::Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let path = uri.path().to_owned();
    // What the test reads of the request's line: its method and query.
    headers.insert("x-seen-method", method.as_str().parse().unwrap());
    if let Some(query) = uri.query() {
        headers.insert("x-seen-query", query.parse().unwrap());
    }
    let (status, answer) = match path.as_str() {
        "/out" => {
            let failing = e
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy, try later".to_owned(),
                )
            } else {
                (StatusCode::OK, "taken".to_owned())
            }
        }
        "/bad" => (StatusCode::BAD_REQUEST, "no such order".to_owned()),
        events if events.starts_with("/events/") => (StatusCode::OK, "event taken".to_owned()),
        "/moved" => (StatusCode::MOVED_PERMANENTLY, "see /out".to_owned()),
        "/upper" | "/base/upper" => (
            StatusCode::OK,
            String::from_utf8_lossy(&body).to_uppercase(),
        ),
        _ => (StatusCode::NOT_FOUND, "nothing here".to_owned()),
    };
    e.seen
        .lock()
        .unwrap()
        .push((path, headers, body, status.as_u16()));
    if status == StatusCode::MOVED_PERMANENTLY {
        return (status, [(axum::http::header::LOCATION, "/out")], answer).into_response();
    }
    (status, answer).into_response()
}

async fn start_endpoint() -> (std::net::SocketAddr, Endpoint) {
    let state = Endpoint {
        seen: Seen::default(),
        failures_left: Arc::new(AtomicU32::new(2)),
    };
    let app = axum::Router::new()
        .fallback(endpoint)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

fn route(name: &str, from: &str, through: &[&str], to: Option<&str>) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        from: from.into(),
        through: through.iter().map(|s| (*s).to_owned()).collect(),
        to: to.map(str::to_owned),
        retry: RetryConfig {
            max: 5,
            backoff_ms: 50,
            max_backoff_ms: 200,
        },
        ..RouteConfig::default()
    }
}

/// Waits until `check` holds (20 s at most).
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}");
}

async fn ingress_and_egress_in_one_route(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (endpoint_addr, seen) = start_endpoint().await;
    let mut config = Config::default();
    config.connections.insert(
        "web".into(),
        ConnectionConfig::Http(Box::new(HttpConfig {
            base_url: Some(format!("http://{endpoint_addr}/")),
            timeout_ms: 2_000,
            ingress_methods: vec!["POST".into(), "GET".into()],
            headers: [("x-sent-by".to_owned(), "wharf-test".to_owned())].into(),
            ..HttpConfig::default()
        })),
    );
    config.connections.insert(
        "leaky".into(),
        ConnectionConfig::Http(Box::new(HttpConfig {
            base_url: Some(format!(
                "http://user:hunter2@127.0.0.1:{}/",
                support::free_port()
            )),
            timeout_ms: 2_000,
            ..HttpConfig::default()
        })),
    );
    config.connections.insert(
        "open".into(),
        ConnectionConfig::Http(Box::new(HttpConfig {
            anonymous: true,
            ..HttpConfig::default()
        })),
    );
    let mut boom = route("boom", "web:boom", &["panicker", "echo"], None);
    boom.retry.max = 0;
    config.routes = vec![
        route("shout", "web:orders", &["uppercase"], Some("web:out")),
        route("refused", "web:refunds", &[], Some("web:bad")),
        route("moved", "web:moving", &[], Some("web:moved")),
        route("answer", "web:ask", &["uppercase", "echo"], None),
        boom,
        route("anon", "open:in", &[], Some("local:anon.out")),
    ];
    config.plugins.insert(
        "panicker".into(),
        PluginConfig {
            path: support::plugin_path("panicker"),
            ..Default::default()
        },
    );
    let (host, broker) = start_host(&db, config).await;
    let base = format!("http://{}", host.addr);
    let client = client_with_token(&local_token(host.addr));
    let anonymous = reqwest::Client::new();

    // Without a token: 401, and nothing is taken.
    let refused = anonymous
        .post(format!("{base}/ingress/web/orders"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Ingress → uppercase → egress; the endpoint answers 503 twice, then 200.
    let accepted = client
        .post(format!("{base}/ingress/web/orders?source=test"))
        .header("content-type", "text/plain")
        .header("x-tenant", "acme")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    assert!(
        accepted["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{accepted}"
    );
    let outs = || seen.requests_to("/out");
    until("the endpoint to take the output", || {
        outs().iter().any(|(.., status)| *status == 200)
    })
    .await;
    let outs = outs();
    assert_eq!(
        outs.iter().map(|(.., s)| *s).collect::<Vec<_>>(),
        vec![503, 503, 200],
        "retried while the endpoint answered 503, then confirmed"
    );
    for (headers, body, _) in &outs {
        assert_eq!(&body[..], b"HELLO");
        assert_eq!(headers["content-type"], "text/plain");
        assert_eq!(
            headers["x-sent-by"], "wharf-test",
            "the connection's headers"
        );
        assert_eq!(headers["x-tenant"], "acme", "the message's headers");
        assert_eq!(headers["query.source"], "test", "the ingress query");
    }
    // Every attempt sends the same output id, so the endpoint can deduplicate.
    let ids: std::collections::HashSet<_> = outs
        .iter()
        .map(|(headers, ..)| headers["x-wharf-id"].clone())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");

    // 400 is final: one request, and the input in the route's dead letters saying why.
    let accepted = client
        .post(format!("{base}/ingress/web/refunds"))
        .body("refund 7")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let dead = dead_letters(&client, &base, "refunds.dead").await;
    let letter = &dead[0];
    assert_eq!(letter["payload"], "refund 7", "{dead}");
    assert_eq!(
        letter["headers"]["exception_name"], "HttpClientError",
        "{letter}"
    );
    let exception = letter["headers"]["exception"].as_str().unwrap();
    assert!(exception.contains("400"), "{exception}");
    assert!(exception.contains("no such order"), "{exception}");
    assert_eq!(seen.requests_to("/bad").len(), 1, "a 400 is not retried");

    // A redirect is not followed (a POST would become a bodiless GET): it is dead-lettered.
    let accepted = client
        .post(format!("{base}/ingress/web/moving"))
        .body("going")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let dead = dead_letters(&client, &base, "moving.dead").await;
    assert_eq!(
        dead[0]["headers"]["exception_name"], "HttpRedirect",
        "{dead}"
    );
    assert_eq!(dead[0]["payload"], "going", "{dead}");
    assert_eq!(
        seen.requests_to("/out").len(),
        3,
        "the redirect to /out was not followed"
    );

    // An address cannot climb out of the base URL, and a password in it is never shown.
    let climbing = client
        .post(format!("{base}/api/v1/rpc/web/x%2F..%2Fadmin"))
        .json(&json!({ "payload": "up" }))
        .send()
        .await
        .unwrap();
    assert_eq!(climbing.status(), 400);
    let refused = client
        .post(format!("{base}/api/v1/rpc/leaky/x?timeout_ms=5000"))
        .json(&json!({ "payload": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let refused = refused.text().await.unwrap();
    assert!(
        refused.contains("cannot connect") && !refused.contains("hunter2"),
        "{refused}"
    );

    // A route that replies answers the request itself.
    let answer = client
        .post(format!("{base}/ingress/web/ask"))
        .header("content-type", "text/plain")
        .header("set-cookie", "wharf_session=forged")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().contains_key("x-correlation-id"));
    assert!(
        !answer.headers().contains_key("set-cookie"),
        "a reply sets no cookie on the host's origin"
    );
    assert_eq!(answer.text().await.unwrap(), "HELLO");

    // A failing one answers 502 with the exception headers, at once.
    let answer = client
        .post(format!("{base}/ingress/web/boom"))
        .body("panic")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 502);
    assert_eq!(answer.headers()["exception_name"], "Trap");
    assert_eq!(answer.headers()["exception_type"], "plugin");

    // Methods: GET where configured, others 405 naming what is taken.
    let got = client
        .get(format!("{base}/ingress/web/orders?q=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 202);
    let put = client
        .put(format!("{base}/ingress/web/orders"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "POST, GET");

    // A path no route consumes from, and a connection that is not http: 404.
    for path in ["web/no.route.here", "local/demo.in", "nothing/at.all"] {
        let answer = client
            .post(format!("{base}/ingress/{path}"))
            .body("lost?")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{body}");
        // Nothing named: not the path tried, not the connection, not another queue.
        assert_eq!(
            body["error"]["message"], "nothing takes messages at this address",
            "{body}"
        );
    }
    // The path is checked before the body is read: a request that promises 100 MB to an
    // unknown path is answered at once, its body never sent.
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(host.addr).await.unwrap();
        let token = support::local_token(host.addr);
        stream
            .write_all(
                format!(
                    "POST /ingress/web/no.route.here HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100000000\r\n\r\n",
                    token.trim()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut head = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head))
            .await
            .expect("answered without the body")
            .unwrap();
        let head = String::from_utf8_lossy(&head[..read]);
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    }
    // An id a caller chooses is kept, and the message says who sent it (whatever the caller
    // claims): a route's inbox keys ids by their source, so another caller choosing the same
    // id first cannot make this one a duplicate.
    let before = seen.requests_to("/out").len();
    let chosen: Value = client
        .post(format!("{base}/ingress/web/orders"))
        .header("x-wharf-id", "order-17")
        .header("x-wharf-source", "token:someone-else")
        .body("x")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(chosen["id"], "order-17");
    until("the chosen id's message at /out", || {
        seen.requests_to("/out").len() > before
    })
    .await;
    let (headers, ..) = seen.requests_to("/out").pop().unwrap();
    let source = headers["x-wharf-source"].to_str().unwrap().to_owned();
    assert!(
        source.starts_with("token:") && source != "token:someone-else",
        "{source}"
    );

    // Anonymous ingress where the connection says so; headers and query reach the message.
    let accepted = anonymous
        .post(format!("{base}/ingress/open/in?k=v"))
        .header("x-custom", "yes")
        .header("x-reply-to", "somewhere.else")
        .header("x-http-method", "PUT")
        .header("content-type", "application/json")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let taken = support::arrived(&broker, "anon.out").await;
    // An anonymous caller's source is its address.
    assert!(
        matches!(
            taken[0].header("x-wharf-source"),
            Some(wharf::message::HeaderValue::Text(source)) if source.starts_with("anonymous:127.0.0.1")
        ),
        "{:?}",
        taken[0].headers
    );
    let msg = &taken[0];
    assert_eq!(msg.payload, br#"{"n":1}"#);
    assert_eq!(msg.content_type.as_deref(), Some("application/json"));
    assert_eq!(msg.topic, "in");
    let text = |name: &str| match msg.header(name) {
        Some(wharf::message::HeaderValue::Text(t)) => t.clone(),
        other => panic!("header {name}: {other:?}"),
    };
    assert_eq!(text("x-custom"), "yes");
    assert_eq!(text("query.k"), "v");
    assert_eq!(text("x-http-request-method"), "POST");
    assert_eq!(
        msg.reply_to, None,
        "an anonymous caller does not pick where replies go"
    );
    assert!(msg.header("x-http-method").is_none());

    // RPC to an HTTP endpoint: the answer is the reply.
    let reply: Value = client
        .post(format!("{base}/api/v1/rpc/web/upper?timeout_ms=5000"))
        .json(&json!({ "payload": "abc" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["payload"], "ABC", "{reply}");
    assert_eq!(reply["headers"]["http-status"], 200, "{reply}");
    // An endpoint's 4xx is the call's error: 502 with its status and body.
    let failed = client
        .post(format!("{base}/api/v1/rpc/web/bad"))
        .json(&json!({ "payload": "abc" }))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    let failed: Value = failed.json().await.unwrap();
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such order"),
        "{failed}"
    );

    // /metrics counts both sides.
    let metrics = support::scrape(host.addr).await;
    for line in [
        r#"wharf_http_ingress_requests_total{connection="web",status="202"}"#,
        r#"wharf_http_egress_requests_total{connection="web",status="503"}"#,
        r#"wharf_http_egress_requests_total{connection="web",status="200"}"#,
        r#"wharf_rpc_calls_total{outcome="reply"}"#,
    ] {
        assert!(metrics.contains(line), "{line} in /metrics");
    }
    host.stop().await;
}

/// What ingress accepted is held in the database: with its route stopped, it waits there
/// through a restart of the host, and the route takes it once started again. A body over
/// the routes' limit is refused (413) rather than held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_ingress_survives_a_restart() {
    let db = TestDb::new(Backend::Sqlite).await;
    let config = || {
        let mut config = Config::default();
        config.connections.insert(
            "web".into(),
            ConnectionConfig::Http(Box::new(HttpConfig {
                anonymous: true,
                ..HttpConfig::default()
            })),
        );
        config.routes = vec![route(
            "later",
            "web:later",
            &["uppercase"],
            Some("local:later.out"),
        )];
        config
    };
    let (host, _) = start_host(&db, config()).await;
    let client = client_with_token(&local_token(host.addr));
    let base = format!("http://{}", host.addr);
    let stopped = client
        .post(format!("{base}/api/v1/units/later/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), 200, "{}", stopped.text().await.unwrap());
    let accepted = reqwest::Client::new()
        .post(format!("{base}/ingress/web/later"))
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let id = accepted.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let too_large = reqwest::Client::new()
        .post(format!("{base}/ingress/web/later"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(
        too_large.status(),
        413,
        "over server.max_message_bytes (1,024 here)"
    );
    let depth = support::get_json(&client, &format!("{base}/api/v1/queues/web/later")).await;
    assert_eq!(
        depth["depth"], 1,
        "held while the route is stopped: {depth}"
    );
    host.stop().await;

    let (host, broker) = start_host(&db, config()).await;
    let client = client_with_token(&local_token(host.addr));
    let started = client
        .post(format!("http://{}/api/v1/units/later/start", host.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    let taken = support::arrived(&broker, "later.out").await;
    assert_eq!(
        taken.len(),
        1,
        "the held message went through after the restart"
    );
    assert_eq!(taken[0].payload, b"KEPT");
    assert_ne!(
        taken[0].id, id,
        "an output has an id of its own, derived from the input's"
    );
    host.stop().await;
}

/// Events over an `http` connection are webhooks: each goes out as a request to
/// `{base_url}{exchange}/{routing key}`; a subscription on it cannot run and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_out_as_requests_over_http() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (endpoint_addr, seen) = start_endpoint().await;
    let mut config = Config::default();
    config.routes.clear();
    config.connections.insert(
        "hooks".into(),
        ConnectionConfig::Http(Box::new(HttpConfig {
            base_url: Some(format!("http://{endpoint_addr}/")),
            timeout_ms: 2_000,
            ..HttpConfig::default()
        })),
    );
    config.events = wharf::config::EventsConfig {
        connection: "hooks".into(),
        exchange: "events".into(),
        prefix: None,
    };
    let (host, _broker) = start_host(&db, config).await;
    let base = format!("http://{}", host.addr);
    let client = client_with_token(&local_token(host.addr));
    let answer = client
        .post(format!("{base}/api/v1/events/shop.models.Booking/created"))
        .json(&serde_json::json!({ "id": 3 }))
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["to"], "hooks:events/Booking.created");
    let got = seen.requests_to("/events/Booking.created");
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].1[..], br#"{"id":3}"#);

    let made = client
        .post(format!("{base}/api/v1/subscriptions"))
        .json(&serde_json::json!({
            "name": "hooked", "service": "s", "pattern": "#", "to": "local:x",
        }))
        .send()
        .await
        .unwrap();
    let made: Value = made.json().await.unwrap();
    let error = made["status"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("holds no subscriptions"), "{made}");
    host.stop().await;
}

/// Ingress paces each caller: past the connection's `ingress_per_second` (or its
/// `ingress_bytes_per_second`) a caller gets 429 with `Retry-After`, nothing of what it sent
/// is held, and another caller on the same connection is not slowed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_limits_each_caller_by_messages_and_bytes() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config::default();
    config.connections.insert(
        "web".into(),
        ConnectionConfig::Http(Box::new(HttpConfig {
            ingress_per_second: 3,
            ingress_bytes_per_second: 100,
            ..HttpConfig::default()
        })),
    );
    config.routes = vec![route("held", "web:held", &[], Some("local:held.out"))];
    let (host, _) = start_host(&db, config).await;
    let base = format!("http://{}", host.addr);
    let admin = client_with_token(&local_token(host.addr));
    let stopped = admin
        .post(format!("{base}/api/v1/units/held/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), 200);
    let made: Value = admin
        .post(format!("{base}/api/v1/tokens"))
        .json(&json!({ "name": "other-service", "role": "operator" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other = client_with_token(made["token"].as_str().unwrap());
    let send = |client: &reqwest::Client, body: &'static str| {
        client
            .post(format!("{base}/ingress/web/held"))
            .body(body)
            .send()
    };

    // Three a second, then 429; the other caller still gets through.
    for _ in 0..3 {
        assert_eq!(send(&admin, "a").await.unwrap().status(), 202);
    }
    let refused = send(&admin, "a").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let text = refused.text().await.unwrap();
    assert!(text.contains("ingress_per_second"), "{text}");
    assert_eq!(send(&other, "b").await.unwrap().status(), 202);

    // 100 bytes a second: a 90-byte body passes, the next is refused by volume.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let ninety: &'static str = Box::leak("x".repeat(90).into_boxed_str());
    assert_eq!(send(&other, ninety).await.unwrap().status(), 202);
    let refused = send(&other, ninety).await.unwrap();
    assert_eq!(refused.status(), 429);
    let text = refused.text().await.unwrap();
    assert!(text.contains("ingress_bytes_per_second"), "{text}");

    // What was refused was not held: five messages wait for the stopped route.
    let depth = support::get_json(&admin, &format!("{base}/api/v1/queues/web/held")).await;
    assert_eq!(depth["depth"], 5, "{depth}");
    host.stop().await;
}

/// A message names its own method and, as its address, a full URL: under the connection's
/// base URL (its headers go along) or on its `allowed_hosts` (they do not); any other URL,
/// one with credentials, or a method HTTP egress does not send is refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_names_its_own_url_and_method() {
    let (addr, seen) = start_endpoint().await;
    let port = addr.port();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config::default();
    config.routes.clear();
    config.connections.insert(
        "web".into(),
        ConnectionConfig::Http(Box::new(HttpConfig {
            base_url: Some(format!("http://127.0.0.1:{port}/base")),
            headers: [("authorization".to_owned(), "Bearer s3cret".to_owned())].into(),
            allowed_hosts: vec!["localhost:*".into()],
            ..HttpConfig::default()
        })),
    );
    let (host, _) = start_host(&db, config).await;
    let client = client_with_token(&local_token(host.addr));
    let publish = |address: &str, method: Option<&str>| {
        let url = format!(
            "http://{}/api/v1/queues/web/{}/messages",
            host.addr,
            wharf::address::escape(address)
        );
        let mut message = json!({ "payload": "abc" });
        if let Some(method) = method {
            message["headers"] = json!({ "x-http-method": method });
        }
        let client = client.clone();
        async move {
            let answer = client.post(url).json(&message).send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap())
        }
    };

    // Under the base URL, with its own method: the connection's headers go along.
    let (status, body) = publish(
        &format!("http://127.0.0.1:{port}/base/upper?n=1"),
        Some("PUT"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (headers, body, _) = seen.requests_to("/base/upper").pop().unwrap();
    assert_eq!(headers["x-seen-method"], "PUT");
    assert_eq!(headers["x-seen-query"], "n=1");
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(body, "abc");
    // A path below the base URL, as before, with the connection's method.
    let (status, body) = publish("upper", None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(seen.requests_to("/base/upper").len(), 2);
    // On an allowed host: sent, without the connection's headers.
    let (status, body) = publish(&format!("http://localhost:{port}/upper"), None).await;
    assert_eq!(status, 201, "{body}");
    let (headers, ..) = seen.requests_to("/upper").pop().unwrap();
    assert_eq!(headers["x-seen-method"], "POST");
    assert!(headers.get("authorization").is_none(), "{headers:?}");

    // Refused, each saying why, and nothing sent.
    let before = seen.seen.lock().unwrap().len();
    for (address, method, why) in [
        ("http://example.com/upper", None, "allowed_hosts"),
        (
            &format!("http://127.0.0.1:{port}/elsewhere") as &str,
            None,
            "allowed_hosts",
        ),
        (
            &format!("http://user:pw@127.0.0.1:{port}/base/upper"),
            None,
            "credentials",
        ),
        (
            &format!("http://localhost:{port}/upper#frag"),
            None,
            "fragment",
        ),
        ("ftp://127.0.0.1/upper", None, "http:// or https://"),
        (
            &format!("http://localhost:{port}/upper"),
            Some("DELETE"),
            "not GET, POST or PUT",
        ),
    ] {
        let (status, body) = publish(address, method).await;
        assert_eq!(status / 100, 4, "{address}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{address}: {body}");
        assert!(!message.contains("pw@"), "{body}");
    }
    assert_eq!(seen.seen.lock().unwrap().len(), before, "nothing was sent");

    // A bad allowed_hosts entry is refused, naming it.
    let bad = json!({ "name": "web2", "kind": "http", "allowed_hosts": ["*.Example.com"] });
    let answer = client
        .post(format!("http://{}/api/v1/connections", host.addr))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["field"], "allowed_hosts[0]", "{body}");
    host.stop().await;
}

/// streamtools' chosen ingress paths: `POST /hooks/orders` lands where
/// `/ingress/web/orders.in` does, under the connection's tokens and limits; a path nobody
/// takes is 404; a connection that would take another's path is refused, naming it; a path
/// that is not plain words is refused when the connection is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_take_ingress_at_paths_the_admin_chose() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config::default();
    config.connections.insert(
        "web".into(),
        ConnectionConfig::Http(Box::new(HttpConfig {
            hooks: [
                ("orders".to_string(), "orders.in".to_string()),
                ("shop/refunds".to_string(), "refunds.in".to_string()),
            ]
            .into(),
            ..HttpConfig::default()
        })),
    );
    config.routes = vec![route(
        "orders",
        "web:orders.in",
        &["uppercase"],
        Some("local:orders"),
    )];
    let (host, broker) = start_host(&db, config).await;
    let base = format!("http://{}", host.addr);
    let admin = client_with_token(&local_token(host.addr));

    let sent = admin
        .post(format!("{base}/hooks/orders"))
        .body("order 7")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202, "{:?}", sent.text().await);
    let arrived = support::arrived(&broker, "orders").await;
    assert_eq!(arrived[0].payload, b"ORDER 7");

    // The connection's rules hold: no token, no ingress.
    let anonymous = reqwest::Client::new()
        .post(format!("{base}/hooks/orders"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // A path no connection takes, and one whose address no route reads: 404, naming nothing.
    for path in ["nothing", "shop/refunds", "orders/more"] {
        let missing = admin
            .post(format!("{base}/hooks/{path}"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404, "{path}");
        let text = missing.text().await.unwrap();
        assert!(!text.contains("web") && !text.contains("refunds"), "{text}");
    }

    // Another connection may not take `/hooks/orders`, and a hook path is plain words.
    for (hooks, field) in [
        (json!({ "orders": "mine.in" }), "hooks.orders"),
        (json!({ "/etc/passwd": "x" }), "hooks"),
    ] {
        let refused = admin
            .post(format!("{base}/api/v1/connections"))
            .json(&json!({ "name": "web2", "kind": "http", "hooks": hooks }))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        let answer: Value = refused.json().await.unwrap();
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    host.stop().await;
}
