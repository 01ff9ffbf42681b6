//! An outbox in the application's own database (`[[sources]]`): an application writes its
//! messages as rows of its own `wharf_outbox` table in the transaction of its work; Wharf sends
//! exactly the committed ones, in order per key, none twice, and keeps a row it cannot send as
//! dead. Against a real PostgreSQL and MariaDB (the table made by `wharf outbox schema`) and
//! the local RabbitMQ.

mod support;

use serde_json::{Value, json};
use sqlx::Connection;
use std::time::Duration;
use support::{Backend, TestDb};
use wharf::settings::SourceDialect;

/// An application's database of `dialect` with its outbox table made from the DDL
/// `wharf outbox schema` prints, and an `orders` table of its own.
struct AppDb {
    url: String,
    dialect: SourceDialect,
    _pg: Option<TestDb>,
    mysql: Option<String>,
}

fn mysql_admin_url() -> String {
    std::env::var("WHARF_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn schema(dialect: SourceDialect) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["outbox", "schema", "--dialect"])
        .arg(match dialect {
            SourceDialect::Postgres => "postgres",
            SourceDialect::Mysql => "mysql",
        })
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl AppDb {
    async fn new(dialect: SourceDialect) -> AppDb {
        let ddl = schema(dialect);
        match dialect {
            SourceDialect::Postgres => {
                let db = TestDb::new(Backend::Postgres).await;
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
                    .execute(&mut conn)
                    .await
                    .expect("the printed DDL runs on PostgreSQL");
                sqlx::raw_sql(
                    "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL)",
                )
                .execute(&mut conn)
                .await
                .unwrap();
                AppDb {
                    url: db.url.clone(),
                    dialect,
                    _pg: Some(db),
                    mysql: None,
                }
            }
            SourceDialect::Mysql => {
                let admin = mysql_admin_url();
                let name = format!("wharf_app_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::MySqlConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "MariaDB at {admin} is needed for this test (./dev test starts it): {e}"
                        )
                    });
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let url = format!("{admin}/{name}");
                let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
                    .execute(&mut conn)
                    .await
                    .expect("the printed DDL runs on MariaDB");
                sqlx::raw_sql(
                    "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL)",
                )
                .execute(&mut conn)
                .await
                .unwrap();
                AppDb {
                    url,
                    dialect,
                    _pg: None,
                    mysql: Some(name),
                }
            }
        }
    }

    /// What the application does: an order and its messages (`{key}:{n}` for `to`) in one
    /// transaction, committed or rolled back.
    async fn order(&self, id: i64, to: &str, messages: usize, commit: bool) {
        let key = format!("order-{id}");
        macro_rules! write {
            ($conn:expr, $insert:expr, $outbox:expr) => {{
                let mut tx = $conn.begin().await.unwrap();
                sqlx::query($insert)
                    .bind(id)
                    .bind("Ada")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                for n in 0..messages {
                    let message = json!({ "payload": format!("{key}:{n}"), "headers": {"order": id} });
                    sqlx::query($outbox)
                        .bind(to)
                        .bind(&key)
                        .bind(message.to_string())
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
            }};
        }
        match self.dialect {
            SourceDialect::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                write!(
                    conn,
                    "INSERT INTO orders (id, customer) VALUES ($1, $2)",
                    "INSERT INTO wharf_outbox (destination, msg_key, message) VALUES ($1, $2, CAST($3 AS jsonb))"
                );
            }
            SourceDialect::Mysql => {
                let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                write!(
                    conn,
                    "INSERT INTO orders (id, customer) VALUES (?, ?)",
                    "INSERT INTO wharf_outbox (destination, msg_key, message) VALUES (?, ?, ?)"
                );
            }
        }
    }

    /// Runs `sql` (no result) on the application's database.
    async fn execute(&self, sql: &str) {
        match self.dialect {
            SourceDialect::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            SourceDialect::Mysql => {
                let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }

    /// The rows left in the outbox table, by state.
    async fn left(&self) -> (i64, i64) {
        let sql = "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS {int}), \
                   CAST(COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS {int}) FROM wharf_outbox";
        match self.dialect {
            SourceDialect::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_as(sqlx::AssertSqlSafe(sql.replace("{int}", "BIGINT")))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap()
            }
            SourceDialect::Mysql => {
                let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                sqlx::query_as(sqlx::AssertSqlSafe(sql.replace("{int}", "SIGNED")))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap()
            }
        }
    }
}

impl Drop for AppDb {
    fn drop(&mut self) {
        let Some(name) = self.mysql.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::MySqlConnection::connect(&mysql_admin_url()).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name}"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            })
        })
        .join();
    }
}

