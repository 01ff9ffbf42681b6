//! The control plane on a running host: routes, plugins and connections created, changed and
//! deleted through the API (and the CLI) take effect without a restart; a plugin upgraded and
//! rolled back under a steady stream loses and fails nothing; two hosts on one PostgreSQL see
//! each other's changes; bad uploads and bodies are refused naming the check or field; items
//! of a host's file are read-only.

#[macro_use]
mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use support::{Backend, TestDb, client_with_token, local_token, plugin_bytes, start_host};
use wharf::broker::EmbeddedBroker;
use wharf::config::Config;
use wharf::host::RunningHost;
use wharf::message::Message;

on_every_backend!(
    routes_change_on_a_running_host,
    a_plugin_upgraded_and_rolled_back_under_a_stream_loses_nothing,
    connections_are_added_and_removed_at_run_time,
    a_unit_that_cannot_start_says_why_and_recovers,
    bad_uploads_and_bodies_are_refused_naming_the_check_or_field,
    units_of_a_database_made_before_they_shared_one_table_move_into_it
);

/// A host with the example plugins and `local`, without the demo route unless `demo`.
async fn host(db: &TestDb, demo: bool) -> (RunningHost, EmbeddedBroker, Api) {
    let mut config = Config::default();
    if !demo {
        config.routes.clear();
    }
    let (host, broker) = start_host(db, config).await;
    let api = Api::new(&host);
    (host, broker, api)
}

