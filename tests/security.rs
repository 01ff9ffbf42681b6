//! The host as an attacker sees it: a hostile visitor, a malicious plugin author, a careless
//! admin. Each test attacks the way a person would (floods from many addresses, parallel
//! guesses, forged forms, bodies that never come, secrets sent back to another host) and
//! checks that the host holds: memory and `/metrics` bounded, the throttle not passed, the
//! first admin made only with the printed link, secrets sealed at rest and never shown, every
//! change in the audit log with no secret in it, TLS both ways with a private CA.

#[macro_use]
mod support;

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Backend, TestDb};
use wharf::config::Config;
use wharf::host::RunningHost;

on_every_backend!(
    parallel_wrong_passwords_do_not_pass_the_throttle,
    the_throttle_is_shared_by_hosts_on_one_database,
    set_up_needs_the_printed_link_and_makes_one_admin,
    stored_secrets_are_sealed_and_rotated,
    the_audit_log_records_every_surface_and_no_secret,
);

async fn host(db: &TestDb, tweak: impl FnOnce(&mut Config)) -> RunningHost {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = db.url.clone();
    config.server.plugin_dir = None;
    // Nor the defaults' heartbeat daemon and its plugin, which come from that folder.
    config.daemons.clear();
    config.plugins.clear();
    config.routes.clear();
    tweak(&mut config);
    config.validate().unwrap();
    wharf::host::start(config).await.expect("the host starts")
}

fn base(host: &RunningHost) -> String {
    format!("http://{}", host.addr)
}

/// A client that follows no redirect (pages answer 303s) and speaks from `ip`, one of the
/// machine's loopback addresses (127.0.0.0/8): many callers, as a flood from many machines.
fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn loopback(n: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 + 2 + n))
}

fn plain() -> reqwest::Client {
    client_from("127.0.0.1".parse().unwrap())
}

async fn admin(host: &RunningHost) -> reqwest::Client {
    support::client_with_token(support::local_token(host.addr).trim())
}

async fn add_user(host: &RunningHost, name: &str, password: &str, role: &str) {
    add_user_at(&admin(host).await, &base(host), name, password, role).await
}

