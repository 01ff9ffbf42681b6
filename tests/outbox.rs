//! The outbox and the inbox: units of work commit whole or not at all, the relay's claims keep
//! order per key and come back from a dead relay, and messages handed over while RabbitMQ is
//! stopped, or before the host is killed, all arrive once it is back, in order per key. On
//! SQLite and PostgreSQL, against the local RabbitMQ.

#[macro_use]
mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Backend, TestDb};
use wharf::message::Message;
use wharf::runtime::{KvLimits, KvWrite};
use wharf::store::{Committed, OutboxEntry, Store, UnitOfWork};

on_every_backend!(
    work_commits_whole_or_not_at_all,
    claims_keep_order_per_key_and_retries_hold_their_key,
    two_relays_never_split_a_key_and_a_dead_relays_claims_come_back,
    refused_rows_are_kept_dead_until_retried_or_deleted,
);

/// The test that restarts PostgreSQL holds this for writing; every other test of this binary
/// that uses PostgreSQL holds it for reading, so a restart never hits a test that does not
/// expect it.
static POSTGRES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A database of `backend`, with the lock that keeps the PostgreSQL restart away from it.
async fn database(backend: Backend) -> (TestDb, tokio::sync::RwLockReadGuard<'static, ()>) {
    let guard = POSTGRES.read().await;
    (TestDb::new(backend).await, guard)
}

fn entry(destination: &str, key: Option<&str>, payload: &str) -> OutboxEntry {
    let mut message = Message::new("t", payload.as_bytes().to_vec());
    message.key = key.map(|k| k.as_bytes().to_vec());
    OutboxEntry {
        destination: destination.into(),
        origin: "test".into(),
        message,
    }
}

async fn put(store: &Store, entries: Vec<OutboxEntry>) {
    let work = UnitOfWork {
        outbox: entries,
        ..UnitOfWork::default()
    };
    assert_eq!(
        store
            .commit_work(&work, &KvLimits::default(), now())
            .await
            .unwrap(),
        Committed::Done
    );
}

fn now() -> i64 {
    wharf::message::now_ms() as i64
}

fn payloads(rows: &[wharf::store::OutboxRow]) -> Vec<String> {
    rows.iter()
        .map(|r| String::from_utf8_lossy(&r.message.payload).into_owned())
        .collect()
}

