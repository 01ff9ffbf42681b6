//! Daemons: long-running plugins the host supervises. Each test runs a real host (in-process,
//! or `wharf serve` where it is killed or signalled) on a real database; the lookup daemon
//! answers an independent AMQP client through RabbitMQ.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Api, Backend, TestDb};
use wharf::config::{Config, DaemonConfig, PluginConfig};
use wharf::message::Message;

fn daemon(name: &str, plugin: &str) -> DaemonConfig {
    DaemonConfig {
        name: name.into(),
        plugin: plugin.into(),
        each_host: false,
        max_failures: 5,
        failure_window_secs: 300,
    }
}

fn probe(mode: &str, config: &[(&str, &str)], publish: &[&str], receive: &[&str]) -> PluginConfig {
    let mut settings: std::collections::BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    settings.insert("mode".into(), mode.into());
    PluginConfig {
        path: support::plugin_path("daemon-probe"),
        publish: publish.iter().map(|s| s.to_string()).collect(),
        receive: receive.iter().map(|s| s.to_string()).collect(),
        config: settings,
        ..PluginConfig::default()
    }
}

/// A host's config with no routes or daemons but those given, and a short grace period.
fn bare_config() -> Config {
    let mut config = Config::default();
    config.routes.clear();
    config.daemons.clear();
    config.server.shutdown_grace_ms = 1_000;
    config
}

