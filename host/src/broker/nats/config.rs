//! A NATS connection's definition and its checks.

use crate::check::{ConfigError, invalid};
use crate::redact::{HIDDEN, redact, shows_hidden};
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

    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(invalid(
                format!("{key}url"),
                "a nats connection needs `url` (nats://host:4222)",
            ));
        }
        for server in &servers {
            match url::Url::parse(server) {
                Ok(parsed) if ["nats", "tls"].contains(&parsed.scheme()) => {}
                _ => {
                    return Err(invalid(
                        format!("{key}url"),
                        format!(
                            "`{}` is not nats://host:port or tls://host:port",
                            redact(server)
                        ),
                    ));
                }
            }
        }
        let ways = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey.is_some(),
            self.creds_file.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(invalid(
                key.trim_end_matches('.'),
                "give one way to sign in: user and password, a token, an nkey or a creds_file",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(invalid(
                format!("{key}password"),
                "a user needs a password, and a password a user",
            ));
        }
        if let Some(seed) = &self.nkey
            && seed != HIDDEN
            && !seed.starts_with("SU")
        {
            return Err(invalid(
                format!("{key}nkey"),
                "an NKey seed for a user starts with `SU`",
            ));
        }
        if let Some(tls) = &self.tls {
            if tls.pkcs12.is_some() {
                return Err(invalid(
                    format!("{key}tls.pkcs12"),
                    "NATS takes a PEM `cert` and `key`, not a PKCS#12 bundle",
                ));
            }
            crate::tls::check(tls).map_err(|problem| invalid(format!("{key}tls"), problem))?;
        }
        let prefix_ok = !self.stream_prefix.is_empty()
            && self.stream_prefix.len() <= 32
            && self
                .stream_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !prefix_ok {
            return Err(invalid(
                format!("{key}stream_prefix"),
                "1 to 32 letters, digits, `_` or `-`",
            ));
        }
        for (field, value) in [
            ("ack_wait_ms", self.ack_wait_ms),
            ("timeout_ms", self.timeout_ms),
            ("replicas", self.replicas as u64),
        ] {
            if value == 0 {
                return Err(invalid(format!("{key}{field}"), "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The same definition with its secrets hidden.
    pub fn redacted(&self) -> NatsConfig {
        let mut nats = self.clone();
        nats.url = nats
            .servers()
            .iter()
            .map(|u| redact(u))
            .collect::<Vec<_>>()
            .join(",");
        for secret in [&mut nats.password, &mut nats.token, &mut nats.nkey] {
            if secret.is_some() {
                *secret = Some(HIDDEN.into());
            }
        }
        nats
    }

    /// Secrets shown hidden keep the stored ones, for the same servers only.
    pub fn keep_secrets(&mut self, old: &NatsConfig) -> Result<(), ConfigError> {
        let old_urls: Vec<String> = old.servers();
        let old_refs: Vec<&String> = old_urls.iter().collect();
        let mut urls = self.servers();
        for (i, url) in urls.iter_mut().enumerate() {
            crate::redact::url_kept(&format!("url[{i}]"), url, &old_refs)?;
        }
        self.url = urls.join(",");
        if self.servers() != old.servers() {
            return Ok(());
        }
        for (new, stored) in [
            (&mut self.password, &old.password),
            (&mut self.token, &old.token),
            (&mut self.nkey, &old.nkey),
        ] {
            if new.as_deref() == Some(HIDDEN) {
                *new = stored.clone();
            }
        }
        Ok(())
    }

    /// The first field still holding a secret as shown hidden.
    pub fn hidden_field(&self) -> Option<String> {
        if self.servers().iter().any(|u| shows_hidden(u)) {
            return Some("url".into());
        }
        [
            ("password", &self.password),
            ("token", &self.token),
            ("nkey", &self.nkey),
        ]
        .into_iter()
        .find(|(_, value)| value.as_deref() == Some(HIDDEN))
        .map(|(field, _)| field.to_owned())
    }
}