/// The host's API, as its admin CLI token.
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(host: &RunningHost) -> Api {
        Api::with_token(host, &local_token(host.addr))
    }

    fn with_token(host: &RunningHost, token: &str) -> Api {
        Api {
            client: client_with_token(token),
            base: format!("http://{}/api/v1", host.addr),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}/{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer
    }

    async fn upload(&self, plugin: &str) -> (u16, Value) {
        self.upload_bytes(plugin_bytes(plugin)).await
    }

    /// Uploads the built plugin `plugin` as a new version of the installed plugin `of`.
    async fn upgrade(&self, plugin: &str, of: &str) -> (u16, Value) {
        self.upload_to(&format!("plugins?upgrade={of}"), plugin_bytes(plugin))
            .await
    }

    async fn upload_bytes(&self, bytes: Vec<u8>) -> (u16, Value) {
        self.upload_to("plugins", bytes).await
    }

    async fn upload_to(&self, path: &str, bytes: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/{path}", self.base))
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The unit named `name` in the host's status.
    async fn unit(&self, name: &str) -> Option<Value> {
        self.get("status").await["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
    }

    /// Waits (up to 10 s) until unit `name` is in `state`.
    async fn wait_unit(&self, name: &str, state: &str) -> Value {
        let started = Instant::now();
        loop {
            let unit = self.unit(name).await;
            if let Some(unit) = &unit
                && unit["state"] == state
            {
                return unit.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "unit `{name}` never became {state}: {unit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

use reqwest::Method;

fn route(name: &str, from: &str, through: &[&str], to: &str) -> Value {
    json!({ "name": name, "from": from, "through": through, "to": to })
}

/// Takes `count` messages from `queue` (waiting up to 20 s for them).
async fn take(broker: &EmbeddedBroker, queue: &str, count: usize) -> Vec<Message> {
    let mut consumer = broker.consume(queue, 64).await.unwrap();
    let mut got = Vec::new();
    while got.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages reached {queue}", got.len()))
            .unwrap();
        got.push(delivery.message.clone());
        delivery.ack.ack().await.unwrap();
    }
    consumer.close().await;
    got
}

fn text_header(msg: &Message, name: &str) -> Option<String> {
    match msg.header(name) {
        Some(wharf::message::HeaderValue::Text(text)) => Some(text.clone()),
        _ => None,
    }
}

/// Overwrites every stored plugin file with bytes that are no plugin, as damaged storage
/// would.
async fn damage_plugin_files(url: &str) {
    let sql = "UPDATE plugin_files SET content = $1";
    let junk = b"\0asm not a component".to_vec();
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql).bind(junk).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql).bind(junk).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

async fn publish(broker: &EmbeddedBroker, queue: &str, payload: &str) {
    broker
        .publish(queue, Message::new(queue, payload.as_bytes().to_vec()))
        .await
        .unwrap();
}

async fn routes_change_on_a_running_host(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (host, broker, api) = host(&db, true).await;
    let demo_before = api.wait_unit("demo", "running").await;

    // Created: it moves messages, on this host, without a restart.
    let (status, created) = api
        .call(
            Method::POST,
            "routes",
            Some(route(
                "shout",
                "local:rc.in",
                &["uppercase"],
                "local:rc.out",
            )),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["source"], "api");
    assert_eq!(created["status"]["plugins"], json!(["uppercase@0.1.0"]));
    publish(&broker, "rc.in", "one").await;
    assert_eq!(take(&broker, "rc.out", 1).await[0].payload, b"ONE");

    // Changed: new messages take the new chain (none: copied as they are) to the new output.
    let mut changed = route("shout", "local:rc.in", &[], "local:rc.out2");
    changed["concurrency"] = json!(4);
    let answer = api.ok(Method::PUT, "routes/shout", Some(changed)).await;
    assert_eq!(answer["route"]["concurrency"], 4);
    publish(&broker, "rc.in", "two").await;
    assert_eq!(take(&broker, "rc.out2", 1).await[0].payload, b"two");
    assert_eq!(broker.stats("rc.out").await.unwrap().depth(), 0);

    // Deleted: it stops; what arrives stays in its queue.
    api.ok(Method::DELETE, "routes/shout", None).await;
    assert!(api.unit("shout").await.is_none());
    publish(&broker, "rc.in", "three").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(broker.stats("rc.in").await.unwrap().ready, 1);
    let (status, _) = api.call(Method::GET, "routes/shout", None).await;
    assert_eq!(status, 404);

    // Nothing else restarted: the file's route ran through it all.
    let demo_after = api.wait_unit("demo", "running").await;
    assert_eq!(demo_after["since_ms"], demo_before["since_ms"]);
    assert_eq!(demo_after["restarts"], 0);
    let listed = api.get("routes").await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["demo"]);
    assert_eq!(listed[0]["source"], "file");
    host.stop().await;
}

async fn a_plugin_upgraded_and_rolled_back_under_a_stream_loses_nothing(backend: Backend) {
    const TOTAL: usize = 5_000;
    let db = TestDb::new(backend).await;
    let (host, broker, api) = host(&db, false).await;
    let (status, first) = api.upload("stamp").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["version"]["version"], "1.0.0");
    let mut spec = route("stamped", "local:up.in", &["stamp"], "local:up.out");
    spec["concurrency"] = json!(16);
    api.ok(Method::POST, "routes", Some(spec)).await;
    api.wait_unit("stamped", "running").await;

    // A steady stream; the upgrade and the rollback happen while it flows. Each message's
    // payload is its number, so its output tells when it was published.
    let (upgrade_at, rollback_at) = (TOTAL / 3, 2 * TOTAL / 3);
    for i in 0..TOTAL {
        if i == upgrade_at {
            let (status, upgraded) = api.upgrade("stamp-v2", "stamp").await;
            assert_eq!(status, 201, "{upgraded}");
            assert_eq!(upgraded["plugin"]["serving"], "2.0.0");
        }
        if i == rollback_at {
            // Everything published since the upgrade answered has been handled (so each of
            // those must show 2.0.0), then the rollback lands as the stream goes on.
            support::drained(&broker, "up.in").await;
            let rolled = api.ok(Method::POST, "plugins/stamp/rollback", None).await;
            assert_eq!(rolled["serving"], "1.0.0");
        }
        publish(&broker, "up.in", &i.to_string()).await;
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let outputs = take(&broker, "up.out", TOTAL).await;
    support::drained(&broker, "up.in").await;

    // Every message once, by one version or the other; none failed.
    let payloads: HashSet<&[u8]> = outputs.iter().map(|m| m.payload.as_slice()).collect();
    assert_eq!(payloads.len(), TOTAL, "every message exactly once");
    assert_eq!(broker.stats("up.in.dead").await.unwrap().depth(), 0);
    let mut by_phase: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for output in &outputs {
        let version = text_header(output, "x-version").expect("stamped");
        let i: usize = String::from_utf8_lossy(&output.payload).parse().unwrap();
        let phase = if i < upgrade_at {
            "before"
        } else if i < rollback_at {
            "v2"
        } else {
            "v1 again"
        };
        *by_phase.entry((phase, version)).or_default() += 1;
    }
    // What was published after the upgrade answered ran on 2.0.0; after the rollback
    // answered, on 1.0.0 again.
    for ((phase, version), count) in &by_phase {
        match *phase {
            "v2" => assert_eq!(
                version, "2.0.0",
                "{count} published under v2 ran on {version}: {by_phase:?}"
            ),
            "v1 again" => assert_eq!(
                version, "1.0.0",
                "{count} published after the rollback ran on {version}: {by_phase:?}"
            ),
            _ => assert!(version == "1.0.0" || version == "2.0.0"),
        }
    }
    assert!(by_phase.contains_key(&("v2", "2.0.0".into())));
    assert!(by_phase.contains_key(&("v1 again", "1.0.0".into())));
    let unit = api.wait_unit("stamped", "running").await;
    assert_eq!(unit["plugins"], json!(["stamp@1.0.0"]));
    let versions = api.get("plugins/stamp").await;
    let states: Vec<(String, bool)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_owned(),
                v["enabled"] == true,
            )
        })
        .collect();
    assert_eq!(states, [("1.0.0".into(), true), ("2.0.0".into(), false)]);
    host.stop().await;
}

