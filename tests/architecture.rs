//! The invariants ARCHITECTURE.md states, checked against the source tree itself: only
//! `broker/` knows brokers (their client crates, and the kinds of connection by name), only
//! `store/` runs SQL, only `runtime/` knows wasmtime, no source file grows past about 800
//! lines, and every test that disturbs a server the others share runs alone.

use std::path::{Path, PathBuf};

fn source_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its path relative to `src/` and its code without
/// comments.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let relative = path
                .strip_prefix(source_root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            found.push((relative, code));
        }
    }
    found.sort();
    found
}

/// The files outside `home` whose code names one of `words`.
fn outside(home: &str, words: &[&str]) -> Vec<String> {
    sources(&source_root())
        .into_iter()
        .filter(|(path, _)| !path.starts_with(home))
        .filter(|(_, code)| words.iter().any(|w| code.contains(w)))
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn only_broker_knows_brokers() {
    let clients = ["lapin::", "rdkafka::", "async_nats::", "rumqttc::"];
    assert_eq!(outside("broker/", &clients), Vec::<String>::new());
    // A kind is asked of its capabilities, never matched by name above `broker/`.
    let by_name = [
        "ConnectionConfig::Amqp",
        "ConnectionConfig::Kafka",
        "ConnectionConfig::Http",
        "ConnectionConfig::Nats",
        "ConnectionConfig::Embedded(",
        "kind() == \"",
    ];
    let found: Vec<String> = outside("broker/", &by_name)
        .into_iter()
        // The configuration's own unit tests read back a file they wrote.
        .filter(|path| path != "config.rs")
        .collect();
    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn only_store_runs_sql() {
    assert_eq!(
        outside("store/", &["sqlx::", "use sqlx"]),
        Vec::<String>::new()
    );
}

#[test]
fn only_runtime_knows_wasmtime() {
    assert_eq!(
        outside(
            "runtime/",
            &["wasmtime::", "wasmtime_wasi::", "use wasmtime"]
        ),
        Vec::<String>::new()
    );
}

#[test]
fn no_source_file_grows_past_about_800_lines() {
    let long: Vec<String> = sources(&source_root())
        .into_iter()
        .filter(|(path, _)| {
            let lines = std::fs::read_to_string(source_root().join(path))
                .unwrap()
                .lines()
                .count();
            lines > 800
        })
        .map(|(path, _)| path)
        .collect();
    assert_eq!(long, Vec::<String>::new(), "split these as their seams say");
}

/// Every test that takes a shared server's lock for writing (it drops or restarts the server,
/// or counts what is connected to it) is one `.config/nextest.toml` runs alone: the lock keeps
/// the tests of its own binary away, the override those of every other binary.
#[test]
fn every_test_that_disturbs_a_shared_server_runs_alone() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = std::fs::read_to_string(root.join(".config/nextest.toml")).unwrap();
    let alone = config
        .split("[[profile.default.overrides]]")
        .find(|part| part.contains("threads-required = \"num-test-threads\""))
        .expect("an override that runs tests alone");
    let mut missing = Vec::new();
    let mut found = 0;
    for entry in std::fs::read_dir(root.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        // Not this file, which names the locks to look for them.
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("architecture.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let binary = path.file_stem().unwrap().to_string_lossy().into_owned();
        for (at, _) in text
            .match_indices("RABBIT.write()")
            .chain(text.match_indices("POSTGRES.write()"))
            .chain(text.match_indices("BROKER.lock()"))
        {
            let before = &text[..at];
            let start = before
                .rfind("async fn ")
                .expect("a lock taken in a function")
                + 9;
            let name: String = before[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // A test that takes a broker only to keep its own binary's tests away (each Kafka
            // test) may run in that binary's test group, one at a time; one that restarts the
            // broker must run alone.
            let body = &text[at..];
            let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
            let grouped = config.contains(&format!("filter = \"binary({binary})\"\ntest-group"));
            if grouped && !body.contains("restart_broker(") {
                found += 1;
                continue;
            }
            found += 1;
            if !alone.contains(&format!("binary({binary})")) || !alone.contains(&name) {
                missing.push(format!("{binary}: {name}"));
            }
        }
    }
    assert!(found >= 8, "the locks were not found ({found})");
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "add them to .config/nextest.toml's alone list"
    );
}
