//! Plugins that reach the outside world: outbound HTTP through `wasi:http`, in Rust, Python and
//! JavaScript, against a real HTTP service on this machine, allowed only where a grant says.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{load, runtime, text_message};
use wharf::message::HeaderValue;
use wharf::runtime::{Plugin, PluginError, PluginSettings, Runtime};

const PLUGINS: [&str; 3] = ["http-fetch", "py-fetch", "js-fetch"];

/// A small service: who am I (the Authorization header), an echo for POST, a redirect off the
/// allowed list, a slow answer and an endless body.
async fn service() -> SocketAddr {
    let app = Router::new()
        .route(
            "/whoami",
            get(|headers: HeaderMap| async move {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("anonymous")
                    .to_owned()
            }),
        )
        .route(
            "/",
            post(|body: String| async move { format!("got:{body}") }),
        )
        .route(
            "/lookup",
            post(|body: String| async move { format!("found:{body}") }),
        )
        .route(
            "/away",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [("location", "http://elsewhere.invalid/")],
                    "moved",
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                "late"
            }),
        )
        .route(
            "/broken",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/endless",
            get(|| async {
                let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
                let stream =
                    futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
                Body::from_stream(stream)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn settings(addr: SocketAddr, grants: &[&str]) -> PluginSettings {
    PluginSettings {
        config: [
            ("url".to_string(), format!("http://{addr}")),
            ("token".to_string(), "s3cret".to_string()),
        ]
        .into(),
        grants: grants.iter().map(|g| g.to_string()).collect(),
        ..PluginSettings::default()
    }
}

async fn fetch(plugin: &Plugin, payload: &str) -> Result<(String, i64), PluginError> {
    let report = plugin.handle(&text_message(payload)).await;
    let reply = report.result?.expect("the plugin replies");
    let status = match reply.header("http_status") {
        Some(HeaderValue::Int(status)) => *status,
        other => panic!("http_status is {other:?}"),
    };
    Ok((String::from_utf8_lossy(&reply.payload).into_owned(), status))
}

async fn loaded(rt: &Runtime, name: &str, settings: PluginSettings) -> Plugin {
    load(rt, name, settings).await
}

#[tokio::test]
async fn each_language_calls_a_granted_service_with_its_sealed_token() {
    let addr = service().await;
    let rt = runtime();
    for name in PLUGINS {
        let plugin = loaded(&rt, name, settings(addr, &["http:http://127.0.0.1:*"])).await;
        let (body, status) = fetch(&plugin, "/whoami")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((body.as_str(), status), ("Bearer s3cret", 200), "{name}");
        let (body, status) = fetch(&plugin, r#"{"order":7}"#)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (body.as_str(), status),
            (r#"got:{"order":7}"#, 200),
            "{name} POSTs its JSON body"
        );
        // A redirect is answered as it is, never followed to a host nobody granted.
        let (body, status) = fetch(&plugin, "/away")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((body.as_str(), status), ("moved", 302), "{name}");
        // A 5xx is the plugin's to judge: these retry.
        match fetch(&plugin, "/broken").await {
            Err(error @ PluginError::Retry { .. }) => {
                assert!(error.to_string().contains("503"), "{error}");
                // The Rust example names its failure; the others raise the SDK's Retry.
                let named = error
                    .exception()
                    .map(|e| (e.name.as_str(), e.kind.as_str()));
                if name == "http-fetch" {
                    assert_eq!(named, Some(("ServerError", "http-fetch")));
                } else {
                    assert_eq!(named, None, "{name}");
                }
            }
            other => panic!("{name}: a 503 gave {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_origin_no_grant_names_is_refused_and_logged() {
    let addr = service().await;
    let rt = runtime();
    let other_port = format!("http:http://127.0.0.1:{}", addr.port() + 1);
    for grants in [
        &[][..],
        &["http:https://127.0.0.1:*"][..],
        &[other_port.as_str()][..],
        &["http:http://*.example.com:*", "publish:local:**"][..],
    ] {
        for name in PLUGINS {
            let plugin = loaded(&rt, name, settings(addr, grants)).await;
            let report = plugin.handle(&text_message("/whoami")).await;
            assert!(
                report.result.is_err(),
                "{name} with {grants:?} reached the service: {:?}",
                report.result
            );
            assert!(
                report
                    .logs
                    .iter()
                    .any(|l| l.text.contains("outbound HTTP to http://127.0.0.1")
                        && l.text.contains("no http: grant")),
                "{name}: the refusal is in the plugin's log: {:?}",
                report.logs
            );
        }
    }
}

#[tokio::test]
async fn time_spent_waiting_on_a_service_is_wall_clock_not_cpu() {
    let addr = service().await;
    let rt = runtime();
    // 1.5 s of waiting under a CPU limit of 300 ms: the wait is not the plugin's CPU.
    let plugin = loaded(
        &rt,
        "http-fetch",
        PluginSettings {
            cpu_limit: Duration::from_millis(300),
            wall_limit: Some(Duration::from_secs(10)),
            ..settings(addr, &["http:http://127.0.0.1:*"])
        },
    )
    .await;
    let (body, _) = fetch(&plugin, "/slow").await.expect("a slow answer");
    assert_eq!(body, "late");

    // But it counts against the wall-clock limit, which ends the call.
    let plugin = loaded(
        &rt,
        "http-fetch",
        PluginSettings {
            wall_limit: Some(Duration::from_millis(500)),
            ..settings(addr, &["http:http://127.0.0.1:*"])
        },
    )
    .await;
    let started = Instant::now();
    let report = plugin.handle(&text_message("/slow")).await;
    assert!(
        report.result.is_err(),
        "a call past its wall-clock limit: {:?}",
        report.result
    );
    assert!(started.elapsed() < Duration::from_millis(1_400));
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_plugins_memory_limit() {
    let addr = service().await;
    let rt = runtime();
    let plugin = loaded(
        &rt,
        "http-fetch",
        PluginSettings {
            memory_bytes: 8 * 1024 * 1024,
            wall_limit: Some(Duration::from_secs(20)),
            ..settings(addr, &["http:http://127.0.0.1:*"])
        },
    )
    .await;
    let report = plugin.handle(&text_message("/endless")).await;
    match report.result {
        Err(PluginError::Retry { reason, .. }) => {
            assert!(reason.contains("reading the response"), "{reason}")
        }
        Err(PluginError::MemoryLimit { .. }) => {}
        other => panic!("an endless body gave {other:?}"),
    }
    // The host carries on, and so does the plugin.
    let (body, status) = fetch(&plugin, "/whoami").await.expect("the next call");
    assert_eq!((body.as_str(), status), ("Bearer s3cret", 200));
}

/// End to end on a running host: the plugin is uploaded, granted its origin and given its
/// token through the API, a route runs it, the answer reaches the caller's reply queue, and
/// `/metrics` counts the requests by outcome.
#[tokio::test]
async fn a_route_reaches_a_service_its_plugin_was_granted_through_the_api() {
    use support::{Api, Backend, TestDb, arrived, metric, scrape, start_host};
    let addr = service().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = wharf::config::Config::default();
    config.routes.clear();
    let (host, broker) = start_host(&db, config).await;
    let api = Api::new(host.addr);
    api.upload("http-fetch").await;
    // A grant that names no origin is refused with the reason.
    let (status, answer) = api
        .call(
            reqwest::Method::PUT,
            "plugins/http-fetch/policy",
            Some(serde_json::json!({ "grants": ["http:127.0.0.1"] })),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("http:https://HOST"), "{answer}");
    api.ok(
        reqwest::Method::PUT,
        "plugins/http-fetch/policy",
        Some(serde_json::json!({
            "grants": [format!("http:http://127.0.0.1:{}", addr.port())],
            "config": { "url": format!("http://{addr}"), "token": "s3cret" },
        })),
    )
    .await;
    api.ok(
        reqwest::Method::POST,
        "routes",
        Some(serde_json::json!({
            "name": "fetching", "from": "local:fetch.in", "through": ["http-fetch"],
        })),
    )
    .await;
    api.wait_unit("fetching", "running").await;
    for path in ["/whoami", "/away"] {
        let mut request = wharf::message::Message::new("fetch.in", path.as_bytes().to_vec());
        request.reply_to = Some("fetch.replies".into());
        broker.publish("fetch.in", request).await.unwrap();
    }
    let mut replies = Vec::new();
    while replies.len() < 2 {
        replies = arrived(&broker, "fetch.replies").await;
    }
    let payloads: Vec<String> = replies
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert!(
        payloads.contains(&"Bearer s3cret".to_string()),
        "{payloads:?}"
    );
    assert!(payloads.contains(&"moved".to_string()), "{payloads:?}");
    let text = scrape(host.addr).await;
    assert_eq!(
        metric(
            &text,
            r#"wharf_plugin_http_requests_total{plugin="http-fetch",outcome="sent"}"#
        ),
        2.0,
        "{text}"
    );
    // The token is sealed: the API shows that it is set, never its value.
    let plugin = api
        .ok(reqwest::Method::GET, "plugins/http-fetch", None)
        .await;
    assert!(!plugin.to_string().contains("s3cret"), "{plugin}");
    host.stop().await;
}

/// HTTPS to a service whose certificate a private CA signed: refused on the system's trust
/// alone, answered once `server.outbound_ca` names the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_private_ca_needs_the_outbound_ca() {
    use support::{Backend, TestDb, start_host};
    let certs = tempfile::tempdir().unwrap();
    support::make_certificates(certs.path());
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = wharf::config::Config::default();
    config.routes.clear();
    config.server.tls = Some(wharf::config::ServerTlsConfig {
        cert: certs.path().join("server.pem"),
        key: certs.path().join("server.key"),
    });
    let (service, _broker) = start_host(&db, config).await;
    let settings = PluginSettings {
        config: [(
            "url".to_string(),
            format!("https://localhost:{}", service.addr.port()),
        )]
        .into(),
        grants: vec!["http:https://localhost:*".into()],
        ..PluginSettings::default()
    };

    let plain = load(&runtime(), "http-fetch", settings.clone()).await;
    match plain.handle(&text_message("/healthz")).await.result {
        Err(PluginError::Retry { reason, .. }) => assert!(reason.contains("Tls"), "{reason}"),
        other => panic!("a certificate no trusted CA signed gave {other:?}"),
    }

    let trusting = Runtime::new(wharf::runtime::RuntimeConfig {
        outbound_ca: Some(certs.path().join("ca.pem")),
        ..Default::default()
    })
    .unwrap();
    let plugin = load(&trusting, "http-fetch", settings).await;
    let (body, status) = fetch(&plugin, "/healthz").await.expect("over HTTPS");
    assert_eq!(status, 200);
    assert!(body.contains("\"status\""), "{body}");

    // A CA file that is not there stops the runtime with the setting named.
    let missing = Runtime::new(wharf::runtime::RuntimeConfig {
        outbound_ca: Some(certs.path().join("nope.pem")),
        ..Default::default()
    });
    match missing {
        Err(error) => assert!(error.to_string().contains("outbound_ca"), "{error}"),
        Ok(_) => panic!("a missing outbound_ca was accepted"),
    }
    service.stop().await;
}

/// A plugin that floods the service is held to its bounds: 100 requests a call one after
/// another, 8 in flight at once; the rest are refused and the service never sees them.
#[tokio::test]
async fn a_flood_of_requests_is_held_to_its_bounds() {
    let addr = service().await;
    let rt = runtime();
    for (mode, count, expected) in [
        ("http-many", "150", "ok=100 refused=50"),
        ("http-parallel", "20", "ok=8 refused=12"),
    ] {
        let plugin = loaded(
            &rt,
            "flood-host",
            PluginSettings {
                config: [
                    ("mode".to_string(), mode.to_string()),
                    ("count".to_string(), count.to_string()),
                    ("url".to_string(), format!("http://{addr}/whoami")),
                ]
                .into(),
                grants: vec!["http:http://127.0.0.1:*".into()],
                wall_limit: Some(Duration::from_secs(30)),
                ..PluginSettings::default()
            },
        )
        .await;
        match plugin.handle(&text_message("go")).await.result {
            Err(PluginError::Rejected { reason, .. }) => assert_eq!(reason, expected, "{mode}"),
            other => panic!("{mode}: {other:?}"),
        }
    }
}

/// A plugin's `request` through an http connection: the request is a POST to the
/// connection's base URL and the service's answer comes back as the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_request_over_an_http_connection_gets_the_service_answer() {
    use support::{Backend, TestDb, ask, asker, start_host};
    let addr = service().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = wharf::config::Config::default();
    config.routes.clear();
    config.connections.insert(
        "api".into(),
        wharf::config::ConnectionConfig::Http(Box::new(wharf::broker::http::HttpConfig {
            base_url: Some(format!("http://{addr}/")),
            timeout_ms: 5_000,
            ..Default::default()
        })),
    );
    asker(&mut config, "api:lookup", "api:**");
    let (host, _broker) = start_host(&db, config).await;
    let reply = ask(host.addr, "isbn-1").await;
    assert_eq!(reply["payload"], "asked: found:isbn-1", "{reply}");
    host.stop().await;
}
