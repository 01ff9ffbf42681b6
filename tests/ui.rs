//! The admin UI in a real headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! from `tests/browser/ui.mjs`) against a real host on the embedded broker and RabbitMQ: the
//! first admin is set up, adds a RabbitMQ connection, uploads `uppercase`, creates a route,
//! sends a message and sees it upper-cased on the Consume page; a failing plugin's message is
//! dead-lettered and replayed; messages a client holds under a lease are shown on their
//! queue's page and returned or dead-lettered by the admin, and a worker's lease stream is
//! listed and stopped; a bad upload names its check; a
//! form without its CSRF token and a viewer's forced upload are refused; five wrong passwords
//! are throttled. Screenshots of each main page at laptop and phone width go to
//! `target/screenshots/`.

mod support;

use std::path::PathBuf;
use support::{Backend, TestDb, amqp_url, plugin_dir};
use wharf::config::Config;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "{chromium} is missing: install Debian's chromium (./dev test does)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci` in tests/browser (./dev test does)"
    );
    let db = TestDb::new(Backend::Sqlite).await;
    // The UI uploads the plugins itself: none come from a folder.
    let mut config = Config::default();
    config.routes.clear();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = db.url.clone();
    config.server.plugin_dir = None;
    // Nor the defaults' heartbeat daemon and its plugin, which come from that folder.
    config.daemons.clear();
    config.plugins.clear();
    let host = wharf::host::start(config).await.expect("the host starts");
    let queue = format!("wharf.ui.{}", uuid::Uuid::new_v4().simple());
    // Two messages a client takes under a lease and hangs on to: the queue's page shows them
    // held, and the admin returns one to the queue and dead-letters the other.
    let api = support::Api::new(host.addr);
    for text in ["held one", "held two"] {
        api.ok(
            reqwest::Method::POST,
            "queues/local/held.jobs/messages",
            Some(serde_json::json!({ "payload": text })),
        )
        .await;
    }
    let leased = api
        .ok(
            reqwest::Method::POST,
            "queues/local/held.jobs/lease?count=2&timeout_ms=5000&lease_ms=600000",
            None,
        )
        .await;
    let leases: Vec<&str> = leased
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lease"].as_str().unwrap())
        .collect();
    assert_eq!(leases.len(), 2, "{leased}");
    // A worker's lease stream on another queue, open while the admin looks at it and stops it.
    let stream = api
        .client
        .post(format!(
            "{}/queues/local/held.stream/lease/stream?heartbeat_ms=60000",
            api.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let stream_id = stream.headers()["wharf-lease-stream"]
        .to_str()
        .unwrap()
        .to_owned();
    let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let out = tokio::process::Command::new("node")
        .arg(browser_dir().join("ui.mjs"))
        .env("WHARF_URL", format!("http://{}", host.addr))
        .env(
            "WHARF_SETUP",
            host.setup_link
                .clone()
                .expect("a new host prints a set-up link"),
        )
        .env("WHARF_AMQP", amqp_url())
        .env("WHARF_QUEUE", &queue)
        .env("WHARF_LEASES", leases.join(" "))
        .env("WHARF_STREAM", &stream_id)
        .env("WHARF_PLUGINS", plugin_dir())
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("running node (the browser tests need Node.js)");
    if out.status.success() {
        // The stream the admin stopped has ended its answer.
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), stream.bytes())
            .await
            .expect("the stopped stream's answer ends");
        assert!(ended.is_ok());
        // The taker's own settling finds its leases gone: the admin settled them, and the
        // audit log says who did, through the UI.
        for lease in &leases {
            let (status, error) = api
                .call(reqwest::Method::POST, &format!("leases/{lease}/ack"), None)
                .await;
            assert_eq!(status, 404, "{error}");
        }
        let audit = api.ok(reqwest::Method::GET, "audit?limit=1000", None).await;
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == "queue.lease_stream_stopped"
                    && e["actor"] == "ada"
                    && e["via"] == "ui"
                    && e["detail"]["stream"] == stream_id.as_str()),
            "the stopped stream in {audit:#}"
        );
        for (action, lease) in [
            ("queue.lease_returned", leases[0]),
            ("queue.lease_dead_lettered", leases[1]),
        ] {
            assert!(
                audit
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["action"] == action
                        && e["target"] == "local:held.jobs"
                        && e["actor"] == "ada"
                        && e["via"] == "ui"
                        && e["detail"]["lease"] == lease),
                "{action} of {lease} in {audit:#}"
            );
        }
    }
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("every step passed"), "{stdout}");
    for page in [
        "dashboard",
        "connections",
        "plugins",
        "route",
        "routes",
        "send",
        "consume",
        "dead-letters",
        "leases",
        "users",
        "audit",
        "login",
    ] {
        for size in ["laptop", "phone"] {
            let shot = screenshots.join(format!("{page}-{size}.png"));
            assert!(shot.is_file(), "{} was not written", shot.display());
        }
    }
}

