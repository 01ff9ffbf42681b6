//! An HTTP connection's definition and its checks.

use crate::redact::{redact, redacted_map};
use crate::tls::TlsConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// HTTP as a transport. Ingress: `POST` (and `GET`, where `ingress_methods` says) to
/// `/ingress/{connection}/{path}` on the host's listener; the message is held in the host's
/// database until the route bound to `{connection}:{path}` takes it. Egress: publishing to
/// `{connection}:{path}` sends a request to `base_url` + `path`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where publishing sends (`http://…` or `https://…`); the address is appended to it.
    /// Without it the connection only takes ingress.
    pub base_url: Option<String>,
    /// `POST` (the default), `PUT` or `GET` (which sends no body).
    pub method: String,
    /// Headers every request carries (an `Authorization` header, say).
    pub headers: BTreeMap<String, String>,
    /// The content type of a message that names none (`application/octet-stream` by default).
    pub content_type: Option<String>,
    /// How long one request may take before it counts as failed (and is retried).
    pub timeout_ms: u64,
    /// The ingress methods taken (`["POST"]` by default; add `GET` to take GET too; `[]`
    /// for no ingress).
    pub ingress_methods: Vec<String>,
    /// Ingress without a token. Off unless said: anyone who reaches the listener may send.
    pub anonymous: bool,
    /// How long ingress on a route that replies waits for the reply.
    pub reply_timeout_ms: u64,
    /// Messages one caller (a token's or user's name; an anonymous caller's address) may
    /// send through this connection's ingress a second, a second's worth at once; past it
    /// ingress answers 429 (1,000 by default).
    pub ingress_per_second: u32,
    /// Bytes of body one caller may send through this connection's ingress a second, a
    /// second's worth at once (64 MiB by default); past it ingress answers 429.
    pub ingress_bytes_per_second: u32,
    /// For `https://` endpoints: a private CA to trust (besides the system's), and a client
    /// certificate when the endpoint asks for one (PEM `cert` and `key`, or a PKCS#12 bundle).
    pub tls: Option<TlsConfig>,
    /// Hosts a message may name a full URL on (`{connection}:https://api.example.com/x`),
    /// besides those under `base_url`: `api.example.com`, `*.example.com` (its subdomains),
    /// with `:8443` for one port or `:*` for any (none: the scheme's own port). The
    /// connection's `headers` go only to URLs under `base_url`.
    pub allowed_hosts: Vec<String>,
    /// Ingress at paths the admin chooses (streamtools'): `{"orders" = "orders.in"}` takes
    /// `POST /hooks/orders` as it takes `/ingress/{connection}/orders.in`, with the same
    /// methods, tokens and limits. A path is unique among the host's connections.
    pub hooks: BTreeMap<String, String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            base_url: None,
            method: "POST".into(),
            headers: BTreeMap::new(),
            content_type: None,
            timeout_ms: 10_000,
            ingress_methods: vec!["POST".into()],
            anonymous: false,
            reply_timeout_ms: 30_000,
            ingress_per_second: 1_000,
            ingress_bytes_per_second: 64 * 1024 * 1024,
            tls: None,
            allowed_hosts: Vec::new(),
            hooks: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("base_url", &self.base_url.as_deref().map(redact))
            .field("method", &self.method)
            .field("headers", &redacted_map(&self.headers))
            .field("timeout_ms", &self.timeout_ms)
            .field("ingress_methods", &self.ingress_methods)
            .field("anonymous", &self.anonymous)
            .field("ingress_per_second", &self.ingress_per_second)
            .field("ingress_bytes_per_second", &self.ingress_bytes_per_second)
            .field("tls", &self.tls.is_some())
            .field("allowed_hosts", &self.allowed_hosts)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}
