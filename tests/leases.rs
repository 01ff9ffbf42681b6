//! Take now, settle later: leased takes through the API and the CLI on the embedded broker
//! (SQLite) and RabbitMQ. A leased message is held, unsettled, until its taker acks, nacks or
//! extends it; one whose taker goes away comes back at its deadline.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Api, Backend, TestDb};
use wharf::broker::embedded::EmbeddedConnectionConfig;
use wharf::broker::embedded::config::QueueConfig;
use wharf::config::{Config, ConnectionConfig};
use wharf::message::Message;

/// Leased takes through `api`.
trait Leasing {
    async fn lease(&self, address: &str, count: usize, lease_ms: u64) -> Vec<Value>;
    async fn lease_within(
        &self,
        address: &str,
        count: usize,
        lease_ms: u64,
        timeout_ms: u64,
    ) -> Vec<Value>;
}

impl Leasing for Api {
    /// Leases up to `count` messages of `address` for `lease_ms`, waiting up to 2 s for
    /// them.
    async fn lease(&self, address: &str, count: usize, lease_ms: u64) -> Vec<Value> {
        self.lease_within(address, count, lease_ms, 2_000).await
    }

    async fn lease_within(
        &self,
        address: &str,
        count: usize,
        lease_ms: u64,
        timeout_ms: u64,
    ) -> Vec<Value> {
        let (connection, queue) = address.split_once(':').unwrap();
        let path = format!(
            "queues/{connection}/{queue}/lease?count={count}&timeout_ms={timeout_ms}&lease_ms={lease_ms}"
        );
        self.ok(Method::POST, &path, None)
            .await
            .as_array()
            .unwrap()
            .clone()
    }
}

/// A host with a RabbitMQ connection `rabbit` declaring `queue`, and no routes.
async fn rabbit_host(db: &TestDb, queue: &str) -> wharf::host::RunningHost {
    let mut config = Config::default();
    config.routes.clear();
    config.connections.insert(
        "rabbit".into(),
        serde_json::from_value(json!({
            "kind": "amqp",
            "url": support::amqp_url(),
            "queues": [{"name": queue}],
        }))
        .unwrap(),
    );
    support::start_host(db, config).await.0
}

fn payload(leased: &Value) -> &str {
    leased["message"]["payload"].as_str().unwrap()
}