/// Waits (30 s at most) until `queue` holds `n` ready messages; returns them, left there.
async fn wait_for(broker: &wharf::broker::EmbeddedBroker, queue: &str, n: usize) -> Vec<Message> {
    let started = Instant::now();
    loop {
        let found = broker.peek(queue, 10_000, 1 << 24).await.unwrap();
        if found.len() >= n {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{queue} holds {} of {n} messages after 30 s",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wharf(base: &str, args: &[&str]) -> String {
    let addr = base.trim_start_matches("http://");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .args(["--url", base])
        .env(
            "WHARF_TOKEN",
            support::local_token(addr.parse().expect("host:port")),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wharf {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A daemon that traps is started again after a backoff, then marked failed and left
/// stopped; a restart through the API (or the CLI) runs it again with its failures forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_traps_is_restarted_with_backoff_then_marked_failed_until_restarted() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = bare_config();
    config.plugins.insert(
        "daemon-probe".into(),
        probe("trap", &[("delay_ms", "50")], &[], &[]),
    );
    config.daemons.push(DaemonConfig {
        max_failures: 3,
        failure_window_secs: 120,
        ..daemon("trapper", "daemon-probe")
    });
    let (host, _broker) = support::start_host(&db, config).await;
    let api = Api::new(host.addr);
    let failed = api.wait_unit("trapper", "failed").await;
    assert_eq!(failed["kind"], "daemon");
    assert_eq!(
        failed["restarts"], 2,
        "two restarts, the third failure marks it: {failed}"
    );
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("trapped") && error.contains("panicked"),
        "{error}"
    );
    assert!(
        failed["note"]
            .as_str()
            .unwrap()
            .contains("until someone restarts it")
    );
    // It stays failed: nothing restarts it by itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(api.unit("trapper").await.unwrap()["state"], "failed");
    // The metrics count its runs and failures, and the units gauge has its kind.
    let metrics = support::scrape(host.addr).await;
    assert!(
        metrics.contains("wharf_daemon_failures_total{daemon=\"trapper\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wharf_units{kind=\"daemon\",state=\"failed\"} 1"),
        "{metrics}"
    );

    // Restarted by an operator: it runs again, its failures forgotten, and fails again.
    let restarted = api.ok(Method::POST, "units/trapper/restart", None).await;
    assert_ne!(restarted["state"], "failed", "{restarted}");
    let failed = api.wait_unit("trapper", "failed").await;
    assert_eq!(failed["restarts"], 2);
    // The same through the CLI, and `daemon list` says what happened.
    let base = format!("http://{}", host.addr);
    let out = wharf(&base, &["daemon", "restart", "trapper"]);
    assert!(out.starts_with("trapper: "), "{out}");
    api.wait_unit("trapper", "failed").await;
    let listed = wharf(&base, &["daemon", "list"]);
    assert!(
        listed.contains("trapper") && listed.contains("failed"),
        "{listed}"
    );
    assert!(
        listed.contains("last error: daemon `daemon-probe` trapped")
            || listed.contains("last error: plugin `daemon-probe` trapped"),
        "{listed}"
    );
    host.stop().await;
}

/// A daemon names its failures as a handler does (`exception::name` before it fails): a
/// message it dead-letters carries the name and type in `exception_name` and
/// `exception_type`, and its status's error says it; unnamed, they are the host's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_names_its_dead_letters_and_its_failures() {
    let text = |message: &Message, header: &str| match message.header(header) {
        Some(wharf::message::HeaderValue::Text(text)) => text.clone(),
        other => panic!("{header}: {other:?}"),
    };
    for (name, expected) in [
        (Some("KeyError"), ("KeyError", "probe::KeyError")),
        (None, ("Rejected", "plugin")),
    ] {
        let db = TestDb::new(Backend::Sqlite).await;
        let mut config = bare_config();
        let mut settings = vec![("source", "local:work")];
        if let Some(name) = name {
            settings.push(("fail_name", name));
        }
        config.plugins.insert(
            "daemon-probe".into(),
            probe("refuse", &settings, &[], &["local:work"]),
        );
        config.daemons.push(daemon("refuser", "daemon-probe"));
        let (host, broker) = support::start_host(&db, config).await;
        broker
            .publish("work", Message::new("w", "unwanted"))
            .await
            .unwrap();
        let dead = wait_for(&broker, "work.dead", 1).await;
        assert_eq!(dead[0].payload, b"unwanted");
        assert_eq!(
            (
                text(&dead[0], "exception_name"),
                text(&dead[0], "exception_type")
            ),
            (expected.0.to_owned(), expected.1.to_owned())
        );
        assert!(text(&dead[0], "exception").contains("refused"));
        host.stop().await;
    }

    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = bare_config();
    config.plugins.insert(
        "daemon-probe".into(),
        probe("fail", &[("fail_name", "TimeoutError")], &[], &[]),
    );
    config.daemons.push(DaemonConfig {
        max_failures: 1,
        ..daemon("failer", "daemon-probe")
    });
    let (host, _broker) = support::start_host(&db, config).await;
    let failed = Api::new(host.addr).wait_unit("failer", "failed").await;
    assert_eq!(
        failed["error"],
        "daemon `daemon-probe` failed: TimeoutError: the probe fails as asked"
    );
    host.stop().await;
}

/// A daemon in Python (`plugins/py-ticker`) ticks, and fails named by its exception's class,
/// as a Python handler's failures are named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_daemon_ticks_and_fails_named_by_its_exception() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = bare_config();
    let mut settings = std::collections::BTreeMap::new();
    for (key, value) in [
        ("to", "local:ticks"),
        ("interval_ms", "50"),
        ("fail_at", "3"),
    ] {
        settings.insert(key.to_owned(), value.to_owned());
    }
    config.plugins.insert(
        "py-ticker".into(),
        PluginConfig {
            path: support::plugin_path("py-ticker"),
            publish: vec!["local:ticks".into()],
            config: settings,
            ..PluginConfig::default()
        },
    );
    config.daemons.push(DaemonConfig {
        max_failures: 1,
        ..daemon("ticker", "py-ticker")
    });
    let (host, broker) = support::start_host(&db, config).await;
    let failed = Api::new(host.addr).wait_unit("ticker", "failed").await;
    assert_eq!(
        failed["error"],
        "daemon `py-ticker` failed: TickerStopped: stopped at tick 3 as asked"
    );
    let ticks: Vec<String> = wait_for(&broker, "ticks", 2)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(ticks, [r#"{"tick": 1}"#, r#"{"tick": 2}"#]);
    host.stop().await;
}

/// A daemon that traps while it holds messages it took: they go back to their queue, and a
/// daemon allowed one failure is marked failed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_trapping_daemon_held_goes_back_to_its_queue() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut config = bare_config();
    config.plugins.insert(
        "daemon-probe".into(),
        probe(
            "hold",
            &[
                ("source", "local:jobs"),
                ("report", "local:seen"),
                ("trap_after", "3"),
            ],
            &["local:seen"],
            &["local:jobs"],
        ),
    );
    config.daemons.push(DaemonConfig {
        max_failures: 1,
        ..daemon("holder", "daemon-probe")
    });
    let (host, broker) = support::start_host(&db, config).await;
    for i in 0..3 {
        broker
            .publish("jobs", Message::new("j", format!("job {i}")))
            .await
            .unwrap();
    }
    let api = Api::new(host.addr);
    let failed = api.wait_unit("holder", "failed").await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("holding 3 messages"),
        "{failed}"
    );
    assert_eq!(
        wait_for(&broker, "seen", 3).await.len(),
        3,
        "it took all three"
    );
    let back = wait_for(&broker, "jobs", 3).await;
    let mut payloads: Vec<String> = back
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    payloads.sort();
    assert_eq!(payloads, ["job 0", "job 1", "job 2"]);
    host.stop().await;
}

/// Stop, start and restart through the CLI and the API: a stopped heartbeat publishes
/// nothing, a started one beats again from 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_stops_starts_and_restarts_through_the_cli_and_the_api() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = bare_config();
    config.plugins.insert(
        "heartbeat".into(),
        PluginConfig {
            publish: vec!["local:beats".into()],
            config: [
                ("to".to_string(), "local:beats".to_string()),
                ("interval_ms".to_string(), "100".to_string()),
            ]
            .into(),
            ..PluginConfig::default()
        },
    );
    config.daemons.push(daemon("beat", "heartbeat"));
    let (host, broker) = support::start_host(&db, config).await;
    let api = Api::new(host.addr);
    let base = format!("http://{}", host.addr);
    let running = api.wait_unit("beat", "running").await;
    assert_eq!(running["plugins"], json!(["heartbeat@0.1.0"]));
    wait_for(&broker, "beats", 3).await;

    let out = wharf(&base, &["daemon", "stop", "beat"]);
    assert!(out.contains("stopped"), "{out}");
    api.wait_unit("beat", "stopped").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = broker.peek("beats", 10_000, 1 << 24).await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        broker.peek("beats", 10_000, 1 << 24).await.unwrap().len(),
        held,
        "a stopped daemon publishes nothing"
    );
    broker.purge("beats").await.unwrap();

    wharf(&base, &["daemon", "start", "beat"]);
    api.wait_unit("beat", "running").await;
    let beats = wait_for(&broker, "beats", 2).await;
    assert_eq!(beats[0].payload, br#"{"beat":1}"#, "a new run beats from 1");

    broker.purge("beats").await.unwrap();
    api.ok(Method::POST, "units/beat/restart", None).await;
    // The old run may beat once more between the purge and its stop; the new one beats
    // from 1.
    let started = Instant::now();
    while !broker
        .peek("beats", 10_000, 1 << 24)
        .await
        .unwrap()
        .iter()
        .any(|beat| beat.payload == br#"{"beat":1}"#)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the restarted daemon beats from 1"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let view = api.ok(Method::GET, "daemons/beat", None).await;
    assert_eq!(view["source"], "file");
    assert!(view["runs_on"].as_str().is_some(), "{view}");
    // A file's daemon is read-only through the API.
    let (status, _) = api.call(Method::DELETE, "daemons/beat", None).await;
    assert_eq!(status, 409);
    host.stop().await;
}

/// A daemon can take only from what it was granted: the probe reports the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_a_grant_for_a_source_cannot_receive_from_it() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = bare_config();
    config.plugins.insert(
        "daemon-probe".into(),
        probe(
            "probe",
            &[("source", "local:secrets"), ("report", "local:report")],
            &["local:report"],
            &["local:public"],
        ),
    );
    config.daemons.push(daemon("prober", "daemon-probe"));
    let (host, broker) = support::start_host(&db, config).await;
    broker
        .publish("secrets", Message::new("s", "the secret"))
        .await
        .unwrap();
    let report = wait_for(&broker, "report", 1).await;
    let text = String::from_utf8_lossy(&report[0].payload);
    assert!(
        text.contains("has no grant to receive `local:secrets`"),
        "{text}"
    );
    assert_eq!(
        broker.peek("secrets", 10, 1 << 20).await.unwrap().len(),
        1,
        "the message is untouched"
    );
    host.stop().await;
}