async fn connections_are_added_and_removed_at_run_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (host, broker, api) = host(&db, false).await;
    let (status, added) = api
        .call(
            Method::POST,
            "connections",
            Some(json!({ "name": "side", "kind": "embedded" })),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["state"], "up");
    api.ok(
        Method::POST,
        "routes",
        Some(route("across", "side:x.in", &["uppercase"], "local:x.out")),
    )
    .await;
    let side = EmbeddedBroker::new(
        wharf::store::Store::open(&db.url).await.unwrap(),
        wharf::broker::EmbeddedConfig {
            connection: "side".into(),
            ..Default::default()
        },
    );
    publish(&side, "x.in", "across").await;
    assert_eq!(take(&broker, "x.out", 1).await[0].payload, b"ACROSS");

    // A connection a route uses cannot go; once the route is gone, it can.
    let (status, refused) = api.call(Method::DELETE, "connections/side", None).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("across")
    );
    api.ok(Method::DELETE, "routes/across", None).await;
    api.ok(Method::DELETE, "connections/side", None).await;
    let names: Vec<String> = api
        .get("connections")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["local"]);

    // RabbitMQ, added while the host runs: its route's queues are declared, and it serves.
    let queue = format!("wharf.control.{}", uuid::Uuid::new_v4().simple());
    let (status, rabbit) = api
        .call(
            Method::POST,
            "connections",
            Some(json!({ "name": "rabbit", "kind": "amqp", "url": support::amqp_url() })),
        )
        .await;
    assert_eq!(status, 201, "{rabbit}");
    assert!(
        !rabbit["connection"]["url"]
            .as_str()
            .unwrap()
            .contains("guest:guest"),
        "the password is not shown back: {rabbit}"
    );
    let tested = api.ok(Method::POST, "connections/rabbit/test", None).await;
    assert_eq!(tested["ok"], true, "{tested}");
    api.ok(
        Method::POST,
        "routes",
        Some(route(
            "from-rabbit",
            &format!("rabbit:{queue}"),
            &["uppercase"],
            "local:r.out",
        )),
    )
    .await;
    api.wait_unit("from-rabbit", "running").await;
    api.ok(
        Method::POST,
        &format!("queues/rabbit/{queue}/messages"),
        Some(json!({ "payload": "via rabbit" })),
    )
    .await;
    assert_eq!(take(&broker, "r.out", 1).await[0].payload, b"VIA RABBIT");
    // Sending the shown (hidden) URL back keeps the stored password.
    let mut spec = rabbit["connection"].clone();
    spec["heartbeat_s"] = json!(15);
    let updated = api.ok(Method::PUT, "connections/rabbit", Some(spec)).await;
    assert_eq!(updated["connection"]["heartbeat_s"], 15);
    api.wait_unit("from-rabbit", "running").await;
    let tested = api.ok(Method::POST, "connections/rabbit/test", None).await;
    assert_eq!(tested["ok"], true, "the stored password was kept: {tested}");
    api.ok(Method::DELETE, "routes/from-rabbit", None).await;
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

async fn a_unit_that_cannot_start_says_why_and_recovers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (host, broker, api) = host(&db, false).await;
    let (status, _) = api.upload("stamp").await;
    assert_eq!(status, 201);
    api.ok(
        Method::POST,
        "routes",
        Some(route(
            "pinned",
            "local:p.in",
            &["stamp@1.0.0"],
            "local:p.out",
        )),
    )
    .await;
    api.wait_unit("pinned", "running").await;
    // Its only version disabled, the route cannot run: failed, with the reason.
    api.ok(Method::POST, "plugins/stamp/versions/1.0.0/disable", None)
        .await;
    let failed = api.wait_unit("pinned", "failed").await;
    assert!(
        failed["error"].as_str().unwrap().contains("disabled"),
        "{failed}"
    );
    publish(&broker, "p.in", "waits").await;
    // Enabled again, it runs and takes what waited.
    api.ok(Method::POST, "plugins/stamp/versions/1.0.0/enable", None)
        .await;
    api.wait_unit("pinned", "running").await;
    let out = take(&broker, "p.out", 1).await;
    assert_eq!(out[0].payload, b"waits");
    // A build that cannot be loaded (here the stored file damaged, then the policy changed
    // so the plugin must be loaded again) never replaces what runs: the route goes on with
    // its previous build and says why.
    damage_plugin_files(&db.url).await;
    let mut policy = api.get("plugins/stamp").await["policy"].clone();
    policy["config"] = json!({"any": "change"});
    api.ok(Method::PUT, "plugins/stamp/policy", Some(policy.clone()))
        .await;
    let unit = api.wait_unit("pinned", "running").await;
    assert!(
        unit["error"]
            .as_str()
            .is_some_and(|e| e.contains("previous definition keeps running")),
        "{unit}"
    );
    publish(&broker, "p.in", "still").await;
    assert_eq!(take(&broker, "p.out", 1).await[0].payload, b"still");
    policy["config"] = json!({});
    api.ok(Method::PUT, "plugins/stamp/policy", Some(policy))
        .await;
    // A version in use cannot be deleted.
    let (status, refused) = api
        .call(Method::DELETE, "plugins/stamp/versions/1.0.0", None)
        .await;
    assert_eq!(status, 409, "{refused}");
    host.stop().await;
}