async fn add_user_at(client: &reqwest::Client, base: &str, name: &str, password: &str, role: &str) {
    let answer = client
        .post(format!("{base}/api/v1/users"))
        .json(&json!({ "name": name, "password": password, "role": role }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());
}

async fn sign_in_status(client: &reqwest::Client, base: &str, name: &str, password: &str) -> u16 {
    client
        .post(format!("{base}/api/v1/login"))
        .json(&json!({ "name": name, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A signed-in session: its cookie, and the CSRF token its changes carry.
struct Session {
    cookie: String,
    csrf: String,
}

async fn session(base: &str, name: &str, password: &str) -> Session {
    let answer = plain()
        .post(format!("{base}/api/v1/login"))
        .json(&json!({ "name": name, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "signing {name} in");
    let cookie = answer.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body: Value = answer.json().await.unwrap();
    Session {
        cookie,
        csrf: body["csrf"].as_str().unwrap().to_owned(),
    }
}

impl Session {
    /// A form posted the way the UI's pages post it: the session's cookie, the CSRF token in
    /// the action's URL, from this very site.
    fn form(&self, base: &str, path: &str, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
        plain()
            .post(format!("{base}{path}?csrf={}", self.csrf))
            .header(COOKIE, &self.cookie)
            .header("sec-fetch-site", "same-origin")
            .form(fields)
    }
}

/// The JSON answer to `request`.
async fn json<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.unwrap().json().await.unwrap()
}

/// The resident memory of process `pid`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A flood from people not signed in, against a `wharf serve` of its own (so its memory and
/// its metrics are its own): ingress to 10,000 made-up connections, 1,000 failed sign-ins with
/// names as long as a body may carry, from a hundred addresses, and reset links that do not
/// exist. The metrics gain no series, no password is hashed for any of it, and the memory the
/// host holds stays where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_floods_leave_memory_and_metrics_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"sqlite://{}/wharf.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = support::serve_config(&config, dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let client = plain();
    let before = support::scrape(([127, 0, 0, 1], port).into()).await;
    let hashes = support::metric_sum(&before, "wharf_password_hashes_total");

    // Reset links nobody issued: refused before a password is hashed.
    for i in 0..20 {
        let answer = client
            .post(format!("{base}/reset/wharf_made_up_{i}"))
            .form(&[("password", "a long enough new password")])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
    }

    // Ingress to 10,000 connections that do not exist: 404, and no series for any of them.
    let statuses = futures::future::join_all((0..64).map(|worker| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let mut statuses = Vec::new();
            for i in (worker..10_000).step_by(64) {
                let answer = client
                    .post(format!("{base}/ingress/made-up-{i}/orders"))
                    .body("x")
                    .send()
                    .await
                    .unwrap();
                statuses.push(answer.status().as_u16());
            }
            statuses
        }
    }))
    .await;
    assert!(statuses.iter().flatten().all(|s| *s == 404));
    let after_ingress = support::scrape(([127, 0, 0, 1], port).into()).await;
    assert!(
        !after_ingress.contains("made-up"),
        "no series names a made-up connection"
    );
    assert!(
        after_ingress.lines().count() <= before.lines().count() + 4,
        "the metrics grew from {} to {} lines",
        before.lines().count(),
        after_ingress.lines().count()
    );

    // Two rounds of 1,000 failed sign-ins with 15 KB names, ten from each of a hundred
    // addresses (under each address's own limit): the first grows what a host grows under
    // load anyway; the second may not grow it further. A host that kept the names would hold
    // 15 MB more after each.
    let long = |i: u32| format!("{i}-{}", "n".repeat(15_000));
    let round = |first_peer: u32| {
        let base = base.clone();
        async move {
            let statuses = futures::future::join_all((first_peer..first_peer + 100).map(|peer| {
                let base = base.clone();
                async move {
                    let client = client_from(loopback(peer));
                    let mut statuses = Vec::new();
                    for i in 0..10 {
                        let name = long(peer * 10 + i);
                        statuses
                            .push(sign_in_status(&client, &base, &name, "a wrong password").await);
                    }
                    statuses
                }
            }))
            .await;
            assert!(
                statuses.iter().flatten().all(|s| *s == 401),
                "{:?}",
                statuses
                    .iter()
                    .flatten()
                    .filter(|s| **s != 401)
                    .collect::<Vec<_>>()
            );
        }
    };
    round(0).await;
    let resident = resident_kib(child.id());
    round(100).await;
    let grown = resident_kib(child.id()).saturating_sub(resident);
    assert!(
        grown < 5 * 1024,
        "the host grew by {grown} KiB over the second 1,000 failed sign-ins"
    );
    let after = support::scrape(([127, 0, 0, 1], port).into()).await;
    assert_eq!(
        support::metric_sum(&after, "wharf_password_hashes_total"),
        hashes,
        "no password was hashed for a dead reset link or a name that cannot exist"
    );
    assert!(
        support::metric_sum(&after, "wharf_sign_ins_total{outcome=\"unknown_name\"}") >= 2_000.0,
        "the flood is counted"
    );
    // Nor does the flood grow the database: names nobody has are not audited (a name field
    // may hold a password typed in the wrong box), and names that cannot exist are not counted.
    let store = wharf::store::Store::open(&format!("sqlite://{}/wharf.db", dir.path().display()))
        .await
        .unwrap();
    let failures = store
        .audit(&wharf::store::AuditFilter {
            action: Some("session".into()),
            limit: 1_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(store.sign_in_attempt_rows().await.unwrap(), 0);
    store.close().await;
    // Besides the counter of sign-ins by outcome (a handful of fixed series), nothing new.
    let other_lines = |text: &str| {
        text.lines()
            .filter(|line| !line.contains("wharf_sign_ins_total"))
            .count()
    };
    assert!(other_lines(&after) <= other_lines(&after_ingress) + 2);
    assert!(!after.contains("nnnnnnnn"), "no series names a name");

    // One address past its limit is told to wait, whatever the name.
    let flooding = client_from(loopback(250));
    let statuses =
        futures::future::join_all(
            (0..40).map(|i| {
                let (flooding, base) = (flooding.clone(), base.clone());
                async move {
                    sign_in_status(&flooding, &base, &format!("user{i}"), "wrong password").await
                }
            }),
        )
        .await;
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 5,
        "an address that keeps trying is slowed down: {statuses:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Forty wrong passwords at once for one user, each from an address of its own: the attempts
/// are counted before any is hashed, so five are checked and past them one a second, the rest
/// refused. The user, from an address of their own, still signs in.
async fn parallel_wrong_passwords_do_not_pass_the_throttle(backend: Backend) {
    let db = TestDb::new(backend).await;
    let host = host(&db, |_| {}).await;
    add_user(&host, "ada", "the right password", "admin").await;
    let base = base(&host);
    let started = std::time::Instant::now();
    let answers = futures::future::join_all((0..40).map(|i| {
        let base = base.clone();
        async move {
            let client = client_from(loopback(i));
            sign_in_status(&client, &base, "ada", &format!("wrong guess {i}")).await
        }
    }))
    .await;
    let seconds = started.elapsed().as_secs() as usize;
    let checked = answers.iter().filter(|s| **s == 401).count();
    let refused = answers.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 40, "{answers:?}");
    assert!(
        (5..=6 + seconds).contains(&checked),
        "five guesses checked, then one a second ({seconds} s), the rest refused: {answers:?}"
    );
    // The user, from an address of their own, at the name's pace: not locked out.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let right = sign_in_status(
        &client_from(loopback(77)),
        &base,
        "ada",
        "the right password",
    )
    .await;
    assert_eq!(right, 200, "the guessers are slowed, not the user");
    // The audit log shows the guesses, each with its address.
    let audit: Value = json(admin(&host).await.get(format!(
        "{base}/api/v1/audit?action=session.sign_in_failed&limit=100"
    )))
    .await;
    let failed = audit.as_array().map_or(0, Vec::len);
    assert_eq!(failed, checked, "{audit}");
    host.stop().await;
}

/// Five wrong passwords from one address on one host; the sixth attempt from that address on
/// another host of the same database is refused, right password or not. From another
/// address, the right password works.
async fn the_throttle_is_shared_by_hosts_on_one_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let first = host(&db, |_| {}).await;
    let second = host(&db, |_| {}).await;
    add_user(&first, "bea", "bea's good password", "viewer").await;
    for i in 0..5 {
        let status = sign_in_status(&plain(), &base(&first), "bea", &format!("wrong {i}")).await;
        assert_eq!(status, 401);
    }
    let status = sign_in_status(&plain(), &base(&second), "bea", "bea's good password").await;
    assert_eq!(status, 429, "the other host counts the same attempts");
    let elsewhere = client_from(loopback(5));
    let status = sign_in_status(&elsewhere, &base(&second), "bea", "bea's good password").await;
    assert_eq!(status, 200, "another address is not locked out");
    first.stop().await;
    second.stop().await;
}

/// The first admin is made only with the link the host printed: not by a loopback caller
/// without the header a proxy may not set, not with a guessed token; two set-ups at once make
/// one admin; once there is one, the link works no more.
async fn set_up_needs_the_printed_link_and_makes_one_admin(backend: Backend) {
    let db = TestDb::new(backend).await;
    let host = host(&db, |_| {}).await;
    let base = base(&host);
    let link = host
        .setup_link
        .clone()
        .expect("an empty host prints a set-up link");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let client = plain();

    // From this machine, with no X-Forwarded-For (what a local proxy may leave out): refused.
    let page = client.get(format!("{base}/setup")).send().await.unwrap();
    assert_eq!(page.status(), 403);
    for guess in ["", "wharf_guess"] {
        let answer = client
            .post(format!("{base}/setup"))
            .form(&[
                ("token", guess),
                ("name", "mallory"),
                ("password", "mallory's password"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403, "set-up with the token {guess:?}");
    }
    assert!(host_users(&db).await.is_empty());

    // The printed link shows the form.
    let page = client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Set up the first admin")
    );

    // Two set-ups at once: one admin.
    let tries = futures::future::join_all(["ada", "eve"].map(|name| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            client
                .post(format!("{base}/setup"))
                .form(&[
                    ("token", token.as_str()),
                    ("name", name),
                    ("password", "a good password"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(
        tries.iter().filter(|s| **s == 303).count(),
        1,
        "one set-up made the admin: {tries:?}"
    );
    let users = host_users(&db).await;
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0].role, "admin");
    let again = client.get(&link).send().await.unwrap();
    assert_eq!(
        again.status(),
        303,
        "the link works no more: to the sign-in page"
    );
    host.stop().await;
}

async fn host_users(db: &TestDb) -> Vec<wharf::store::User> {
    wharf::store::Store::open(&db.url)
        .await
        .unwrap()
        .users()
        .await
        .unwrap()
}

/// Every byte the database keeps: its file and the write-ahead log beside it (SQLite), or a
/// dump of the tables that hold secrets (PostgreSQL).
async fn database_bytes(db: &TestDb) -> Vec<u8> {
    match db.url.strip_prefix("sqlite://") {
        Some(path) => {
            let mut bytes = Vec::new();
            for file in [path.to_owned(), format!("{path}-wal")] {
                if let Ok(mut f) = std::fs::File::open(&file) {
                    f.read_to_end(&mut bytes).unwrap();
                }
            }
            bytes
        }
        None => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let mut bytes = Vec::new();
            for table in ["connections", "plugin_policies", "audit_log"] {
                let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT CAST(t AS TEXT) FROM {table} t"
                )))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                for (row,) in rows {
                    bytes.extend_from_slice(row.as_bytes());
                }
            }
            bytes
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Connection passwords, secret headers and plugin config values are sealed in the database:
/// none of them is in its bytes, the API shows them hidden, and a host started again with
/// the key opens them. After a rotation (`wharf secret rotate`) the new key alone opens them.
async fn stored_secrets_are_sealed_and_rotated(backend: Backend) {
    let db = TestDb::new(backend).await;
    let keys = tempfile::tempdir().unwrap();
    let old_key = keys.path().join("old.key");
    let with_key = |key: std::path::PathBuf, previous: Vec<std::path::PathBuf>| {
        move |config: &mut Config| {
            config.server.secret_key_file = Some(key);
            config.server.previous_secret_key_files = previous;
            config.server.plugin_dir = Some(support::plugin_dir());
        }
    };
    let host = host(&db, with_key(old_key.clone(), vec![])).await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (password, header, api_key) = (
        format!("pw-{unique}"),
        format!("Bearer hdr-{unique}"),
        format!("key-{unique}"),
    );
    let client = admin(&host).await;
    let base = base(&host);
    let created = client
        .post(format!("{base}/api/v1/connections"))
        .json(&json!({
            "name": "hooks", "kind": "http",
            "base_url": format!("https://svc:{password}@127.0.0.1:9/hooks/"),
            "headers": { "Authorization": header },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let shown = created.text().await.unwrap();
    assert!(
        !shown.contains(&password) && !shown.contains(&header),
        "{shown}"
    );
    let rabbit = client
        .post(format!("{base}/api/v1/connections"))
        .json(&json!({ "name": "rabbit", "kind": "amqp", "url": support::amqp_url() }))
        .send()
        .await
        .unwrap();
    assert_eq!(rabbit.status(), 201);
    let uploaded = client
        .post(format!("{base}/api/v1/plugins"))
        .header("content-type", "application/wasm")
        .body(support::plugin_bytes("stamp"))
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let policy = client
        .put(format!("{base}/api/v1/plugins/stamp/policy"))
        .json(&json!({ "config": { "api_key": api_key, "region": "eu",
            "dsn": format!("postgres://app:dsn-{unique}@db.example/app") } }))
        .send()
        .await
        .unwrap();
    assert_eq!(policy.status(), 200);
    let view: Value = policy.json().await.unwrap();
    assert_eq!(view["policy"]["config"]["api_key"], "***");
    assert_eq!(view["policy"]["config"]["region"], "eu");
    assert_eq!(
        view["policy"]["config"]["dsn"], "postgres://app:***@db.example/app",
        "a URL's password in a value is hidden whatever the value's name"
    );
    // Sent back as shown, the hidden value keeps what was stored.
    let mut sent_back = view["policy"].clone();
    sent_back["config"]["region"] = json!("us");
    let kept = client
        .put(format!("{base}/api/v1/plugins/stamp/policy"))
        .json(&sent_back)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 200);
    let mut invented = view["policy"].clone();
    invented["config"]["new_token"] = json!("***");
    let refused = client
        .put(format!("{base}/api/v1/plugins/stamp/policy"))
        .json(&invented)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        400,
        "a hidden value with nothing stored is not kept as ***"
    );

    let bytes = database_bytes(&db).await;
    let dsn_password = format!("dsn-{unique}");
    for secret in [
        &password,
        &header,
        &api_key,
        &dsn_password,
        &"guest:guest".to_owned(),
    ] {
        assert!(!contains(&bytes, secret), "`{secret}` is in the database");
    }
    host.stop().await;
    let bytes = database_bytes(&db).await;
    for secret in [&password, &header, &api_key] {
        assert!(
            !contains(&bytes, secret),
            "`{secret}` is in the database after stop"
        );
    }

    // A new key, the old one kept as previous: `wharf secret rotate` seals with the new one;
    // then the new key alone opens everything.
    let new_key = keys.path().join("new.key");
    let config = keys.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndatabase = \"{}\"\nsecret_key_file = \"{}\"\nprevious_secret_key_files = [\"{}\"]\n",
            db.url,
            new_key.display(),
            old_key.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["secret", "rotate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sealed 3"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let host = self::host(&db, with_key(new_key, vec![])).await;
    let admin = admin(&host).await;
    let mut rabbit = Value::Null;
    for _ in 0..100 {
        let status: Value = json(admin.get(format!("{}/api/v1/status", self::base(&host)))).await;
        rabbit = status["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "rabbit")
            .cloned()
            .expect("the sealed connection was opened with the new key");
        if rabbit["state"] == "up" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rabbit["state"], "up", "{rabbit}");
    host.stop().await;

    // A host given another key refuses to start, rather than run without those connections.
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = db.url.clone();
    config.server.plugin_dir = None;
    // Nor the defaults' heartbeat daemon and its plugin, which come from that folder.
    config.daemons.clear();
    config.plugins.clear();
    config.routes.clear();
    config.server.secret_key_file = Some(keys.path().join("stranger.key"));
    let refused = wharf::host::start(config)
        .await
        .err()
        .expect("a host without the database's key does not start");
    assert!(
        format!("{refused:#}").contains("secret_key_file"),
        "{refused:#}"
    );
    let host = self::host(&db, with_key(keys.path().join("new.key"), vec![])).await;
    host.stop().await;
}

/// Changes made through the API, the UI's pages and the CLI (through a host, and on the
/// database directly), sign-ins and a failed one: each is in the audit log, by whom and
/// through what; no password, token or secret header is in it; only admins read it.
async fn the_audit_log_records_every_surface_and_no_secret(backend: Backend) {
    let db = TestDb::new(backend).await;
    let host = host(&db, |_| {}).await;
    let base = base(&host);
    let client = admin(&host).await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (password, header) = (format!("ada-pw-{unique}"), format!("Bearer hdr-{unique}"));

    // Through the API.
    add_user(&host, "ada", &password, "admin").await;
    let made = client
        .post(format!("{base}/api/v1/connections"))
        .json(
            &json!({ "name": "hooks", "kind": "http", "base_url": "http://127.0.0.1:9/",
            "headers": { "Authorization": header } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made = client
        .post(format!("{base}/api/v1/routes"))
        .json(&json!({ "name": "by-api", "from": "local:a.in", "to": "local:a.out" }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let token: Value = json(
        client
            .post(format!("{base}/api/v1/tokens"))
            .json(&json!({ "name": "billing", "role": "viewer" })),
    )
    .await;
    let viewer_token = token["token"].as_str().unwrap().to_owned();

    // Through the UI: a failed sign-in, a sign-in, a route made on the page.
    let failed = plain()
        .post(format!("{base}/login"))
        .form(&[("name", "ada"), ("password", "not her password")])
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    let signed_in = plain()
        .post(format!("{base}/login"))
        .form(&[("name", "ada"), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let ui = session(&base, "ada", &password).await;
    let made = ui
        .form(
            &base,
            "/routes/new",
            &[
                ("name", "by-ui"),
                ("from", "local:b.in"),
                ("to", "local:b.out"),
            ],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 303);

    // Through the CLI: a route through the host (its own token, found on this machine), and a
    // user on the database directly.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "route",
            "create",
            "by-cli",
            "--from",
            "local:c.in",
            "--to",
            "local:c.out",
        ])
        .args(["--url", &base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "user",
            "add",
            "cleo",
            "--role",
            "viewer",
            "--database",
            &db.url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"cleo's password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let answer = client
        .get(format!("{base}/api/v1/audit?limit=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let entries: Vec<Value> = answer.json().await.unwrap();
    let find_via = |action: &str, target: &str, via: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["target"] == target && e["via"] == via)
            .unwrap_or_else(|| panic!("no {action} of {target} through {via} in {entries:#?}"))
            .clone()
    };
    find_via("user.create", "ada", "api");
    find_via("connection.create", "hooks", "api");
    find_via("route.create", "by-api", "api");
    find_via("token.create", "billing", "api");
    find_via("session.sign_in_failed", "ada", "ui");
    find_via("session.sign_in", "ada", "ui");
    let by_ui = find_via("route.create", "by-ui", "ui");
    assert_eq!(
        (by_ui["via"].clone(), by_ui["actor"].clone()),
        (json!("ui"), json!("ada"))
    );
    let by_cli = find_via("route.create", "by-cli", "cli");
    assert_eq!(by_cli["via"], "cli");
    assert!(
        by_cli["actor"].as_str().unwrap().starts_with("token:cli@"),
        "{by_cli}"
    );
    let direct = find_via("user.create", "cleo", "cli");
    assert_eq!(direct["via"], "cli");
    assert!(
        direct["actor"].as_str().unwrap().starts_with("os:"),
        "{direct}"
    );
    let everything = serde_json::to_string(&entries).unwrap();
    for secret in [
        &password,
        &header,
        &viewer_token,
        &"cleo's password".to_owned(),
    ] {
        assert!(
            !everything.contains(secret.as_str()),
            "the audit log holds `{secret}`"
        );
    }

    // Filters, and who may read.
    let routes: Vec<Value> =
        json(client.get(format!("{base}/api/v1/audit?action=route&actor=ada"))).await;
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["target"], "by-ui");
    let refused = support::client_with_token(&viewer_token)
        .get(format!("{base}/api/v1/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let page = plain()
        .get(format!("{base}/audit?target=by-cli"))
        .header(COOKIE, &ui.cookie)
        .send()
        .await
        .unwrap();
    let page = page.text().await.unwrap();
    assert!(
        page.contains("route.create") && page.contains("by-cli"),
        "{page}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["audit", "--action", "route.create", "--url", &base])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(printed.lines().count(), 3, "{printed}");
    assert!(
        printed.contains("by-ui") && printed.contains("ada"),
        "{printed}"
    );
    host.stop().await;
}

/// Writes a request's head on a raw connection and returns what the host answers, without
/// ever sending the body its `Content-Length` promises.
fn answer_to_head(addr: SocketAddr, head: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = [0u8; 512];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// A viewer's upload, through the API and through the UI's form, is refused from its head:
/// the 50 MB body it announces is never waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_upload_is_refused_before_its_body_is_read() {
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db, |_| {}).await;
    add_user(&host, "vera", "vera's password", "viewer").await;
    let token: Value = json(
        admin(&host)
            .await
            .post(format!("{}/api/v1/tokens", base(&host)))
            .json(&json!({ "name": "reader", "role": "viewer" })),
    )
    .await;
    let viewer = session(&base(&host), "vera", "vera's password").await;
    let addr = host.addr;
    let through_api = tokio::task::spawn_blocking({
        let token = token["token"].as_str().unwrap().to_owned();
        move || {
            answer_to_head(
                addr,
                &format!(
                    "POST /api/v1/plugins HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/wasm\r\nContent-Length: 50000000\r\n\r\n"
                ),
            )
        }
    })
    .await
    .unwrap();
    assert!(through_api.starts_with("HTTP/1.1 403"), "{through_api}");
    let through_form = tokio::task::spawn_blocking(move || {
        answer_to_head(
            addr,
            &format!(
                "POST /plugins?csrf={} HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\n\
                 Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 50000000\r\n\r\n",
                viewer.csrf, viewer.cookie
            ),
        )
    })
    .await
    .unwrap();
    assert!(through_form.starts_with("HTTP/1.1 403"), "{through_form}");
    // An admin's session without the form's CSRF token: refused just as early.
    add_user(&host, "ada", "ada's password", "admin").await;
    let ada = session(&base(&host), "ada", "ada's password").await;
    let without_token = tokio::task::spawn_blocking(move || {
        answer_to_head(
            addr,
            &format!(
                "POST /plugins HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\n\
                 Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 50000000\r\n\r\n",
                ada.cookie
            ),
        )
    })
    .await
    .unwrap();
    assert!(without_token.starts_with("HTTP/1.1 403"), "{without_token}");
    host.stop().await;
}

/// A request an endpoint saw: `METHOD /path`, its body, its `Authorization` header.
type Seen = (String, String, Option<String>);

/// A small HTTP endpoint of the test's own (plain axum), recording what reaches it.
struct Endpoint {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Endpoint {
    /// Serves on a free port; `tls`: over TLS, asking for a client certificate the CA signed.
    async fn start(tls: Option<&Path>) -> Endpoint {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorded = seen.clone();
        let app = axum::Router::new()
            .route(
                "/base/",
                axum::routing::any(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, "/elsewhere")],
                    )
                }),
            )
            .fallback(
                move |method: axum::http::Method,
                      uri: axum::http::Uri,
                      headers: axum::http::HeaderMap,
                      body: String| {
                    let recorded = recorded.clone();
                    async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        recorded.lock().unwrap().push((
                            format!("{method} {}", uri.path()),
                            body,
                            auth,
                        ));
                        "ok"
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        match tls {
            None => {
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            }
            Some(dir) => {
                let config = tls_endpoint_config(dir);
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            return;
                        };
                        let (acceptor, app) = (acceptor.clone(), app.clone());
                        tokio::spawn(async move {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let service = hyper_util::service::TowerToHyperService::new(app);
                            let _ = hyper_util::server::conn::auto::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            )
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                        });
                    }
                });
            }
        }
        Endpoint { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The endpoint's TLS: the server certificate for localhost, and client certificates the
/// test's CA signed, required.
fn tls_endpoint_config(dir: &Path) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap()
}

/// Egress to an HTTPS endpoint whose certificate a private CA signed, presenting a client
/// certificate it asks for: delivered. Without the CA: refused, saying why. And the host's own
/// listener over TLS: HSTS, Secure session cookies, https reset links, and the CLI with `--ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_both_ways_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    support::make_certificates(certs.path());
    let endpoint = Endpoint::start(Some(certs.path())).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let port = endpoint.addr.port();
    let dir = certs.path().to_owned();
    let host = host(&db, move |config| {
        let tls = |ca: bool, client: bool| wharf::tls::TlsConfig {
            ca: ca.then(|| dir.join("ca.pem")),
            cert: client.then(|| dir.join("client.pem")),
            key: client.then(|| dir.join("client.key")),
            pkcs12: None,
            pkcs12_password: String::new(),
        };
        for (name, ca, client) in [
            ("secure", true, true),
            ("untrusting", false, true),
            ("anonymous-tls", true, false),
        ] {
            config.connections.insert(
                name.into(),
                wharf::config::ConnectionConfig::Http(Box::new(wharf::broker::http::HttpConfig {
                    base_url: Some(format!("https://localhost:{port}/hooks/")),
                    tls: Some(tls(ca, client)),
                    timeout_ms: 5_000,
                    ..Default::default()
                })),
            );
        }
        config.server.tls = Some(wharf::config::ServerTlsConfig {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        });
    })
    .await;
    let https = format!("https://localhost:{}", host.addr.port());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.pem")).unwrap())
        .unwrap();
    let token = support::local_token(host.addr);
    let client = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let tls_admin = {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()).parse().unwrap(),
        );
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .default_headers(headers)
            .build()
            .unwrap()
    };
    let publish = |connection: &str| {
        client
            .post(format!(
                "{https}/api/v1/queues/{connection}/orders/messages"
            ))
            .bearer_auth(token.trim())
            .json(&json!({ "payload": format!("to {connection}") }))
            .send()
    };
    let sent = publish("secure").await.unwrap();
    assert_eq!(sent.status(), 201, "{}", sent.text().await.unwrap());
    assert_eq!(
        endpoint.seen()[0].0,
        "POST /hooks/orders",
        "the endpoint got the request over TLS"
    );
    assert_eq!(endpoint.seen()[0].1, "to secure");
    for (connection, why) in [("untrusting", "certificate"), ("anonymous-tls", "")] {
        let refused = publish(connection).await.unwrap();
        let status = refused.status();
        let text = refused.text().await.unwrap();
        assert_eq!(status, 503, "{connection}: {text}");
        assert!(text.contains(why), "{connection}: {text}");
    }
    assert_eq!(endpoint.seen().len(), 1);
    let tested: Value = json(
        client
            .post(format!("{https}/api/v1/connections/secure/test"))
            .bearer_auth(token.trim()),
    )
    .await;
    assert_eq!(tested["ok"], true, "{tested}");

    // The listener: HSTS, a Secure session cookie, reset links that say https.
    let health = client.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("strict-transport-security"));
    let plain_http = plain()
        .get(format!("http://localhost:{}/healthz", host.addr.port()))
        .send()
        .await;
    assert!(
        plain_http.is_err(),
        "plain HTTP is not answered on a TLS listener"
    );
    add_user_at(&tls_admin, &https, "ada", "ada's password", "admin").await;
    let login = client
        .post(format!("{https}/api/v1/login"))
        .json(&json!({ "name": "ada", "password": "ada's password" }))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let csrf = login.json::<Value>().await.unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    add_user_at(&tls_admin, &https, "vera", "vera's password", "viewer").await;
    let page = client
        .post(format!("{https}/users/vera/reset?csrf={csrf}"))
        .header(COOKIE, cookie.split(';').next().unwrap())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .replace("&#x2f;", "/");
    assert!(
        page.contains(&format!("{https}/reset/wharf_")),
        "the reset link says https: {page}"
    );

    // The CLI: with the CA it reaches the host; without, it says why not.
    let status = |ca: Option<&Path>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        command.args(["status", "--url", &https, "--token", token.trim()]);
        if let Some(ca) = ca {
            command.arg("--ca").arg(ca);
        }
        command.output().unwrap()
    };
    let out = status(Some(&certs.path().join("ca.pem")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("secure"));
    let out = status(None);
    assert!(!out.status.success());
    // The CLI adds an https connection with its CA and client certificate; it delivers.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["connection", "add", "by-cli", "--kind", "http"])
        .args(["--base-url", &format!("https://localhost:{port}/cli/")])
        .arg("--tls-ca")
        .arg(certs.path().join("ca.pem"))
        .arg("--tls-cert")
        .arg(certs.path().join("client.pem"))
        .arg("--tls-key")
        .arg(certs.path().join("client.key"))
        .args(["--url", &https, "--token", token.trim()])
        .arg("--ca")
        .arg(certs.path().join("ca.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = publish("by-cli").await.unwrap();
    assert_eq!(sent.status(), 201, "{}", sent.text().await.unwrap());
    assert!(
        endpoint
            .seen()
            .iter()
            .any(|(request, ..)| request == "POST /cli/orders")
    );
    host.stop().await;
}

/// A secret shown hidden (`***`) and sent back keeps its stored value only where it went
/// before: changing `base_url` to another host needs the header's secret again, and an AMQP
/// URL's hidden password is never carried to another broker (nor stored as `***`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_do_not_follow_a_connection_to_another_host() {
    let endpoint = Endpoint::start(None).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db, |_| {}).await;
    let (base, client) = (base(&host), admin(&host).await);
    let port = endpoint.addr.port();
    let made = client
        .post(format!("{base}/api/v1/connections"))
        .json(&json!({ "name": "hooks", "kind": "http",
            "base_url": format!("http://127.0.0.1:{port}/x/"),
            "headers": { "Authorization": "Bearer the-stored-secret" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let shown: Value = json(client.get(format!("{base}/api/v1/connections/hooks"))).await;
    assert_eq!(shown["connection"]["headers"]["Authorization"], "***");
    let update = |base_url: String| {
        let mut definition = shown["connection"].clone();
        definition["base_url"] = json!(base_url);
        client
            .put(format!("{base}/api/v1/connections/hooks"))
            .json(&definition)
            .send()
    };
    // Another host (a name for the same machine counts as another host).
    let moved = update(format!("http://localhost:{port}/x/")).await.unwrap();
    assert_eq!(moved.status(), 400);
    let error: Value = moved.json().await.unwrap();
    assert_eq!(error["error"]["field"], "headers.Authorization", "{error}");
    // The same host, another path: kept.
    let kept = update(format!("http://127.0.0.1:{port}/y/")).await.unwrap();
    assert_eq!(kept.status(), 200, "{}", kept.text().await.unwrap());
    let sent = client
        .post(format!("{base}/api/v1/queues/hooks/orders/messages"))
        .json(&json!({ "payload": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let seen = endpoint.seen();
    assert_eq!(seen[0].0, "POST /y/orders");
    assert_eq!(seen[0].2.as_deref(), Some("Bearer the-stored-secret"));

    let made = client
        .post(format!("{base}/api/v1/connections"))
        .json(&json!({ "name": "rabbit", "kind": "amqp", "url": "amqp://guest:stored-pw@127.0.0.1:1/%2f" }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let moved = client
        .put(format!("{base}/api/v1/connections/rabbit"))
        .json(&json!({ "kind": "amqp", "url": "amqp://guest:***@elsewhere.example:5672/%2f" }))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 400);
    let error: Value = moved.json().await.unwrap();
    assert_eq!(error["error"]["field"], "url", "{error}");

    // A token used as a URL's user name is hidden too.
    let made = client
        .post(format!("{base}/api/v1/connections"))
        .json(&json!({ "name": "gh", "kind": "http", "base_url": "https://ghp_tokenvalue123@api.example.com/" }))
        .send()
        .await
        .unwrap();
    let shown = made.text().await.unwrap();
    assert!(
        !shown.contains("ghp_tokenvalue123") && shown.contains("***@api.example.com"),
        "{shown}"
    );
    host.stop().await;
}

/// What every answer carries, whoever asks and whatever the answer: a CSP that forbids inline
/// script, nosniff, no framing, a referrer policy; anonymous health says the status only;
/// ingress answers (a plugin's words) are sandboxed whatever the reply's headers say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_its_protections() {
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db, |config| {
        config.server.plugin_dir = Some(support::plugin_dir());
        config.connections.insert(
            "open".into(),
            wharf::config::ConnectionConfig::Http(Box::new(wharf::broker::http::HttpConfig {
                anonymous: true,
                ..Default::default()
            })),
        );
        config.routes.push(wharf::config::RouteConfig {
            name: "answer".into(),
            from: "open:echo".into(),
            through: vec!["echo".into()],
            ..Default::default()
        });
    })
    .await;
    let base = base(&host);
    for path in [
        "/",
        "/login",
        "/setup",
        "/api/v1/status",
        "/metrics",
        "/healthz",
        "/nowhere",
        "/static/style.css",
        "/static/wharf.js",
    ] {
        let answer = plain().get(format!("{base}{path}")).send().await.unwrap();
        let headers = answer.headers();
        // A page lets only its own nonce'd script and style load; anything else, nothing.
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.starts_with("default-src 'none'")
                && !policy.contains("unsafe-inline")
                && !policy.contains("script-src 'self'")
                && (policy.contains("script-src 'nonce-") || !policy.contains("script-src")),
            "{path}: {policy}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
    }
    let health: Value = json(plain().get(format!("{base}/healthz"))).await;
    assert_eq!(
        health,
        json!({ "status": "ok" }),
        "anonymous: the status only"
    );
    let health: Value = json(admin(&host).await.get(format!("{base}/healthz"))).await;
    assert_eq!(health["connections"]["local"]["status"], "up", "{health}");

    // An ingress answer: an HTML reply whose headers ask for script, framing and a cookie.
    let answer = plain()
        .post(format!("{base}/ingress/open/echo"))
        .header("content-type", "text/html")
        .header("content-security-policy", "script-src *")
        .header("x-frame-options", "ALLOWALL")
        .header("x-set-cookie-like", "kept")
        .header("set-cookie", "wharf_session=stolen")
        .body("<script>alert(1)</script>")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    assert_eq!(headers["content-type"], "text/html");
    assert_eq!(
        headers["content-security-policy"],
        wharf::web::security::INGRESS_POLICY
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers.get("set-cookie").is_none());
    assert_eq!(headers["x-set-cookie-like"], "kept", "other headers pass");
    let missing = plain()
        .post(format!("{base}/ingress/nobody/here"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-security-policy"],
        wharf::web::security::INGRESS_POLICY
    );
    host.stop().await;
}

/// The smaller holes, each as it was found: a connection test that followed a redirect; a
/// definition that is JSON but not an object; a password change that left a session behind; a
/// form posted from another site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smaller_holes_stay_shut() {
    let endpoint = Endpoint::start(None).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db, |_| {}).await;
    let (base, client) = (base(&host), admin(&host).await);
    add_user(&host, "ada", "ada's password", "admin").await;

    // The connection test does not follow a redirect (egress does not either).
    let tested: Value = json(
        client
            .post(format!("{base}/api/v1/connections/test"))
            .json(&json!({ "name": "t", "kind": "http",
            "base_url": format!("http://127.0.0.1:{}/base/", endpoint.addr.port()) })),
    )
    .await;
    assert!(
        tested["detail"].as_str().unwrap().contains("redirect"),
        "{tested}"
    );
    assert!(
        endpoint
            .seen()
            .iter()
            .all(|(request, ..)| !request.contains("elsewhere")),
        "the redirect was not followed: {:?}",
        endpoint.seen()
    );

    // A definition that is JSON but not an object: 400 naming it, the host still answering.
    let made = client
        .post(format!("{base}/api/v1/connections"))
        .json(&json!({ "name": "hooks", "kind": "http" }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let ada = session(&base, "ada", "ada's password").await;
    for definition in ["[1, 2]", "\"text\"", "7"] {
        let answer = ada
            .form(
                &base,
                "/connections/hooks",
                &[("definition", definition), ("url", "http://x/")],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{definition}");
        assert!(answer.text().await.unwrap().contains("definition"));
    }

    // Changing one's own password ends every session, this one too: none is left behind.
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let changed = ada
        .form(
            &base,
            "/account",
            &[
                ("current", "ada's password"),
                ("password", "ada's new password"),
            ],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 303);
    let now = wharf::message::now_ms() as i64;
    assert_eq!(store.sessions_of("ada", now).await.unwrap(), 0);

    // A note in a link made elsewhere is not shown on the host's pages; the host's own is.
    let ada = session(&base, "ada", "ada's new password").await;
    let page = plain()
        .get(format!(
            "{base}/routes?ok=Your+session+ended%3B+sign+in+at+evil.example"
        ))
        .header(COOKIE, &ada.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("evil.example"),
        "an unsigned note is not shown"
    );
    let made = ada
        .form(
            &base,
            "/routes/new",
            &[
                ("name", "noted"),
                ("from", "local:n.in"),
                ("to", "local:n.out"),
            ],
        )
        .send()
        .await
        .unwrap();
    let back = made.headers()["location"].to_str().unwrap().to_owned();
    let page = plain()
        .get(format!("{base}{back}"))
        .header(COOKIE, &ada.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Route created and started"),
        "the host's own note is shown"
    );

    // `***` is never stored for a secret: not on a new connection, not across kinds.
    let hidden = client
        .post(format!("{base}/api/v1/connections"))
        .json(&json!({ "name": "blank", "kind": "http", "headers": { "Authorization": "***" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 400);
    let across = client
        .put(format!("{base}/api/v1/connections/hooks"))
        .json(&json!({ "kind": "amqp", "url": "amqp://guest:***@127.0.0.1:5672/%2f" }))
        .send()
        .await
        .unwrap();
    assert_eq!(across.status(), 400);

    // A form from another site, with a stolen cookie and token even: refused.
    let ada = session(&base, "ada", "ada's new password").await;
    let forged = plain()
        .post(format!("{base}/routes/new?csrf={}", ada.csrf))
        .header(COOKIE, &ada.cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("name", "forged"), ("from", "local:a"), ("to", "local:b")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let without_token = plain()
        .post(format!("{base}/routes/new"))
        .header(COOKIE, &ada.cookie)
        .form(&[("name", "forged"), ("from", "local:a"), ("to", "local:b")])
        .send()
        .await
        .unwrap();
    assert_eq!(without_token.status(), 403);

    // A unit's restart from its page: refused without the session's token or from another
    // site; a name that climbs out of its path segment restarts nothing; the real one does.
    for kind in ["routes", "subscriptions", "daemons"] {
        let unsigned = plain()
            .post(format!("{base}/{kind}/noted/restart"))
            .header(COOKIE, &ada.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status(), 403, "{kind}");
        let cross = plain()
            .post(format!("{base}/{kind}/noted/restart?csrf={}", ada.csrf))
            .header(COOKIE, &ada.cookie)
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_eq!(cross.status(), 403, "{kind}");
    }
    let climbing = ada
        .form(&base, "/routes/..%2F..%2Fusers%2Fada/restart", &[])
        .send()
        .await
        .unwrap();
    assert_eq!(climbing.status(), 404);
    assert!(
        climbing.text().await.unwrap().contains("no unit named"),
        "the answer names what is missing"
    );
    let restarted = ada
        .form(&base, "/routes/noted/restart", &[])
        .send()
        .await
        .unwrap();
    assert_eq!(restarted.status(), 303);
    assert!(
        restarted.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/routes/noted?ok=Restarted"),
        "{:?}",
        restarted.headers()
    );
    host.stop().await;
}

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[tokio::test]
async fn anonymous_health_checks_share_one_broker_check() {
    // A Kafka "broker" that accepts connections and never answers: every metadata request
    // to it waits its whole timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db, |_| {}).await;
    let (base, client) = (base(&host), admin(&host).await);
    add_user(&host, "ada", "ada's password", "admin").await;
    let made = client
        .post(format!("{base}/api/v1/connections"))
        .json(&json!({ "name": "silent", "kind": "kafka",
            "brokers": format!("127.0.0.1:{port}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());

    // 200 anonymous health checks at once (each a connection of its own: client and
    // server ends stay under this process's 1,024 files). Each used to ask the brokers on
    // the blocking pool (up to 512 threads, shared with password hashing and plugin
    // compiles); now one check a second answers them all, asked on a thread of its own.
    let before = threads();
    let asks: Vec<_> = (0..200)
        .map(|i| {
            let url = format!("{base}/{}", ["healthz", "readyz"][i % 2]);
            tokio::spawn(async move { plain().get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    let mut most = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        most = most.max(threads());
    }
    // A sign-in meanwhile is not queued behind them.
    assert_eq!(
        sign_in_status(&plain(), &base, "ada", "ada's password").await,
        200
    );
    for ask in asks {
        let status = ask.await.unwrap().expect("every health check is answered");
        assert!(status == 200 || status == 503, "{status}");
    }
    assert!(
        most < before + 100,
        "{most} threads while the health checks waited ({before} before)"
    );
    let health: Value = json(plain().get(format!("{base}/healthz"))).await;
    assert_eq!(health["status"], "degraded", "{health}");
    host.stop().await;
}

#[tokio::test]
async fn a_signed_in_callers_body_is_bounded_before_it_is_parsed() {
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db, |_| {}).await;
    let (base, client) = (base(&host), admin(&host).await);
    let publish = format!("{base}/api/v1/queues/local/bounded/messages");
    let send = |body: Vec<u8>| {
        client
            .post(&publish)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Past the JSON limit (four messages' worth): 413 before a byte is parsed.
    let limit = wharf::web::json_body_limit(Config::default().server.max_message_bytes);
    let mut over = b"{\"payload\":\"".to_vec();
    over.resize(limit + 1, b'x');
    let answer = send(over).await.unwrap();
    assert_eq!(answer.status(), 413);
    // Within it, but a tree of values that would take gigabytes: refused before it is built.
    let mut zeros = b"{\"payload\":[0".to_vec();
    for _ in 0..300_000 {
        zeros.extend_from_slice(b",0");
    }
    zeros.extend_from_slice(b"]}");
    let answer = send(zeros).await.unwrap();
    assert_eq!(answer.status(), 400);
    let said: Value = answer.json().await.unwrap();
    assert!(
        said["error"]["message"]
            .as_str()
            .unwrap()
            .contains("payload_base64"),
        "{said}"
    );
    // One byte of payload and 5 MiB of headers is a 5 MiB message: over the 4 MiB limit.
    let headers: serde_json::Map<String, Value> = (0..5)
        .map(|i| (format!("h{i}"), json!("x".repeat(1024 * 1024))))
        .collect();
    let answer = send(serde_json::to_vec(&json!({ "payload": "x", "headers": headers })).unwrap())
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let said = answer.text().await.unwrap();
    assert!(status == 400 || status == 413, "{status} {said}");
    assert!(said.contains("over the"), "{said}");
    let peeked: Value = json(client.get(&publish)).await;
    assert_eq!(peeked, json!([]), "nothing was stored");
    // A plugin upload is the one body that may be large: a 20 MiB file is read and refused
    // by its check, not by the JSON limit.
    let answer = client
        .post(format!("{base}/api/v1/plugins"))
        .header("content-type", "application/wasm")
        .body(vec![0u8; 20 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().contains("format check"));
    host.stop().await;
}

#[tokio::test]
async fn a_token_holder_is_bounded_and_refusals_are_audited() {
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db, |config| config.server.max_in_flight = 64).await;
    let (base, admin) = (base(&host), admin(&host).await);
    let token = |name: &str, role: &str| {
        let admin = admin.clone();
        let url = format!("{base}/api/v1/tokens");
        let body = json!({ "name": name, "role": role });
        async move {
            let made: Value = json(admin.post(url).json(&body)).await;
            support::client_with_token(made["token"].as_str().unwrap())
        }
    };
    let busy = token("busy", "operator").await;
    let other = token("other", "operator").await;

    // 64 long polls of one token at once (the limit this host is given): the 65th request of
    // that token is refused at once (429), another token's goes through.
    let take = |client: &reqwest::Client| {
        client
            .post(format!(
                "{base}/api/v1/queues/local/empty.q/take?timeout_ms=3000"
            ))
            .send()
    };
    let polls: Vec<_> = (0..64).map(|_| tokio::spawn(take(&busy))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = take(&busy).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(take(&other).await.unwrap().status(), 200);
    for poll in polls {
        assert_eq!(poll.await.unwrap().unwrap().status(), 200);
    }
    // Finished, its requests go through again.
    assert_eq!(
        busy.get(format!("{base}/api/v1/queues"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A viewer's refused changes are in the audit log, a few a minute: 50 refusals write at
    // most ten entries.
    let viewer = token("peeker", "viewer").await;
    for _ in 0..50 {
        let answer = viewer
            .post(format!("{base}/api/v1/routes"))
            .json(&json!({ "name": "r", "from": "local:a", "to": "local:b" }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403);
    }
    let audit: Value = json(admin.get(format!(
        "{base}/api/v1/audit?action=request.refused&limit=100"
    )))
    .await;
    let entries = audit.as_array().unwrap();
    assert!(
        (1..=10).contains(&entries.len()),
        "{} entries: {audit}",
        entries.len()
    );
    assert!(
        entries[0]["detail"]["path"]
            .as_str()
            .is_some_and(|p| p == "/api/v1/routes"),
        "{audit}"
    );
    host.stop().await;
}

/// Every mutating endpoint the OpenAPI document lists either writes an audit entry when it
/// succeeds, or is named below as data sent through the host (messages, events, requests,
/// ingress: the data plane, which the audit log does not keep). A new endpoint that is in
/// neither list fails this test.
#[tokio::test]
async fn every_mutating_endpoint_is_audited() {
    use reqwest::Method;
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db, |_| {}).await;
    let (base, admin) = (base(&host), admin(&host).await);
    let entries = || {
        let admin = admin.clone();
        let url = format!("{base}/api/v1/audit?limit=1000");
        async move {
            let all: Value = json(admin.get(url)).await;
            all.as_array().unwrap().len()
        }
    };
    let data_plane: &[(&str, &str)] = &[
        ("post", "/api/v1/queues/{connection}/{queue}/messages"),
        ("post", "/api/v1/events/{model}/{event}"),
        ("post", "/api/v1/outbox"),
        ("post", "/api/v1/rpc/{connection}/{address}"),
        ("post", "/ingress/{connection}/{path}"),
        ("post", "/hooks/{path}"),
        ("post", "/api/v1/logout"),
    ];
    // (method, the document's path, the path called, body): in an order that works.
    let plugin = std::fs::read(support::plugin_path("stamp")).unwrap();
    let upgrade = std::fs::read(support::plugin_path("stamp-v2")).unwrap();
    let calls: Vec<(&str, &str, String, Option<Value>)> = vec![
        (
            "post",
            "/api/v1/users",
            "/api/v1/users".into(),
            Some(json!({ "name": "una", "password": "una's long password", "role": "viewer" })),
        ),
        (
            "put",
            "/api/v1/users/{name}",
            "/api/v1/users/una".into(),
            Some(json!({ "role": "operator" })),
        ),
        (
            "put",
            "/api/v1/users/{name}/password",
            "/api/v1/users/una/password".into(),
            Some(json!({ "password": "una's other password" })),
        ),
        (
            "post",
            "/api/v1/users/{name}/reset",
            "/api/v1/users/una/reset".into(),
            None,
        ),
        (
            "post",
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            Some(json!({ "name": "svc", "role": "operator" })),
        ),
        (
            "delete",
            "/api/v1/tokens/{id_or_name}",
            "/api/v1/tokens/svc".into(),
            None,
        ),
        (
            "put",
            "/api/v1/settings",
            "/api/v1/settings".into(),
            Some(json!({ "registration": false })),
        ),
        (
            "post",
            "/api/v1/connections/test",
            "/api/v1/connections/test".into(),
            Some(json!({ "name": "t", "kind": "embedded" })),
        ),
        (
            "post",
            "/api/v1/connections",
            "/api/v1/connections".into(),
            Some(json!({ "name": "side", "kind": "embedded" })),
        ),
        (
            "post",
            "/api/v1/connections/{name}/test",
            "/api/v1/connections/side/test".into(),
            None,
        ),
        (
            "put",
            "/api/v1/connections/{name}",
            "/api/v1/connections/side".into(),
            Some(json!({ "kind": "embedded" })),
        ),
        ("post", "/api/v1/plugins", "/api/v1/plugins".into(), None),
        (
            "post",
            "/api/v1/plugins/{name}/grants",
            "/api/v1/plugins/stamp/grants".into(),
            Some(json!({ "grants": ["publish:local:audit.*"] })),
        ),
        (
            "delete",
            "/api/v1/plugins/{name}/grants",
            "/api/v1/plugins/stamp/grants".into(),
            Some(json!({ "grants": ["publish:local:audit.*"] })),
        ),
        (
            "put",
            "/api/v1/plugins/{name}/policy",
            "/api/v1/plugins/stamp/policy".into(),
            Some(json!({ "memory_mb": 32 })),
        ),
        (
            "post",
            "/api/v1/plugins/{name}/versions/{version}/disable",
            "/api/v1/plugins/stamp/versions/1.0.0/disable".into(),
            None,
        ),
        (
            "post",
            "/api/v1/plugins/{name}/versions/{version}/enable",
            "/api/v1/plugins/stamp/versions/1.0.0/enable".into(),
            None,
        ),
        (
            "post",
            "/api/v1/plugins/{name}/rollback",
            "/api/v1/plugins/stamp/rollback".into(),
            None,
        ),
        (
            "delete",
            "/api/v1/plugins/{name}/versions/{version}",
            "/api/v1/plugins/stamp/versions/2.0.0".into(),
            None,
        ),
        (
            "post",
            "/api/v1/routes",
            "/api/v1/routes".into(),
            Some(json!({ "name": "r", "from": "local:a.in", "to": "local:a.out" })),
        ),
        (
            "put",
            "/api/v1/routes/{name}",
            "/api/v1/routes/r".into(),
            Some(json!({ "name": "r", "from": "local:a.in", "to": "local:a.other" })),
        ),
        (
            "post",
            "/api/v1/units/{name}/stop",
            "/api/v1/units/r/stop".into(),
            None,
        ),
        (
            "post",
            "/api/v1/units/{name}/start",
            "/api/v1/units/r/start".into(),
            None,
        ),
        (
            "post",
            "/api/v1/units/{name}/restart",
            "/api/v1/units/r/restart".into(),
            None,
        ),
        (
            "post",
            "/api/v1/drain",
            "/api/v1/drain".into(),
            Some(json!({ "units": ["r"], "timeout_secs": 5 })),
        ),
        (
            "post",
            "/api/v1/subscriptions",
            "/api/v1/subscriptions".into(),
            Some(
                json!({ "name": "s", "service": "books", "pattern": "Booking.*", "to": "local:s.out" }),
            ),
        ),
        (
            "put",
            "/api/v1/subscriptions/{name}",
            "/api/v1/subscriptions/s".into(),
            Some(
                json!({ "name": "s", "service": "books", "pattern": "Booking.#", "to": "local:s.out" }),
            ),
        ),
        (
            "post",
            "/api/v1/daemons",
            "/api/v1/daemons".into(),
            Some(json!({ "name": "d", "plugin": "daemon-probe" })),
        ),
        (
            "put",
            "/api/v1/daemons/{name}",
            "/api/v1/daemons/d".into(),
            Some(json!({ "name": "d", "plugin": "daemon-probe", "max_failures": 9 })),
        ),
        (
            "post",
            "/api/v1/queues/{connection}/{queue}/take",
            "/api/v1/queues/local/q1/take?timeout_ms=1000".into(),
            None,
        ),
        (
            "post",
            "/api/v1/queues/{connection}/{queue}/lease",
            "/api/v1/queues/local/q2/lease?count=2&timeout_ms=1000".into(),
            None,
        ),
        (
            "post",
            "/api/v1/queues/{connection}/{queue}/lease/stream",
            "/api/v1/queues/local/q5/lease/stream?heartbeat_ms=60000".into(),
            None,
        ),
        ("delete", "/api/v1/leases/streams/{id}", String::new(), None),
        (
            "post",
            "/api/v1/leases/{id}/extend",
            String::new(),
            Some(json!({ "lease_ms": 60000 })),
        ),
        (
            "post",
            "/api/v1/leases/{id}/nack",
            String::new(),
            Some(json!({ "requeue": true })),
        ),
        ("post", "/api/v1/leases/{id}/ack", String::new(), None),
        (
            "post",
            "/api/v1/leases/settle",
            "/api/v1/leases/settle".into(),
            Some(json!({ "ack": ["no-such-lease"] })),
        ),
        (
            "post",
            "/api/v1/queues/{connection}/{queue}/replay",
            "/api/v1/queues/local/q3.dead/replay?to=local:q3".into(),
            None,
        ),
        (
            "delete",
            "/api/v1/queues/{connection}/{queue}/messages",
            "/api/v1/queues/local/q3/messages".into(),
            None,
        ),
        (
            "post",
            "/api/v1/outbox/dead/{seq}/retry",
            String::new(),
            None,
        ),
        ("delete", "/api/v1/outbox/dead/{seq}", String::new(), None),
        (
            "delete",
            "/api/v1/daemons/{name}",
            "/api/v1/daemons/d".into(),
            None,
        ),
        (
            "delete",
            "/api/v1/subscriptions/{name}",
            "/api/v1/subscriptions/s".into(),
            None,
        ),
        (
            "delete",
            "/api/v1/routes/{name}",
            "/api/v1/routes/r".into(),
            None,
        ),
        (
            "delete",
            "/api/v1/connections/{name}",
            "/api/v1/connections/side".into(),
            None,
        ),
        (
            "post",
            "/api/v1/login",
            "/api/v1/login".into(),
            Some(json!({ "name": "una", "password": "una's other password" })),
        ),
        (
            "delete",
            "/api/v1/users/{name}",
            "/api/v1/users/una".into(),
            None,
        ),
    ];
    // What some calls need: a daemon plugin, messages in q1, q2 and q3.dead, a lease, a dead
    // outbox row.
    let probe = admin
        .post(format!("{base}/api/v1/plugins"))
        .header("content-type", "application/wasm")
        .body(std::fs::read(support::plugin_path("daemon-probe")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 201);
    for queue in ["q1", "q2", "q2", "q3.dead"] {
        let sent = admin
            .post(format!("{base}/api/v1/queues/local/{queue}/messages"))
            .json(&json!({ "payload": "x" }))
            .send()
            .await
            .unwrap();
        assert!(sent.status().is_success());
    }
    let refused = format!("local:{}", "x".repeat(300));
    let handed: Value = json(
        admin
            .post(format!("{base}/api/v1/outbox"))
            .json(&json!({ "to": refused, "message": { "payload": "doomed" } })),
    )
    .await;
    assert!(handed["ids"].is_array(), "{handed}");
    let mut leases: Vec<String> = Vec::new();
    // The lease stream opened, kept open (its answer goes on) until it is stopped.
    let mut stream: Option<(String, reqwest::Response)> = None;
    let mut dead_seq = String::new();
    let mut covered = std::collections::BTreeSet::new();
    for (method, template, path, body) in calls {
        let path = match template {
            "/api/v1/leases/{id}/extend"
            | "/api/v1/leases/{id}/nack"
            | "/api/v1/leases/{id}/ack" => {
                // The first is given back by the nack; the second is extended and acked.
                let action = template.rsplit('/').next().unwrap();
                let lease = &leases[usize::from(action != "nack")];
                format!("/api/v1/leases/{lease}/{action}")
            }
            "/api/v1/leases/streams/{id}" => {
                format!("/api/v1/leases/streams/{}", stream.as_ref().unwrap().0)
            }
            "/api/v1/outbox/dead/{seq}/retry" | "/api/v1/outbox/dead/{seq}" => {
                for _ in 0..100 {
                    let dead: Value = json(admin.get(format!("{base}/api/v1/outbox/dead"))).await;
                    if let Some(seq) = dead[0]["seq"].as_i64() {
                        dead_seq = seq.to_string();
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                template.replace("{seq}", &dead_seq)
            }
            _ => path,
        };
        let before = entries().await;
        let request = admin.request(
            Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
            format!("{base}{path}"),
        );
        let request = match (template, &body) {
            ("/api/v1/plugins", _) => request.header("content-type", "application/wasm").body(
                if covered.contains(&("post", "/api/v1/plugins")) {
                    upgrade.clone()
                } else {
                    plugin.clone()
                },
            ),
            (_, Some(body)) => request.json(body),
            (_, None) => request,
        };
        let answer = request.send().await.unwrap();
        let status = answer.status();
        if template == "/api/v1/queues/{connection}/{queue}/lease/stream" {
            assert!(status.is_success(), "{method} {path}: {status}");
            let id = answer.headers()["wharf-lease-stream"]
                .to_str()
                .unwrap()
                .to_owned();
            stream = Some((id, answer));
            assert!(
                entries().await > before,
                "{method} {path} wrote no audit entry"
            );
            covered.insert((method, template));
            continue;
        }
        let said = answer.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {said}");
        if template == "/api/v1/queues/{connection}/{queue}/lease" {
            let leased: Value = serde_json::from_str(&said).unwrap();
            leases = leased
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["lease"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(leases.len(), 2, "{said}");
        }
        if template == "/api/v1/plugins" && !covered.contains(&("post", "/api/v1/plugins")) {
            // The second version, as an upgrade, for the rollback and the delete below.
            covered.insert(("post", "/api/v1/plugins"));
            let upgraded = admin
                .post(format!("{base}/api/v1/plugins?upgrade=stamp"))
                .header("content-type", "application/wasm")
                .body(upgrade.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(upgraded.status(), 201);
        }
        assert!(
            entries().await > before,
            "{method} {path} succeeded ({status}) and wrote no audit entry"
        );
        covered.insert((method, template));
    }
    // Every mutating endpoint of the document is covered, audited or named as data.
    let document: Value = json(admin.get(format!("{base}/api/v1/openapi.json"))).await;
    let mut listed = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                listed.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let known: std::collections::BTreeSet<(String, String)> = covered
        .iter()
        .chain(data_plane.iter())
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = listed.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "mutating endpoints neither audited nor named as data: {missing:?}"
    );
    let stale: Vec<_> = known.difference(&listed).collect();
    assert!(
        stale.is_empty(),
        "named here but not in the document: {stale:?}"
    );
    host.stop().await;
}
