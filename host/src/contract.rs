//! What the host and its plugins agree on, without the engine that runs them: what a plugin
//! declares of itself, and its kv writes and their limits. A leaf, so the store keeps what a
//! plugin is and writes without knowing how it runs.

/// The three worlds of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Transformer,
    Handler,
    Daemon,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Transformer => "transformer",
            PluginKind::Handler => "handler",
            PluginKind::Daemon => "daemon",
        }
    }
}

/// What a plugin declares, with what the host learnt of its file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub description: String,
    pub reusable: bool,
    pub wants: Vec<String>,
    /// The contract version the plugin was built against, e.g. `wharf:plugin@0.1.0`.
    pub contract: String,
    pub size_bytes: usize,
    /// Hex SHA-256 of the file: plugin files are content-addressed.
    pub sha256: String,
}

/// A write of a plugin's kv state, made during a call and applied only if the call succeeds
/// (with the rest of its work, in one transaction).
#[derive(Debug, Clone, PartialEq)]
pub struct KvWrite {
    pub plugin: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// Limits on a plugin's kv state, the same wherever it is kept.
#[derive(Debug, Clone, Copy)]
pub struct KvLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_total_bytes: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key_bytes: 256,
            max_value_bytes: 64 * 1024,
            max_total_bytes: 1024 * 1024,
        }
    }
}

impl KvLimits {
    /// Checks a write of `value` under `key`, given the plugin's total before it (which
    /// includes any old value of `key`, `replaced_bytes` long).
    pub fn check(
        &self,
        key: &str,
        value: &[u8],
        total_bytes: usize,
        replaced_bytes: usize,
    ) -> Result<(), String> {
        if key.is_empty() || key.len() > self.max_key_bytes {
            return Err(format!(
                "kv key must be 1 to {} bytes, `{key:.40}` is {}",
                self.max_key_bytes,
                key.len()
            ));
        }
        if value.len() > self.max_value_bytes {
            return Err(format!(
                "kv value for `{key}` is {} bytes, over the limit of {}",
                value.len(),
                self.max_value_bytes
            ));
        }
        let after = total_bytes - replaced_bytes + key.len() + value.len();
        if after > self.max_total_bytes {
            return Err(format!(
                "kv state would be {after} bytes, over the plugin's limit of {}",
                self.max_total_bytes
            ));
        }
        Ok(())
    }
}