async fn bad_uploads_and_bodies_are_refused_naming_the_check_or_field(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = Config::default();
    config.server.max_request_bytes = 1024 * 1024;
    let (host, _broker, api) = {
        let (host, broker) = start_host(&db, config).await;
        let api = Api::new(&host);
        (host, broker, api)
    };
    let revision = api.get("status").await["revision"].clone();
    let random: Vec<u8> = (0..4096).map(|i| (i * 7919 % 251) as u8).collect();
    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    for (bytes, check) in [
        (random, "format check"),
        (core, "component check"),
        (plugin_bytes("alien"), "world check"),
        (vec![], "send the plugin"),
    ] {
        let (status, answer) = api.upload_bytes(bytes).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["field"], "body");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(check),
            "{check}: {answer}"
        );
    }
    // On a connection of its own: the host answers 413 without reading the rest of the body
    // and closes the connection, which the shared client's next request must not reuse.
    let (status, answer) = Api::new(&host).upload_bytes(vec![0; 2 * 1024 * 1024]).await;
    assert_eq!(status, 413, "{answer}");
    // The file's plugins are its own.
    let (status, answer) = api.upload("uppercase").await;
    assert_eq!(status, 409, "{answer}");
    // Nothing was stored.
    assert_eq!(api.get("status").await["revision"], revision);
    let plugins = api.get("plugins").await;
    assert!(
        plugins
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["source"] == "file")
    );

    // Every create call: malformed JSON, unknown fields and wrong types name the field.
    let cases: [(&str, &str, &str); 10] = [
        ("routes", "{\"name\": ", "body"),
        (
            "routes",
            r#"{"name": "r", "from": "local:a", "to": "local:b", "frm": 1}"#,
            "frm",
        ),
        (
            "routes",
            r#"{"name": "r", "from": "local:a", "to": "local:b", "concurrency": "many"}"#,
            "concurrency",
        ),
        (
            "routes",
            r#"{"name": "r", "from": "local:a", "to": "local:b", "retry": {"max": -1}}"#,
            "retry.max",
        ),
        (
            "routes",
            r#"{"name": "r", "from": "nowhere:a", "to": "local:b"}"#,
            "from",
        ),
        (
            "routes",
            r#"{"name": "r", "from": "local:a", "to": "local:b", "through": ["missing"]}"#,
            "through[0]",
        ),
        ("routes", r#"{"from": "local:a"}"#, "name"),
        (
            "connections",
            r#"{"name": "c", "kind": "amqp", "url": "amqp://h", "hearbeat_s": 1}"#,
            "hearbeat_s",
        ),
        (
            "connections",
            r#"{"name": "c", "kind": "amqp", "url": 5}"#,
            "url",
        ),
        (
            "connections",
            r#"{"name": "a:b", "kind": "embedded"}"#,
            "name",
        ),
    ];
    for (path, body, field) in cases {
        let response = api
            .client
            .post(format!("{}/{path}", api.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }

    // Items of the host's file cannot be changed through the API: 409 naming the file.
    let (status, answer) = api
        .call(
            Method::PUT,
            "routes/demo",
            Some(route("demo", "local:d", &[], "local:e")),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("configuration")
    );
    let (status, _) = api.call(Method::DELETE, "routes/demo", None).await;
    assert_eq!(status, 409);
    let (status, _) = api
        .call(
            Method::POST,
            "routes",
            Some(route("demo", "local:d", &[], "local:e")),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = api.call(Method::DELETE, "connections/local", None).await;
    assert_eq!(status, 409);
    let (status, _) = api
        .call(
            Method::POST,
            "plugins/uppercase/grants",
            Some(json!({"grants": ["publish:local:**"]})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(api.get("status").await["revision"], revision);
    host.stop().await;
}

/// Two hosts on one PostgreSQL: what is made through one runs on the other within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_postgres_share_the_desired_state() {
    let db = TestDb::new(Backend::Postgres).await;
    let (a, broker, api_a) = host(&db, false).await;
    let (b, _, api_b) = host(&db, false).await;
    let (status, _) = api_a.upload("stamp").await;
    assert_eq!(status, 201);
    api_a
        .ok(
            Method::POST,
            "routes",
            Some(route("shared", "local:two.in", &["stamp"], "local:two.out")),
        )
        .await;
    let started = Instant::now();
    let unit = api_b.wait_unit("shared", "running").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(unit["plugins"], json!(["stamp@1.0.0"]));
    // Host A gone, host B serves the route alone.
    a.stop().await;
    publish(&broker, "two.in", "on b").await;
    let out = take(&broker, "two.out", 1).await;
    assert_eq!(text_header(&out[0], "x-version").as_deref(), Some("1.0.0"));
    // And a change through B reaches... B itself at once; an upgrade through B runs there.
    let (status, _) = api_b.upgrade("stamp-v2", "stamp").await;
    assert_eq!(status, 201);
    let unit = api_b.wait_unit("shared", "running").await;
    assert_eq!(unit["plugins"], json!(["stamp@2.0.0"]));
    b.stop().await;
}

/// Roles on the control plane: viewer reads, operator publishes but cannot change what runs,
/// admin can; a revoked token and no token are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_guard_the_control_plane() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _broker, admin) = host(&db, true).await;
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let mut tokens = BTreeMap::new();
    for role in [wharf::auth::Role::Viewer, wharf::auth::Role::Operator] {
        let (token, digest) = wharf::auth::new_token();
        store
            .add_token(role.as_str(), role, &digest, false, 0)
            .await
            .unwrap();
        tokens.insert(role.as_str(), token);
    }
    let viewer = Api::with_token(&host, &tokens["viewer"]);
    let operator = Api::with_token(&host, &tokens["operator"]);
    let nobody = Api {
        client: reqwest::Client::new(),
        base: admin.base.clone(),
    };
    for path in ["status", "routes", "plugins", "connections", "openapi.json"] {
        assert_eq!(nobody.call(Method::GET, path, None).await.0, 401, "{path}");
        viewer.get(path).await;
    }
    let new_route = route("r", "local:a", &[], "local:b");
    let changes = [
        (Method::POST, "routes", Some(new_route.clone())),
        (Method::PUT, "routes/demo", Some(new_route.clone())),
        (Method::DELETE, "routes/demo", None),
        (
            Method::POST,
            "connections",
            Some(json!({"name": "c", "kind": "embedded"})),
        ),
        (Method::POST, "plugins/uppercase/rollback", None),
    ];
    for (method, path, body) in &changes {
        for caller in [&viewer, &operator] {
            let (status, answer) = caller.call(method.clone(), path, body.clone()).await;
            assert_eq!(status, 403, "{method} {path}: {answer}");
        }
    }
    assert_eq!(viewer.upload("stamp").await.0, 403);
    assert_eq!(operator.upload("stamp").await.0, 403);
    // An operator publishes.
    operator
        .ok(
            Method::POST,
            "queues/local/demo.in/messages",
            Some(json!({"payload": "x"})),
        )
        .await;
    // An admin does everything.
    assert_eq!(admin.upload("stamp").await.0, 201);
    admin.ok(Method::POST, "routes", Some(new_route)).await;
    admin.ok(Method::DELETE, "routes/r", None).await;
    // A revoked token is refused.
    store.revoke_tokens("viewer", 1).await.unwrap();
    assert_eq!(viewer.call(Method::GET, "status", None).await.0, 401);
    let doc = admin.get("openapi.json").await;
    for path in [
        "/api/v1/routes",
        "/api/v1/plugins",
        "/api/v1/connections/{name}",
        "/api/v1/status",
        "/api/v1/audit",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is described");
    }
    host.stop().await;
}

/// The CLI's control commands talk to the running host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_changes_a_running_host_through_its_api() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker, api) = host(&db, false).await;
    let url = format!("http://{}", host.addr);
    let wharf = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .args(["--url", &url])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let stamp = support::plugin_path("stamp");
    let (ok, out, err) = wharf(&["plugin", "install", stamp.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.starts_with("installed stamp 1.0.0"), "{out}");
    let (ok, out, _) = wharf(&["plugin", "install", stamp.to_str().unwrap()]);
    assert!(ok && out.contains("already installed"), "{out}");
    let (ok, _, err) = wharf(&[
        "plugin",
        "install",
        support::plugin_path("alien").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("world check failed"), "{err}");
    let (ok, out, err) = wharf(&[
        "route",
        "create",
        "cli",
        "--from",
        "local:cli.in",
        "--through",
        "stamp,uppercase",
        "--to",
        "local:cli.out",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("running") && out.contains("stamp, uppercase"),
        "{out}"
    );
    publish(&broker, "cli.in", "hello").await;
    assert_eq!(take(&broker, "cli.out", 1).await[0].payload, b"HELLO");
    let (ok, out, err) = wharf(&["route", "update", "cli", "--through", "stamp"]);
    assert!(ok, "{err}");
    assert!(out.contains("[stamp]"), "{out}");
    let (ok, out, err) = wharf(&["status"]);
    assert!(ok, "{err}\n{out}");
    assert!(out.contains("cli") && out.contains("stamp@1.0.0"), "{out}");
    let (ok, out, err) = wharf(&["plugin", "grant", "stamp", "publish:local:**"]);
    assert!(ok && out.contains("publish:local:**"), "{out}{err}");
    let (ok, _, err) = wharf(&["plugin", "grant", "stamp", "shout:everywhere"]);
    assert!(!ok && err.contains("grants[0]"), "{err}");
    let (ok, out, _) = wharf(&["plugin", "list", "stamp"]);
    assert!(
        ok && out.contains("1.0.0") && out.contains("uploaded by"),
        "{out}"
    );
    let (ok, _, err) = wharf(&["connection", "add", "side", "--kind", "embedded"]);
    assert!(ok, "{err}");
    let (ok, out, _) = wharf(&["connection", "test", "side"]);
    assert!(ok && out.starts_with("ok"), "{out}");
    // An http connection, its secrets hidden when shown, and its ingress answering.
    let (ok, _, err) = wharf(&[
        "connection",
        "add",
        "hooks",
        "--kind",
        "http",
        "--base-url",
        "http://user:secret@127.0.0.1:9/",
        "--anonymous",
    ]);
    assert!(ok, "{err}");
    let (ok, out, _) = wharf(&["connection", "show", "hooks"]);
    assert!(
        ok && out.contains("http") && !out.contains("secret"),
        "{out}"
    );
    let (ok, _, err) = wharf(&[
        "connection",
        "add",
        "hooks2",
        "--kind",
        "http",
        "--base-url",
        "ftp://x/",
    ]);
    assert!(!ok && err.contains("base_url"), "{err}");
    let (ok, _, err) = wharf(&["connection", "remove", "hooks"]);
    assert!(ok, "{err}");
    // A kind's flags are its transport's own: another kind's is refused, naming the right ones.
    let (ok, _, err) = wharf(&[
        "connection",
        "add",
        "jet",
        "--kind",
        "nats",
        "--brokers",
        "127.0.0.1:9092",
    ]);
    assert!(
        !ok && err.contains("--brokers is not a field of a nats connection")
            && err.contains("--broker-url"),
        "{err}"
    );
    let (ok, _, err) = wharf(&["connection", "add", "odd", "--kind", "carrier-pigeon"]);
    assert!(!ok && err.contains("not a kind of connection"), "{err}");
    // The kinds are known without a host.
    let kinds = |json: bool| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["connection", "kinds"])
            .args(json.then_some("--json"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = kinds(false);
    assert!(
        ["embedded", "amqp", "kafka", "http", "nats", "mqtt"]
            .iter()
            .all(|kind| out.contains(kind))
            && out.contains("--broker-url"),
        "{out}"
    );
    let listed: serde_json::Value = serde_json::from_str(&kinds(true)).unwrap();
    assert_eq!(listed[4]["name"], "nats", "{listed}");
    assert_eq!(listed[4]["can"]["events"], "exchange", "{listed}");
    // What a kind cannot do is said where it is listed: MQTT neither counts nor purges.
    assert_eq!(listed[5]["name"], "mqtt", "{listed}");
    assert_eq!(listed[5]["can"]["depth"], false, "{listed}");
    assert_eq!(listed[5]["can"]["purge"], false, "{listed}");
    assert_eq!(listed[5]["can"]["peek"], true, "{listed}");
    // Users and tokens go through the host too when no --database is given.
    let mut add = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["user", "add", "dave", "--role", "viewer", "--url", &url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"long enough secret\n")
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let users = api.get("users").await;
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "dave" && u["role"] == "viewer")
    );
    let (ok, token, err) = wharf(&["token", "create", "--name", "svc", "--role", "operator"]);
    assert!(ok, "{err}");
    let service = Api::with_token(&host, token.trim());
    service
        .ok(
            Method::POST,
            "queues/local/svc/messages",
            Some(json!({"payload": "hi"})),
        )
        .await;
    let (ok, out, _) = wharf(&["token", "list"]);
    assert!(ok && out.contains("svc\toperator"), "{out}");
    let (ok, _, err) = wharf(&["token", "revoke", "svc"]);
    assert!(ok, "{err}");
    assert_eq!(service.call(Method::GET, "status", None).await.0, 401);
    let (ok, _, err) = wharf(&["user", "remove", "dave"]);
    assert!(ok, "{err}");

    let (ok, out, err) = wharf(&["route", "stop", "cli"]);
    assert!(ok && out.contains("stopped"), "{out}{err}");
    let (ok, out, err) = wharf(&["route", "start", "cli"]);
    assert!(ok && out.contains("running"), "{out}{err}");
    let (ok, _, err) = wharf(&["route", "delete", "cli"]);
    assert!(ok, "{err}");
    let (ok, _, err) = wharf(&["connection", "remove", "side"]);
    assert!(ok, "{err}");
    assert!(api.get("routes").await.as_array().unwrap().is_empty());
    host.stop().await;
}

/// Compiled plugins are kept on disk by the file's hash: a restart finds them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_plugins_are_cached_on_disk() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cache = tempfile::tempdir().unwrap();
    let files = |dir: &std::path::Path| {
        walk(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
            .collect::<HashSet<_>>()
    };
    let mut config = Config::default();
    config.server.compile_cache = Some(cache.path().to_path_buf());
    let (host, _) = start_host(&db, config.clone()).await;
    host.stop().await;
    let first = files(cache.path());
    assert!(
        !first.is_empty(),
        "the example plugins' code is in the cache"
    );
    let (host, _) = start_host(&db, config).await;
    host.stop().await;
    assert_eq!(files(cache.path()), first, "a restart compiles nothing new");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A name defined both in a host's file and in the database stops that host's start-up,
/// naming both; the host whose file does not define it runs the database's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_the_file_and_the_database_stops_start_up() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _broker, api) = host(&db, false).await;
    api.ok(
        Method::POST,
        "routes",
        Some(route("demo", "local:other.in", &[], "local:other.out")),
    )
    .await;
    host.stop().await;
    // The defaults' file layer has a route `demo` too.
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = db.url.clone();
    config.server.plugin_dir = Some(support::plugin_dir());
    let error = match wharf::host::start(config).await {
        Ok(host) => {
            host.stop().await;
            panic!("a host started with `demo` in its file and in the database")
        }
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("route `demo`")
            && error.contains("configuration file")
            && error.contains("database"),
        "{error}"
    );
}

/// `/metrics` (open, Prometheus text) counts what routes do, and shows connections and units.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_routes_do() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker, api) = host(&db, false).await;
    let (status, _) = api.upload("panicker").await;
    assert_eq!(status, 201);
    api.ok(
        Method::POST,
        "routes",
        Some(route(
            "metered",
            "local:m.in",
            &["uppercase"],
            "local:m.out",
        )),
    )
    .await;
    let mut failing = route("metered-fail", "local:mf.in", &["panicker"], "local:mf.out");
    failing["retry"] = json!({ "max": 1, "backoff_ms": 10 });
    api.ok(Method::POST, "routes", Some(failing)).await;
    for payload in ["a", "b"] {
        publish(&broker, "m.in", payload).await;
    }
    take(&broker, "m.out", 2).await;
    publish(&broker, "mf.in", "boom").await;
    // A chosen dead letter replayed by id, without its exception headers.
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = broker.peek("mf.in.dead", 1, 1 << 20).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = dead[0].id.clone();
    let (code, _) = api
        .call(
            Method::POST,
            "queues/local/mf.in.dead/replay?id=nothing&to=local:mf.back",
            None,
        )
        .await;
    assert_eq!(code, 404);
    let replayed = api
        .ok(
            Method::POST,
            &format!("queues/local/mf.in.dead/replay?id={id}&to=local:mf.back"),
            None,
        )
        .await;
    assert_eq!(replayed["to"]["local:mf.back"], 1, "{replayed}");
    let back = take(&broker, "mf.back", 1).await;
    assert_eq!(back[0].id, id);
    assert!(back[0].header("exception").is_none());
    assert_eq!(broker.stats("mf.in.dead").await.unwrap().depth(), 0);
    support::drained(&broker, "m.in").await;
    support::drained(&broker, "mf.in").await;
    let text = support::scrape(host.addr).await;
    let value = |series: &str| support::metric(&text, series);
    assert_eq!(
        value("wharf_route_messages_in_total{route=\"metered\"}"),
        2.0
    );
    assert_eq!(
        value("wharf_route_messages_out_total{route=\"metered\"}"),
        2.0
    );
    assert_eq!(
        value("wharf_route_messages_in_total{route=\"metered-fail\"}"),
        2.0
    );
    assert_eq!(
        value("wharf_route_messages_failed_total{route=\"metered-fail\"}"),
        2.0
    );
    assert_eq!(
        value("wharf_route_messages_retried_total{route=\"metered-fail\"}"),
        1.0
    );
    assert_eq!(
        value("wharf_route_messages_dead_lettered_total{route=\"metered-fail\"}"),
        1.0
    );
    assert!(value("wharf_plugin_call_seconds_count{plugin=\"uppercase\"}") >= 2.0);
    assert_eq!(value("wharf_connection_up{connection=\"local\"}"), 1.0);
    assert_eq!(value("wharf_units{kind=\"route\",state=\"running\"}"), 2.0);
    host.stop().await;
}

/// Accounts through the API: a role changed, a user disabled (and signed out), a one-time
/// reset link, the registration setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_change_through_the_api() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _broker, api) = host(&db, false).await;
    api.ok(
        Method::POST,
        "users",
        Some(json!({"name": "rita", "password": "long enough pw", "role": "viewer"})),
    )
    .await;
    let login = || {
        reqwest::Client::new()
            .post(format!("http://{}/api/v1/login", host.addr))
            .json(&json!({"name": "rita", "password": "long enough pw"}))
    };
    let signed_in = login().send().await.unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let as_rita = reqwest::Client::new();
    let status = |c: &reqwest::Client| {
        c.get(format!("http://{}/api/v1/status", host.addr))
            .header("cookie", &cookie)
    };
    assert_eq!(status(&as_rita).send().await.unwrap().status(), 200);

    api.ok(Method::PUT, "users/rita", Some(json!({"role": "operator"})))
        .await;
    let users = api.get("users").await;
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "rita" && u["role"] == "operator")
    );
    let (code, answer) = api
        .call(Method::PUT, "users/rita", Some(json!({"role": "root"})))
        .await;
    assert_eq!(
        (code, answer["error"]["field"].as_str()),
        (400, Some("role"))
    );
    api.ok(Method::PUT, "users/rita", Some(json!({"disabled": true})))
        .await;
    assert_eq!(
        status(&as_rita).send().await.unwrap().status(),
        401,
        "a disabled user's session ends"
    );
    assert_eq!(
        login().send().await.unwrap().status(),
        401,
        "and they cannot sign in"
    );
    api.ok(Method::PUT, "users/rita", Some(json!({"disabled": false})))
        .await;
    assert_eq!(login().send().await.unwrap().status(), 200);

    let link = api.ok(Method::POST, "users/rita/reset", None).await;
    let path = link["path"].as_str().unwrap();
    assert!(path.starts_with("/reset/"), "{link}");
    let (code, _) = api.call(Method::POST, "users/nobody/reset", None).await;
    assert_eq!(code, 404);
    let reset = reqwest::Client::new()
        .post(format!("http://{}{path}", host.addr))
        .form(&[("password", "a brand new password")])
        .send()
        .await
        .unwrap();
    assert!(reset.url().path().starts_with("/login"), "{}", reset.url());
    let old = login().send().await.unwrap();
    assert_eq!(old.status(), 401, "the old password no longer works");

    assert_eq!(api.get("settings").await["registration"], false);
    api.ok(Method::PUT, "settings", Some(json!({"registration": true})))
        .await;
    assert_eq!(api.get("settings").await["registration"], true);
    host.stop().await;
}

