//! The plugin registry, the desired state's documents and kv state in the store, on SQLite
//! and PostgreSQL. (The same through a running host's API and CLI: `tests/control.rs`.)

#[macro_use]
mod support;

use support::{Backend, TestDb, plugin_bytes, runtime};
use wharf::runtime::{KvLimits, PluginSettings, Standalone};
use wharf::store::{Documents, Store, Upload};

on_every_backend!(
    every_version_is_kept_and_files_are_content_addressed,
    versions_are_immutable_and_changes_raise_the_revision,
    documents_are_created_once_and_changed_in_place,
    kv_state_is_limited_per_plugin
);

/// Uploads a built plugin under `name`, as the API does: checked first.
async fn upload(store: &Store, file: &str, name: &str) -> Upload {
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
        .upload_plugin(
            plugin.info(),
            &bytes,
            true,
            "tester",
            wharf::message::now_ms() as i64,
        )
        .await
        .unwrap()
}

async fn every_version_is_kept_and_files_are_content_addressed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let Upload::New(first) = upload(&store, "uppercase", "shout").await else {
        panic!("the first upload is new")
    };
    assert_eq!(
        (first.name.as_str(), first.kind.as_str(), first.enabled),
        ("shout", "transformer", true)
    );
    assert_eq!(first.uploaded_by.as_deref(), Some("tester"));
    let Upload::Same(again) = upload(&store, "uppercase", "shout").await else {
        panic!("the same file under the same name is not a new version")
    };
    assert_eq!(again.id, first.id);

    // The same file under another name is another plugin sharing one stored file.
    let Upload::New(other) = upload(&store, "uppercase", "loud").await else {
        panic!("another name is another plugin")
    };
    assert_eq!(other.sha256, first.sha256);
    let versions = store.plugin_versions("shout").await.unwrap();
    assert_eq!(versions, std::slice::from_ref(&first));
    let all = store.all_plugin_versions().await.unwrap();
    let names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["loud", "shout"]);

    let file = store.plugin_file(&first.sha256).await.unwrap().unwrap();
    assert_eq!(file, plugin_bytes("uppercase"));
    // A file goes once no version names it.
    assert!(store.delete_plugin_version("shout", "0.1.0").await.unwrap());
    assert!(store.plugin_file(&first.sha256).await.unwrap().is_some());
    assert!(store.delete_plugin_version("loud", "0.1.0").await.unwrap());
    assert!(store.plugin_file(&first.sha256).await.unwrap().is_none());
    assert!(!store.delete_plugin_version("loud", "0.1.0").await.unwrap());
    store.close().await;
}

async fn versions_are_immutable_and_changes_raise_the_revision(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let start = store.revision().await.unwrap();
    let Upload::New(first) = upload(&store, "uppercase", "shout").await else {
        panic!("new")
    };
    assert_eq!(store.revision().await.unwrap(), start + 1);
    // Another file claiming the same name and version is refused, and changes nothing.
    let Upload::VersionTaken(taken) = upload(&store, "counter", "shout").await else {
        panic!("a version never changes")
    };
    assert_eq!(taken.sha256, first.sha256);
    assert_eq!(store.revision().await.unwrap(), start + 1);
    assert_eq!(store.plugin_versions("shout").await.unwrap().len(), 1);

    assert!(
        store
            .set_plugin_enabled("shout", &[("0.1.0", false)])
            .await
            .unwrap()
    );
    assert!(!store.plugin_versions("shout").await.unwrap()[0].enabled);
    assert_eq!(store.revision().await.unwrap(), start + 2);
    // One unknown version in a change makes the whole change nothing.
    assert!(
        !store
            .set_plugin_enabled("shout", &[("0.1.0", true), ("9.9.9", true)])
            .await
            .unwrap()
    );
    assert!(!store.plugin_versions("shout").await.unwrap()[0].enabled);
    assert_eq!(store.revision().await.unwrap(), start + 2);

    store
        .set_plugin_policy("shout", r#"{"grants":["publish:local:**"]}"#, 5)
        .await
        .unwrap();
    store
        .set_plugin_policy("shout", r#"{"grants":[]}"#, 6)
        .await
        .unwrap();
    let policies = store.plugin_policies().await.unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].spec, r#"{"grants":[]}"#);
    assert_eq!(store.revision().await.unwrap(), start + 4);
    store.close().await;
}

async fn documents_are_created_once_and_changed_in_place(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let start = store.revision().await.unwrap();
    for kind in [Documents::Routes, Documents::Connections] {
        assert!(store.create_document(kind, "a", "{}", 1).await.unwrap());
        assert!(
            !store
                .create_document(kind, "a", "{\"x\":1}", 2)
                .await
                .unwrap(),
            "a name is taken once"
        );
        assert!(
            store
                .update_document(kind, "a", "{\"y\":2}", 3)
                .await
                .unwrap()
        );
        assert!(!store.update_document(kind, "b", "{}", 3).await.unwrap());
        let docs = store.documents(kind).await.unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(
            (docs[0].spec.as_str(), docs[0].updated_ms),
            ("{\"y\":2}", 3)
        );
        assert!(store.delete_document(kind, "a").await.unwrap());
        assert!(!store.delete_document(kind, "a").await.unwrap());
        assert!(store.documents(kind).await.unwrap().is_empty());
    }
    // Only what changed something raised the revision: create, update, delete, twice.
    assert_eq!(store.revision().await.unwrap(), start + 6);
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
