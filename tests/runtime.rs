//! The plugin runtime against real plugins built for wasm32-wasip2: the sandbox holds, a
//! misbehaving plugin stops only itself, bad files are refused by name, reuse is invisible.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{load, plugin_bytes, runtime, text_message};
use wharf::message::{HeaderValue, Message};
use wharf::runtime::{
    InvalidPlugin, Plugin, PluginError, PluginKind, PluginSettings, Runtime, RuntimeConfig,
    Standalone,
};

fn settings() -> PluginSettings {
    PluginSettings::default()
}

#[tokio::test]
async fn uppercase_describes_itself_and_transforms() {
    let rt = runtime();
    let plugin = load(&rt, "uppercase", settings()).await;
    let info = plugin.info();
    assert_eq!(info.name, "uppercase");
    assert_eq!(info.kind, PluginKind::Transformer);
    assert!(info.reusable);
    assert_eq!(info.contract, "wharf:plugin@0.1.3");
    assert_eq!(info.sha256.len(), 64);

    let mut input = text_message("hello, wharf! straße");
    input
        .headers
        .push(("trace".into(), HeaderValue::Bytes(vec![0, 1, 255])));
    input.correlation_id = Some("c-9".into());
    input.key = Some(b"k".to_vec());
    let outputs = plugin
        .transform(&input)
        .await
        .result
        .expect("uppercase succeeds");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].payload, "HELLO, WHARF! STRASSE".as_bytes());
    // Everything but the payload crosses the boundary and comes back unchanged.
    assert_eq!(
        Message {
            payload: input.payload.clone(),
            ..outputs[0].clone()
        },
        input
    );
}

#[tokio::test]
async fn a_looping_plugin_is_stopped_near_its_deadline() {
    let rt = runtime();
    let limit = Duration::from_millis(200);
    let plugin = load(
        &rt,
        "looper",
        PluginSettings {
            cpu_limit: limit,
            ..settings()
        },
    )
    .await;
    let started = Instant::now();
    let report = plugin.transform(&text_message("spin")).await;
    let elapsed = started.elapsed();
    match report.result {
        Err(PluginError::Deadline {
            plugin,
            limit: reported,
        }) => {
            assert_eq!(plugin, "looper");
            assert_eq!(reported, limit);
        }
        other => panic!("expected a deadline, got {other:?}"),
    }
    assert!(report.cost.cpu >= limit, "charged {:?}", report.cost.cpu);
    // Stopped at the deadline, not long after it (generous: a loaded machine is slow).
    assert!(
        elapsed >= limit && elapsed < limit * 10,
        "stopped after {elapsed:?}"
    );
}

#[tokio::test]
async fn an_allocating_plugin_is_stopped_at_its_memory_limit() {
    let rt = runtime();
    let limit = 16 * 1024 * 1024;
    let plugin = load(
        &rt,
        "hog",
        PluginSettings {
            memory_bytes: limit,
            ..settings()
        },
    )
    .await;
    let report = plugin.transform(&text_message("eat")).await;
    let error = report.result.expect_err("the hog cannot succeed");
    match &error {
        PluginError::MemoryLimit {
            plugin,
            limit_bytes,
            requested_bytes,
        } => {
            assert_eq!(plugin, "hog");
            assert_eq!(*limit_bytes, limit);
            assert!(*requested_bytes > limit);
        }
        other => panic!("expected a memory limit, got {other:?}"),
    }
    assert!(error.to_string().contains("memory limit"), "{error}");
    assert_eq!(error.exception_name(), "MemoryLimit");
    assert!(report.cost.memory_bytes <= limit);
}