/// A plugin names itself: a file that says `stamp` must not quietly become installed
/// `stamp`'s next version, with its grants, config and kv state.
#[tokio::test]
async fn an_upload_cannot_take_over_an_installed_plugin() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _broker, api) = host(&db, false).await;
    let (status, _) = api.upload("stamp").await;
    assert_eq!(status, 201);
    api.ok(
        Method::PUT,
        "plugins/stamp/policy",
        Some(json!({ "grants": ["publish:local:audit.*"], "config": { "api_key": "s3cret" } })),
    )
    .await;
    let revision = api.get("status").await["revision"].clone();

    // stamp-v2's file says `stamp`: refused, naming the installed plugin and the way to say
    // it is an upgrade; nothing is stored.
    let (status, answer) = api.upload("stamp-v2").await;
    assert_eq!(status, 409, "{answer}");
    let said = answer["error"]["message"].as_str().unwrap();
    assert!(
        said.contains("`stamp` is installed already") && said.contains("--upgrade stamp"),
        "{said}"
    );
    assert_eq!(api.get("status").await["revision"], revision);
    assert_eq!(
        api.get("plugins/stamp").await["versions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // An upgrade of another plugin than the file is, or of one not installed: refused.
    let (status, answer) = api.upgrade("stamp-v2", "uppercase").await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], "upgrade");
    let (status, answer) = api.upgrade("counter", "counter").await;
    assert_eq!(status, 404, "{answer}");
    // The very same file again changes nothing and needs no upgrade.
    let (status, answer) = api.upload("stamp").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "unchanged");
    // Said, it is stamp's new version, under stamp's policy; what it asks for beyond the
    // grants in force is not granted by the upgrade.
    let (status, upgraded) = api.upgrade("stamp-v2", "stamp").await;
    assert_eq!(status, 201, "{upgraded}");
    assert_eq!(upgraded["plugin"]["serving"], "2.0.0");
    assert_eq!(
        upgraded["plugin"]["policy"]["grants"],
        json!(["publish:local:audit.*"])
    );
    host.stop().await;
}

