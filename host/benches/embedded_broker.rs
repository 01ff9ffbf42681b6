//! Durable messages per second through the embedded broker, on SQLite and on PostgreSQL, in
//! one run, beside bare sqlx doing the same writes. Prints figures; checks only that every
//! message arrived.
//!
//! Workload: 20,000 messages of 256 bytes published by 64 concurrent publishers (each publish
//! returns once committed), then consumed with prefetch 256 by 2 consumers, each delivery
//! acked (its delete committed) before it counts.
//! Baseline: bare sqlx inserting the same rows in transactions of 256 rows, then selecting and
//! deleting them 256 at a time: the same durable writes with no broker around them.
//!
//! Run with `./dev bench` (PostgreSQL from WHARF_TEST_POSTGRES, default the local server).

use sqlx::Connection;
use std::time::{Duration, Instant};
use wharf::broker::{EmbeddedBroker, EmbeddedConfig};
use wharf::message::Message;
use wharf::store::Store;

const MESSAGES: usize = 20_000;
const PUBLISHERS: usize = 64;
const CONSUMERS: usize = 2;
const PREFETCH: usize = 256;
const BATCH: usize = 256;

struct Rates {
    publish: f64,
    consume: f64,
}

async fn through_broker(url: &str) -> Rates {
    let store = Store::open(url).await.expect("opening the store");
    let broker = EmbeddedBroker::new(store.clone(), EmbeddedConfig::default());
    let payload = vec![b'x'; 256];

    let started = Instant::now();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (broker, payload) = (broker.clone(), payload.clone());
            tokio::spawn(async move {
                for i in (p..MESSAGES).step_by(PUBLISHERS) {
                    let mut msg = Message::new("bench", payload.clone());
                    msg.id = format!("m{i}");
                    broker.publish("bench", msg).await.expect("publish");
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let publish = MESSAGES as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let broker = broker.clone();
            tokio::spawn(async move {
                let mut consumer = broker.consume("bench", PREFETCH).await.unwrap();
                let mut acks = tokio::task::JoinSet::new();
                let mut count = 0;
                // Acks run concurrently, as a route's do; the consumer stops when it finds
                // nothing for a while.
                while let Ok(Ok(d)) =
                    tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
                {
                    acks.spawn(async move { d.ack.ack().await.expect("ack") });
                    count += 1;
                }
                acks.join_all().await;
                count
            })
        })
        .collect();
    let mut consumed = 0;
    for c in consumers {
        consumed += c.await.unwrap();
    }
    // The consumers' idle wait at the end is not work.
    let consume = consumed as f64 / (started.elapsed() - Duration::from_millis(500)).as_secs_f64();
    assert_eq!(consumed, MESSAGES, "every message consumed once");
    assert_eq!(broker.stats("bench").await.unwrap().depth(), 0);
    store.close().await;
    Rates { publish, consume }
}

/// The same rows written and removed by bare sqlx in batches, with nothing around them.
macro_rules! bare_sqlx {
    ($conn:expr) => {{
        let conn = &mut $conn;
        let payload = vec![b'x'; 256];
        let started = Instant::now();
        for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(BATCH) {
            let mut tx = conn.begin().await.unwrap();
            for i in chunk {
                sqlx::query(
                    "INSERT INTO queue_messages (queue, visible_at_ms, leased, deliveries, \
                     enqueued_ms, id, topic, headers, persistent, payload, timestamp_ms) \
                     VALUES ('raw', 0, 0, 0, 0, $1, 'bench', '[]', 1, $2, 0)",
                )
                .bind(format!("m{i}"))
                .bind(&payload)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
        let publish = MESSAGES as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut consumed = 0;
        loop {
            let mut tx = conn.begin().await.unwrap();
            let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
                "SELECT seq, id, payload FROM queue_messages WHERE queue = 'raw' ORDER BY seq LIMIT $1",
            )
            .bind(BATCH as i64)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            if rows.is_empty() {
                break;
            }
            for (seq, _, _) in &rows {
                sqlx::query("DELETE FROM queue_messages WHERE seq = $1")
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            consumed += rows.len();
        }
        assert_eq!(consumed, MESSAGES);
        let consume = MESSAGES as f64 / started.elapsed().as_secs_f64();
        Rates { publish, consume }
    }};
}

async fn bare(url: &str) -> Rates {
    // Opening the store creates the schema; the baseline then uses its own connection.
    Store::open(url).await.unwrap().close().await;
    if url.starts_with("sqlite:") {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
        use std::str::FromStr;
        let options = SqliteConnectOptions::from_str(url)
            .unwrap()
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        bare_sqlx!(conn)
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        bare_sqlx!(conn)
    }
}

async fn fresh_postgres() -> (String, String, String) {
    let admin = std::env::var("WHARF_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("wharf_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL for the benchmark");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    (format!("{base}/{name}"), admin, name)
}

async fn drop_postgres(admin: &str, name: &str) {
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
}

fn print(name: &str, broker: &Rates, bare: &Rates) {
    println!(
        "{name:<11} broker: publish {:>7.0} msg/s, consume+ack {:>7.0} msg/s | bare sqlx: insert {:>7.0} msg/s, select+delete {:>7.0} msg/s | broker/bare {:.2} and {:.2}",
        broker.publish,
        broker.consume,
        bare.publish,
        bare.consume,
        broker.publish / bare.publish,
        broker.consume / bare.consume,
    );
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        println!(
            "{MESSAGES} durable 256-byte messages; {PUBLISHERS} publishers; {CONSUMERS} consumers with prefetch {PREFETCH}"
        );
        let dir = tempfile::tempdir().unwrap();
        let sqlite = |name: &str| format!("sqlite://{}/{name}.db", dir.path().display());
        let broker_sqlite = through_broker(&sqlite("broker")).await;
        let bare_sqlite = bare(&sqlite("bare")).await;
        print("SQLite", &broker_sqlite, &bare_sqlite);

        let (url, admin, name) = fresh_postgres().await;
        let broker_pg = through_broker(&url).await;
        drop_postgres(&admin, &name).await;
        let (url, admin, name) = fresh_postgres().await;
        let bare_pg = bare(&url).await;
        drop_postgres(&admin, &name).await;
        print("PostgreSQL", &broker_pg, &bare_pg);
    });
}
