//! The host's own settings: its listener and database, its limits, its outbox relay and the
//! plugins it loads from files.

use crate::check::{ConfigError, invalid};
use crate::redact::redact;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where compiled code is cached by default: `$XDG_CACHE_HOME/wharf/compiled`, else
/// `~/.cache/wharf/compiled`.
pub fn default_cache_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cache"))
        })?;
    Some(base.join("wharf").join("compiled"))
}

/// The plugin instance pool's size unless configured: room for fifteen plugins at the
/// default 64 instances.
pub const DEFAULT_INSTANCE_POOL: u32 = 1_000;

/// The outbox: messages committed to the host's database first, then sent by a relay.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Whether this host relays (sends pending messages). Several hosts on one PostgreSQL
    /// database may all relay: they share the backlog.
    pub relay: bool,
    /// The most messages a relay claims at once.
    pub batch: usize,
    /// How long a claim holds its messages: a relay that dies lets them go after this.
    pub claim_ms: u64,
    /// The first retry's delay after a send fails; each further one doubles it, up to
    /// `max_backoff_ms`.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How long sent messages are kept (to look at) before they are pruned.
    pub keep_sent_secs: u64,
    /// How long a route's inbox remembers the ids it handled.
    pub keep_handled_secs: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            relay: true,
            batch: 256,
            claim_ms: 30_000,
            backoff_ms: 200,
            max_backoff_ms: 5_000,
            keep_sent_secs: 600,
            keep_handled_secs: 7 * 24 * 3_600,
        }
    }
}

impl OutboxConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000).contains(&self.batch) {
            return Err(invalid("outbox.batch", "must be 1 to 10000"));
        }
        if self.claim_ms < 1_000 {
            return Err(invalid("outbox.claim_ms", "must be at least 1000"));
        }
        if self.backoff_ms == 0 || self.max_backoff_ms < self.backoff_ms {
            return Err(invalid(
                "outbox.max_backoff_ms",
                "backoff_ms must be at least 1 and max_backoff_ms at least backoff_ms",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// This host's name among the hosts sharing its brokers, the same across its restarts:
    /// what a transport with sessions of its own names them by (MQTT's client ids), and
    /// the outbox relay its claims. By default the machine's name and the listener's address.
    pub name: Option<String>,
    /// Where the HTTP listener (health, API) binds.
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    pub database: String,
    /// Every `.wasm` file here is loaded as a plugin under its file name (the example
    /// plugins, by default), unless `[plugins]` names it already.
    pub plugin_dir: Option<PathBuf>,
    /// The largest payload a route accepts; a larger one is dead-lettered with the reason.
    pub max_message_bytes: usize,
    /// How long shutdown waits for in-flight messages before returning them to their queues;
    /// also the longest an HTTP request may outlive a shutdown.
    pub shutdown_grace_ms: u64,
    /// The most messages one input may make along a route (outputs, publications, replies);
    /// past it the input is dead-lettered as `TooManyOutputs`. A route may set its own.
    pub max_outputs: usize,
    /// The largest HTTP request body the API takes (413 past it); also the largest plugin
    /// upload.
    pub max_request_bytes: usize,
    /// The most payload bytes one API call that reads messages returns; the messages past it
    /// stay in their queue.
    pub max_response_bytes: usize,
    /// Where compiled plugins are cached, so a restart (or another host on this machine)
    /// does not compile the same file again; by default `~/.cache/wharf/compiled`.
    pub compile_cache: Option<PathBuf>,
    /// A PEM file of CA certificates that plugins' outbound HTTPS (`http:` grants) trusts
    /// besides the system's: a private API's CA.
    pub outbound_ca: Option<PathBuf>,
    /// Requests one signed-in caller (a token, a user) may have in flight at once (429 past
    /// them).
    pub max_in_flight: usize,
    /// Plugin instances that may exist at once on this host. Each loaded plugin reserves its
    /// `max_instances` of them; one that does not fit is refused, naming both numbers.
    pub instance_pool: u32,
    /// TLS on the listener: the API, the admin UI and ingress over HTTPS only. Session cookies
    /// are then `Secure`, and answers carry HSTS.
    pub tls: Option<ServerTlsConfig>,
    /// The key that seals secrets in the database (connections' passwords, plugins' config):
    /// a file of base64 (32 random bytes), made with mode 0600 on first start when absent.
    /// By default `WHARF_SECRET_KEY` (the key itself), else `secret.key` in the host's state
    /// folder (`~/.local/state/wharf`). Hosts sharing a database need the same key.
    pub secret_key_file: Option<PathBuf>,
    /// Keys that sealed secrets before a rotation: read, never used to seal.
    pub previous_secret_key_files: Vec<PathBuf>,
    /// How long the audit log keeps an entry.
    pub audit_retention_days: u32,
}

/// The listener's certificate: PEM files of the certificate chain and its private key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: None,
            listen: "127.0.0.1:8080".parse().expect("a valid address"),
            database: "sqlite://wharf.db".into(),
            plugin_dir: Some("plugins/dist".into()),
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_grace_ms: 10_000,
            max_outputs: 1_000,
            // As large as the runtime takes a plugin: a Python or JavaScript component is
            // 12-20 MB. Bodies from callers not signed in are held to a few KiB regardless.
            max_request_bytes: 64 * 1024 * 1024,
            max_response_bytes: 32 * 1024 * 1024,
            compile_cache: default_cache_dir(),
            outbound_ca: None,
            instance_pool: DEFAULT_INSTANCE_POOL,
            max_in_flight: 1_024,
            tls: None,
            secret_key_file: None,
            previous_secret_key_files: Vec::new(),
            audit_retention_days: 365,
        }
    }
}

