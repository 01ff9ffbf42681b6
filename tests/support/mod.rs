//! Shared by the integration tests: where the built plugins are, and small helpers.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::sync::Arc;
use wharf::message::Message;
use wharf::runtime::{Plugin, PluginSettings, Runtime, RuntimeConfig, Standalone};

/// The folder `./dev plugins` copies the built plugins into.
pub fn plugin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist")
}

/// The path of a built plugin; panics with what to run when it is missing, so a test never
/// passes (or fails obscurely) because the plugins were not built.
pub fn plugin_path(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the plugins with `./dev plugins` (./dev test does it)",
        path.display()
    );
    path
}

pub fn plugin_bytes(name: &str) -> Vec<u8> {
    std::fs::read(plugin_path(name)).expect("reading a built plugin")
}

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("the runtime starts")
}

pub async fn load(runtime: &Runtime, name: &str, settings: PluginSettings) -> Plugin {
    runtime
        .load(
            &plugin_bytes(name),
            settings,
            Arc::new(Standalone::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

pub fn text_message(payload: &str) -> Message {
    Message::new("test.in", payload.as_bytes().to_vec())
}