/// Names that try to run script (a queue address, a plugin's version, description and wanted
/// grants, a connection name, message ids, headers and payloads, a leased message's id) shown on every page that shows
/// them, in Chromium: none runs, and every page carries the CSP (`tests/browser/hostile.mjs`).
/// A route's name cannot hold such text at all: the API refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_run_no_script() {
    use serde_json::json;
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config::default();
    config.routes.clear();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = db.url.clone();
    config.server.plugin_dir = None;
    // Nor the defaults' heartbeat daemon and its plugin, which come from that folder.
    config.daemons.clear();
    config.plugins.clear();
    let host = wharf::host::start(config).await.expect("the host starts");
    let base = format!("http://{}", host.addr);
    let admin = support::client_with_token(support::local_token(host.addr).trim());
    let connection = r#"h'"><img src=x onerror=alert(7)>"#;
    let queue = "local:x'-alert(1)-'";
    let route = "plain-route";
    // Each set-up call must succeed (the refused route's name aside).
    let call = |request: reqwest::RequestBuilder, what: &'static str| async move {
        let answer = request.send().await.unwrap();
        assert!(answer.status().is_success(), "{what}: {}", answer.status());
    };
    let post =
        |path: &str, body: serde_json::Value| admin.post(format!("{base}{path}")).json(&body);
    let upload = |plugin: &str, query: &str| {
        admin
            .post(format!("{base}/api/v1/plugins{query}"))
            .header("content-type", "application/wasm")
            .body(support::plugin_bytes(plugin))
    };
    call(upload("hostile", ""), "upload").await;
    call(
        // It names itself `hostile`: a new version of that plugin, said so.
        upload("hostile-path", "?enabled=false&upgrade=hostile"),
        "a version that climbs out of a path",
    )
    .await;
    for (name, role) in [("ada", "admin"), ("bob", "viewer")] {
        let body =
            json!({ "name": name, "password": format!("a password for {name}"), "role": role });
        call(post("/api/v1/users", body), "a user").await;
    }
    call(
        post(
            "/api/v1/connections",
            json!({ "name": connection, "kind": "embedded" }),
        ),
        "connection",
    )
    .await;
    let hostile_route = json!({ "name": route, "from": format!("{connection}:q'-alert(8)-'"),
        "through": ["hostile"], "to": "local:out" });
    call(post("/api/v1/routes", hostile_route), "route").await;
    let refused = post(
        "/api/v1/routes",
        json!({ "name": "r'-alert(9)-'", "from": "local:a", "to": "local:b" }),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        refused.status(),
        400,
        "a route's name holds no quotes or markup"
    );
    // A message whose id is markup, held under a lease: the queue's page lists it.
    call(
        post(
            "/api/v1/queues/local/x'-alert(1)-'/messages",
            json!({ "id": "<img src=x onerror=alert(13)>", "payload": "held" }),
        ),
        "publish",
    )
    .await;
    call(
        admin.post(format!(
            "{base}/api/v1/queues/local/x'-alert(1)-'/lease?count=1&timeout_ms=5000&lease_ms=600000"
        )),
        "lease",
    )
    .await;
    let message = json!({ "payload": "<script>alert(10)</script>",
        "headers": { "x'-alert(11)-'": "<img src=x onerror=alert(12)>" } });
    call(
        post("/api/v1/queues/local/x'-alert(1)-'/messages", message),
        "publish",
    )
    .await;
    let out = tokio::process::Command::new("node")
        .arg(browser_dir().join("hostile.mjs"))
        .env("WHARF_URL", &base)
        .env("HOSTILE_CONNECTION", connection)
        .env("HOSTILE_QUEUE", queue)
        .env("HOSTILE_ROUTE", route)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("running node (the browser tests need Node.js)");
    host.stop().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("no hostile name ran"),
        "the hostile-names browser test failed:\n{stdout}\n{stderr}"
    );
}