async fn work_commits_whole_or_not_at_all(backend: Backend) {
    let (db, _pg) = database(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let limits = KvLimits {
        max_total_bytes: 64,
        ..KvLimits::default()
    };
    let write = |key: &str, value: &[u8]| KvWrite {
        plugin: "p".into(),
        key: key.into(),
        value: value.to_vec(),
    };
    let work = UnitOfWork {
        outbox: vec![entry("local:out", None, "a"), entry("local:out", None, "b")],
        kv: vec![write("count", b"1")],
        handled: Some(("route".into(), "input-1".into())),
    };
    assert_eq!(
        store.commit_work(&work, &limits, now()).await.unwrap(),
        Committed::Done
    );
    assert!(store.inbox_has("route", "input-1").await.unwrap());
    assert!(!store.inbox_has("other-route", "input-1").await.unwrap());
    assert_eq!(store.kv_get("p", "count").await.unwrap().unwrap(), b"1");
    assert_eq!(store.outbox_stats(now()).await.unwrap().pending, 2);

    // The same input again (delivered twice): nothing more is written.
    let again = UnitOfWork {
        outbox: vec![entry("local:out", None, "a again")],
        kv: vec![write("count", b"2")],
        handled: Some(("route".into(), "input-1".into())),
    };
    assert_eq!(
        store.commit_work(&again, &limits, now()).await.unwrap(),
        Committed::AlreadyHandled
    );
    assert_eq!(store.kv_get("p", "count").await.unwrap().unwrap(), b"1");
    assert_eq!(store.outbox_stats(now()).await.unwrap().pending, 2);

    // A kv write over the quota refuses the whole unit: no output, no inbox record, no
    // earlier write of the same unit.
    let over = UnitOfWork {
        outbox: vec![entry("local:out", None, "c")],
        kv: vec![write("small", b"x"), write("big", &[0; 100])],
        handled: Some(("route".into(), "input-2".into())),
    };
    match store.commit_work(&over, &limits, now()).await.unwrap() {
        Committed::KvRefused(reason) => {
            assert!(reason.contains("over the plugin's limit"), "{reason}")
        }
        other => panic!("expected the quota to refuse the unit, got {other:?}"),
    }
    assert_eq!(store.kv_get("p", "small").await.unwrap(), None);
    assert!(!store.inbox_has("route", "input-2").await.unwrap());
    assert_eq!(store.outbox_stats(now()).await.unwrap().pending, 2);
}

async fn claims_keep_order_per_key_and_retries_hold_their_key(backend: Backend) {
    let (db, _pg) = database(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    put(
        &store,
        vec![
            entry("q:a", Some("k1"), "k1-1"),
            entry("q:a", Some("k2"), "k2-1"),
            entry("q:a", Some("k1"), "k1-2"),
            entry("q:a", None, "free-1"),
            entry("q:a", Some("k1"), "k1-3"),
            // The same key to another destination is another order.
            entry("q:b", Some("k1"), "b-k1-1"),
        ],
    )
    .await;
    let t = now();
    let rows = store.outbox_claim("r1", 100, t, t + 60_000).await.unwrap();
    assert_eq!(
        payloads(&rows),
        ["k1-1", "k2-1", "k1-2", "free-1", "k1-3", "b-k1-1"]
    );
    // k1-1 fails: it waits out its retry, and k1-2 and k1-3 are let go unsent. The rest
    // were sent.
    let by_payload: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(&r.message.payload).into_owned(),
                r.seq,
            )
        })
        .collect();
    store
        .outbox_retry(
            "r1",
            by_payload["k1-1"],
            "broker down",
            t + 400,
            &[by_payload["k1-2"], by_payload["k1-3"]],
        )
        .await
        .unwrap();
    let sent: Vec<i64> = ["k2-1", "free-1", "b-k1-1"]
        .iter()
        .map(|p| by_payload[*p])
        .collect();
    store.outbox_sent("r1", &sent, t).await.unwrap();
    let stats = store.outbox_stats(t).await.unwrap();
    assert_eq!(stats.pending, 3);
    let a = stats
        .destinations
        .iter()
        .find(|d| d.destination == "q:a")
        .unwrap();
    assert_eq!(a.last_error.as_deref(), Some("broker down"));

    // Until k1-1 is due nothing of k1 may go, whoever asks.
    let early = store
        .outbox_claim("r2", 100, t + 100, t + 60_000)
        .await
        .unwrap();
    assert!(early.is_empty(), "{:?}", payloads(&early));
    // Then all three, in order.
    let due = store
        .outbox_claim("r2", 100, t + 500, t + 60_000)
        .await
        .unwrap();
    assert_eq!(payloads(&due), ["k1-1", "k1-2", "k1-3"]);
    assert_eq!(due[0].attempts, 1);
}