/// A daemon that takes from an events pattern reads one queue of its own per pattern, bound
/// once and recorded; stopping the daemon unbinds it (events published while it is stopped
/// are not kept for it), starting it binds it again. A grant's `*` is one word: a daemon
/// granted `Booking.*` cannot take `Booking.#` (every Booking event, however deep). And a
/// daemon may have only so many patterns bound at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_binds_an_events_pattern_once_and_unbinds_it_when_stopped() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = bare_config();
    config.plugins.insert(
        "daemon-probe".into(),
        probe(
            "ack",
            &[
                ("source", "local:events/Booking.*"),
                ("report", "local:report"),
            ],
            &["local:report"],
            &["local:events/Booking.*"],
        ),
    );
    config.daemons.push(daemon("watcher", "daemon-probe"));
    let mut wide = probe(
        "probe",
        &[
            ("source", "local:events/Booking.#"),
            ("report", "local:wide"),
        ],
        &["local:wide"],
        &["local:events/Booking.*"],
    );
    wide.path = support::plugin_path("daemon-probe");
    config.plugins.insert("wide-probe".into(), wide);
    config.daemons.push(daemon("wide", "wide-probe"));
    let (host, broker) = support::start_host(&db, config).await;
    let api = Api::new(host.addr);
    let base = format!("http://{}", host.addr);
    let store = wharf::store::Store::open(&db.url).await.unwrap();

    // The wider pattern is refused by the grant, before anything is bound for it.
    let refusal = wait_for(&broker, "wide", 1).await;
    let text = String::from_utf8_lossy(&refusal[0].payload);
    assert!(
        text.contains("has no grant to receive `local:events/Booking.#`"),
        "{text}"
    );
    assert!(store.daemon_bindings("wide").await.unwrap().is_empty());

    // Bound once, to one queue of the daemon's own, and recorded.
    api.wait_unit("watcher", "running").await;
    let bound = |broker: &wharf::broker::EmbeddedBroker| {
        let broker = broker.clone();
        async move {
            broker
                .bindings("events")
                .await
                .unwrap()
                .into_iter()
                .filter(|(queue, _)| queue.starts_with("daemon.watcher."))
                .collect::<Vec<_>>()
        }
    };
    let started = Instant::now();
    while bound(&broker).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never bound: {:?} {:?} {:?}",
            api.unit("watcher").await,
            broker.bindings("events").await,
            broker.queues().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bindings = bound(&broker).await;
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    let (queue, pattern) = bindings[0].clone();
    assert_eq!(pattern, "Booking.*");
    assert_eq!(
        store.daemon_bindings("watcher").await.unwrap(),
        vec!["local:events/Booking.*".to_string()]
    );
    broker
        .publish("events/Booking.created", Message::new("", b"one".to_vec()))
        .await
        .unwrap();
    assert_eq!(wait_for(&broker, "report", 1).await[0].payload, b"one");

    // Stopped: unbound and forgotten; what is published meanwhile is not kept for it.
    wharf(&base, &["daemon", "stop", "watcher"]);
    api.wait_unit("watcher", "stopped").await;
    let started = Instant::now();
    while !bound(&broker).await.is_empty()
        || !store.daemon_bindings("watcher").await.unwrap().is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a stopped daemon's pattern is still bound: {:?}",
            bound(&broker).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker
        .publish(
            "events/Booking.updated",
            Message::new("", b"missed".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(broker.stats(&queue).await.unwrap().depth(), 0);

    // Started again: bound again, and it takes what is published from then on.
    wharf(&base, &["daemon", "start", "watcher"]);
    api.wait_unit("watcher", "running").await;
    let started = Instant::now();
    while bound(&broker).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never bound again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker
        .publish("events/Booking.paid", Message::new("", b"two".to_vec()))
        .await
        .unwrap();
    let reports = wait_for(&broker, "report", 2).await;
    assert_eq!(reports[1].payload, b"two", "{reports:?}");
    host.stop().await;

    // At most so many patterns are recorded for one daemon.
    for n in 0..64 {
        assert!(
            store
                .record_daemon_binding("greedy", &format!("local:events/K{n}.*"), 64, 1)
                .await
                .unwrap()
        );
    }
    assert!(
        !store
            .record_daemon_binding("greedy", "local:events/K64.*", 64, 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_daemon_binding("greedy", "local:events/K3.*", 64, 1)
            .await
            .unwrap(),
        "one recorded already stays recorded"
    );
}

/// Daemons made through the API: bad input is refused naming the field, a plugin that is
/// not a daemon is refused, and a new version uploaded and enabled while one runs replaces
/// it cleanly: the old one finishes the message it holds and stops, then the new one starts;
/// every message is handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_replaces_a_running_daemon_cleanly() {
    let db = TestDb::new(Backend::Postgres).await;
    let (host, broker) = support::start_host(&db, bare_config()).await;
    let api = Api::new(host.addr);
    api.upload("daemon-probe").await;
    api.ok(
        Method::POST,
        "plugins/daemon-probe/versions/0.1.0/enable",
        None,
    )
    .await;
    api.ok(
        Method::PUT,
        "plugins/daemon-probe/policy",
        Some(json!({
            "grants": ["receive:local:work", "publish:local:report"],
            "memory_mb": 64, "timeout_ms": 1000, "max_instances": 4, "reuse": false,
            "config": {"mode": "ack", "source": "local:work", "report": "local:report"},
        })),
    )
    .await;
    // Hostile and wrong input: a clear error each, nothing stored.
    for (body, field) in [
        (json!({"name": "../x", "plugin": "daemon-probe"}), "name"),
        (
            json!({"name": "w", "plugin": "daemon-probe", "max_failures": 0}),
            "max_failures",
        ),
        (json!({"name": "w", "plugin": "uppercase"}), "plugin"),
        (json!({"name": "w", "plugin": "nothing-here"}), "plugin"),
        (
            json!({"name": "w", "plugin": "daemon-probe@9.9.9"}),
            "plugin",
        ),
    ] {
        let (status, error) = api.call(Method::POST, "daemons", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let (status, _) = api
        .call(
            Method::POST,
            "daemons",
            Some(json!({"name": "w", "plugin": "daemon-probe", "colour": "red"})),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused");
    assert_eq!(api.ok(Method::GET, "daemons", None).await, json!([]));

    let created = api
        .ok(
            Method::POST,
            "daemons",
            Some(json!({"name": "worker", "plugin": "daemon-probe"})),
        )
        .await;
    assert_eq!(created["daemon"]["each_host"], false);
    api.wait_unit("worker", "running").await;

    let total = 300;
    let feeder = {
        let broker = broker.clone();
        tokio::spawn(async move {
            for i in 0..total {
                broker
                    .publish("work", Message::new("w", format!("m{i}")))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    wait_for(&broker, "report", 50).await;
    api.upgrade("daemon-probe-v2", "daemon-probe").await;
    api.ok(
        Method::POST,
        "plugins/daemon-probe/versions/2.0.0/enable",
        None,
    )
    .await;
    feeder.await.unwrap();
    let report = wait_for(&broker, "report", total).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = if report.len() > total {
        report
    } else {
        broker.peek("report", 10_000, 1 << 24).await.unwrap()
    };
    let versions: Vec<&str> = report.iter().map(|m| m.topic.as_str()).collect();
    let switched = versions.iter().position(|v| *v == "2.0.0").expect("v2 ran");
    assert!(switched > 0, "v1 ran first");
    assert!(
        versions[switched..].iter().all(|v| *v == "2.0.0"),
        "once v2 started, v1 had stopped: {versions:?}"
    );
    let mut payloads: Vec<String> = report
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), total, "every message handled");
    assert_eq!(report.len(), total, "and none twice");
    let unit = api.unit("worker").await.unwrap();
    assert_eq!(unit["plugins"], json!(["daemon-probe@2.0.0"]));

    api.ok(Method::DELETE, "daemons/worker", None).await;
    assert!(api.unit("worker").await.is_none());
    host.stop().await;
}

/// A daemon that spins without calling the host is interrupted at every tick, so a route
/// beside it keeps moving; past its CPU budget for the window it is stopped and, failing
/// again, marked failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_daemon_does_not_starve_a_route_and_is_stopped_past_its_budget() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config::default();
    config.daemons.clear();
    config.server.shutdown_grace_ms = 1_000;
    config.plugins.insert(
        "daemon-probe".into(),
        PluginConfig {
            timeout_ms: 400,
            ..probe("spin", &[], &[], &[])
        },
    );
    config.daemons.push(DaemonConfig {
        max_failures: 2,
        ..daemon("spinner", "daemon-probe")
    });
    let (host, broker) = support::start_host(&db, config).await;
    let api = Api::new(host.addr);
    // The demo route (uppercase) runs beside it.
    for i in 0..200 {
        broker
            .publish("demo.in", Message::new("d", format!("m{i}")))
            .await
            .unwrap();
    }
    wait_for(&broker, "demo.out", 200).await;
    let failed = api.wait_unit("spinner", "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("more than 400 ms of CPU within 10 s"),
        "{error}"
    );
    host.stop().await;
}

/// `wharf serve` holding messages a daemon took and never settled gets SIGTERM: the daemon
/// is asked to stop, the host exits, and every message is back in its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_messages_taken_and_unsettled_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let db = format!("sqlite://{}/wharf.db", dir.path().display());
    let file = dir.path().join("wharf.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
database = "{db}"
shutdown_grace_ms = 2000
plugin_dir = "{dist}"

[plugins.daemon-probe]
path = "{probe}"
receive = ["local:work"]
publish = ["local:report"]
config = {{ mode = "hold", source = "local:work", report = "local:report" }}

[[daemons]]
name = "holder"
plugin = "daemon-probe"
"#,
            dist = support::plugin_dir().display(),
            probe = support::plugin_path("daemon-probe").display(),
        ),
    )
    .unwrap();
    let mut host = support::serve_config(&file, dir.path(), port);
    let broker = wharf::broker::EmbeddedBroker::new(
        wharf::store::Store::open(&db).await.unwrap(),
        wharf::broker::EmbeddedConfig::default(),
    );
    for i in 0..5 {
        broker
            .publish("work", Message::new("w", format!("m{i}")))
            .await
            .unwrap();
    }
    // The daemon took all five and settled none.
    wait_for(&broker, "report", 5).await;
    assert!(broker.peek("work", 10, 1 << 20).await.unwrap().is_empty());
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = host.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the host did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let back = broker.peek("work", 10, 1 << 20).await.unwrap();
    let mut payloads: Vec<_> = back.iter().map(|m| m.payload.clone()).collect();
    payloads.sort();
    assert_eq!(
        payloads,
        (0..5)
            .map(|i| format!("m{i}").into_bytes())
            .collect::<Vec<_>>(),
        "every taken message went back"
    );
}

/// Two hosts on one PostgreSQL: the heartbeat beats at its interval on one of them only
/// (its beats are numbered 1, 2, 3, … without a repeat), and when that host is killed the
/// other takes the lease over and beats from 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_runs_once_across_two_hosts_and_moves_when_its_host_is_killed() {
    let db = TestDb::new(Backend::Postgres).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let interval = 200;
    let mut hosts = Vec::new();
    for dir in &dirs {
        let port = support::free_port();
        let file = dir.path().join("wharf.toml");
        std::fs::write(
            &file,
            format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
database = "{db}"
shutdown_grace_ms = 1000
plugin_dir = "{dist}"

[plugins.heartbeat]
publish = ["local:beats"]
config = {{ to = "local:beats", interval_ms = "{interval}" }}

[[daemons]]
name = "heartbeat"
plugin = "heartbeat"
"#,
                db = db.url,
                dist = support::plugin_dir().display(),
            ),
        )
        .unwrap();
        hosts.push(Some(support::serve_config(&file, dir.path(), port)));
    }
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let broker =
        wharf::broker::EmbeddedBroker::new(store.clone(), wharf::broker::EmbeddedConfig::default());
    let beats = wait_for(&broker, "beats", 12).await;
    let numbers: Vec<u64> = beats.iter().map(beat_number).collect();
    assert_eq!(
        numbers,
        (1..=numbers.len() as u64).collect::<Vec<_>>(),
        "one host beats; the other waits"
    );
    for pair in beats.windows(2) {
        let gap = pair[1].timestamp_ms.saturating_sub(pair[0].timestamp_ms);
        assert!(
            gap >= interval * 3 / 4,
            "beats {gap} ms apart, at least {interval} wanted"
        );
    }
    // Kill the host that holds the lease.
    let leases = store.leases().await.unwrap();
    let holder = &leases
        .iter()
        .find(|(name, _, _)| name == "heartbeat")
        .unwrap()
        .1;
    let index = hosts
        .iter()
        .position(|h| holder.contains(&format!(":{}:", h.as_ref().unwrap().id())))
        .expect("a host of this test holds the lease");
    let mut killed = hosts[index].take().unwrap();
    killed.kill().unwrap(); // SIGKILL: its lease is not released, it expires
    killed.wait().unwrap();
    let killed_at = wharf::message::now_ms();
    let before = broker.peek("beats", 10_000, 1 << 24).await.unwrap().len();
    let after = wait_for(&broker, "beats", before + 5).await;
    let moved: Vec<&Message> = after[before..]
        .iter()
        .filter(|m| m.timestamp_ms >= killed_at)
        .collect();
    assert_eq!(
        beat_number(moved[0]),
        1,
        "the other host's run starts from 1"
    );
    let numbers: Vec<u64> = moved.iter().map(|m| beat_number(m)).collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
    let leases = store.leases().await.unwrap();
    let new_holder = &leases
        .iter()
        .find(|(name, _, _)| name == "heartbeat")
        .unwrap()
        .1;
    assert_ne!(new_holder, holder, "the lease moved");
    for host in hosts.iter_mut().flatten() {
        host.kill().unwrap();
        host.wait().unwrap();
    }
}

fn beat_number(message: &Message) -> u64 {
    let beat: Value = serde_json::from_slice(&message.payload).unwrap();
    beat["beat"].as_u64().unwrap()
}

/// The lookup daemon answers requests from an independent AMQP client in edeposit's style:
/// the answer goes to the request's reply-to with its correlation id and its `UUID` header;
/// an unknown key is answered with the `exception` headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_daemon_answers_an_independent_amqp_client() {
    use futures::StreamExt;
    use lapin::options::*;
    use lapin::types::{AMQPValue, FieldTable};
    let _shared = support::RABBIT.read().await;
    let queue = format!("lookup.requests.{}", uuid::Uuid::new_v4().simple());
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = bare_config();
    config.connections.insert(
        "rabbit".into(),
        serde_json::from_value(json!({"kind": "amqp", "url": support::amqp_url()})).unwrap(),
    );
    config.plugins.insert(
        "lookup-service".into(),
        PluginConfig {
            receive: vec![format!("rabbit:{queue}")],
            publish: vec!["rabbit:**".into()],
            config: [
                ("source".to_string(), format!("rabbit:{queue}")),
                ("entry.978-80-86056-31-9".to_string(), "Babička".to_string()),
            ]
            .into(),
            ..PluginConfig::default()
        },
    );
    config.daemons.push(daemon("lookup", "lookup-service"));
    let (host, _broker) = support::start_host(&db, config).await;
    let api = Api::new(host.addr);
    api.wait_unit("lookup", "running").await;

    // The daemon declares its queue when it first takes from it.
    wait_queue(&queue).await;
    let connection = support::amqp_client().await;
    let channel = connection.create_channel().await.unwrap();
    let replies = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            replies.name().as_str().into(),
            "client".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for (key, uuid) in [("978-80-86056-31-9", "u-1"), ("nothing", "u-2")] {
        let mut headers = FieldTable::default();
        headers.insert(
            lapin::types::ShortString::from("UUID"),
            AMQPValue::LongString(uuid.into()),
        );
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                key.as_bytes(),
                lapin::BasicProperties::default()
                    .with_reply_to(replies.name().clone())
                    .with_correlation_id(format!("c-{uuid}").into())
                    .with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("an answer within 20 s")
            .unwrap()
            .unwrap();
        let props = &delivery.properties;
        assert_eq!(
            props.correlation_id().as_ref().unwrap().as_str(),
            format!("c-{uuid}")
        );
        let headers = props.headers().as_ref().unwrap();
        let header = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(s)) => Some(s.to_string()),
            _ => None,
        };
        assert_eq!(header("UUID").as_deref(), Some(uuid));
        if key == "nothing" {
            assert_eq!(header("exception_name").as_deref(), Some("KeyError"));
            assert!(header("exception").unwrap().contains("nothing"));
        } else {
            assert_eq!(delivery.data, "Babička".as_bytes());
            assert_eq!(header("exception"), None);
        }
    }
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}

/// Waits (20 s at most) until `queue` exists on RabbitMQ.
async fn wait_queue(queue: &str) {
    let started = Instant::now();
    loop {
        let connection = support::amqp_client().await;
        let probe = connection.create_channel().await.unwrap();
        let found = probe
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .is_ok();
        let _ = connection.close(200, "done".into()).await;
        if found {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no queue {queue}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