#[tokio::test]
async fn a_prying_plugin_is_denied_files_sockets_names_and_environment() {
    // Secrets the host holds must not reach the guest.
    // SAFETY: set before any plugin thread reads the environment; tests in this binary only read it.
    unsafe { std::env::set_var("WHARF_TEST_SECRET", "hunter2") };
    let rt = runtime();
    let plugin = load(&rt, "prying", settings()).await;
    let outputs = plugin
        .transform(&text_message("pry"))
        .await
        .result
        .expect("prying reports");
    let out = &outputs[0];
    for attempt in [
        "x-read-file",
        "x-list-dir",
        "x-connect",
        "x-resolve",
        "x-env",
    ] {
        match out.header(attempt) {
            Some(HeaderValue::Text(outcome)) => {
                assert!(outcome.starts_with("denied:"), "{attempt} was {outcome}")
            }
            other => panic!("{attempt} not reported: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_panicking_plugin_is_contained_and_the_host_carries_on() {
    let rt = runtime();
    let panicker = load(&rt, "panicker", settings()).await;
    let uppercase = load(&rt, "uppercase", settings()).await;
    for _ in 0..3 {
        let report = panicker.transform(&text_message("boom")).await;
        match report.result {
            Err(PluginError::Trap { plugin, detail }) => {
                assert_eq!(plugin, "panicker");
                assert!(detail.contains("panicker always panics"), "{detail}");
            }
            other => panic!("expected a trap, got {other:?}"),
        }
        assert!(report.logs.iter().any(|l| l.text.contains("panicked at")));
        let ok = uppercase.transform(&text_message("still here")).await;
        assert_eq!(ok.result.unwrap()[0].payload, b"STILL HERE");
    }
}

/// One runtime thread only: if a spinning, allocating or panicking guest held the thread,
/// no uppercase call could complete until it was stopped.
#[tokio::test(flavor = "current_thread")]
async fn other_calls_keep_completing_while_plugins_misbehave() {
    let rt = runtime();
    let deadline = Duration::from_secs(3);
    let looper = load(
        &rt,
        "looper",
        PluginSettings {
            cpu_limit: deadline,
            ..settings()
        },
    )
    .await;
    let hog = load(
        &rt,
        "hog",
        PluginSettings {
            memory_bytes: 32 << 20,
            ..settings()
        },
    )
    .await;
    let panicker = load(&rt, "panicker", settings()).await;
    let uppercase = load(&rt, "uppercase", settings()).await;

    let spinning: Vec<_> = (0..2)
        .map(|_| {
            let looper = looper.clone();
            tokio::spawn(async move { looper.transform(&text_message("spin")).await })
        })
        .collect();
    let misbehaving = {
        let (hog, panicker) = (hog.clone(), panicker.clone());
        tokio::spawn(async move {
            for _ in 0..5 {
                assert!(hog.transform(&text_message("eat")).await.result.is_err());
                assert!(
                    panicker
                        .transform(&text_message("boom"))
                        .await
                        .result
                        .is_err()
                );
            }
        })
    };

    let started = Instant::now();
    for i in 0..200 {
        let out = uppercase
            .transform(&text_message(&format!("call {i}")))
            .await;
        assert_eq!(
            out.result.unwrap()[0].payload,
            format!("CALL {i}").as_bytes()
        );
    }
    let uppercase_done = started.elapsed();
    assert!(
        spinning.iter().all(|task| !task.is_finished()),
        "the loopers should still be spinning when 200 uppercase calls are done ({uppercase_done:?})"
    );
    misbehaving.await.unwrap();
    for task in spinning {
        let report = task.await.unwrap();
        assert!(matches!(report.result, Err(PluginError::Deadline { .. })));
    }
}

#[tokio::test]
async fn bad_files_are_refused_with_the_check_that_failed() {
    let rt = Runtime::new(RuntimeConfig {
        max_plugin_bytes: 4 * 1024 * 1024,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let services = Arc::new(Standalone::default());
    let refuse = |bytes: Vec<u8>| {
        let (rt, services) = (rt.clone(), services.clone());
        async move {
            match rt.load(&bytes, settings(), services).await {
                Ok(plugin) => panic!("{} was accepted", plugin.name()),
                Err(e) => e,
            }
        }
    };

    let e = refuse(b"#!/bin/sh\necho not a plugin\n".to_vec()).await;
    assert!(matches!(e, InvalidPlugin::NotWasm), "{e}");
    assert!(e.to_string().starts_with("format check failed"), "{e}");

    let e = refuse(wat::parse_str("(module (func (export \"transform\")))").unwrap()).await;
    assert!(matches!(e, InvalidPlugin::CoreModule), "{e}");
    assert!(e.to_string().contains("wasm32-wasip2"), "{e}");

    let e = refuse(plugin_bytes("alien")).await;
    assert!(matches!(e, InvalidPlugin::UnknownWorld { .. }), "{e}");
    assert!(e.to_string().contains("frob"), "{e}");

    let e = refuse(plugin_bytes("future")).await;
    assert!(matches!(e, InvalidPlugin::UnsupportedVersion { .. }), "{e}");
    assert!(e.to_string().contains("0.2.0"), "{e}");

    let whole = plugin_bytes("uppercase");
    let e = refuse(whole[..whole.len() / 2].to_vec()).await;
    assert!(matches!(e, InvalidPlugin::Invalid { .. }), "{e}");
    assert!(e.to_string().starts_with("validation check failed"), "{e}");

    let mut oversized = whole.clone();
    oversized.resize(4 * 1024 * 1024 + 1, 0);
    let e = refuse(oversized).await;
    assert!(
        matches!(e, InvalidPlugin::TooLarge { size, limit } if size == limit + 1),
        "{e}"
    );
    assert!(e.to_string().starts_with("size check failed"), "{e}");

    let e = refuse(Vec::new()).await;
    assert!(matches!(e, InvalidPlugin::NotWasm), "{e}");

    // A good file with settings that make no sense is refused by the settings check.
    let e = rt
        .load(
            &whole,
            PluginSettings {
                grants: vec!["send:x:y".into()],
                ..settings()
            },
            services.clone(),
        )
        .await
        .err()
        .expect("a malformed grant is refused");
    assert!(e.to_string().starts_with("settings check failed"), "{e}");
}

#[tokio::test]
async fn a_reused_instance_gives_the_same_results_as_fresh_ones() {
    let rt = runtime();
    let reused = load(&rt, "uppercase", settings()).await;
    let fresh = load(
        &rt,
        "uppercase",
        PluginSettings {
            reuse: false,
            ..settings()
        },
    )
    .await;
    assert!(reused.reuses_instances());
    assert!(!fresh.reuses_instances());
    let inputs = ["a", "Mixed Case", "", "ünïcödé", "{\"json\": true}", "x\0y"];
    for (i, text) in inputs.iter().cycle().take(30).enumerate() {
        let a = reused.transform(&text_message(text)).await;
        let b = fresh.transform(&text_message(text)).await;
        assert_eq!(a.result.unwrap()[0].payload, b.result.unwrap()[0].payload);
        assert!(b.cost.fresh_instance);
        assert_eq!(a.cost.fresh_instance, i == 0, "call {i}");
    }
}

fn calls_header(out: &[Message]) -> i64 {
    match out[0].header("x-calls") {
        Some(HeaderValue::Int(n)) => *n,
        other => panic!("no x-calls header: {other:?}"),
    }
}

#[tokio::test]
async fn a_reusable_plugin_is_recycled_after_a_trap_and_after_n_calls() {
    let rt = runtime();
    let counter = load(
        &rt,
        "counter",
        PluginSettings {
            recycle_after: 5,
            ..settings()
        },
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(calls_header(
            &counter
                .transform(&text_message("count"))
                .await
                .result
                .unwrap(),
        ));
    }
    assert_eq!(seen, [1, 2, 3], "one instance served the calls in turn");

    let trap = counter.transform(&text_message("panic")).await;
    assert!(matches!(trap.result, Err(PluginError::Trap { .. })));

    // The instance that trapped is gone: the next call starts a fresh one at 1.
    let after = counter.transform(&text_message("count")).await;
    assert!(after.cost.fresh_instance);
    assert_eq!(calls_header(&after.result.unwrap()), 1);

    // After `recycle_after` calls an instance is replaced even when healthy.
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(calls_header(
            &counter
                .transform(&text_message("count"))
                .await
                .result
                .unwrap(),
        ));
    }
    assert_eq!(seen, [2, 3, 4, 5, 1, 2]);

    // Without reuse every call gets a fresh instance.
    let fresh = load(
        &rt,
        "counter",
        PluginSettings {
            reuse: false,
            ..settings()
        },
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            calls_header(
                &fresh
                    .transform(&text_message("count"))
                    .await
                    .result
                    .unwrap()
            ),
            1
        );
    }
}

#[tokio::test]
async fn json_filter_keeps_matches_drops_the_rest_and_rejects_what_it_cannot_read() {
    let rt = runtime();
    let config = |pairs: &[(&str, &str)]| PluginSettings {
        config: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..settings()
    };
    let shipped = load(
        &rt,
        "json-filter",
        config(&[("field", "order.status"), ("value", "shipped")]),
    )
    .await;
    let big = load(
        &rt,
        "json-filter",
        config(&[("field", "/order/total"), ("op", "gt"), ("value", "100")]),
    )
    .await;
    let unconfigured = load(&rt, "json-filter", config(&[])).await;

    let order = |status: &str, total: u32| {
        text_message(&format!(
            r#"{{"order": {{"status": "{status}", "total": {total}}}}}"#
        ))
    };
    let kept = |plugin: &Plugin, msg: Message| {
        let plugin = plugin.clone();
        async move { plugin.transform(&msg).await.result.unwrap().len() }
    };
    assert_eq!(kept(&shipped, order("shipped", 5)).await, 1);
    assert_eq!(kept(&shipped, order("pending", 5)).await, 0);
    assert_eq!(kept(&big, order("pending", 500)).await, 1);
    assert_eq!(kept(&big, order("pending", 50)).await, 0);

    let not_json = shipped.transform(&text_message("plain text")).await;
    assert!(
        matches!(&not_json.result, Err(PluginError::Rejected { reason, .. }) if reason.contains("not JSON")),
        "{:?}",
        not_json.result
    );
    let missing = unconfigured.transform(&order("shipped", 1)).await;
    assert!(
        matches!(&missing.result, Err(PluginError::Rejected { reason, .. }) if reason.contains("`field`")),
        "{:?}",
        missing.result
    );
}

#[tokio::test]
async fn echo_replies_to_the_reply_to_with_the_correlation_id() {
    let rt = runtime();
    let echo = load(&rt, "echo", settings()).await;
    assert_eq!(echo.info().kind, PluginKind::Handler);
    let mut request = text_message("ping");
    request.reply_to = Some("replies".into());
    request.correlation_id = Some("corr-1".into());
    let reply = echo
        .handle(&request)
        .await
        .result
        .unwrap()
        .expect("echo replies");
    assert_eq!(reply.payload, b"ping");
    assert_eq!(reply.topic, "replies");
    assert_eq!(reply.correlation_id.as_deref(), Some("corr-1"));

    // A handler is not a transformer, and the error says so.
    let wrong = echo.transform(&request).await;
    assert!(matches!(wrong.result, Err(PluginError::WrongKind { .. })));
}

#[tokio::test]
async fn publishing_needs_a_grant_and_is_kept_only_when_the_call_succeeds() {
    let rt = runtime();
    let with = |grants: &[&str], to: &str| PluginSettings {
        grants: grants.iter().map(|g| g.to_string()).collect(),
        config: [("to".to_string(), to.to_string())].into(),
        ..settings()
    };
    let denied = load(&rt, "relay", with(&[], "local:relay.a")).await;
    let report = denied.handle(&text_message("hi")).await;
    match &report.result {
        Err(PluginError::Rejected { reason, .. }) => {
            assert!(reason.contains("no grant"), "{reason}")
        }
        other => panic!("expected the publish to be refused, got {other:?}"),
    }
    assert!(report.published.is_empty());

    // The first destination is granted, the second is not: the call fails and nothing is sent.
    let partly = load(
        &rt,
        "relay",
        with(&["publish:local:relay.*"], "local:relay.a, kafka:elsewhere"),
    )
    .await;
    let report = partly.handle(&text_message("hi")).await;
    assert!(report.result.is_err());
    assert!(report.published.is_empty());

    // kv writes are held with the call's other effects: the caller applies them when the
    // call succeeds (a route commits them with its outputs), and a failed call has none.
    let state = Arc::new(Standalone::default());
    let granted = rt
        .load(
            &support::plugin_bytes("relay"),
            with(&["publish:local:relay.*"], "local:relay.a,local:relay.b"),
            state.clone(),
        )
        .await
        .unwrap();
    let report = granted.handle(&text_message("hi")).await;
    let reply = report.result.unwrap().unwrap();
    let destinations: Vec<_> = report
        .published
        .iter()
        .map(|p| p.destination.as_str())
        .collect();
    assert_eq!(destinations, ["local:relay.a", "local:relay.b"]);
    assert_eq!(report.published[0].message.payload, b"hi");
    assert_eq!(reply.payload, b"1");
    assert_eq!(
        report.kv_writes,
        [wharf::runtime::KvWrite {
            plugin: "relay".into(),
            key: "relayed".into(),
            value: b"1".to_vec(),
        }]
    );
    // Not applied yet: the next call counts from nothing again.
    let unapplied = granted.handle(&text_message("hi")).await;
    assert_eq!(unapplied.result.unwrap().unwrap().payload, b"1");
    state.kv_apply(report.kv_writes).await.unwrap();
    // A call that writes and then fails leaves nothing to apply.
    let failed = granted.handle(&text_message("fail-after-kv")).await;
    assert!(
        matches!(&failed.result, Err(PluginError::Rejected { reason, .. }) if reason.contains("relayed = 2")),
        "{:?}",
        failed.result
    );
    assert!(failed.kv_writes.is_empty() && failed.published.is_empty());
    // kv state outlives the instance: the next (fresh) instance counts on from what was
    // applied.
    let second = granted
        .handle(&text_message("again"))
        .await
        .result
        .unwrap()
        .unwrap();
    assert_eq!(second.payload, b"2");
}

#[tokio::test]
async fn calls_run_concurrently_up_to_the_instance_limit() {
    let rt = runtime();
    let plugin = load(
        &rt,
        "uppercase",
        PluginSettings {
            max_instances: 4,
            reuse: false,
            ..settings()
        },
    )
    .await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let plugin = plugin.clone();
            tokio::spawn(async move { plugin.transform(&text_message(&format!("m{i}"))).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let out = task.await.unwrap().result.unwrap();
        assert_eq!(out[0].payload, format!("M{i}").as_bytes());
    }
}

#[tokio::test]
async fn a_daemon_links_and_describes_itself_but_is_not_called_per_message() {
    let rt = runtime();
    let daemon = load(&rt, "heartbeat", settings()).await;
    assert_eq!(daemon.info().kind, PluginKind::Daemon);
    assert_eq!(daemon.info().wants, ["publish:local:events/Host.heartbeat"]);
    let report = daemon.transform(&text_message("x")).await;
    match report.result {
        Err(e @ PluginError::WrongKind { .. }) => assert!(e.to_string().contains("daemon"), "{e}"),
        other => panic!("expected WrongKind, got {other:?}"),
    }
}

/// `publish-event` (0.1.1): an event's routing key is the class name and the event, its
/// destination the host's events exchange, and it needs a `publish:` grant like any publish.
#[tokio::test]
async fn a_plugin_publishes_model_events_within_its_grants() {
    let rt = runtime();
    let with = |grants: &[&str], event: &str| PluginSettings {
        grants: grants.iter().map(|g| g.to_string()).collect(),
        config: [("event".to_string(), event.to_string())].into(),
        ..settings()
    };
    let granted = load(
        &rt,
        "relay",
        with(
            &["publish:local:events/Booking.*"],
            "shop.models.Booking:created",
        ),
    )
    .await;
    let report = granted.handle(&text_message(r#"{"id": 1}"#)).await;
    report.result.expect("the event is granted");
    assert_eq!(report.published.len(), 1);
    let event = &report.published[0];
    assert_eq!(event.destination, "local:events/Booking.created");
    assert_eq!(event.message.topic, "Booking.created");
    assert_eq!(event.message.payload, br#"{"id": 1}"#);
    assert_eq!(
        event.message.header("x-wharf-model"),
        Some(&HeaderValue::Text("shop.models.Booking".into()))
    );

    // Another model is not granted; a bad name is refused before any grant is looked at.
    for (event, refusal) in [
        ("Order:created", "no grant"),
        ("Book ing:created", "is not a model"),
        ("Booking:created.late", "is not an event name"),
    ] {
        let plugin = load(
            &rt,
            "relay",
            with(&["publish:local:events/Booking.*"], event),
        )
        .await;
        let report = plugin.handle(&text_message("{}")).await;
        match &report.result {
            Err(PluginError::Rejected { reason, .. }) => {
                assert!(reason.contains(refusal), "{event}: {reason}")
            }
            other => panic!("{event}: expected a refusal, got {other:?}"),
        }
        assert!(report.published.is_empty());
    }
}

/// A plugin built against `wharf:plugin@0.1.0`, the oldest contract, links and runs on a host
/// serving a later 0.1.x: it publishes within its grants, keeps kv state and replies.
#[tokio::test]
async fn a_plugin_built_against_the_oldest_contract_still_runs() {
    let rt = runtime();
    let plugin = load(
        &rt,
        "contract-0-1-0",
        PluginSettings {
            grants: vec!["publish:local:oldest.*".into()],
            config: [("to".to_string(), "local:oldest.out".to_string())].into(),
            ..settings()
        },
    )
    .await;
    assert_eq!(plugin.info().contract, "wharf:plugin@0.1.0");
    assert_eq!(plugin.info().kind, PluginKind::Handler);
    let report = plugin.handle(&text_message("old")).await;
    let reply = report.result.unwrap().expect("it replies");
    assert_eq!(reply.payload, b"1");
    assert_eq!(report.published.len(), 1);
    assert_eq!(report.published[0].destination, "local:oldest.out");
    assert_eq!(report.kv_writes.len(), 1);
}

/// Loads test plugin `name` with `config`, on its own services.
async fn load_with(
    rt: &Runtime,
    name: &str,
    config: &[(&str, &str)],
    base: PluginSettings,
) -> Plugin {
    load(
        rt,
        name,
        PluginSettings {
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..base
        },
    )
    .await
}

fn expect_output_limit<T: std::fmt::Debug>(result: &Result<T, PluginError>, what: &str) {
    match result {
        Err(e @ PluginError::OutputLimit { plugin, .. }) => {
            assert!(plugin.starts_with("flood"), "{e}");
            assert_eq!(e.exception_name(), "OutputLimit");
            assert!(!e.is_retryable(), "the same input would go over again: {e}");
        }
        other => panic!("{what}: expected an output-limit error, got {other:?}"),
    }
}

#[tokio::test]
async fn results_that_alias_one_buffer_are_refused_before_they_are_copied() {
    let rt = runtime();
    // 20,000 outputs, each the same 32 MiB of guest memory: 640 GB if the host copied them.
    let results = load_with(&rt, "flood", &[("mode", "results")], settings()).await;
    let report = results.transform(&text_message("x")).await;
    expect_output_limit(&report.result, "aliased payloads");
    // One output whose 20,000 headers are that buffer.
    let headers = load_with(&rt, "flood", &[("mode", "headers")], settings()).await;
    expect_output_limit(
        &headers.transform(&text_message("x")).await.result,
        "aliased headers",
    );
    // The same plugin within its budget: many small outputs pass.
    let small = load_with(
        &rt,
        "flood",
        &[("mode", "results"), ("mib", "0"), ("count", "1000")],
        settings(),
    )
    .await;
    let out = small.transform(&text_message("x")).await.result.unwrap();
    assert_eq!(out.len(), 1000);
    // A smaller budget is the plugin's own setting.
    let tight = load_with(
        &rt,
        "flood",
        &[("mode", "results"), ("mib", "0"), ("count", "1000")],
        PluginSettings {
            max_output_bytes: 4 * 1024,
            ..settings()
        },
    )
    .await;
    expect_output_limit(
        &tight.transform(&text_message("x")).await.result,
        "a tight budget",
    );
}

#[tokio::test]
async fn a_describe_that_floods_the_host_is_refused_at_load() {
    let rt = runtime();
    let refused = rt
        .load(
            &plugin_bytes("flood"),
            PluginSettings {
                config: [("describe".to_string(), "flood".to_string())].into(),
                ..settings()
            },
            Arc::new(Standalone::default()),
        )
        .await;
    match refused {
        Err(InvalidPlugin::Describe(e @ PluginError::OutputLimit { .. })) => {
            assert!(e.to_string().contains("output limit"), "{e}")
        }
        Err(other) => panic!("expected describe's output limit, got {other}"),
        Ok(_) => panic!("a describe of 20,000 aliased grants was accepted"),
    }
}

#[tokio::test]
async fn imports_that_flood_the_host_fail_the_call_before_the_copy() {
    let rt = runtime();
    let grants = PluginSettings {
        grants: vec!["publish:local:**".into(), "request:local:**".into()],
        ..settings()
    };
    for mode in ["publish", "request", "kv", "log"] {
        let plugin = load_with(&rt, "flood-host", &[("mode", mode)], grants.clone()).await;
        let report = plugin.handle(&text_message("x")).await;
        expect_output_limit(&report.result, mode);
        assert!(report.published.is_empty() && report.kv_writes.is_empty());
    }
    // A hundred publications of 1 MiB, each fine alone, 100 MiB together: the host's count
    // fails the call at its 16 MiB budget even though the plugin ignored every refusal and
    // returned normally. Nothing it published is kept.
    let many = load_with(
        &rt,
        "flood-host",
        &[("mode", "publish-many"), ("mib", "1"), ("count", "100")],
        grants.clone(),
    )
    .await;
    let report = many.handle(&text_message("x")).await;
    expect_output_limit(&report.result, "publish-many");
    assert!(report.published.is_empty());
    // Within the budget the same publications go out.
    let few = load_with(
        &rt,
        "flood-host",
        &[("mode", "publish-many"), ("mib", "1"), ("count", "4")],
        grants,
    )
    .await;
    let report = few.handle(&text_message("x")).await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    assert_eq!(report.published.len(), 4);
}

/// Services whose requests are never answered: each waits its whole timeout.
#[derive(Default)]
struct Unanswered(Standalone);

impl wharf::runtime::HostServices for Unanswered {
    fn request<'a>(
        &'a self,
        _plugin: &'a str,
        _destination: &'a str,
        _msg: Message,
        timeout: Duration,
    ) -> wharf::runtime::HostFuture<'a, Result<Message, String>> {
        Box::pin(async move {
            tokio::time::sleep(timeout).await;
            Err("no reply came".into())
        })
    }

    fn publish<'a>(
        &'a self,
        plugin: &'a str,
        destination: &'a str,
        msg: Message,
    ) -> wharf::runtime::HostFuture<'a, Result<(), String>> {
        self.0.publish(plugin, destination, msg)
    }

    fn open_inbox<'a>(
        &'a self,
        plugin: &'a str,
        source: &'a str,
    ) -> wharf::runtime::HostFuture<'a, Result<Box<dyn wharf::runtime::Inbox>, String>> {
        self.0.open_inbox(plugin, source)
    }

    fn kv_get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> wharf::runtime::HostFuture<'a, Result<Option<Vec<u8>>, String>> {
        self.0.kv_get(plugin, key)
    }

    fn kv_set<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> wharf::runtime::HostFuture<'a, Result<(), String>> {
        self.0.kv_set(plugin, key, value)
    }

    fn kv_usage<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> wharf::runtime::HostFuture<'a, Result<(usize, usize), String>> {
        self.0.kv_usage(plugin, key)
    }

    fn kv_limits(&self) -> wharf::runtime::KvLimits {
        self.0.kv_limits()
    }
}