/// Routes, subscriptions and daemons share one set of names, in the file and the database
/// alike: a clash is refused naming the unit that has the name, and where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_share_one_set_of_names() {
    let db = TestDb::new(Backend::Sqlite).await;
    // The defaults' file has a route `demo`.
    let (host, _broker, api) = host(&db, true).await;
    let subscription = |name: &str| {
        json!({
            "name": name, "service": "billing", "pattern": "Booking.*",
            "through": ["uppercase"], "to": "local:billing.out",
        })
    };
    let daemon = |name: &str| json!({ "name": name, "plugin": "heartbeat" });

    let (status, error) = api
        .call(Method::POST, "subscriptions", Some(subscription("demo")))
        .await;
    assert_eq!(status, 409, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("route `demo`") && text.contains("configuration file"),
        "{text}"
    );

    api.ok(
        Method::POST,
        "routes",
        Some(route("shared", "local:shared.in", &[], "local:shared.out")),
    )
    .await;
    for (path, body) in [
        ("subscriptions", subscription("shared")),
        ("daemons", daemon("shared")),
    ] {
        let (status, error) = api.call(Method::POST, path, Some(body)).await;
        assert_eq!(status, 409, "{path}: {error}");
        assert!(
            error.to_string().contains("route `shared` has it"),
            "{path}: {error}"
        );
    }
    // The names are free for each kind once the route is gone.
    api.ok(Method::DELETE, "routes/shared", None).await;
    api.ok(Method::POST, "daemons", Some(daemon("shared")))
        .await;
    host.stop().await;

    // In a file, the second unit of a name is refused naming the first.
    let mut config = Config::default();
    config.server.plugin_dir = Some(support::plugin_dir());
    config.daemons = vec![serde_json::from_value(daemon("demo")).unwrap()];
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("daemons[0].name") && error.contains("routes[0]"),
        "{error}"
    );
}