impl ServerConfig {
    /// Where this host finds the keys that seal secrets.
    pub fn key_sources(&self) -> crate::secrets::KeySources {
        crate::secrets::KeySources {
            file: self.secret_key_file.clone(),
            previous: self.previous_secret_key_files.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// The plugin's file.
    pub path: PathBuf,
    pub memory_mb: usize,
    /// CPU time one call may use.
    pub timeout_ms: u64,
    /// Wall-clock time one call may take, waits in host calls included; unset: ten times
    /// `timeout_ms`.
    pub wall_ms: Option<u64>,
    /// The most one call may hand the host (results, publications, requests, kv writes).
    pub output_mb: usize,
    pub max_instances: u32,
    /// Reuse instances when the plugin declares itself reusable.
    pub reuse: bool,
    /// Grants, as `connection:address` globs, by kind.
    pub publish: Vec<String>,
    pub request: Vec<String>,
    pub receive: Vec<String>,
    pub config: BTreeMap<String, String>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            path: PathBuf::new(),
            memory_mb: 64,
            timeout_ms: 1000,
            wall_ms: None,
            output_mb: 16,
            max_instances: 64,
            reuse: true,
            publish: Vec::new(),
            request: Vec::new(),
            receive: Vec::new(),
            config: BTreeMap::new(),
        }
    }
}

// The configuration types that hold a password print it redacted, so a `{:?}` in a log or an
// error never shows one.

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("database", &redact(&self.database))
            .field("plugin_dir", &self.plugin_dir)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("shutdown_grace_ms", &self.shutdown_grace_ms)
            .field("max_outputs", &self.max_outputs)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("compile_cache", &self.compile_cache)
            .field("outbound_ca", &self.outbound_ca)
            .field("tls", &self.tls)
            .field("secret_key_file", &self.secret_key_file)
            .field("audit_retention_days", &self.audit_retention_days)
            .finish()
    }
}

/// The machine's name (`localhost` where it has none).
pub fn machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The databases an application's outbox may live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceDialect {
    Postgres,
    Mysql,
}

impl SourceDialect {
    /// The dialect of a database URL, if it is one a source may use.
    pub fn of_url(url: &str) -> Option<SourceDialect> {
        let scheme = url.split_once("://")?.0;
        match scheme {
            "postgres" | "postgresql" => Some(SourceDialect::Postgres),
            "mysql" | "mariadb" => Some(SourceDialect::Mysql),
            _ => None,
        }
    }
}

/// One application's outbox table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Names it on every surface, and prefixes the ids of its messages that have none
    /// (`{name}.{seq}`).
    pub name: String,
    /// The application's database: `postgres://…` or `mysql://…` (`mariadb://…`).
    pub url: String,
    /// The table, as `wharf outbox schema` made it: `wharf_outbox` unless named.
    #[serde(default = "default_table")]
    pub table: String,
    /// How often the relay looks for rows besides being woken (PostgreSQL) or at all (MySQL):
    /// 1,000 ms unless set, 10 to 60,000.
    #[serde(default)]
    pub poll_ms: Option<u64>,
}

fn default_table() -> String {
    "wharf_outbox".into()
}

impl SourceConfig {
    pub fn validate(&self, at: usize) -> Result<(), ConfigError> {
        let field = |name: &str| format!("sources[{at}].{name}");
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !name_ok {
            return Err(invalid(
                field("name"),
                "must be 1 to 64 letters, digits, `-` or `_`",
            ));
        }
        if SourceDialect::of_url(&self.url).is_none() {
            return Err(invalid(
                field("url"),
                format!(
                    "`{}` is not a database a source can use: postgres://… or mysql://…",
                    redact(&self.url)
                ),
            ));
        }
        if !crate::check::is_table_name(&self.table) {
            return Err(invalid(
                field("table"),
                "must be a table name (`name` or `schema.name`: letters, digits and `_`)",
            ));
        }
        if let Some(ms) = self.poll_ms
            && !(10..=60_000).contains(&ms)
        {
            return Err(invalid(field("poll_ms"), "must be 10 to 60000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;

    #[test]
    fn the_url_says_the_dialect() {
        assert_eq!(
            SourceDialect::of_url("postgres://u@h/db"),
            Some(SourceDialect::Postgres)
        );
        assert_eq!(
            SourceDialect::of_url("mariadb://root@127.0.0.1/test"),
            Some(SourceDialect::Mysql)
        );
        assert_eq!(SourceDialect::of_url("sqlite://x.db"), None);
    }
}
