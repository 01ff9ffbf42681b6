//! A plugin file loaded the way every `wharf plugin` command loads one: checked, compiled
//! through the same cache as `wharf serve`, with the services its calls use.

use crate::runtime::{Plugin, PluginSettings, Runtime, RuntimeConfig, Standalone};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;

/// Reads and checks a plugin file; returns the loaded plugin and the file's bytes.
pub async fn load(file: &Path, settings: PluginSettings) -> anyhow::Result<(Plugin, Vec<u8>)> {
    load_with(file, settings, Arc::new(Standalone::default())).await
}

/// As [`load`], with the host services the plugin's calls use. The runtime keeps compiled
/// code in the same cache as `wharf serve`, so a large (Python, JavaScript) plugin is
/// compiled once, not at every `check`, `run`, `test` and `build`.
pub async fn load_with(
    file: &Path,
    settings: PluginSettings,
    services: Arc<dyn crate::runtime::HostServices>,
) -> anyhow::Result<(Plugin, Vec<u8>)> {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: crate::runtime::default_cache_dir(),
        ..RuntimeConfig::default()
    })?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let plugin = runtime
        .load(&bytes, settings, services)
        .await
        .with_context(|| format!("{} is not a valid plugin", file.display()))?;
    Ok((plugin, bytes))
}

/// What the plugin in `file` declares (checked as `plugin check` checks it).
pub async fn inspect(file: &Path) -> anyhow::Result<crate::runtime::PluginInfo> {
    Ok(load(file, PluginSettings::default())
        .await?
        .0
        .info()
        .clone())
}
