//! The plugin registry and kv state in the store, on SQLite and PostgreSQL, and
//! `wharf plugin install` / `wharf plugin list` as an admin types them.

#[macro_use]
mod support;

use std::process::Command;
use support::{Backend, TestDb, plugin_bytes, plugin_path, runtime};
use wharf::runtime::{KvLimits, PluginSettings, Standalone};
use wharf::store::Store;

on_every_backend!(
    every_version_is_kept_and_files_are_content_addressed,
    kv_state_is_limited_per_plugin
);

/// Installs a built plugin under `name`, as `wharf plugin install` does: checked first.
async fn install(store: &Store, file: &str, name: &str) -> (wharf::store::InstalledPlugin, bool) {
    let bytes = plugin_bytes(file);
    let settings = PluginSettings {
        name: Some(name.into()),
        ..PluginSettings::default()
    };
    let plugin = runtime()
        .load(&bytes, settings, std::sync::Arc::new(Standalone::default()))
        .await
        .unwrap();
    store
        .install_plugin(plugin.info(), &bytes, wharf::message::now_ms() as i64)
        .await
        .unwrap()
}

async fn every_version_is_kept_and_files_are_content_addressed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let (first, new) = install(&store, "uppercase", "shout").await;
    assert!(new);
    assert_eq!(
        (first.name.as_str(), first.kind.as_str()),
        ("shout", "transformer")
    );
    let (again, new) = install(&store, "uppercase", "shout").await;
    assert!(
        !new,
        "the same file under the same name is not a new version"
    );
    assert_eq!(again.id, first.id);

    let (second, new) = install(&store, "counter", "shout").await;
    assert!(new);
    assert!(second.id > first.id);
    // The same file under another name is another plugin sharing one stored file.
    let (other, _) = install(&store, "uppercase", "loud").await;
    assert_eq!(other.sha256, first.sha256);

    let versions = store.plugin_versions("shout").await.unwrap();
    let hashes: Vec<_> = versions.iter().map(|v| v.sha256.as_str()).collect();
    assert_eq!(hashes, [first.sha256.as_str(), second.sha256.as_str()]);

    let latest = store.latest_plugins().await.unwrap();
    let names: Vec<_> = latest
        .iter()
        .map(|p| (p.name.as_str(), p.sha256.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("loud", first.sha256.as_str()),
            ("shout", second.sha256.as_str())
        ]
    );

    let file = store.plugin_file(&first.sha256).await.unwrap().unwrap();
    assert_eq!(file, plugin_bytes("uppercase"));
    assert!(
        store
            .plugin_file("0".repeat(64).as_str())
            .await
            .unwrap()
            .is_none()
    );
    store.close().await;
}

async fn kv_state_is_limited_per_plugin(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let limits = KvLimits {
        max_key_bytes: 8,
        max_value_bytes: 16,
        max_total_bytes: 30,
    };
    assert_eq!(store.kv_get("p", "k").await.unwrap(), None);
    store
        .kv_set("p", "k", b"one", &limits, 1)
        .await
        .unwrap()
        .unwrap();
    store
        .kv_set("p", "k", b"two", &limits, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.kv_get("p", "k").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(
        store.kv_get("other", "k").await.unwrap(),
        None,
        "state is per plugin"
    );

    let refused = store
        .kv_set("p", "a-long-key", b"x", &limits, 3)
        .await
        .unwrap();
    assert!(refused.unwrap_err().contains("key"));
    let refused = store.kv_set("p", "k", &[0; 17], &limits, 3).await.unwrap();
    assert!(refused.unwrap_err().contains("value"));
    store
        .kv_set("p", "k2", &[0; 16], &limits, 3)
        .await
        .unwrap()
        .unwrap();
    let refused = store.kv_set("p", "k3", &[0; 16], &limits, 3).await.unwrap();
    assert!(
        refused.unwrap_err().contains("limit"),
        "past the plugin's total"
    );
    // Replacing a value counts only the difference.
    store
        .kv_set("p", "k2", &[1; 16], &limits, 4)
        .await
        .unwrap()
        .unwrap();
    store.close().await;
}

#[test]
fn install_and_list_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/registry.db", dir.path().display());
    let wharf = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .args(["--database", &db])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let upper = plugin_path("uppercase");
    let (ok, out, err) = wharf(&["plugin", "install", upper.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.starts_with("installed uppercase 0.1.0"), "{out}");
    let (ok, out, _) = wharf(&["plugin", "install", upper.to_str().unwrap()]);
    assert!(ok && out.contains("already installed"), "{out}");
    let (ok, _, err) = wharf(&[
        "plugin",
        "install",
        plugin_path("echo").to_str().unwrap(),
        "--name",
        "ping",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = wharf(&["plugin", "install", plugin_path("alien").to_str().unwrap()]);
    assert!(!ok && err.contains("world check failed"), "{err}");

    let (ok, out, err) = wharf(&["plugin", "list"]);
    assert!(ok, "{err}");
    let lines: Vec<_> = out.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("ping") && lines[0].contains("handler"),
        "{out}"
    );
    assert!(lines[1].starts_with("uppercase"), "{out}");

    let (ok, out, _) = wharf(&["plugin", "list", "uppercase", "--json"]);
    assert!(ok);
    let versions: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 1);
    let (ok, _, err) = wharf(&["plugin", "list", "nothing-here"]);
    assert!(!ok && err.contains("no plugin named"), "{err}");
}