async fn two_relays_never_split_a_key_and_a_dead_relays_claims_come_back(backend: Backend) {
    let (db, _pg) = database(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    put(
        &store,
        vec![
            entry("q:a", Some("k"), "k-1"),
            entry("q:a", Some("k"), "k-2"),
            entry("q:a", Some("k"), "k-3"),
            entry("q:a", None, "free-1"),
            entry("q:a", None, "free-2"),
        ],
    )
    .await;
    let t = now();
    let first = store.outbox_claim("r1", 2, t, t + 1_000).await.unwrap();
    assert_eq!(payloads(&first), ["k-1", "k-2"]);
    // k-3 stays behind r1's live claims on k-1 and k-2.
    let second = store.outbox_claim("r2", 10, t, t + 1_000).await.unwrap();
    assert_eq!(payloads(&second), ["free-1", "free-2"]);
    // Both die. Once their claims run out, another relay takes everything, the key whole
    // and in order.
    let later = store
        .outbox_claim("r2", 10, t + 1_001, t + 60_000)
        .await
        .unwrap();
    assert_eq!(payloads(&later), ["k-1", "k-2", "k-3", "free-1", "free-2"]);
    // r1's late word changes nothing: the rows are r2's now.
    store
        .outbox_sent("r1", &[first[0].seq], t + 1_002)
        .await
        .unwrap();
    assert_eq!(store.outbox_stats(t).await.unwrap().pending, 5);
    // A relay starting again under its old name takes back what it held.
    store.outbox_release_all("r2").await.unwrap();
    let back = store
        .outbox_claim("r3", 10, t + 1_003, t + 60_000)
        .await
        .unwrap();
    assert_eq!(back.len(), 5);
}

async fn refused_rows_are_kept_dead_until_retried_or_deleted(backend: Backend) {
    let (db, _pg) = database(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    put(
        &store,
        vec![
            entry("q:a", Some("k"), "bad"),
            entry("q:a", Some("k"), "after"),
        ],
    )
    .await;
    let t = now();
    let rows = store.outbox_claim("r", 10, t, t + 60_000).await.unwrap();
    store
        .outbox_dead("r", rows[0].seq, "no such exchange", t)
        .await
        .unwrap();
    store.outbox_sent("r", &[rows[1].seq], t).await.unwrap();
    let stats = store.outbox_stats(t).await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 1));
    let dead = store.outbox_dead_rows(10, 1 << 20).await.unwrap();
    assert_eq!(dead.len(), 1);
    // A byte budget smaller than one row still answers that one row.
    assert_eq!(store.outbox_dead_rows(10, 1).await.unwrap().len(), 1);
    assert_eq!(dead[0].error, "no such exchange");
    assert_eq!(dead[0].message.payload, b"bad");
    // Retried: pending again, first of its key.
    assert!(store.outbox_revive(dead[0].seq, t).await.unwrap());
    assert!(!store.outbox_revive(dead[0].seq, t).await.unwrap());
    let again = store
        .outbox_claim("r", 10, t + 1, t + 60_000)
        .await
        .unwrap();
    assert_eq!(payloads(&again), ["bad"]);
    store
        .outbox_dead("r", again[0].seq, "still", t)
        .await
        .unwrap();
    assert!(store.outbox_forget(again[0].seq).await.unwrap());
    assert!(!store.outbox_forget(again[0].seq).await.unwrap());
    // Sent rows and inbox records go by age.
    let (sent, handled) = store.outbox_prune(t + 1, t + 1).await.unwrap();
    assert_eq!((sent, handled), (1, 0));
    let stats = store.outbox_stats(t).await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 0));
}

/// On PostgreSQL a transaction may commit after a later-numbered one: the relay keeps no
/// cursor, so the earlier row is found when it commits, not skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_commit_out_of_order_are_not_skipped() {
    use sqlx::Connection;
    let (db, _pg) = database(Backend::Postgres).await;
    let store = Store::open(&db.url).await.unwrap();
    let insert = "INSERT INTO outbox (destination, origin, state, due_ms, created_ms, id, topic, \
        headers, persistent, payload, timestamp_ms) \
        VALUES ('q:a', 'test', 'pending', 0, 0, $1, 't', '[]', 1, $2, 0)";
    let mut slow = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut tx = slow.begin().await.unwrap();
    sqlx::query(insert)
        .bind("early")
        .bind(b"early".to_vec())
        .execute(&mut *tx)
        .await
        .unwrap();
    put(&store, vec![entry("q:a", None, "late")]).await;
    let t = now();
    let first = store.outbox_claim("r", 10, t, t + 60_000).await.unwrap();
    assert_eq!(payloads(&first), ["late"]);
    assert!(
        first[0].seq > 1,
        "the uncommitted row took the lower number"
    );
    store.outbox_sent("r", &[first[0].seq], t).await.unwrap();
    tx.commit().await.unwrap();
    let second = store.outbox_claim("r", 10, t, t + 60_000).await.unwrap();
    assert_eq!(payloads(&second), ["early"]);
}

