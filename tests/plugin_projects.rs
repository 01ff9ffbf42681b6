//! The plugin author's path, for every language and kind: `wharf plugin new`, then `wharf
//! plugin build` and `wharf plugin test` in the project, then the plugin installed through a
//! running host's API and a message through it (a route for a transformer or a handler, a
//! daemon unit for a daemon).
//!
//! Python projects build with componentize-py from the virtualenv `./dev` installs
//! (`~/.cache/wharf-tools/python`, or `WHARF_TOOLS_DIR`); JavaScript projects install
//! componentize-js with npm as their package.json pins it; Rust projects build with cargo into
//! a target directory the three share.

mod support;

use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Api, Backend, TestDb};
use wharf::broker::Address;
use wharf::message::Message;

fn tools_dir() -> PathBuf {
    std::env::var_os("WHARF_TOOLS_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache")
                .join("wharf-tools")
        },
        PathBuf::from,
    )
}

/// `wharf ARGS` in `dir` with the toolchains on PATH; panics with its output unless it
/// succeeds. Returns its standard output.
fn wharf(dir: &Path, args: &[&str]) -> String {
    let python = tools_dir().join("python").join("bin");
    assert!(
        python.join("componentize-py").is_file(),
        "componentize-py is not in {}: `./dev test` installs it",
        python.display()
    );
    let path = format!(
        "{}:{}",
        python.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = PathBuf::from(std::env::var_os("HOME").unwrap())
        .join(".cache")
        .join("wharf-plugins-target")
        .join("projects");
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("running wharf");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wharf {args:?} in {}: {}\n{stdout}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits up to 60 s for a message at `address` and returns it.
async fn arrives(connections: &wharf::broker::Connections, address: &str) -> Message {
    let at = Address::parse(address).unwrap();
    connections.ensure(&[&at]).await.unwrap();
    let mut consumer = connections.consume(&at, 4).await.unwrap();
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(60), consumer.next())
        .await
        .unwrap_or_else(|_| panic!("nothing arrived at {address} within 60 s"))
        .unwrap();
    let msg = delivery.message.clone();
    delivery.ack.ack().await.unwrap();
    consumer.close().await;
    msg
}

async fn make_build_install_and_run(lang: &str) {
    let work = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = wharf::config::Config::default();
    config.routes.clear();
    let (host, _) = support::start_host(&db, config).await;
    let api = Api::new(host.addr);
    let connections = host.connections().clone();
    for kind in ["transformer", "handler", "daemon"] {
        let name = format!("my-{lang}-{kind}");
        let made = wharf(
            work.path(),
            &["plugin", "new", "--lang", lang, "--kind", kind, &name],
        );
        assert!(made.contains(&name), "{made}");
        let project = work.path().join(&name);
        let built = wharf(&project, &["plugin", "build"]);
        assert!(
            built.contains(&format!("built {name} 0.1.0 ({kind})")),
            "{built}"
        );
        let tested = wharf(&project, &["plugin", "test"]);
        assert!(tested.contains("test 1: ok"), "{tested}");
        assert!(!tested.contains("FAILED"), "{tested}");

        // Installed through the API, from the file the build made.
        let wasm = std::fs::read(project.join(format!("{name}.wasm"))).unwrap();
        let response = api
            .client
            .post(format!("{}/plugins", api.base))
            .header("content-type", "application/wasm")
            .body(wasm)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{name}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        api.ok(
            Method::PUT,
            &format!("plugins/{name}/policy"),
            Some(json!({
                "grants": [format!("receive:local:{name}.in"), format!("publish:local:{name}.out")],
                "memory_mb": 128, "timeout_ms": 2000, "max_instances": 4, "reuse": true,
                "config": {},
            })),
        )
        .await;
        let input = Address::parse(&format!("local:{name}.in")).unwrap();
        match kind {
            "transformer" => {
                api.ok(
                    Method::POST,
                    "routes",
                    Some(json!({
                        "name": name, "from": format!("local:{name}.in"),
                        "through": [name], "to": format!("local:{name}.out"),
                    })),
                )
                .await;
                api.wait_unit(&name, "running").await;
                connections
                    .send(&input, Message::new("", "through a route"))
                    .await
                    .unwrap();
                let out = arrives(&connections, &format!("local:{name}.out")).await;
                assert_eq!(out.payload, b"THROUGH A ROUTE", "{name}");
            }
            "handler" => {
                api.ok(
                    Method::POST,
                    "routes",
                    Some(json!({
                        "name": name, "from": format!("local:{name}.in"), "through": [name],
                    })),
                )
                .await;
                api.wait_unit(&name, "running").await;
                let mut request = Message::new("", lang);
                request.reply_to = Some(format!("{name}.out"));
                request.correlation_id = Some("c-1".into());
                connections.send(&input, request).await.unwrap();
                let reply = arrives(&connections, &format!("local:{name}.out")).await;
                assert_eq!(
                    reply.payload,
                    format!("Hello, {lang}!").as_bytes(),
                    "{name}"
                );
                assert_eq!(reply.correlation_id.as_deref(), Some("c-1"));
            }
            _ => {
                api.ok(
                    Method::POST,
                    "daemons",
                    Some(json!({ "name": name, "plugin": name })),
                )
                .await;
                api.wait_unit(&name, "running").await;
                connections
                    .send(&input, Message::new("", "taken by a daemon"))
                    .await
                    .unwrap();
                let out = arrives(&connections, &format!("local:{name}.out")).await;
                assert_eq!(out.payload, b"TAKEN BY A DAEMON", "{name}");
            }
        }
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_plugin_of_each_kind_from_new_to_a_message_through_it() {
    make_build_install_and_run("rust").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_of_each_kind_from_new_to_a_message_through_it() {
    make_build_install_and_run("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_of_each_kind_from_new_to_a_message_through_it() {
    make_build_install_and_run("js").await;
}

/// Bad input to `plugin new` and `plugin build`: a clear error, nothing written over.
#[test]
fn plugin_new_refuses_bad_names_and_existing_folders() {
    let work = tempfile::tempdir().unwrap();
    for bad in ["../escape", "Upper", "has space", "-dash"] {
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["plugin", "new", "--lang", "python", "--", bad])
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not a plugin name"),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
    std::fs::create_dir(work.path().join("taken")).unwrap();
    std::fs::write(work.path().join("taken").join("keep.txt"), "mine").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["plugin", "new", "--lang", "js", "taken"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(work.path().join("taken").join("keep.txt")).unwrap(),
        "mine"
    );
    // Outside a project, build and test say what is missing.
    for args in [&["plugin", "build"][..], &["plugin", "test"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("wharf-plugin.toml"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
