//! `wharf plugin check` and `wharf plugin run`, as a plugin author types them.

mod support;

use std::process::{Command, Output};
use support::plugin_path;

fn wharf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .output()
        .expect("running wharf")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_prints_what_a_plugin_declares() {
    let out = wharf(&[
        "plugin",
        "check",
        plugin_path("uppercase").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "uppercase 0.1.0",
        "kind:        transformer",
        "wharf:plugin@0.1.3",
        "reusable:    yes",
        "sha256",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let out = wharf(&[
        "plugin",
        "check",
        "--json",
        plugin_path("relay").to_str().unwrap(),
    ]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["kind"], "handler");
    assert_eq!(info["wants"][0], "publish:local:relay.*");
}

#[test]
fn check_says_why_a_file_is_not_a_plugin() {
    let dir = std::env::temp_dir().join(format!("wharf-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("notes.wasm");
    std::fs::write(&text, "just text").unwrap();
    let out = wharf(&["plugin", "check", text.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("format check failed"),
        "{}",
        stderr(&out)
    );

    let out = wharf(&["plugin", "check", plugin_path("alien").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("world check failed"),
        "{}",
        stderr(&out)
    );

    let out = wharf(&["plugin", "check", dir.join("absent.wasm").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_prints_outputs_logs_and_cost() {
    let upper = plugin_path("uppercase");
    let out = wharf(&[
        "plugin",
        "run",
        upper.to_str().unwrap(),
        "--input",
        r#"{"topic": "t", "payload": "hello"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\"payload\": \"HELLO\""), "{text}");
    assert!(text.contains("fresh instance"), "{text}");

    let out = wharf(&[
        "plugin",
        "run",
        upper.to_str().unwrap(),
        "--payload",
        "x",
        "--repeat",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let calls: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0]["outputs"][0]["payload"], "X");
    assert_eq!(calls[0]["cost"]["fresh_instance"], true);
    assert_eq!(calls[2]["cost"]["fresh_instance"], false);

    let out = wharf(&[
        "plugin",
        "run",
        plugin_path("panicker").to_str().unwrap(),
        "--payload",
        "x",
    ]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("error (Trap)") && text.contains("panicked at"),
        "{text}"
    );

    let out = wharf(&[
        "plugin",
        "run",
        upper.to_str().unwrap(),
        "--input",
        r#"{"priority": 999}"#,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("priority"), "{}", stderr(&out));
}

/// `plugin run` runs a daemon for a while against an embedded broker in memory: the lookup
/// service takes the request put on its queue and answers at its reply-to.
#[test]
fn run_runs_a_daemon_for_a_while_against_an_embedded_broker() {
    let out = wharf(&[
        "plugin",
        "run",
        plugin_path("lookup-service").to_str().unwrap(),
        "--for",
        "2",
        "--queue",
        "local:lookup.requests",
        "--input",
        r#"{"payload": "isbn-1", "reply_to": "answers", "correlation_id": "c1"}"#,
        "--config",
        "entry.isbn-1=Babička",
        "--grant",
        "receive:local:lookup.requests",
        "--grant",
        "publish:local:**",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    let queues = report["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 1, "only the answer is left: {report}");
    assert_eq!(queues[0]["queue"], "local:answers");
    let answer = &queues[0]["messages"][0];
    assert_eq!(answer["payload"], "Babička");
    assert_eq!(answer["correlation_id"], "c1");

    // Without the receive grant the daemon fails, and says why.
    let out = wharf(&[
        "plugin",
        "run",
        plugin_path("lookup-service").to_str().unwrap(),
        "--for",
        "1",
    ]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains("has no grant to receive"), "{text}");
}

/// `plugin test` checks a plugin on messages without a broker: outputs compared in order
/// (text or JSON fields), a filter's nothing, an expected error; a mismatch exits 1 saying
/// what differs.
#[test]
fn test_checks_outputs_and_errors_for_a_plugins_own_ci() {
    let upper = plugin_path("uppercase");
    let upper = upper.to_str().unwrap();
    let out = wharf(&[
        "plugin",
        "test",
        upper,
        "--input",
        "hello",
        "--input",
        r#"{"payload": "a", "headers": {"k": "v"}}"#,
        "--expect",
        "HELLO",
        "--expect",
        r#"{"payload": "A", "headers": {"k": "v"}}"#,
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("ok: 2 input(s), 2 output(s) as expected"));

    let out = wharf(&[
        "plugin", "test", upper, "--input", "hello", "--expect", "hello",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(r#"output 1: payload: expected "hello", got "HELLO""#),
        "{}",
        stdout(&out)
    );

    let filter = plugin_path("json-filter");
    let filter = filter.to_str().unwrap();
    let config = ["--config", "field=status", "--config", "value=shipped"];
    let mut args = vec![
        "plugin",
        "test",
        filter,
        "--input",
        r#"{"payload": {"status": "open"}}"#,
    ];
    args.extend(config);
    let out = wharf(&args);
    assert!(
        out.status.success(),
        "a filter outputs nothing: {}",
        stdout(&out)
    );
    let mut args = vec![
        "plugin",
        "test",
        filter,
        "--input",
        r#"{"payload": {"status": "shipped"}}"#,
        "--expect",
        r#"{"payload": {"status": "shipped"}}"#,
    ];
    args.extend(config);
    assert!(wharf(&args).status.success());

    let looper = plugin_path("looper");
    let out = wharf(&[
        "plugin",
        "test",
        looper.to_str().unwrap(),
        "--input",
        "x",
        "--timeout-ms",
        "100",
        "--expect-error",
        "Deadline",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("each failed with Deadline"));
}