/// The embedded broker with a queue whose visibility timeout (500 ms) is shorter than the
/// leases: a lease holds its message past it.
fn config() -> Config {
    let mut config = Config::default();
    config.routes.clear();
    config.connections.insert(
        "local".into(),
        ConnectionConfig::Embedded(Box::new(EmbeddedConnectionConfig {
            queues: vec![QueueConfig {
                name: "jobs".into(),
                dead_letter: None,
                visibility_timeout_ms: Some(500),
                max_deliveries: None,
            }],
        })),
    );
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_messages_are_held_until_acked_nacked_or_their_deadline() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, config()).await;
    let api = Api::new(host.addr);
    for i in 0..4 {
        broker
            .publish("jobs", Message::new("j", format!("job {i}")))
            .await
            .unwrap();
    }
    let leased = api.lease("local:jobs", 3, 3_000).await;
    assert_eq!(
        leased.iter().map(payload).collect::<Vec<_>>(),
        ["job 0", "job 1", "job 2"]
    );
    assert!(leased[0]["deadline_ms"].as_u64().unwrap() > wharf::message::now_ms());
    // Held past the queue's 500 ms visibility timeout: nobody else gets them.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let others = api.lease_within("local:jobs", 10, 3_000, 300).await;
    assert_eq!(others.iter().map(payload).collect::<Vec<_>>(), ["job 3"]);
    let listed = api.ok(Method::GET, "leases", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");
    assert_eq!(listed[0]["address"], "local:jobs");
    let ids: Vec<&Value> = leased.iter().map(|l| &l["message"]["id"]).collect();
    assert!(ids.contains(&&listed[0]["message_id"]), "{listed}");

    let id = |leased: &Value| leased["lease"].as_str().unwrap().to_owned();
    // Acked: gone for good. Acked again: no such lease.
    api.ok(
        Method::POST,
        &format!("leases/{}/ack", id(&leased[0])),
        None,
    )
    .await;
    let (status, error) = api
        .call(
            Method::POST,
            &format!("leases/{}/ack", id(&leased[0])),
            None,
        )
        .await;
    assert_eq!(status, 404, "{error}");
    // Nacked: back in the queue at once.
    api.ok(
        Method::POST,
        &format!("leases/{}/nack", id(&leased[1])),
        None,
    )
    .await;
    // Nacked without requeue: to the dead letters.
    api.ok(
        Method::POST,
        &format!("leases/{}/nack", id(&others[0])),
        Some(json!({"requeue": false})),
    )
    .await;
    let dead = support::arrived(&broker, "jobs.dead").await;
    assert_eq!(dead[0].payload, b"job 3");
    // Extended: held on past its first deadline.
    let extended = api
        .ok(
            Method::POST,
            &format!("leases/{}/extend", id(&leased[2])),
            Some(json!({"lease_ms": 30_000})),
        )
        .await;
    assert!(extended["deadline_ms"].as_u64().unwrap() > wharf::message::now_ms() + 25_000);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let ready: Vec<String> = broker
        .peek("jobs", 10, 1 << 20)
        .await
        .unwrap()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(
        ready,
        ["job 1"],
        "job 2 is still held, job 0 acked, job 3 dead"
    );
    // A taker that goes away: its lease runs out and the message comes back.
    let forgotten = api.lease("local:jobs", 1, 500).await;
    assert_eq!(payload(&forgotten[0]), "job 1");
    assert!(broker.peek("jobs", 10, 1 << 20).await.unwrap().is_empty());
    let back = support::arrived(&broker, "jobs").await;
    assert_eq!(back[0].payload, b"job 1");
    // /metrics counts them: five taken, one each acked, requeued, dead-lettered and expired,
    // and job 2 still held. (The counters are the process's, which the other tests here
    // share; the gauge is this host's.) The broker may show job 1 again, at the visibility its
    // lease set, a moment before the reaper's next round (every 250 ms) counts it expired.
    let expired = "wharf_leases_settled_total{outcome=\"expired\"}";
    let mut metrics = support::scrape(host.addr).await;
    for _ in 0..40 {
        if metrics.contains(&format!("{expired} "))
            && support::metric(&metrics, "wharf_leases_held") == 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = support::scrape(host.addr).await;
    }
    let value = |series: &str| support::metric(&metrics, series);
    assert_eq!(value("wharf_leases_held"), 1.0, "job 2 is held");
    assert!(value("wharf_leases_taken_total") >= 5.0);
    for outcome in ["ack", "requeue", "dead_letter", "expired"] {
        assert!(
            value(&format!(
                "wharf_leases_settled_total{{outcome=\"{outcome}\"}}"
            )) >= 1.0,
            "{outcome}"
        );
    }
    let again = api.lease("local:jobs", 1, 1_000).await;
    assert_eq!(payload(&again[0]), "job 1");

    // Bad input: a clear error naming the field; an unknown lease is 404.
    for (path, field) in [
        ("queues/local/jobs/lease?lease_ms=0", "lease_ms"),
        ("queues/local/jobs/lease?lease_ms=3600001", "lease_ms"),
        ("queues/local/jobs/lease?timeout_ms=99999999", "timeout_ms"),
    ] {
        let (status, error) = api.call(Method::POST, path, None).await;
        assert_eq!(status, 400, "{path}: {error}");
        assert_eq!(error["error"]["field"], field, "{path}: {error}");
    }
    let (status, _) = api
        .call(Method::POST, "queues/local/jobs/lease?colour=red", None)
        .await;
    assert_eq!(status, 400, "unknown parameters are refused");
    let (status, _) = api
        .call(
            Method::POST,
            &format!("leases/{}/extend", id(&again[0])),
            Some(json!({"lease_ms": 0})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .call(Method::POST, "leases/no-such-lease/nack", None)
        .await;
    assert_eq!(status, 404);
    let anonymous = reqwest::Client::new()
        .post(format!("{}/queues/local/jobs/lease", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // The host stops: what it holds goes back at once.
    host.stop().await;
    let ready = broker.peek("jobs", 10, 1 << 20).await.unwrap();
    assert_eq!(ready.len(), 2, "job 1 and job 2 are back: {ready:?}");
}

/// The CLI: `consume --lease` prints each message after its lease id; `lease ack` settles
/// it; one whose client exits without acking comes back at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_leases_and_settles_and_a_dead_client_loses_nothing() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, config()).await;
    for text in ["first", "second"] {
        broker
            .publish("jobs", Message::new("j", text))
            .await
            .unwrap();
    }
    let base = format!("http://{}", host.addr);
    let wharf = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .args(["--url", &base])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wharf {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = wharf(&["consume", "local:jobs", "--lease", "30"]);
    let (lease, text) = out.trim_end().split_once('\t').expect("LEASE<TAB>payload");
    assert_eq!(text, "first");
    assert!(wharf(&["lease", "list"]).contains(lease));
    assert!(wharf(&["lease", "extend", lease, "60"]).contains("held for"));
    assert_eq!(
        wharf(&["lease", "ack", lease]).trim(),
        format!("acked {lease}")
    );
    // This client "dies": it exits without settling what it leased for a second.
    let out = wharf(&["consume", "local:jobs", "--lease", "1"]);
    assert!(out.ends_with("second\n"), "{out}");
    let started = Instant::now();
    let back = support::arrived(&broker, "jobs").await;
    assert_eq!(back[0].payload, b"second");
    assert!(started.elapsed() < Duration::from_secs(10));
    host.stop().await;
}

/// On RabbitMQ a leased delivery stays unacked on its channel: ack removes it, a deadline
/// returns it to the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_hold_rabbitmq_deliveries_until_settled() {
    let _shared = support::RABBIT.read().await;
    let queue = format!("leases.{}", uuid::Uuid::new_v4().simple());
    let db = TestDb::new(Backend::Sqlite).await;
    let host = rabbit_host(&db, &queue).await;
    let api = Api::new(host.addr);
    for text in ["a", "b"] {
        api.ok(
            Method::POST,
            &format!("queues/rabbit/{queue}/messages"),
            Some(json!({"payload": text})),
        )
        .await;
    }
    let leased = api.lease(&format!("rabbit:{queue}"), 2, 1_500).await;
    assert_eq!(leased.iter().map(payload).collect::<Vec<_>>(), ["a", "b"]);
    api.ok(
        Method::POST,
        &format!("leases/{}/ack", leased[0]["lease"].as_str().unwrap()),
        None,
    )
    .await;
    // `b` is not settled: at its deadline it goes back, and a new lease gets it again.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let again = api
        .lease_within(&format!("rabbit:{queue}"), 2, 1_000, 500)
        .await;
    assert_eq!(again.iter().map(payload).collect::<Vec<_>>(), ["b"]);
    api.ok(
        Method::POST,
        &format!("leases/{}/ack", again[0]["lease"].as_str().unwrap()),
        None,
    )
    .await;
    let empty = api
        .lease_within(&format!("rabbit:{queue}"), 1, 1_000, 300)
        .await;
    assert!(empty.is_empty(), "{empty:?}");
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

/// Leases of one RabbitMQ queue share one channel: 256 leases of one message each hold
/// one channel with 256 consumers, not 256 channels (RabbitMQ allows 2,047 a connection, and
/// the routes on that connection need theirs), and past `MAX_LEASE_BATCHES` open batches a
/// take is refused (409) with nothing taken. Once they are settled, the channel closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_one_rabbitmq_queue_share_one_channel_and_batches_are_bounded() {
    let _shared = support::RABBIT.write().await;
    let queue = format!("leases.{}", uuid::Uuid::new_v4().simple());
    let db = TestDb::new(Backend::Sqlite).await;
    let host = rabbit_host(&db, &queue).await;
    let api = Api::new(host.addr);
    let max = wharf::leases::MAX_LEASE_BATCHES;
    for i in 0..=max {
        api.ok(
            Method::POST,
            &format!("queues/rabbit/{queue}/messages"),
            Some(json!({"payload": format!("m{i}")})),
        )
        .await;
    }
    let mut leases = Vec::new();
    for _ in 0..max {
        let leased = api.lease(&format!("rabbit:{queue}"), 1, 60_000).await;
        assert_eq!(leased.len(), 1);
        leases.push(leased[0]["lease"].as_str().unwrap().to_owned());
    }
    let (status, body) = api
        .call(
            Method::POST,
            &format!("queues/rabbit/{queue}/lease?count=1&timeout_ms=200&lease_ms=1000"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("leased batches"), "{body}");

    // One channel carries every lease's consumer.
    let consumers = || async {
        let out = tokio::process::Command::new("rabbitmqctl")
            .args(["-q", "list_channels", "consumer_count"])
            .output()
            .await
            .expect("rabbitmqctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.trim().parse::<usize>().ok())
            .max()
            .unwrap_or(0)
    };
    assert_eq!(consumers().await, max, "one channel holds the {max} leases");

    for lease in &leases {
        api.ok(Method::POST, &format!("leases/{lease}/ack"), None)
            .await;
    }
    let started = Instant::now();
    while consumers().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the shared channel's consumers stay after every lease is settled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The one message left is still there for the next take.
    let last = api.lease(&format!("rabbit:{queue}"), 5, 1_000).await;
    let expected = format!("m{max}");
    assert_eq!(
        last.iter().map(payload).collect::<Vec<_>>(),
        [expected.as_str()]
    );
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

/// A lease is its taker's: another operator's token can neither settle nor extend it, an
/// admin can; the settlements are in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_settled_only_by_its_taker_or_an_admin() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, config()).await;
    let admin = Api::new(host.addr);
    let taker = token_of(&admin, "taker", "operator").await;
    let stranger = token_of(&admin, "stranger", "operator").await;
    for i in 0..2 {
        broker
            .publish("jobs", Message::new("j", format!("job {i}")))
            .await
            .unwrap();
    }
    let leased = taker.lease("local:jobs", 2, 30_000).await;
    assert_eq!(leased.len(), 2);
    let id = |n: usize| leased[n]["lease"].as_str().unwrap().to_owned();
    for action in ["ack", "nack", "extend"] {
        let body = (action == "extend").then(|| serde_json::json!({ "lease_ms": 60_000 }));
        let (status, error) = stranger
            .call(Method::POST, &format!("leases/{}/{action}", id(0)), body)
            .await;
        assert_eq!(status, 403, "{action}: {error}");
    }
    // Its taker acks one, an admin the other.
    taker
        .ok(Method::POST, &format!("leases/{}/ack", id(0)), None)
        .await;
    admin
        .ok(Method::POST, &format!("leases/{}/ack", id(1)), None)
        .await;
    let audit = admin.ok(Method::GET, "audit?action=lease.ack", None).await;
    let actors: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors.len(), 2, "{audit}");
    assert!(actors.contains(&"token:taker"), "{audit}");
    host.stop().await;
}

/// A nack can be a retry (back after a delay, counted as a delivery) or a dead letter that
/// carries the taker's own error; a body out of bounds is refused, naming its field, and the
/// lease is still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_retries_after_its_delay_or_dead_letters_with_the_takers_error() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, config()).await;
    let api = Api::new(host.addr);
    broker
        .publish("jobs", Message::new("j", "retry me"))
        .await
        .unwrap();
    let first = api.lease("local:jobs", 1, 10_000).await;
    assert_eq!(first[0]["deliveries"], 1, "{first:?}");
    let lease = first[0]["lease"].as_str().unwrap().to_owned();
    let nack = format!("leases/{lease}/nack");

    // Refused, each naming its field; the lease is still held after each.
    let long = "x".repeat(4097);
    let cases = [
        (json!({"delay_ms": 0}), "delay_ms"),
        (json!({"delay_ms": 3_600_001}), "delay_ms"),
        (json!({"requeue": false, "delay_ms": 100}), "delay_ms"),
        (
            json!({"exception": {"message": "m", "name": "E"}}),
            "exception",
        ),
        (
            json!({"requeue": false, "exception": {"message": long, "name": "E"}}),
            "exception.message",
        ),
        (
            json!({"requeue": false, "exception": {"message": "m", "name": ""}}),
            "exception.name",
        ),
        (
            json!({"requeue": false, "exception": {"message": "m", "name": "x".repeat(256)}}),
            "exception.name",
        ),
        (
            json!({"requeue": false, "exception": {"message": "m", "name": "Bad\nName"}}),
            "exception.name",
        ),
        (
            json!({"requeue": false, "exception": {"message": "m", "name": "E", "type": "\u{7}"}}),
            "exception.type",
        ),
        (
            json!({"requeue": false, "exception": {"message": "m", "name": "E", "extra": 1}}),
            "exception.extra",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = api.call(Method::POST, &nack, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let held = api.ok(Method::GET, "leases", None).await;
    assert_eq!(held.as_array().unwrap().len(), 1, "still held: {held}");

    // A retry: not back at once, back after its delay, delivered a second time.
    let started = Instant::now();
    api.ok(Method::POST, &nack, Some(json!({"delay_ms": 1_500})))
        .await;
    let early = api.lease_within("local:jobs", 1, 10_000, 500).await;
    assert!(early.is_empty(), "back before its delay: {early:?}");
    let second = api.lease_within("local:jobs", 1, 10_000, 5_000).await;
    assert_eq!(payload(&second[0]), "retry me");
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    assert_eq!(second[0]["deliveries"], 2, "{second:?}");

    // A dead letter with the taker's error in its headers.
    let lease = second[0]["lease"].as_str().unwrap();
    api.ok(
        Method::POST,
        &format!("leases/{lease}/nack"),
        Some(json!({"requeue": false, "exception": {
            "message": "'customer 7'", "name": "KeyError", "type": "<class 'KeyError'>"}})),
    )
    .await;
    let dead = support::arrived(&broker, "jobs.dead").await;
    let header = |name: &str| match dead[0].header(name) {
        Some(wharf::message::HeaderValue::Text(text)) => text.clone(),
        other => panic!("header {name} is {other:?}"),
    };
    assert_eq!(dead[0].payload, b"retry me");
    assert_eq!(header("exception_name"), "KeyError");
    assert_eq!(header("exception"), "'customer 7'");
    assert_eq!(header("exception_type"), "<class 'KeyError'>");
    let metrics = support::scrape(host.addr).await;
    assert!(
        support::metric(&metrics, "wharf_leases_settled_total{outcome=\"retry\"}") >= 1.0,
        "a retry is counted as one"
    );
    host.stop().await;
}

/// A worker settles its batch in one call: acks, a retry, a dead letter carrying the taker's
/// error; a lease that is not there, or another caller's, is named in the report while the rest
/// are settled. A batch out of bounds, or with one malformed entry, is refused whole and
/// settles nothing. One audit record for the batch; the CLI settles several at once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_leases_is_settled_in_one_call() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, config()).await;
    let admin = Api::new(host.addr);
    let worker = token_of(&admin, "worker", "operator").await;
    for i in 0..5 {
        broker
            .publish("jobs", Message::new("j", format!("job {i}")))
            .await
            .unwrap();
    }
    let mut leased = Vec::new();
    while leased.len() < 4 {
        leased.extend(worker.lease("local:jobs", 4 - leased.len(), 30_000).await);
    }
    leased.sort_by(|a, b| payload(a).cmp(payload(b)));
    let id = |n: usize| leased[n]["lease"].as_str().unwrap().to_owned();
    // The admin holds the fifth: the worker cannot settle it.
    let theirs = admin.lease("local:jobs", 1, 30_000).await;
    let theirs = theirs[0]["lease"].as_str().unwrap().to_owned();

    // Refused whole, each naming its field; everything still held after.
    let too_many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let cases = [
        (json!({ "ack": too_many }), "ack"),
        (json!({ "ack": ["x".repeat(65)] }), "ack"),
        (
            json!({ "ack": [id(0)], "nack": [{"lease": id(1), "exception": {"message": "m", "name": "E"}}] }),
            "nack[0].exception",
        ),
        (
            json!({ "nack": [{"lease": id(1)}, {"lease": id(2), "delay_ms": 0}] }),
            "nack[1].delay_ms",
        ),
        (json!({ "ack": [id(0)], "extend": [] }), "extend"),
    ];
    for (body, field) in cases {
        let (status, error) = worker
            .call(Method::POST, "leases/settle", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let held = admin.ok(Method::GET, "leases", None).await;
    assert_eq!(held.as_array().unwrap().len(), 5, "nothing settled: {held}");

    let report = worker
        .ok(
            Method::POST,
            "leases/settle",
            Some(json!({
                "ack": [id(0), id(1), "no-such-lease"],
                "nack": [
                    {"lease": id(2), "delay_ms": 60_000},
                    {"lease": id(3), "requeue": false, "exception": {
                        "message": "'customer 7'", "name": "KeyError", "type": "<class 'KeyError'>"}},
                    {"lease": theirs},
                ],
            })),
        )
        .await;
    assert_eq!(report["settled"], 4, "{report}");
    let failed: Vec<(&str, &str)> = report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["lease"].as_str().unwrap(), f["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        failed,
        [("no-such-lease", "unknown"), (theirs.as_str(), "not_yours")],
        "{report}"
    );
    let dead = support::arrived(&broker, "jobs.dead").await;
    assert_eq!(dead[0].payload, b"job 3");
    assert_eq!(
        dead[0].header("exception_name"),
        Some(&wharf::message::HeaderValue::Text("KeyError".into()))
    );
    // The retry waits out its delay; the admin's lease is still theirs.
    let held = admin.ok(Method::GET, "leases", None).await;
    let held: Vec<&str> = held
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lease"].as_str().unwrap())
        .collect();
    assert_eq!(held, [theirs.as_str()]);
    assert!(
        worker
            .lease_within("local:jobs", 5, 30_000, 300)
            .await
            .is_empty()
    );

    let audit = admin
        .ok(Method::GET, "audit?action=lease.settle", None)
        .await;
    let records = audit.as_array().unwrap();
    assert_eq!(records.len(), 1, "one record for the batch: {audit}");
    assert_eq!(records[0]["actor"], "token:worker");
    assert_eq!(records[0]["detail"]["acks"], 3, "{audit}");
    assert_eq!(records[0]["detail"]["failed"], 2, "{audit}");
    let metrics = support::scrape(host.addr).await;
    assert!(support::metric(&metrics, "wharf_leases_settled_total{outcome=\"ack\"}") >= 2.0);
    assert!(
        support::metric(
            &metrics,
            "wharf_leases_settled_total{outcome=\"dead_letter\"}"
        ) >= 1.0
    );

    // The CLI: several leases in one call; one that is not there fails the command, named.
    for i in 0..2 {
        broker
            .publish("jobs", Message::new("j", format!("cli {i}")))
            .await
            .unwrap();
    }
    let mut leased = Vec::new();
    while leased.len() < 2 {
        leased.extend(admin.lease("local:jobs", 2 - leased.len(), 30_000).await);
    }
    let ids: Vec<&str> = leased
        .iter()
        .map(|l| l["lease"].as_str().unwrap())
        .collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["lease", "ack", ids[0], ids[1], "no-such-lease"])
        .args(["--url", &format!("http://{}", host.addr)])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, format!("acked {}\nacked {}\n", ids[0], ids[1]));
    assert!(stderr.contains("no-such-lease: no lease"), "{stderr}");
    assert!(
        admin
            .lease_within("local:jobs", 2, 30_000, 300)
            .await
            .is_empty()
    );
    host.stop().await;
}

/// A lease stream's answer, read a line at a time.
struct Stream {
    id: String,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

/// What a lease stream sent next.
#[derive(Debug)]
enum Line {
    Leased(Value),
    Heartbeat,
    Error(Value),
    End,
}

impl Stream {
    /// Opens a lease stream of `address` with `query` (`prefetch=2&heartbeat_ms=100`).
    async fn open(api: &Api, address: &str, query: &str) -> Stream {
        let (connection, queue) = address.split_once(':').unwrap();
        let response = api
            .client
            .post(format!(
                "{}/queues/{connection}/{queue}/lease/stream?{query}",
                api.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/x-ndjson",
            "one JSON document per line"
        );
        let id = response.headers()["wharf-lease-stream"]
            .to_str()
            .unwrap()
            .to_owned();
        Stream {
            id,
            response,
            buffer: Vec::new(),
        }
    }

    async fn line(&mut self) -> Line {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.len() == 1 {
                    return Line::Heartbeat;
                }
                let doc: Value = serde_json::from_slice(&line).expect("a JSON line");
                return match doc.get("error") {
                    Some(_) => Line::Error(doc),
                    None => Line::Leased(doc),
                };
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("a line within 10 s (the heartbeat is shorter)")
                .unwrap();
            match chunk {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Line::End,
            }
        }
    }

    /// The next message, past heartbeats.
    async fn leased(&mut self) -> Value {
        loop {
            match self.line().await {
                Line::Leased(doc) => return doc,
                Line::Heartbeat => continue,
                other => panic!("the stream sent {other:?} where a message was due"),
            }
        }
    }

    /// The messages sent until the stream ends.
    async fn rest(&mut self) -> Vec<Value> {
        let mut rest = Vec::new();
        loop {
            match self.line().await {
                Line::Leased(doc) => rest.push(doc),
                Line::Heartbeat => continue,
                Line::End => return rest,
                Line::Error(error) => panic!("the stream failed: {error}"),
            }
        }
    }

    /// Asserts only heartbeats come for `quiet`: the prefetch holds the rest back.
    async fn only_heartbeats(&mut self, quiet: Duration) {
        let until = Instant::now() + quiet;
        while Instant::now() < until {
            match self.line().await {
                Line::Heartbeat => continue,
                other => panic!("{other:?} came past the stream's prefetch"),
            }
        }
    }
}

fn lease_of(leased: &Value) -> String {
    leased["lease"].as_str().unwrap().to_owned()
}

/// The body of `/api/v1/leases/settle` giving `leases` back to their queues.
fn requeue_all(leases: &[String]) -> Value {
    json!({ "nack": leases.iter().map(|l| json!({"lease": l, "requeue": true})).collect::<Vec<_>>() })
}

/// A lease stream on `address` (holding `m0`..`m4`): messages come in order as the broker
/// delivers them, at most the prefetch unsettled; the next comes as one is settled; it is
/// listed and counted while open; another operator cannot stop it, its taker can, and its
/// answer then ends with what it leased still held, to settle as any lease.
async fn a_lease_stream_holds_its_prefetch(
    api: &Api,
    stranger: &Api,
    address: &str,
    host: std::net::SocketAddr,
) {
    let mut stream = Stream::open(api, address, "prefetch=2&heartbeat_ms=100&lease_ms=30000").await;
    let first = stream.leased().await;
    let second = stream.leased().await;
    assert_eq!([payload(&first), payload(&second)], ["m0", "m1"]);
    assert_eq!(first["deliveries"], 1);
    stream.only_heartbeats(Duration::from_millis(600)).await;

    let listed = api.ok(Method::GET, "leases/streams", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["stream"], stream.id.as_str());
    assert_eq!(listed[0]["address"], address);
    assert_eq!(listed[0]["prefetch"], 2);
    assert_eq!(listed[0]["streamed"], 2);
    assert!(
        listed[0]["taker"].as_str().unwrap().starts_with("token:"),
        "{listed}"
    );
    let metrics = support::scrape(host).await;
    assert_eq!(support::metric(&metrics, "wharf_lease_streams"), 1.0);

    // Settled: the broker sends the next.
    api.ok(
        Method::POST,
        "leases/settle",
        Some(json!({ "ack": [lease_of(&first)] })),
    )
    .await;
    let third = stream.leased().await;
    assert_eq!(payload(&third), "m2");
    stream.only_heartbeats(Duration::from_millis(300)).await;

    // Only its taker (or an admin) stops it.
    let (status, error) = stranger
        .call(
            Method::DELETE,
            &format!("leases/streams/{}", stream.id),
            None,
        )
        .await;
    assert_eq!(status, 403, "{error}");
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("leases/streams/{}", stream.id),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let after = stream.rest().await;
    assert!(after.is_empty(), "nothing past the prefetch: {after:?}");
    let listed = api.ok(Method::GET, "leases/streams", None).await;
    assert_eq!(listed, json!([]));
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("leases/streams/{}", stream.id),
            None,
        )
        .await;
    assert_eq!(status, 404, "stopped already");

    // What it leased is still held, and settles as any lease: given back, every message
    // not acked is there for the next taker.
    let held: Vec<String> = api
        .ok(Method::GET, "leases", None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lease"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = vec![lease_of(&second), lease_of(&third)];
    expected.sort();
    let mut sorted = held.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    let settled = api
        .ok(Method::POST, "leases/settle", Some(requeue_all(&held)))
        .await;
    assert_eq!(settled["settled"], 2, "{settled}");
    let mut left: Vec<String> = api
        .lease(address, 10, 30_000)
        .await
        .iter()
        .map(|l| payload(l).to_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["m1", "m2", "m3", "m4"]);
}

/// The API as a new token `name` of `role` sees it.
async fn token_of(admin: &Api, name: &str, role: &str) -> Api {
    let made = admin
        .ok(
            Method::POST,
            "tokens",
            Some(json!({ "name": name, "role": role })),
        )
        .await;
    Api {
        client: support::client_with_token(made["token"].as_str().unwrap()),
        base: admin.base.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_stream_on_the_embedded_broker_holds_its_prefetch_and_stops_cleanly() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, config()).await;
    let api = Api::new(host.addr);
    let taker = token_of(&api, "worker", "operator").await;
    let stranger = token_of(&api, "stranger", "operator").await;
    for i in 0..5 {
        broker
            .publish("jobs", Message::new("j", format!("m{i}")))
            .await
            .unwrap();
    }
    a_lease_stream_holds_its_prefetch(&taker, &stranger, "local:jobs", host.addr).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_stream_on_rabbitmq_holds_its_prefetch_and_stops_cleanly() {
    let _shared = support::RABBIT.read().await;
    let queue = format!("leases.{}", uuid::Uuid::new_v4().simple());
    let db = TestDb::new(Backend::Sqlite).await;
    let host = rabbit_host(&db, &queue).await;
    let api = Api::new(host.addr);
    let taker = token_of(&api, "worker", "operator").await;
    let stranger = token_of(&api, "stranger", "operator").await;
    for i in 0..5 {
        api.ok(
            Method::POST,
            &format!("queues/rabbit/{queue}/messages"),
            Some(json!({"payload": format!("m{i}")})),
        )
        .await;
    }
    a_lease_stream_holds_its_prefetch(&taker, &stranger, &format!("rabbit:{queue}"), host.addr)
        .await;
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

/// A worker that hangs up mid-stream loses nothing: the host notices at the next heartbeat
/// and closes the stream; what it leased (read or not) comes back at the leases' deadline.
/// The host stopping ends every stream's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_stream_whose_worker_hangs_up_loses_nothing() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, config()).await;
    let api = Api::new(host.addr);
    for i in 0..3 {
        broker
            .publish("jobs", Message::new("j", format!("m{i}")))
            .await
            .unwrap();
    }
    let mut stream = Stream::open(
        &api,
        "local:jobs",
        "prefetch=3&heartbeat_ms=100&lease_ms=1000",
    )
    .await;
    assert_eq!(payload(&stream.leased().await), "m0");
    drop(stream);
    let started = Instant::now();
    while api.ok(Method::GET, "leases/streams", None).await != json!([]) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the host keeps a stream nobody reads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut back: Vec<String> = api
        .lease_within("local:jobs", 3, 30_000, 5_000)
        .await
        .iter()
        .map(|l| payload(l).to_owned())
        .collect();
    back.sort();
    assert_eq!(
        back,
        ["m0", "m1", "m2"],
        "every message is back after the leases ran out, each once"
    );

    let mut stream = Stream::open(&api, "local:jobs", "heartbeat_ms=100").await;
    let stopping = tokio::spawn(async move { host.stop().await });
    assert!(stream.rest().await.is_empty());
    stopping.await.unwrap();
}

/// Bad parameters are refused with the field at fault before anything is taken; a viewer
/// cannot open a stream; an unknown stream is not found, its name not echoed whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_stream_refuses_bad_input() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, config()).await;
    broker
        .publish("jobs", Message::new("j", "kept"))
        .await
        .unwrap();
    let api = Api::new(host.addr);
    for (query, field) in [
        ("prefetch=0", "prefetch"),
        ("prefetch=1001", "prefetch"),
        ("heartbeat_ms=5", "heartbeat_ms"),
        ("heartbeat_ms=60001", "heartbeat_ms"),
        ("lease_ms=0", "lease_ms"),
        ("lease_ms=3600001", "lease_ms"),
    ] {
        let (status, error) = api
            .call(
                Method::POST,
                &format!("queues/local/jobs/lease/stream?{query}"),
                None,
            )
            .await;
        assert_eq!(status, 400, "{query}: {error}");
        assert_eq!(error["error"]["field"], field, "{query}: {error}");
    }
    let (status, _) = api
        .call(
            Method::POST,
            "queues/local/jobs/lease/stream?surprise=1",
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .call(Method::POST, "queues/nowhere/jobs/lease/stream", None)
        .await;
    assert_eq!(status, 404);
    let viewer = token_of(&api, "watcher", "viewer").await;
    let (status, _) = viewer
        .call(Method::POST, "queues/local/jobs/lease/stream", None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = viewer.call(Method::GET, "leases/streams", None).await;
    assert_eq!(status, 403);
    let long = "x".repeat(10_000);
    let (status, error) = api
        .call(Method::DELETE, &format!("leases/streams/{long}"), None)
        .await;
    assert_eq!(status, 404);
    assert!(error.to_string().len() < 1_000, "{error}");
    // Nothing was taken by the refusals.
    assert_eq!(api.ok(Method::GET, "leases/streams", None).await, json!([]));
    let kept = api.lease("local:jobs", 1, 1_000).await;
    assert_eq!(payload(&kept[0]), "kept");
    host.stop().await;
}

/// The CLI follows a queue (`consume --lease SECS --follow`): each message printed after its
/// lease as it arrives, at most `--count` unsettled; `lease streams` lists the stream and
/// `lease stop` ends it, and the follower with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_follows_a_queue_under_leases() {
    use tokio::io::AsyncBufReadExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, config()).await;
    for text in ["first", "second"] {
        broker
            .publish("jobs", Message::new("j", text))
            .await
            .unwrap();
    }
    let base = format!("http://{}", host.addr);
    let mut follower = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "consume",
            "local:jobs",
            "--lease",
            "30",
            "--follow",
            "--count",
            "1",
        ])
        .args(["--url", &base])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a message within 20 s")
        .unwrap()
        .expect("a line");
    let (lease, text) = line.split_once('\t').expect("LEASE<TAB>payload");
    assert_eq!(text, "first");
    // One unsettled at most: the second comes once the first is acked.
    assert!(
        tokio::time::timeout(Duration::from_millis(700), lines.next_line())
            .await
            .is_err(),
        "a second message came before the first was settled"
    );
    let out = support::wharf_cli(&["lease", "ack", lease], host.addr.port());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the second within 20 s")
        .unwrap()
        .expect("a line");
    assert!(line.ends_with("\tsecond"), "{line}");

    let out = support::wharf_cli(&["lease", "streams"], host.addr.port());
    let listed = String::from_utf8(out.stdout).unwrap();
    let stream = listed.split('\t').next().unwrap().to_owned();
    assert!(listed.contains("local:jobs"), "{listed}");
    assert!(listed.contains("2 leased"), "{listed}");
    let out = support::wharf_cli(&["lease", "stop", &stream], host.addr.port());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = tokio::time::timeout(Duration::from_secs(20), follower.wait())
        .await
        .expect("the follower ends with its stream")
        .unwrap();
    assert!(status.success());
    host.stop().await;
}