/// A database made before routes, subscriptions and daemons shared one table (its migration
/// 12, with a document in each of the three tables and a name two kinds shared): opened by
/// this host, every document is a unit of its kind, the shared name keeps the first kind's
/// (the route: hosts ran it and refused the later one), and the host runs what it holds.
async fn units_of_a_database_made_before_they_shared_one_table_move_into_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let route = json!({ "name": "old-route", "from": "local:old.in", "to": "local:old.out" });
    let twin = json!({ "name": "old-route", "service": "twin", "pattern": "Booking.*" });
    let subscription = json!({ "name": "old-sub", "service": "crm", "pattern": "Order.*",
                                "to": "local:crm.out" });
    let daemon = json!({ "name": "old-beat", "plugin": "heartbeat" });
    let rows = [
        ("routes", &route),
        ("subscriptions", &twin),
        ("subscriptions", &subscription),
        ("daemons", &daemon),
    ];
    match backend {
        Backend::Sqlite => {
            let options = db
                .url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::migrate!("./migrations/sqlite")
                .run_to(12, &pool)
                .await
                .unwrap();
            for (table, spec) in rows {
                // `table` is one of the three names above.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} (name, spec, created_ms, updated_ms) VALUES (?, ?, 1, 1)"
                )))
                .bind(spec["name"].as_str().unwrap())
                .bind(spec.to_string())
                .execute(&pool)
                .await
                .unwrap();
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::migrate!("./migrations/postgres")
                .run_to(12, &pool)
                .await
                .unwrap();
            for (table, spec) in rows {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} (name, spec, created_ms, updated_ms) VALUES ($1, $2, 1, 1)"
                )))
                .bind(spec["name"].as_str().unwrap())
                .bind(spec.to_string())
                .execute(&pool)
                .await
                .unwrap();
            }
            pool.close().await;
        }
    }
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    for (name, kind) in [
        ("old-route", "route"),
        ("old-sub", "subscription"),
        ("old-beat", "daemon"),
    ] {
        assert_eq!(
            store.unit_kind(name).await.unwrap().as_deref(),
            Some(kind),
            "{name}"
        );
    }
    drop(store);
    let (host, broker, api) = host(&db, false).await;
    let status = api.ok(Method::GET, "status", None).await;
    let units: BTreeMap<String, String> = status["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_owned(),
                u["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (name, kind) in [
        ("old-route", "route"),
        ("old-sub", "subscription"),
        ("old-beat", "daemon"),
    ] {
        assert_eq!(units.get(name).map(String::as_str), Some(kind), "{status}");
    }
    broker
        .publish("old.in", Message::new("", b"still here".to_vec()))
        .await
        .unwrap();
    assert_eq!(take(&broker, "old.out", 1).await[0].payload, b"still here");
    host.stop().await;
}