// --- Through a host, against RabbitMQ ---

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A host's config: `db`, a `rabbit` connection declaring `queue`, and the outbox as given.
fn rabbit_config(queue: &str, outbox: wharf::config::OutboxConfig) -> wharf::config::Config {
    let mut config = wharf::config::Config {
        routes: Vec::new(),
        outbox,
        ..wharf::config::Config::default()
    };
    config.connections.insert(
        "rabbit".into(),
        wharf::config::ConnectionConfig::Amqp(Box::new(wharf::broker::amqp::AmqpConfig {
            url: Some(support::amqp_url()),
            queues: vec![wharf::broker::amqp::config::AmqpQueueConfig::named(queue)],
            ..wharf::broker::amqp::AmqpConfig::default()
        })),
    );
    config
}

/// `count` messages for `queue`, keyed `k0`..`k9`, each payload `key:n` (n counting per key).
fn batch(queue: &str, count: usize) -> Value {
    let messages: Vec<Value> = (0..count)
        .map(|i| {
            let key = format!("k{}", i % 10);
            json!({
                "to": format!("rabbit:{queue}"),
                "message": { "key": key, "payload": format!("{key}:{}", i / 10) },
            })
        })
        .collect();
    json!({ "messages": messages })
}

async fn hand_over(client: &reqwest::Client, base: &str, body: &Value) -> Vec<String> {
    let answer = client
        .post(format!("{base}/api/v1/outbox"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

use support::read_in_order;

/// With RabbitMQ stopped, 1,000 durable messages are accepted through the API; when it is back
/// all 1,000 arrive, in order per key, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_handed_over_while_rabbitmq_is_stopped_arrive_when_it_is_back() {
    let _exclusive = support::RABBIT.write().await;
    let queue = unique("outbox-down");
    support::delete_amqp_queues(std::slice::from_ref(&queue)).await;
    // Declared now, so it is there when the broker comes back.
    support::declare_durable_queue(&queue).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _) = support::start_host(&db, rabbit_config(&queue, Default::default())).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);

    let restart = support::RestartRabbit;
    support::rabbitmqctl(&["stop_app"]).await;
    let ids = hand_over(&client, &base, &batch(&queue, 1_000)).await;
    assert_eq!(ids.len(), 1_000);
    // Committed and waiting; the relay keeps trying, and the backlog says why it waits (once
    // a send has waited out the connection's connect timeout).
    let mut stats = Value::Null;
    for _ in 0..60 {
        stats = client
            .get(format!("{base}/api/v1/outbox"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["destinations"][0]["last_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(stats["pending"], 1_000, "{stats}");
    let destination = &stats["destinations"][0];
    assert_eq!(destination["destination"], format!("rabbit:{queue}"));
    assert!(destination["last_error"].is_string(), "{stats}");
    support::rabbitmqctl(&["start_app"]).await;
    drop(restart);

    let seen = read_in_order(&queue, 1_000).await;
    let mut sorted = seen.clone();
    sorted.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(sorted, expected, "each message keeps its id");
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

/// Messages committed to the outbox of a host killed with SIGKILL before it sent them are
/// sent by the next host on the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_loses_nothing_it_accepted() {
    let _shared = support::RABBIT.read().await;
    let queue = unique("outbox-kill");
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = |relay: bool| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"sqlite://{}/wharf.db\"\nplugin_dir = \"{}\"\n\n\
             [connections.rabbit]\nkind = \"amqp\"\nurl = \"{}\"\n[[connections.rabbit.queues]]\nname = \"{queue}\"\n\n\
             [outbox]\nrelay = {relay}\n",
            dir.path().display(),
            support::plugin_dir().display(),
            support::amqp_url(),
        )
    };
    // The first host takes the messages but does not relay: they are in its database only.
    std::fs::write(dir.path().join("holding.toml"), config(false)).unwrap();
    let mut first = support::serve_config(&dir.path().join("holding.toml"), dir.path(), port);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = support::client_with_token(&support::local_token(addr));
    let base = format!("http://{addr}");
    let ids = hand_over(&client, &base, &batch(&queue, 500)).await;
    first.kill().unwrap();
    first.wait().unwrap();

    std::fs::write(dir.path().join("relaying.toml"), config(true)).unwrap();
    let mut second = support::serve_config(&dir.path().join("relaying.toml"), dir.path(), port);
    let seen = read_in_order(&queue, 500).await;
    assert_eq!(seen.len(), ids.len());
    let _ = second.kill();
    let _ = second.wait();
    support::delete_amqp_queues(&[queue]).await;
}

/// Two hosts on one PostgreSQL database relay one backlog together, each message once, in
/// order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_postgresql_relay_one_backlog_together() {
    use sqlx::Connection;
    let _shared = support::RABBIT.read().await;
    let queue = unique("outbox-two");
    let (db, _pg) = database(Backend::Postgres).await;
    // Small batches, so the backlog takes long enough for both relays to share it.
    let outbox = wharf::config::OutboxConfig {
        batch: 8,
        ..Default::default()
    };
    let (a, _) = support::start_host(&db, rabbit_config(&queue, outbox.clone())).await;
    let (b, _) = support::start_host(&db, rabbit_config(&queue, outbox)).await;
    // Half the backlog is handed over through each host, so each host's relay is woken by
    // work of its own (besides polling) whichever of them is quicker: both must relay.
    let all = batch(&queue, 1_000);
    let messages = all["messages"].as_array().unwrap();
    let (first, second) = messages.split_at(500);
    let mut ids = Vec::new();
    for (host, half) in [(&a, first), (&b, second)] {
        let client = support::client_with_token(&support::local_token(host.addr));
        let base = format!("http://{}", host.addr);
        ids.extend(hand_over(&client, &base, &json!({ "messages": half })).await);
    }
    let mut seen = read_in_order(&queue, 1_000).await;
    ids.sort();
    seen.sort();
    assert_eq!(seen, ids);
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let relays: Vec<(String, i64)> = sqlx::query_as(
        "SELECT claimed_by, COUNT(*) FROM outbox WHERE state = 'sent' GROUP BY claimed_by",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(relays.len(), 2, "both hosts relayed: {relays:?}");
    a.stop().await;
    b.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

/// On every route, a plugin's kv writes commit only with the rest of its work; a durable
/// route puts its outputs through the outbox and its inbox makes a redelivery a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_writes_commit_with_the_work_or_not_at_all() {
    for durable in [false, true] {
        let db = TestDb::new(Backend::Sqlite).await;
        let mut config = wharf::config::Config {
            routes: vec![wharf::config::RouteConfig {
                name: "relaying".into(),
                from: "local:relay.in".into(),
                through: vec!["relay".into()],
                to: Some("local:relay.out".into()),
                durable,
                retry: wharf::config::RetryConfig {
                    max: 0,
                    ..Default::default()
                },
                ..Default::default()
            }],
            ..wharf::config::Config::default()
        };
        config.plugins.insert(
            "relay".into(),
            wharf::config::PluginConfig {
                path: support::plugin_path("relay"),
                config: [("to".to_owned(), "local:relay.copies".to_owned())].into(),
                publish: vec!["local:relay.*".into()],
                ..Default::default()
            },
        );
        let (host, broker) = support::start_host(&db, config).await;
        let store = Store::open(&db.url).await.unwrap();
        let send = |payload: &str| {
            let mut m = Message::new("relay.in", payload.as_bytes().to_vec());
            m.id = format!("input-{payload}");
            m
        };
        broker.publish("relay.in", send("one")).await.unwrap();
        support::drained(&broker, "relay.in").await;
        broker
            .publish("relay.in", send("fail-after-kv"))
            .await
            .unwrap();
        support::drained(&broker, "relay.in").await;
        // The failed call wrote relayed = 2 and then failed: its write is not kept.
        let dead = support::arrived(&broker, "relay.in.dead").await;
        assert_eq!(dead[0].payload, b"fail-after-kv");
        assert_eq!(
            store.kv_get("relay", "relayed").await.unwrap().unwrap(),
            b"1"
        );
        broker.publish("relay.in", send("two")).await.unwrap();
        support::drained(&broker, "relay.in").await;
        wait_for(|| async {
            broker.stats("relay.out").await.unwrap().depth() == 2
                && broker.stats("relay.copies").await.unwrap().depth() == 2
        })
        .await;
        assert_eq!(
            store.kv_get("relay", "relayed").await.unwrap().unwrap(),
            b"2"
        );
        if durable {
            // The same input again: the inbox has it, so nothing runs and nothing is sent.
            broker.publish("relay.in", send("two")).await.unwrap();
            support::drained(&broker, "relay.in").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(broker.stats("relay.out").await.unwrap().depth(), 2);
            assert_eq!(
                store.kv_get("relay", "relayed").await.unwrap().unwrap(),
                b"2"
            );
            assert!(store.inbox_has("relaying", "input-two").await.unwrap());
        }
        host.stop().await;
    }
}

async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the condition did not hold within 20 s");
}

/// Bad handovers are refused whole, naming the field, and commit nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handovers_are_refused_whole() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _) = support::start_host(&db, wharf::config::Config::default()).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    let good = json!({ "to": "local:a", "message": { "payload": "fine" } });
    let cases = [
        (
            json!({ "messages": [good.clone(), { "to": "nowhere:q", "message": {} }] }),
            "messages[1].to",
        ),
        (
            json!({ "messages": [good.clone(), { "to": "local:a" }] }),
            "messages[1].message",
        ),
        (
            json!({ "messages": [good.clone(), { "to": "local:a", "message": { "payload": "x", "bogus": 1 } }] }),
            "messages[1].message.bogus",
        ),
        (
            json!({ "to": "local:a", "message": { "payload": "x" }, "extra": true }),
            "extra",
        ),
        (json!({ "messages": [] }), "messages"),
        (
            json!({ "to": "local:a", "message": { "payload": "x".repeat(2_000) } }),
            "message",
        ),
        // The whole message counts: one byte of payload, 2,000 of headers.
        (
            json!({ "to": "local:a", "message": { "payload": "x", "headers": { "h": "x".repeat(2_000) } } }),
            "message",
        ),
        (
            json!({ "to": "local:a", "message": { "payload": "x", "topic": "nul\u{0}" } }),
            "message.topic",
        ),
    ];
    for (body, field) in cases {
        let answer = client
            .post(format!("{base}/api/v1/outbox"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let error: Value = answer.json().await.unwrap();
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let too_many: Vec<Value> = (0..1_001).map(|_| good.clone()).collect();
    let answer = client
        .post(format!("{base}/api/v1/outbox"))
        .json(&json!({ "messages": too_many }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let stats: Value = client
        .get(format!("{base}/api/v1/outbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["pending"], 0,
        "nothing of a refused batch was committed"
    );
    // Without a token: refused before the body is read.
    let anonymous = reqwest::Client::new()
        .post(format!("{base}/api/v1/outbox"))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    host.stop().await;
}

/// PostgreSQL restarted under a durable route: nothing is lost, and the host recovers by
/// itself (commits that fail while it is down are retried; the relay waits and goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_route_survives_a_postgresql_restart() {
    let _exclusive = POSTGRES.write().await;
    let _shared = support::RABBIT.read().await;
    let db = TestDb::new(Backend::Postgres).await;
    let (input, output) = (unique("outbox-pg-in"), unique("outbox-pg-out"));
    let mut config = rabbit_config(&input, Default::default());
    if let Some(wharf::config::ConnectionConfig::Amqp(amqp)) = config.connections.get_mut("rabbit")
    {
        amqp.queues
            .push(wharf::broker::amqp::config::AmqpQueueConfig::named(&output));
    }
    config.routes = vec![wharf::config::RouteConfig {
        name: "kept".into(),
        from: format!("rabbit:{input}"),
        through: vec!["uppercase".into()],
        to: Some(format!("rabbit:{output}")),
        durable: true,
        concurrency: 32,
        // Enough tries to outlast a restart (doubling from 100 ms, capped at 2 s).
        retry: wharf::config::RetryConfig {
            max: 40,
            backoff_ms: 100,
            max_backoff_ms: 2_000,
        },
        ..Default::default()
    }];
    let (host, _) = support::start_host(&db, config).await;
    let client = support::amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    const COUNT: usize = 2_000;
    let publisher = tokio::spawn({
        let (channel, input) = (channel.clone(), input.clone());
        async move {
            for i in 0..COUNT {
                channel
                    .basic_publish(
                        "".into(),
                        input.as_str().into(),
                        lapin::options::BasicPublishOptions::default(),
                        format!("k{}:{}", i % 10, i / 10).as_bytes(),
                        lapin::BasicProperties::default()
                            .with_delivery_mode(2)
                            .with_message_id(format!("m{i}").into()),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("the machine's PostgreSQL cluster (pg_ctlcluster) restarts here")
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let out = tokio::process::Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            version.to_str().unwrap(),
            "main",
            "restart",
        ])
        .output()
        .await
        .expect("running pg_ctlcluster");
    assert!(
        out.status.success(),
        "restarting PostgreSQL failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    publisher.await.unwrap();

    // Every input arrives upper-cased; a few may come twice (an input redelivered after a
    // commit whose answer the restart cut off, before its inbox record could be read).
    use futures::StreamExt as _;
    let mut consumer = channel
        .basic_consume(
            output.as_str().into(),
            "pg-restart".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut duplicates = 0;
    while seen.len() < COUNT {
        let delivery = tokio::time::timeout(Duration::from_secs(90), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {COUNT} arrived", seen.len()))
            .unwrap()
            .unwrap();
        let text = String::from_utf8(delivery.data).unwrap();
        assert!(text.starts_with('K'), "{text}");
        if !seen.insert(text) {
            duplicates += 1;
        }
    }
    println!("{COUNT} arrived through a PostgreSQL restart, {duplicates} twice");
    let _ = client.close(200, "done".into()).await;
    host.stop().await;
    support::delete_amqp_queues(&[input, output]).await;
}

/// `wharf publish --durable` and `wharf outbox stats|dead|retry|delete` against a running host:
/// a message its destination refuses for good is kept as dead, sent again, and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_hands_over_and_looks_after_the_outbox() {
    let (db, _pg) = database(Backend::Sqlite).await;
    let (host, broker) = support::start_host(&db, wharf::config::Config::default()).await;
    let url = format!("http://{}", host.addr);
    let wharf = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(&args)
            .output()
            .await
            .expect("running wharf");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let args = |words: &[&str]| -> Vec<String> {
        words
            .iter()
            .map(|w| w.to_string())
            .chain(["--url".to_owned(), url.clone()])
            .collect()
    };
    let stats = || async {
        let (ok, out, err) = wharf(args(&["outbox", "stats", "--json"])).await;
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };

    let (ok, out, err) = wharf(args(&["publish", "--durable", "local:demo.in", "kept"])).await;
    assert!(ok && out.contains("into the outbox"), "{out}{err}");
    let arrived = support::arrived(&broker, "demo.out").await;
    assert_eq!(arrived[0].payload, b"KEPT");

    // An address the embedded broker refuses (a name over its limit): dead, with the reason.
    let refused = format!("local:{}", "x".repeat(300));
    let (ok, out, err) = wharf(args(&["publish", "--durable", &refused, "doomed"])).await;
    assert!(ok, "{out}{err}");
    wait_for(|| async { stats().await["dead"] == 1 }).await;
    let (ok, text, _) = wharf(args(&["outbox", "stats"])).await;
    assert!(
        ok && text.contains("0 pending") && text.contains("1 dead"),
        "{text}"
    );
    let (ok, out, err) = wharf(args(&["outbox", "dead", "--json"])).await;
    assert!(ok, "{err}");
    let dead: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dead.as_array().unwrap().len(), 1, "{dead}");
    assert!(
        dead[0]["error"].as_str().unwrap().contains("at most"),
        "{dead}"
    );
    assert_eq!(dead[0]["message"]["payload"], "doomed");
    let seq = dead[0]["seq"].as_i64().unwrap().to_string();

    // Sent again: refused again, dead again.
    let (ok, out, err) = wharf(args(&["outbox", "retry", &seq])).await;
    assert!(ok && out.contains("pending again"), "{out}{err}");
    wait_for(|| async {
        let s = stats().await;
        s["dead"] == 1 && s["pending"] == 0
    })
    .await;
    let (ok, out, err) = wharf(args(&["outbox", "delete", &seq])).await;
    assert!(ok && out.contains("deleted"), "{out}{err}");
    assert_eq!(stats().await["dead"], 0);
    let (ok, _, err) = wharf(args(&["outbox", "delete", &seq])).await;
    assert!(!ok && err.contains("no dead outbox message"), "{err}");
    host.stop().await;
}
