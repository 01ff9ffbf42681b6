//! A NATS connection's definition and its checks.

use crate::redact::redact;
use crate::tls::TlsConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// NATS through `async-nats`: queues are JetStream streams read by durable pull consumers,
/// events a stream of their own on subjects `{exchange}.{key}`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:4222` (`tls://` for TLS), more servers comma-separated; a user and
    /// password may stand in it (`nats://user:password@host:4222`).
    pub url: String,
    /// A user and password, instead of in the URL.
    pub user: Option<String>,
    pub password: Option<String>,
    /// A token, for a server that authenticates by token.
    pub token: Option<String>,
    /// An NKey seed (`SU…`), for a server that authenticates by NKey.
    pub nkey: Option<String>,
    /// A `.creds` file (a user JWT and its NKey seed), for a server run by an operator.
    #[schema(value_type = Option<String>)]
    pub creds_file: Option<PathBuf>,
    /// TLS to the server: a private CA, and a client certificate (PEM `cert` and `key`).
    pub tls: Option<TlsConfig>,
    /// Streams the host makes are named with this prefix: `{prefix}{queue}`.
    pub stream_prefix: String,
    /// How long a delivery stays unsettled before the server delivers it again (a host that
    /// dies lets its messages go after this).
    pub ack_wait_ms: u64,
    /// How long connecting (and each JetStream request) may take before it is an error.
    pub timeout_ms: u64,
    /// Copies of each stream the server keeps (a cluster's replicas).
    pub replicas: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: String::new(),
            user: None,
            password: None,
            token: None,
            nkey: None,
            creds_file: None,
            tls: None,
            stream_prefix: "wharf_".into(),
            ack_wait_ms: 30_000,
            timeout_ms: 10_000,
            replicas: 1,
        }
    }
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact(&self.url))
            .field("user", &self.user)
            .field("creds_file", &self.creds_file)
            .field("tls", &self.tls)
            .field("stream_prefix", &self.stream_prefix)
            .finish_non_exhaustive()
    }
}

impl NatsConfig {
    /// Each server's URL.
    pub fn servers(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }
}