#[tokio::test]
async fn a_call_that_waits_outside_wasm_is_ended_at_its_wall_clock_limit() {
    let rt = runtime();
    // Sleeping in WASI for an hour runs no wasm, so the CPU deadline never fires; the
    // wall-clock limit (ten times the CPU limit when not set) does. One instance only: the
    // ended call's instance is dropped, so the next call can have one.
    let sleeper = load_with(
        &rt,
        "sleeper",
        &[("mode", "sleep")],
        PluginSettings {
            cpu_limit: Duration::from_millis(50),
            max_instances: 1,
            ..settings()
        },
    )
    .await;
    for _ in 0..2 {
        let started = Instant::now();
        let report = sleeper.handle(&text_message("x")).await;
        match &report.result {
            Err(e @ PluginError::TimedOut { limit, .. }) => {
                assert_eq!(*limit, Duration::from_millis(500));
                assert_eq!(e.exception_name(), "TimedOut");
                assert!(e.is_retryable());
            }
            other => panic!("expected the wall-clock limit, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    // A handler that asks, for a minute each time, a destination that never answers: each
    // wait is cut to what is left of the call's wall-clock time, and the call ends there.
    let asking = rt
        .load(
            &plugin_bytes("sleeper"),
            PluginSettings {
                config: [
                    ("mode".to_string(), "request".to_string()),
                    ("to".to_string(), "local:nobody".to_string()),
                ]
                .into(),
                grants: vec!["request:local:**".into()],
                wall_limit: Some(Duration::from_millis(300)),
                ..settings()
            },
            Arc::new(Unanswered::default()),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let report = asking.handle(&text_message("x")).await;
    assert!(
        matches!(report.result, Err(PluginError::TimedOut { .. })),
        "{:?}",
        report.result
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_daemon_that_logs_between_spins_is_stopped_by_its_cpu_window() {
    let rt = runtime();
    // It spins 100 ms, logs a line, and again: each host call used to renew its budget, so
    // it spun a core for ever. Its budget is now 300 ms of CPU per 10 s of wall clock.
    let daemon = load_with(
        &rt,
        "daemon-probe",
        &[("mode", "log-spin"), ("spin_ms", "100")],
        PluginSettings {
            cpu_limit: Duration::from_millis(300),
            ..settings()
        },
    )
    .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = tokio::spawn({
        let daemon = daemon.clone();
        async move {
            daemon
                .run_daemon("probe", stopped, Duration::from_millis(100))
                .await
        }
    });
    // Stopped from outside only if the budget never fired: then the run ends Ok and fails below.
    let exit = match tokio::time::timeout(Duration::from_secs(8), run).await {
        Ok(exit) => exit.unwrap(),
        Err(_) => {
            stop.send_replace(true);
            panic!("the daemon was not stopped by its CPU budget within 8 s");
        }
    };
    match &exit.result {
        Err(e @ PluginError::Spinning { .. }) => {
            assert!(e.to_string().contains("within 10 s"), "{e}")
        }
        other => panic!("expected Spinning, got {other:?}"),
    }
    assert!(exit.cpu >= Duration::from_millis(300), "{:?}", exit.cpu);
}

#[tokio::test]
async fn each_plugin_keeps_its_own_share_of_the_instance_pool() {
    // A pool of 10: two plugins of 4 instances fit, a third does not, and says why.
    let rt = Runtime::new(RuntimeConfig {
        max_instances: 10,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let four = || PluginSettings {
        max_instances: 4,
        ..settings()
    };
    // The first holds all its instances in calls that wait (it sleeps in WASI until its
    // wall-clock limit); the second still gets every instance it may have.
    let holder = load_with(
        &rt,
        "sleeper",
        &[("mode", "sleep")],
        PluginSettings {
            cpu_limit: Duration::from_millis(200),
            ..four()
        },
    )
    .await;
    let other = load(
        &rt,
        "uppercase",
        PluginSettings {
            reuse: false,
            ..four()
        },
    )
    .await;
    assert_eq!(rt.pool_usage(), (8, 10));
    let held: Vec<_> = (0..4)
        .map(|_| {
            let holder = holder.clone();
            tokio::spawn(async move { holder.handle(&text_message("x")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let other = other.clone();
            tokio::spawn(async move { other.transform(&text_message(&format!("m{i}"))).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().result.is_ok());
    }
    match rt
        .load(
            &plugin_bytes("uppercase"),
            four(),
            Arc::new(Standalone::default()),
        )
        .await
    {
        Err(e @ InvalidPlugin::Settings(_)) => {
            let said = e.to_string();
            assert!(
                said.contains("instance pool holds 10") && said.contains("reserve 8"),
                "{said}"
            );
        }
        Err(other) => panic!("expected a settings error, got {other}"),
        Ok(_) => panic!("a plugin past the pool was loaded"),
    }
    for call in held {
        assert!(matches!(
            call.await.unwrap().result,
            Err(PluginError::TimedOut { .. })
        ));
    }
    // A plugin dropped gives its share back.
    drop(other);
    assert_eq!(rt.pool_usage(), (4, 10));
    load(&rt, "uppercase", four()).await;
}

#[test]
fn a_compile_cache_another_user_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Made private when it does not exist yet.
    let fresh = dir.path().join("compiled");
    let rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(fresh.clone()),
        ..RuntimeConfig::default()
    });
    assert!(rt.is_ok());
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    // One that others can write: native code could be planted there.
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = Runtime::new(RuntimeConfig {
        cache_dir: Some(fresh),
        ..RuntimeConfig::default()
    });
    match refused {
        Err(e) => assert!(
            e.to_string().contains("writable by its group or by others"),
            "{e}"
        ),
        Ok(_) => panic!("a world-writable compile cache was used"),
    }
}

/// Compiled code kept on disk is checked before it is loaded: an artifact whose bytes were
/// changed, or another component's artifact put in its place, is removed and the component
/// compiled again (the plugin works, and the file is sound again); a sound one is loaded
/// without compiling.
#[tokio::test]
async fn a_cached_artifact_that_does_not_match_its_hash_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let cached = || {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..RuntimeConfig::default()
        })
        .unwrap()
    };
    let artifacts = || {
        let mut found: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        found.sort();
        found
    };
    let works = |plugin: wharf::runtime::Plugin| async move {
        let report = plugin.transform(&text_message("abc")).await;
        assert_eq!(report.result.unwrap()[0].payload, b"ABC");
    };
    works(load(&cached(), "uppercase", settings()).await).await;
    let kept = artifacts();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let sound = std::fs::read(&kept[0]).unwrap();
    assert!(sound.starts_with(b"wharfc1\n"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&kept[0]).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "an artifact is the user's alone");

    // One byte of the code changed: refused, compiled again, kept sound again.
    let mut tampered = sound.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&kept[0], &tampered).unwrap();
    works(load(&cached(), "uppercase", settings()).await).await;
    assert_eq!(std::fs::read(&kept[0]).unwrap(), sound);

    // Another component's artifact under this one's name: refused the same way.
    load(&cached(), "echo", settings()).await;
    let other = artifacts()
        .into_iter()
        .find(|p| *p != kept[0])
        .expect("echo's artifact");
    std::fs::copy(&other, &kept[0]).unwrap();
    works(load(&cached(), "uppercase", settings()).await).await;
    assert_eq!(std::fs::read(&kept[0]).unwrap(), sound);

    // A truncated file, and one that is not an artifact at all.
    for junk in [&sound[..sound.len() / 2], b"not an artifact".as_slice()] {
        std::fs::write(&kept[0], junk).unwrap();
        works(load(&cached(), "uppercase", settings()).await).await;
        assert_eq!(std::fs::read(&kept[0]).unwrap(), sound);
    }
}