/// A host with a `rabbit` connection declaring `queue`, relaying `app`'s table as source
/// `shop` (polling every `poll_ms`), with outbox batches of `batch`.
fn host_config(queue: &str, app: &AppDb, poll_ms: u64, batch: usize) -> wharf::config::Config {
    let mut config = wharf::config::Config {
        routes: Vec::new(),
        sources: vec![wharf::settings::SourceConfig {
            name: "shop".into(),
            url: app.url.clone(),
            table: "wharf_outbox".into(),
            poll_ms: Some(poll_ms),
        }],
        outbox: wharf::config::OutboxConfig {
            batch,
            ..Default::default()
        },
        ..wharf::config::Config::default()
    };
    config.connections.insert(
        "rabbit".into(),
        serde_json::from_value(json!({
            "kind": "amqp",
            "url": support::amqp_url(),
            "queues": [{"name": queue}],
        }))
        .unwrap(),
    );
    config
}

/// An order's two messages committed in its transaction arrive, in order, with ids
/// `shop.{row}`; a rolled-back order's never do; sent rows are deleted. On PostgreSQL the
/// relay is woken by the commit, not its (minute-long) poll. A row that cannot be sent is kept
/// dead with its reason, listed, retried and deleted through the API and the CLI.
async fn committed_rows_are_sent_and_rolled_back_ones_never(dialect: SourceDialect) {
    let _shared = support::RABBIT.read().await;
    let queue = support::unique("source");
    let app = AppDb::new(dialect).await;
    // PostgreSQL: no poll within the test, so only the notification can wake the relay.
    // MySQL: polled.
    let poll = match dialect {
        SourceDialect::Postgres => 60_000,
        SourceDialect::Mysql => 200,
    };
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _) = support::start_host(&db, host_config(&queue, &app, poll, 256)).await;
    let to = format!("rabbit:{queue}");
    // Let the relay's first look (at start) pass, so what follows is found by a wake.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.order(1, &to, 2, true).await;
    app.order(2, &to, 2, false).await;
    app.order(3, &to, 2, true).await;
    let started = std::time::Instant::now();
    let ids = support::read_in_order(&queue, 4).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "sent long after the commit: {:?}",
        started.elapsed()
    );
    assert!(ids.iter().all(|id| id.starts_with("shop.")), "{ids:?}");
    assert_eq!(app.left().await, (0, 0), "sent rows are deleted");

    // A row no broker can take (its message has a field the API refuses): kept dead, with
    // why.
    app.execute(&format!(
        "INSERT INTO wharf_outbox (destination, msg_key, message) VALUES ('{to}', 'k', '{{\"bogus\": 1}}')"
    ))
    .await;
    let api = support::Api::new(host.addr);
    let mut dead = Value::Null;
    for _ in 0..100 {
        dead = api
            .ok(reqwest::Method::GET, "outbox/dead?source=shop", None)
            .await;
        if !dead.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = &dead[0];
    assert_eq!(row["source"], "shop", "{dead}");
    assert_eq!(row["destination"], to.as_str());
    assert!(row["error"].as_str().unwrap().contains("bogus"), "{dead}");
    assert_eq!(row["message"]["bogus"], 1, "the row as it is: {dead}");
    let seq = row["seq"].as_i64().unwrap();
    let stats = api.ok(reqwest::Method::GET, "outbox", None).await;
    let shop = &stats["sources"][0];
    assert_eq!(
        (shop["source"].as_str(), shop["dead"].as_u64()),
        (Some("shop"), Some(1)),
        "{stats}"
    );
    let metrics = support::scrape(host.addr).await;
    assert_eq!(
        support::metric(
            &metrics,
            "wharf_source_messages_total{source=\"shop\",outcome=\"sent\"}"
        ),
        4.0,
        "{metrics}"
    );
    assert_eq!(
        support::metric(&metrics, "wharf_source_dead{source=\"shop\"}"),
        1.0
    );

    // Hostile or wrong names: no such source, no such row.
    let (status, _) = api
        .call(reqwest::Method::GET, "outbox/dead?source=nope", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call(
            reqwest::Method::POST,
            "outbox/dead/999999/retry?source=shop",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            "outbox/dead/1%20OR%201=1?source=shop",
            None,
        )
        .await;
    assert_eq!(status, 400);

    // Retried, it is dead again (it is no better); the CLI lists and deletes it.
    api.ok(
        reqwest::Method::POST,
        &format!("outbox/dead/{seq}/retry?source=shop"),
        None,
    )
    .await;
    let wharf = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .args(["--url", &format!("http://{}", host.addr)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut listed = String::new();
    for _ in 0..100 {
        listed = wharf(&["outbox", "dead", "--source", "shop"]);
        if listed.contains("bogus") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(listed.starts_with(&format!("{seq} ")), "{listed}");
    assert!(wharf(&["outbox", "stats"]).contains("source shop"));
    wharf(&["outbox", "delete", &seq.to_string(), "--source", "shop"]);
    assert_eq!(app.left().await, (0, 0));
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_rows_are_sent_and_rolled_back_ones_never_on_postgresql() {
    committed_rows_are_sent_and_rolled_back_ones_never(SourceDialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_rows_are_sent_and_rolled_back_ones_never_on_mariadb() {
    committed_rows_are_sent_and_rolled_back_ones_never(SourceDialect::Mysql).await;
}

/// Two hosts relay one application table: each row once, in order per key, and both relay.
/// One host runs here, the other as a `wharf serve` process of its own, so each one's
/// `/metrics` counts only what it sent.
async fn two_hosts_relay_one_table(dialect: SourceDialect) {
    let _shared = support::RABBIT.read().await;
    let queue = support::unique("source-two");
    let app = AppDb::new(dialect).await;
    let db = TestDb::new(Backend::Sqlite).await;
    // Small batches, so the backlog takes long enough for both relays to share it.
    let (a, _) = support::start_host(&db, host_config(&queue, &app, 50, 8)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    std::fs::write(
        dir.path().join("wharf.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"sqlite://{}/wharf.db\"\nplugin_dir = \"{}\"\n\n\
             [connections.rabbit]\nkind = \"amqp\"\nurl = \"{}\"\n[[connections.rabbit.queues]]\nname = \"{queue}\"\n\n\
             [outbox]\nbatch = 8\n\n[[sources]]\nname = \"shop\"\nurl = \"{}\"\npoll_ms = 50\n",
            dir.path().display(),
            support::plugin_dir().display(),
            support::amqp_url(),
            app.url,
        ),
    )
    .unwrap();
    let mut b = support::serve_config(&dir.path().join("wharf.toml"), dir.path(), port);
    let b_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let to = format!("rabbit:{queue}");
    // What this process counted before (other tests of the binary may share it).
    let sent = |text: &str| {
        support::samples(text)
            .into_iter()
            .find_map(|(series, value)| {
                (series == "wharf_source_messages_total{source=\"shop\",outcome=\"sent\"}")
                    .then_some(value)
            })
            .unwrap_or(0.0)
    };
    let before = sent(&support::scrape(a.addr).await);
    // 100 orders of 10 messages, each order in its own transaction.
    for id in 0..100 {
        app.order(id, &to, 10, true).await;
    }
    let ids = support::read_in_order(&queue, 1_000).await;
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 1_000, "none twice");
    assert_eq!(app.left().await, (0, 0));
    let (by_a, by_b) = (
        sent(&support::scrape(a.addr).await) - before,
        sent(&support::scrape(b_addr).await),
    );
    let _ = b.kill();
    let _ = b.wait();
    assert_eq!(by_a + by_b, 1_000.0, "{by_a} + {by_b}");
    assert!(by_a > 0.0 && by_b > 0.0, "both relayed: {by_a} and {by_b}");
    a.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_relay_one_table_on_postgresql() {
    two_hosts_relay_one_table(SourceDialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_relay_one_table_on_mariadb() {
    two_hosts_relay_one_table(SourceDialect::Mysql).await;
}

/// A source's bad settings are refused, each naming its key; the URL's password is never in
/// the error.
#[test]
fn bad_sources_are_refused_by_key() {
    let cases = [
        (
            json!([{ "name": "a b", "url": "postgres://u@h/d" }]),
            "sources[0].name",
        ),
        (
            json!([{ "name": "a", "url": "sqlite://x.db?password=hunter2" }]),
            "sources[0].url",
        ),
        (
            json!([{ "name": "a", "url": "postgres://u:hunter2@h/d", "table": "t; DROP TABLE x" }]),
            "sources[0].table",
        ),
        (
            json!([{ "name": "a", "url": "postgres://u@h/d", "poll_ms": 0 }]),
            "sources[0].poll_ms",
        ),
        (
            json!([{ "name": "a", "url": "postgres://u@h/d" }, { "name": "a", "url": "mysql://u@h/d" }]),
            "sources[1].name",
        ),
    ];
    for (sources, key) in cases {
        let config: wharf::config::Config =
            serde_json::from_value(json!({ "server": {}, "sources": sources })).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(key), "{sources}: {error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
    let unknown = serde_json::from_value::<wharf::config::Config>(
        json!({ "server": {}, "sources": [{ "name": "a", "url": "postgres://h/d", "tabel": "x" }] }),
    );
    assert!(unknown.is_err(), "a misspelt key is refused");
}

/// The Python client's `outbox.add` inside real applications' transactions: SQLAlchemy on
/// PostgreSQL and MariaDB, Django, bare psycopg. Exactly the committed orders' messages
/// arrive, each order's in order; the rolled-back orders' never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_helpers_write_in_the_applications_transaction() {
    let _shared = support::RABBIT.read().await;
    let python = support::python_venv(&[
        "SQLAlchemy==2.0.36",
        "psycopg[binary]==3.2.3",
        "PyMySQL==1.1.1",
        "Django==5.1.4",
    ]);
    let queue = support::unique("source-py");
    let pg = AppDb::new(SourceDialect::Postgres).await;
    let my = AppDb::new(SourceDialect::Mysql).await;
    let mut config = host_config(&queue, &pg, 200, 256);
    config.sources.push(wharf::settings::SourceConfig {
        name: "shop-my".into(),
        url: my.url.clone(),
        table: "wharf_outbox".into(),
        poll_ms: Some(200),
    });
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _) = support::start_host(&db, config).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/outbox_test.py");
    for part in [
        "refusals",
        "sqlalchemy-postgres",
        "sqlalchemy-mariadb",
        "django",
        "psycopg",
    ] {
        let out = tokio::process::Command::new(&python)
            .arg(&script)
            .arg(part)
            .env("WHARF_TO", format!("rabbit:{queue}"))
            .env("APP_PG", &pg.url)
            .env("APP_MYSQL", &my.url)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{part}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Four parts, two committed orders each, two messages an order.
    let arrived = support::read_in_order_with_payloads(&queue, 16).await;
    let mut orders: Vec<String> = arrived
        .iter()
        .map(|(_, payload)| payload.split_once(':').unwrap().0.to_owned())
        .collect();
    orders.sort();
    orders.dedup();
    assert_eq!(
        orders,
        [
            "django-11",
            "django-13",
            "psycopg-21",
            "psycopg-23",
            "sa-my-1",
            "sa-my-3",
            "sa-pg-1",
            "sa-pg-3"
        ]
    );
    assert!(
        arrived.iter().any(|(id, _)| id.starts_with("shop-my.")),
        "{arrived:?}"
    );
    assert_eq!(pg.left().await, (0, 0));
    assert_eq!(my.left().await, (0, 0));
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

/// Orders committed while RabbitMQ is stopped lose nothing: the backlog says why they wait,
/// and once RabbitMQ is back every message arrives, in order per order, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_committed_while_rabbitmq_is_stopped_arrive_when_it_is_back() {
    let _exclusive = support::RABBIT.write().await;
    let queue = support::unique("source-down");
    // Declared now and durable, so it is there when the broker comes back.
    support::declare_durable_queue(&queue).await;
    let app = AppDb::new(SourceDialect::Postgres).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _) = support::start_host(&db, host_config(&queue, &app, 200, 64)).await;
    let api = support::Api::new(host.addr);
    let to = format!("rabbit:{queue}");

    let restart = support::RestartRabbit;
    support::rabbitmqctl(&["stop_app"]).await;
    for id in 0..50 {
        app.order(id, &to, 4, true).await;
    }
    let mut stats = Value::Null;
    for _ in 0..120 {
        stats = api.ok(reqwest::Method::GET, "outbox", None).await;
        if stats["sources"][0]["last_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shop = &stats["sources"][0];
    assert_eq!(shop["pending"], 200, "{stats}");
    assert!(
        shop["last_error"].is_string(),
        "the backlog says why: {stats}"
    );
    support::rabbitmqctl(&["start_app"]).await;
    drop(restart);

    let ids = support::read_in_order(&queue, 200).await;
    assert_eq!(ids.len(), 200);
    assert_eq!(app.left().await, (0, 0));
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}
