//! The host's own configuration: `wharf.toml` plus `WHARF_…` environment overrides.
//!
//! Every key has a safe default, so `wharf serve` runs with no file at all: SQLite in
//! `wharf.db`, the embedded broker as connection `local`, the listener on 127.0.0.1:8080, the
//! example plugins from `plugins/dist/` and a demo route. An environment variable overrides a
//! key by its path in capitals, sections joined by `__`: `WHARF_SERVER__LISTEN=0.0.0.0:9000`.
//! Errors name the key (`routes[0].retry.max`) and where its value came from.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The file this was read from (none: the built-in defaults).
    #[serde(skip)]
    pub file: Option<PathBuf>,
    pub server: ServerConfig,
    // A file says what runs: without `[connections]`, `[plugins]`, `[[routes]]` or
    // `[[daemons]]` it has none of the defaults' (`local` is added back by `load`), rather
    // than the demo route and the heartbeat.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// This host's outbox relay and how long sent messages and handled ids are kept.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Where this host publishes model events and where its subscriptions read them.
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
    #[serde(default)]
    pub daemons: Vec<DaemonConfig>,
}

/// A daemon: a daemon plugin the host runs for as long as it is wanted, restarting it when it
/// fails and marking it failed when it keeps failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    pub name: String,
    /// The daemon plugin to run: `name`, or `name@version` to pin a version.
    pub plugin: String,
    /// Run on every host of a shared database. By default a daemon runs on one host at a
    /// time, which holds its lease in the database; another takes over when that host dies.
    #[serde(default)]
    pub each_host: bool,
    /// Failures (an error returned, a trap, a spin past its CPU budget) within
    /// `failure_window_secs` that mark it failed; it then stays stopped until restarted.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_failure_window_secs")]
    pub failure_window_secs: u64,
}

fn default_max_failures() -> u32 {
    5
}

fn default_failure_window_secs() -> u64 {
    300
}

impl DaemonConfig {
    /// Checks one daemon on its own. `prefix` goes before each key named in an error.
    pub fn check(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{prefix}{field}");
        check_item_name(&key("name"), &self.name)?;
        let (plugin, version) = plugin_ref(&self.plugin);
        check_item_name(&key("plugin"), plugin)?;
        if version.is_some_and(|v| v.is_empty() || v.len() > 64 || is_dot_segment(v)) {
            return Err(invalid(
                key("plugin"),
                "write it as `name` or `name@version`",
            ));
        }
        if self.max_failures == 0 || self.max_failures > 1000 {
            return Err(invalid(key("max_failures"), "must be 1 to 1000"));
        }
        if self.failure_window_secs == 0 || self.failure_window_secs > 7 * 24 * 3600 {
            return Err(invalid(
                key("failure_window_secs"),
                "must be 1 second to 7 days (604800)",
            ));
        }
        Ok(())
    }
}

/// Where model events go: a topic exchange (AMQP, or the embedded broker's) or a Kafka topic,
/// on one connection. Each host has its own; hosts that share events name the same place.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The connection carrying events (`embedded`, `amqp`, `kafka`, or `http`: webhooks).
    pub connection: String,
    /// The topic exchange (AMQP, embedded) or topic (Kafka) events are published to.
    pub exchange: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            connection: "local".into(),
            exchange: "events".into(),
        }
    }
}

impl EventsConfig {
    fn validate(&self, has_connection: &dyn Fn(&str) -> bool) -> Result<(), ConfigError> {
        if !has_connection(&self.connection) {
            return Err(invalid(
                "events.connection",
                format!(
                    "names connection `{}`, which is not configured",
                    self.connection
                ),
            ));
        }
        check_name("events.exchange", &self.exchange)?;
        if self.exchange.is_empty() || self.exchange.contains('/') {
            return Err(invalid(
                "events.exchange",
                "must be an exchange (or Kafka topic) name, not empty and without `/`",
            ));
        }
        Ok(())
    }
}

/// A subscription: every event whose routing key matches `pattern` runs through `through`
/// from a queue (or Kafka consumer group) of its own, named from the service, the chain and
/// the pattern, so two services never share one by accident.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    pub name: String,
    /// Routing keys to take, in AMQP's topic rules: `Booking.*` (one word), `Booking.#` or
    /// `#` (any number), `Booking.updated`.
    pub pattern: String,
    /// The subscribing service: part of the queue's name.
    pub service: String,
    /// Plugins in order: transformers, optionally ending in one handler.
    #[serde(default)]
    pub through: Vec<String>,
    /// `connection:address` for the outputs; may be left out when the chain ends in a
    /// handler.
    pub to: Option<String>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Where dead letters go; by default `{queue}.dead` on the events connection.
    pub dead_letter: Option<String>,
    /// Effects go through the outbox, as a durable route's.
    #[serde(default)]
    pub durable: bool,
    /// Remember handled event ids; a redelivered one is acked without running the chain.
    #[serde(default)]
    pub inbox: bool,
    pub max_outputs: Option<usize>,
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u32,
}

impl SubscriptionConfig {
    /// The queue (or Kafka consumer group) of this subscription:
    /// `{service}.{plugins joined by -}.{pattern}`, with `*` as `any` and `#` as `all`
    /// (`billing.notify.Booking.any`); `forward` for an empty chain.
    pub fn queue(&self) -> String {
        let chain = if self.through.is_empty() {
            "forward".to_owned()
        } else {
            self.through
                .iter()
                .map(|p| plugin_ref(p).0)
                .collect::<Vec<_>>()
                .join("-")
        };
        format!("{}.{chain}.{}", self.service, pattern_words(&self.pattern))
    }

    /// The route that runs it: from its queue on the events connection.
    pub fn route(&self, events: &EventsConfig) -> RouteConfig {
        RouteConfig {
            name: self.name.clone(),
            from: format!("{}:{}", events.connection, self.queue()),
            through: self.through.clone(),
            to: self.to.clone(),
            concurrency: self.concurrency,
            retry: self.retry.clone(),
            dead_letter: self.dead_letter.clone(),
            durable: self.durable,
            inbox: self.inbox,
            max_outputs: self.max_outputs,
            max_deliveries: self.max_deliveries,
            reply_to_allow: Vec::new(),
            reply_to: None,
        }
    }

    /// Checks one subscription on its own: its name, service and pattern, and the route it
    /// becomes on `events`. `prefix` goes before each key named in an error.
    pub fn check(
        &self,
        prefix: &str,
        events: &EventsConfig,
        has_connection: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{prefix}{field}");
        check_item_name(&key("name"), &self.name)?;
        check_item_name(&key("service"), &self.service)?;
        check_pattern(&key("pattern"), &self.pattern)?;
        self.route(events)
            .check(prefix, has_connection)
            .map_err(|e| match e {
                // The route's `from` is the subscription's queue, which it does not name itself.
                ConfigError::Invalid { key: k, problem } if k == key("from") => invalid(
                    key("service"),
                    format!("the queue `{}` made from it: {problem}", self.queue()),
                ),
                other => other,
            })
    }
}

/// A pattern as words a queue name can hold: `*` as `any`, `#` as `all`
/// (`Booking.*` is `Booking.any`).
pub fn pattern_words(pattern: &str) -> String {
    pattern
        .split('.')
        .map(|word| match word {
            "*" => "any",
            "#" => "all",
            word => word,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A binding pattern: words separated by `.`, each `*`, `#` or letters, digits, `_` and `-`.
pub fn check_pattern(key: &str, pattern: &str) -> Result<(), ConfigError> {
    if pattern.is_empty() || pattern.len() > 200 {
        return Err(invalid(key, "must be 1 to 200 bytes"));
    }
    for word in pattern.split('.') {
        let fine = word == "*"
            || word == "#"
            || (!word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')));
        if !fine {
            return Err(invalid(
                key,
                format!(
                    "`{}` is not a pattern: words separated by `.`, each `*` (one word), `#` (any number) or letters, digits, `_` and `-`",
                    pattern.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}

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
    fn validate(&self) -> Result<(), ConfigError> {
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
            compile_cache: crate::runtime::default_cache_dir(),
            instance_pool: crate::runtime::DEFAULT_INSTANCE_POOL,
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

/// One broker connection: the embedded broker, RabbitMQ (`amqp`), Kafka (`kafka`) or HTTP
/// (`http`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ConnectionConfig {
    Embedded(EmbeddedConnectionConfig),
    Amqp(Box<AmqpConfig>),
    Kafka(Box<KafkaConfig>),
    Http(Box<HttpConfig>),
}

/// Kafka (or any broker speaking its protocol) through librdkafka.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The client id the brokers see (`wharf` by default).
    pub client_id: String,
    /// A route's consumer group is `{group}.{route}`: every host running a route shares its
    /// partitions, and two routes never share a group.
    pub group: String,
    /// SASL authentication (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub sasl: Option<KafkaSasl>,
    /// TLS to the brokers: a private CA (PEM), a client certificate and key (PEM).
    pub tls: Option<TlsConfig>,
    /// librdkafka settings passed through to producer and consumers alike
    /// (`socket.keepalive.enable`, `compression.type`, ...).
    pub settings: BTreeMap<String, String>,
    /// librdkafka settings for the producer only (`linger.ms`, `batch.num.messages`, ...).
    pub producer: BTreeMap<String, String>,
    /// librdkafka settings for consumers only (`session.timeout.ms`, `fetch.wait.max.ms`, ...).
    pub consumer: BTreeMap<String, String>,
    /// Topics the host creates if missing (`wharf schema apply`, and at start), besides the
    /// topics its routes use (created with one partition).
    pub topics: Vec<KafkaTopicConfig>,
    /// How long a request to the brokers may take before it is an error.
    pub timeout_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            client_id: "wharf".into(),
            group: "wharf".into(),
            sasl: None,
            tls: None,
            settings: BTreeMap::new(),
            producer: BTreeMap::new(),
            consumer: BTreeMap::new(),
            topics: Vec::new(),
            timeout_ms: 10_000,
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("group", &self.group)
            .field("topics", &self.topics.len())
            .finish_non_exhaustive()
    }
}

/// SASL credentials for Kafka.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

/// A topic the host creates when it is missing.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopicConfig {
    pub name: String,
    #[serde(default = "one")]
    pub partitions: i32,
    #[serde(default = "one")]
    pub replication: i32,
    /// Topic settings (`retention.ms`, `cleanup.policy`, ...).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

fn one() -> i32 {
    1
}

/// Settings Wharf sets itself, for its delivery guarantees: not taken from a definition.
const KAFKA_OWN_SETTINGS: [&str; 6] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "client.id",
];

/// Whether `name` is a valid Kafka topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
pub fn is_kafka_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl KafkaConfig {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(invalid(
                format!("{key}brokers"),
                "a kafka connection needs `brokers` (host:port[,host:port...])",
            ));
        }
        for broker in self.brokers.split(',') {
            let broker = broker.trim();
            let port_ok = broker
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(invalid(
                    format!("{key}brokers"),
                    format!("`{}` is not host:port", broker.escape_debug()),
                ));
            }
        }
        if self.group.is_empty() || !is_kafka_topic(&self.group) {
            return Err(invalid(
                format!("{key}group"),
                "a group name is 1 to 249 of a-z, A-Z, 0-9, `.`, `_` and `-`",
            ));
        }
        if let Some(sasl) = &self.sasl
            && !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&sasl.mechanism.as_str())
        {
            return Err(invalid(
                format!("{key}sasl.mechanism"),
                format!(
                    "`{}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    sasl.mechanism.escape_debug()
                ),
            ));
        }
        for (part, settings) in [
            ("settings", &self.settings),
            ("producer", &self.producer),
            ("consumer", &self.consumer),
        ] {
            for name in settings.keys() {
                if KAFKA_OWN_SETTINGS.contains(&name.as_str()) {
                    return Err(invalid(
                        format!("{key}{part}.{name}"),
                        "is set by Wharf itself (brokers, client_id, group and its delivery guarantees)",
                    ));
                }
            }
        }
        for (i, topic) in self.topics.iter().enumerate() {
            if !is_kafka_topic(&topic.name) {
                return Err(invalid(
                    format!("{key}topics[{i}].name"),
                    "a topic name is 1 to 249 of a-z, A-Z, 0-9, `.`, `_` and `-`",
                ));
            }
            if topic.partitions < 1 || topic.replication < 1 {
                return Err(invalid(
                    format!("{key}topics[{i}]"),
                    "partitions and replication are at least 1",
                ));
            }
        }
        Ok(())
    }

    /// Every librdkafka setting in the definition, `settings` then `part`'s, with secrets.
    fn redacted_settings(settings: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        settings
            .iter()
            .map(|(name, value)| {
                let shown = if is_secret_name(name) {
                    HIDDEN.to_owned()
                } else {
                    value.clone()
                };
                (name.clone(), shown)
            })
            .collect()
    }
}

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
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("base_url", &self.base_url.as_deref().map(redact))
            .field("method", &self.method)
            .field("headers", &self.redacted_headers())
            .field("timeout_ms", &self.timeout_ms)
            .field("ingress_methods", &self.ingress_methods)
            .field("anonymous", &self.anonymous)
            .field("ingress_per_second", &self.ingress_per_second)
            .field("ingress_bytes_per_second", &self.ingress_bytes_per_second)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpConfig {
    fn redacted_headers(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .map(|(name, value)| {
                let shown = if is_secret_name(name) {
                    HIDDEN.to_owned()
                } else {
                    value.clone()
                };
                (name.clone(), shown)
            })
            .collect()
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if let Some(url) = &self.base_url {
            match reqwest::Url::parse(url) {
                Ok(parsed) if ["http", "https"].contains(&parsed.scheme()) => {}
                Ok(parsed) => {
                    return Err(invalid(
                        format!("{key}base_url"),
                        format!("`{}` is not http:// or https://", parsed.scheme()),
                    ));
                }
                Err(problem) => {
                    return Err(invalid(
                        format!("{key}base_url"),
                        format!("`{}` is not a URL: {problem}", redact(url)),
                    ));
                }
            }
        }
        if !["GET", "POST", "PUT"].contains(&self.method.as_str()) {
            return Err(invalid(
                format!("{key}method"),
                format!("`{}` is not GET, POST or PUT", self.method),
            ));
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(
                    format!("{key}headers"),
                    format!("`{}` is not a header name", name.escape_debug()),
                ));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(invalid(
                    format!("{key}headers.{name}"),
                    "a header value is visible ASCII text",
                ));
            }
        }
        if let Some(content_type) = &self.content_type
            && reqwest::header::HeaderValue::from_str(content_type).is_err()
        {
            return Err(invalid(
                format!("{key}content_type"),
                "a content type is visible ASCII text",
            ));
        }
        for (field, value) in [
            ("timeout_ms", self.timeout_ms),
            ("reply_timeout_ms", self.reply_timeout_ms),
            ("ingress_per_second", self.ingress_per_second.into()),
            (
                "ingress_bytes_per_second",
                self.ingress_bytes_per_second.into(),
            ),
        ] {
            if value == 0 {
                return Err(invalid(format!("{key}{field}"), "must be at least 1"));
            }
        }
        for (i, method) in self.ingress_methods.iter().enumerate() {
            if method != "GET" && method != "POST" {
                return Err(invalid(
                    format!("{key}ingress_methods[{i}]"),
                    format!("`{method}` is not GET or POST"),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            crate::tls::check(tls).map_err(|problem| invalid(format!("{key}tls"), problem))?;
        }
        Ok(())
    }
}

/// The embedded broker: queues in the host's database, declared here or created on first use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConnectionConfig {
    pub queues: Vec<QueueConfig>,
}

/// A RabbitMQ connection (or any AMQP 0-9-1 broker) and the topology it declares.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:port/vhost` or `amqps://…`.
    pub url: Option<String>,
    /// More brokers, tried in turn after `url` (in random order with `shuffle`).
    pub urls: Vec<String>,
    pub shuffle: bool,
    /// How long one broker gets to accept the connection before the next is tried.
    pub connect_timeout_ms: u64,
    /// AMQP heartbeat; a dead peer is noticed after about twice this.
    pub heartbeat_s: u16,
    /// Channels kept open for publishing with confirms, shared by every sender.
    pub channels: usize,
    /// Reconnect backoff: from 100 ms doubling up to this, with jitter.
    pub reconnect_max_ms: u64,
    pub tls: Option<TlsConfig>,
    pub exchanges: Vec<ExchangeConfig>,
    pub queues: Vec<AmqpQueueConfig>,
    pub bindings: Vec<BindingConfig>,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: None,
            urls: Vec::new(),
            shuffle: false,
            connect_timeout_ms: 5_000,
            heartbeat_s: 30,
            channels: 4,
            reconnect_max_ms: 10_000,
            tls: None,
            exchanges: Vec::new(),
            queues: Vec::new(),
            bindings: Vec::new(),
        }
    }
}

impl AmqpConfig {
    /// Every broker address, `url` first.
    pub fn all_urls(&self) -> Vec<String> {
        self.url.iter().chain(&self.urls).cloned().collect()
    }
}

/// TLS to a broker or endpoint (`amqps://`, `https://`): a private CA, and a client
/// certificate when the peer asks for one (PEM certificate and PKCS#8 key, or a PKCS#12
/// bundle).
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust (the system's are trusted too).
    #[schema(value_type = Option<String>)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (with `key`).
    #[schema(value_type = Option<String>)]
    pub cert: Option<PathBuf>,
    /// PEM PKCS#8 private key of `cert`.
    #[schema(value_type = Option<String>)]
    pub key: Option<PathBuf>,
    /// PKCS#12 bundle of client certificate and key, instead of `cert` and `key`.
    #[schema(value_type = Option<String>)]
    pub pkcs12: Option<PathBuf>,
    #[serde(default)]
    pub pkcs12_password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    pub name: String,
    /// `direct`, `topic`, `fanout` or `headers`.
    #[serde(rename = "type", default = "default_exchange_type")]
    pub kind: String,
    #[serde(default = "yes")]
    pub durable: bool,
    #[serde(default)]
    pub auto_delete: bool,
}

fn default_exchange_type() -> String {
    "direct".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpQueueConfig {
    pub name: String,
    #[serde(default = "yes")]
    pub durable: bool,
    /// `classic` (the default) or `quorum`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Where the broker moves messages rejected without requeue or expired
    /// (`x-dead-letter-exchange`; `""` is the default exchange).
    pub dead_letter_exchange: Option<String>,
    /// The routing key they get there (`x-dead-letter-routing-key`).
    pub dead_letter_routing_key: Option<String>,
    /// How long a message may wait in the queue (`x-message-ttl`).
    pub message_ttl_ms: Option<u64>,
    /// The most messages the queue holds (`x-max-length`).
    pub max_length: Option<u64>,
}

impl AmqpQueueConfig {
    /// A durable classic queue with no arguments.
    pub fn named(name: impl Into<String>) -> Self {
        AmqpQueueConfig {
            name: name.into(),
            durable: true,
            kind: None,
            dead_letter_exchange: None,
            dead_letter_routing_key: None,
            message_ttl_ms: None,
            max_length: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub exchange: String,
    pub queue: String,
    #[serde(default)]
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: String,
    pub dead_letter: Option<String>,
    pub visibility_timeout_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
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

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// `connection:address` to consume.
    pub from: String,
    /// Plugins in order: transformers, optionally ending in one handler.
    #[serde(default)]
    pub through: Vec<String>,
    /// `connection:address` for the outputs; may be left out when the chain ends in a
    /// handler whose replies go to each request's reply-to.
    pub to: Option<String>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Where dead letters go; by default `{address}.dead` on the input's connection.
    pub dead_letter: Option<String>,
    /// Outputs, publications, replies and kv writes go to the outbox in one transaction with
    /// the input's record in the route's inbox, before the input is acked; the relay sends
    /// them. Survives a broker that is down; a redelivered input is not handled twice.
    #[serde(default)]
    pub durable: bool,
    /// Remember the ids of the inputs handled, and ack a redelivered one without running the
    /// chain again (always so on a durable route).
    #[serde(default)]
    pub inbox: bool,
    /// The most messages one input may make (default: `server.max_outputs`).
    pub max_outputs: Option<usize>,
    /// Dead-letter an input delivered more often than this without being settled.
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u32,
    /// Connections and addresses (`connection:address` globs) a reply may go to besides the
    /// input's own connection; none by default.
    #[serde(default)]
    pub reply_to_allow: Vec<String>,
    /// Where a handler's reply goes when the request names no reply-to (edeposit's clients
    /// send only a `UUID` header and read replies from a fixed address).
    #[serde(default)]
    pub reply_to: Option<String>,
}

fn default_max_deliveries() -> u32 {
    crate::store::DEFAULT_MAX_DELIVERIES
}

impl Default for RouteConfig {
    /// A route with every optional key at its default; `name` and `from` are to be set.
    fn default() -> Self {
        RouteConfig {
            name: String::new(),
            from: String::new(),
            through: Vec::new(),
            to: None,
            concurrency: default_concurrency(),
            retry: RetryConfig::default(),
            dead_letter: None,
            durable: false,
            inbox: false,
            max_outputs: None,
            max_deliveries: default_max_deliveries(),
            reply_to_allow: Vec::new(),
            reply_to: None,
        }
    }
}

fn default_concurrency() -> usize {
    16
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts after the first before a message is dead-lettered.
    pub max: u32,
    /// The first retry's delay; each further one doubles it, up to `max_backoff_ms`.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max: 5,
            backoff_ms: 100,
            max_backoff_ms: 30_000,
        }
    }
}

impl Default for Config {
    /// What `wharf serve` runs with no file: the embedded broker as `local`, the example
    /// plugins and the demo route `local:demo.in` → `uppercase` → `local:demo.out`.
    fn default() -> Self {
        Config {
            file: None,
            server: ServerConfig::default(),
            connections: BTreeMap::from([(
                "local".to_owned(),
                ConnectionConfig::Embedded(EmbeddedConnectionConfig::default()),
            )]),
            // The example daemon publishes the host's heartbeat as an event.
            plugins: BTreeMap::from([(
                "heartbeat".to_owned(),
                PluginConfig {
                    publish: vec!["local:events/Host.heartbeat".into()],
                    ..PluginConfig::default()
                },
            )]),
            events: EventsConfig::default(),
            subscriptions: Vec::new(),
            daemons: vec![DaemonConfig {
                name: "heartbeat".into(),
                plugin: "heartbeat".into(),
                each_host: false,
                max_failures: default_max_failures(),
                failure_window_secs: default_failure_window_secs(),
            }],
            routes: vec![RouteConfig {
                name: "demo".into(),
                from: "local:demo.in".into(),
                through: vec!["uppercase".into()],
                to: Some("local:demo.out".into()),
                ..RouteConfig::default()
            }],
            outbox: OutboxConfig::default(),
        }
    }
}

/// The configuration is not usable; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Reads the defaults, then `file` (if given), then `WHARF_…` variables, and checks the
    /// result. With a file, the demo route and the local connection are not added: the file
    /// says what runs (a file without `[connections]` still gets `local`).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        match file {
            None => figment = figment.merge(Serialized::defaults(Config::default())),
            Some(path) => {
                if !path.is_file() {
                    return Err(invalid(
                        "--config",
                        format!("{} does not exist or is not a file", path.display()),
                    ));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
        }
        // Only variables with a section (`WHARF_SERVER__LISTEN`) are configuration; others
        // such as WHARF_DATABASE belong to the command line.
        figment = figment.merge(
            Env::prefixed("WHARF_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.file = file.map(Path::to_path_buf);
        config
            .connections
            .entry("local".into())
            .or_insert(ConnectionConfig::Embedded(
                EmbeddedConnectionConfig::default(),
            ));
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: references between sections and the shape of addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.outbox.validate()?;
        if !(1..=100_000).contains(&self.server.instance_pool) {
            return Err(invalid("server.instance_pool", "must be 1 to 100000"));
        }
        if !(1..=100_000).contains(&self.server.max_in_flight) {
            return Err(invalid("server.max_in_flight", "must be 1 to 100000"));
        }
        self.events
            .validate(&|name| self.connections.contains_key(name))?;
        let plugins = self.plugin_sources()?;
        let mut names = std::collections::HashSet::new();
        let mut queues = std::collections::HashMap::new();
        for (i, subscription) in self.subscriptions.iter().enumerate() {
            let key = |field: &str| format!("subscriptions[{i}].{field}");
            if !names.insert(&subscription.name) {
                return Err(invalid(
                    key("name"),
                    format!("`{}` names two subscriptions", subscription.name),
                ));
            }
            subscription.check(&format!("subscriptions[{i}]."), &self.events, &|name| {
                self.connections.contains_key(name)
            })?;
            if let Some(other) = queues.insert(subscription.queue(), &subscription.name) {
                return Err(invalid(
                    key("service"),
                    format!(
                        "subscriptions `{other}` and `{}` would share queue `{}`: the same service, chain and pattern",
                        subscription.name,
                        subscription.queue()
                    ),
                ));
            }
            for plugin in &subscription.through {
                if !plugins.contains_key(plugin_ref(plugin).0) {
                    return Err(invalid(
                        key("through"),
                        format!(
                            "no plugin `{plugin}` is configured under [plugins] or found in the plugin_dir"
                        ),
                    ));
                }
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{i}].{field}");
            if !names.insert(&route.name) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "`{}` names two units (routes and subscriptions share names)",
                        route.name
                    ),
                ));
            }
            route.check(&format!("routes[{i}]."), &|name| {
                self.connections.contains_key(name)
            })?;
            for plugin in &route.through {
                if !plugins.contains_key(plugin) {
                    return Err(invalid(
                        key("through"),
                        format!(
                            "no plugin `{plugin}` is configured under [plugins] or found in the plugin_dir"
                        ),
                    ));
                }
            }
        }
        for (i, daemon) in self.daemons.iter().enumerate() {
            let key = |field: &str| format!("daemons[{i}].{field}");
            if !names.insert(&daemon.name) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "`{}` names two units (routes, subscriptions and daemons share names)",
                        daemon.name
                    ),
                ));
            }
            daemon.check(&format!("daemons[{i}]."))?;
            if !plugins.contains_key(plugin_ref(&daemon.plugin).0) {
                return Err(invalid(
                    key("plugin"),
                    format!(
                        "no plugin `{}` is configured under [plugins] or found in the plugin_dir",
                        daemon.plugin
                    ),
                ));
            }
        }
        for (key, value) in [
            ("server.max_outputs", self.server.max_outputs),
            ("server.max_request_bytes", self.server.max_request_bytes),
            ("server.max_response_bytes", self.server.max_response_bytes),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (name, connection) in &self.connections {
            check_connection_name(&format!("connections.{}", name.escape_debug()), name)?;
            connection.check(&format!("connections.{name}."))?;
        }
        for (name, plugin) in &plugins {
            if plugin.path.as_os_str().is_empty() {
                return Err(invalid(
                    format!("plugins.{name}.path"),
                    format!("is required (there is no {name}.wasm in the plugin_dir)"),
                ));
            }
        }
        Ok(())
    }

    /// The plugins to load, by name: those under `[plugins]`, and every `.wasm` file in the
    /// plugin_dir under its file name (unless `[plugins]` has that name).
    pub fn plugin_sources(&self) -> Result<BTreeMap<String, PluginConfig>, ConfigError> {
        let mut plugins = self.plugins.clone();
        let Some(dir) = self.server.plugin_dir.as_ref().filter(|dir| dir.is_dir()) else {
            return Ok(plugins);
        };
        let unreadable = |e: std::io::Error| {
            invalid(
                "server.plugin_dir",
                format!("cannot read {}: {e}", dir.display()),
            )
        };
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            if path.extension().is_some_and(|e| e == "wasm")
                && let Some(name) = path.file_stem().and_then(|s| s.to_str())
            {
                let plugin = plugins.entry(name.to_owned()).or_default();
                // `[plugins.NAME]` without a path gives settings to the plugin_dir's file.
                if plugin.path.as_os_str().is_empty() {
                    plugin.path = path.clone();
                }
            }
        }
        Ok(plugins)
    }
}

impl AmqpConfig {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let urls = self.all_urls();
        if urls.is_empty() {
            return Err(invalid(
                format!("{key}url"),
                "an amqp connection needs `url` (or `urls`)",
            ));
        }
        for url in &urls {
            if let Err(problem) = url.parse::<lapin::uri::AMQPUri>() {
                return Err(invalid(
                    format!("{key}url"),
                    format!("`{}` is not an AMQP URL: {problem}", redact(url)),
                ));
            }
        }
        if self.channels == 0 {
            return Err(invalid(format!("{key}channels"), "must be at least 1"));
        }
        if let Some(tls) = &self.tls {
            crate::tls::check(tls).map_err(|problem| invalid(format!("{key}tls"), problem))?;
        }
        for (i, exchange) in self.exchanges.iter().enumerate() {
            if !["direct", "topic", "fanout", "headers"].contains(&exchange.kind.as_str()) {
                return Err(invalid(
                    format!("{key}exchanges[{i}].type"),
                    format!(
                        "`{}` is not an exchange type: use direct, topic, fanout or headers",
                        exchange.kind
                    ),
                ));
            }
        }
        for (i, exchange) in self.exchanges.iter().enumerate() {
            check_name(&format!("{key}exchanges[{i}].name"), &exchange.name)?;
        }
        for (i, queue) in self.queues.iter().enumerate() {
            check_name(&format!("{key}queues[{i}].name"), &queue.name)?;
            // Without a dead-letter exchange the broker drops what overflows or expires.
            if queue.dead_letter_exchange.is_none() {
                for (field, set) in [
                    ("max_length", queue.max_length.is_some()),
                    ("message_ttl_ms", queue.message_ttl_ms.is_some()),
                ] {
                    if set {
                        return Err(invalid(
                            format!("{key}queues[{i}].{field}"),
                            format!(
                                "RabbitMQ drops the messages this limit removes unless the queue has a dead-letter exchange; set `dead_letter_exchange` (\"\" for the default exchange) and `dead_letter_routing_key` (e.g. \"{}.dead\") on queue `{}` to keep them",
                                queue.name, queue.name
                            ),
                        ));
                    }
                }
            }
            if let Some(kind) = &queue.kind
                && kind != "classic"
                && kind != "quorum"
            {
                return Err(invalid(
                    format!("{key}queues[{i}].type"),
                    format!("`{kind}` is not a queue type: use classic or quorum"),
                ));
            }
            if queue.kind.as_deref() == Some("quorum") && !queue.durable {
                return Err(invalid(
                    format!("{key}queues[{i}].durable"),
                    "quorum queues are always durable",
                ));
            }
        }
        for (i, binding) in self.bindings.iter().enumerate() {
            if binding.exchange.is_empty() {
                return Err(invalid(
                    format!("{key}bindings[{i}].exchange"),
                    "the default exchange cannot be bound",
                ));
            }
            check_name(&format!("{key}bindings[{i}].queue"), &binding.queue)?;
            check_name(&format!("{key}bindings[{i}].exchange"), &binding.exchange)?;
            check_routing_key(&format!("{key}bindings[{i}].key"), &binding.key)?;
        }
        Ok(())
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
            .field("tls", &self.tls)
            .field("secret_key_file", &self.secret_key_file)
            .field("audit_retention_days", &self.audit_retention_days)
            .finish()
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &self.url.as_deref().map(redact))
            .field(
                "urls",
                &self.urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
            )
            .field("shuffle", &self.shuffle)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("heartbeat_s", &self.heartbeat_s)
            .field("channels", &self.channels)
            .field("reconnect_max_ms", &self.reconnect_max_ms)
            .field("tls", &self.tls)
            .field("exchanges", &self.exchanges)
            .field("queues", &self.queues)
            .field("bindings", &self.bindings)
            .finish()
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("pkcs12", &self.pkcs12)
            .field(
                "pkcs12_password",
                &if self.pkcs12_password.is_empty() {
                    ""
                } else {
                    "***"
                },
            )
            .finish()
    }
}

/// Checks a queue or exchange name against what brokers take (see `address::check_name`).
fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    crate::address::check_name("queue or exchange", name, false)
        .map_err(|e| invalid(key, e.problem))
}

/// Checks a routing key (which may be empty) against what brokers take.
fn check_routing_key(key: &str, routing_key: &str) -> Result<(), ConfigError> {
    crate::address::check_name("routing key", routing_key, true)
        .map_err(|e| invalid(key, e.problem))
}

/// A connection's name: not empty, no `:`, `/` or control characters, at most 64 bytes.
pub fn check_connection_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || name.contains([':', '/', '@'])
        || name.chars().any(char::is_control)
        || is_dot_segment(name)
    {
        return Err(invalid(
            key,
            "a connection name is 1 to 64 bytes without `:`, `/`, `@` or control characters, and not `.` or `..`",
        ));
    }
    Ok(())
}

/// A route's or plugin's name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_item_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && !is_dot_segment(name)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "`{}` is not a name: use 1 to 64 letters, digits, `.`, `_` or `-` (not `.` or `..` alone)",
                name.escape_debug()
            ),
        ))
    }
}

/// Whether `name` is `.` or `..`: in a URL's path either one moves a link elsewhere however
/// it is encoded, so no name or version the host puts in a URL may be one.
pub fn is_dot_segment(name: &str) -> bool {
    name == "." || name == ".."
}

impl ConnectionConfig {
    /// Checks one connection; `prefix` is put before each key named in an error
    /// (`connections.rabbit.`, or nothing for an API body).
    pub fn check(&self, prefix: &str) -> Result<(), ConfigError> {
        match self {
            ConnectionConfig::Amqp(amqp) => amqp.validate(prefix),
            ConnectionConfig::Kafka(kafka) => kafka.validate(prefix),
            ConnectionConfig::Http(http) => http.validate(prefix),
            ConnectionConfig::Embedded(embedded) => {
                for (i, queue) in embedded.queues.iter().enumerate() {
                    let key = format!("{prefix}queues[{i}]");
                    check_name(&format!("{key}.name"), &queue.name)?;
                    if let Some(dead) = &queue.dead_letter {
                        check_name(&format!("{key}.dead_letter"), dead)?;
                    }
                    if queue.max_deliveries == Some(0) {
                        return Err(invalid(
                            format!("{key}.max_deliveries"),
                            "must be at least 1",
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// `amqp`, `kafka`, `http` or `embedded`.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectionConfig::Embedded(_) => "embedded",
            ConnectionConfig::Amqp(_) => "amqp",
            ConnectionConfig::Kafka(_) => "kafka",
            ConnectionConfig::Http(_) => "http",
        }
    }

    /// The same connection with every secret in it (passwords in URLs) hidden.
    pub fn redacted(&self) -> ConnectionConfig {
        match self {
            ConnectionConfig::Embedded(e) => ConnectionConfig::Embedded(e.clone()),
            ConnectionConfig::Amqp(amqp) => {
                let mut amqp = amqp.clone();
                amqp.url = amqp.url.as_deref().map(redact);
                amqp.urls = amqp.urls.iter().map(|u| redact(u)).collect();
                if let Some(tls) = &mut amqp.tls
                    && !tls.pkcs12_password.is_empty()
                {
                    tls.pkcs12_password = HIDDEN.into();
                }
                ConnectionConfig::Amqp(amqp)
            }
            ConnectionConfig::Kafka(kafka) => {
                let mut kafka = kafka.clone();
                if let Some(sasl) = &mut kafka.sasl {
                    sasl.password = HIDDEN.into();
                }
                kafka.settings = KafkaConfig::redacted_settings(&kafka.settings);
                kafka.producer = KafkaConfig::redacted_settings(&kafka.producer);
                kafka.consumer = KafkaConfig::redacted_settings(&kafka.consumer);
                if let Some(tls) = &mut kafka.tls
                    && !tls.pkcs12_password.is_empty()
                {
                    tls.pkcs12_password = HIDDEN.into();
                }
                ConnectionConfig::Kafka(kafka)
            }
            ConnectionConfig::Http(http) => {
                let mut http = http.clone();
                http.base_url = http.base_url.as_deref().map(redact);
                http.headers = http.redacted_headers();
                if let Some(tls) = &mut http.tls
                    && !tls.pkcs12_password.is_empty()
                {
                    tls.pkcs12_password = HIDDEN.into();
                }
                ConnectionConfig::Http(http)
            }
        }
    }

    /// `self` as sent back from what [`ConnectionConfig::redacted`] showed: every secret
    /// still shown hidden (`***`) keeps its value in `stored`, but only where it goes to the
    /// same place: a URL's password only for that very URL, a header's secret only while
    /// `base_url` names the same host, a bundle's password only for the same bundle. A secret
    /// hidden anywhere else is an error naming its field: it is never carried to another host,
    /// nor stored as `***`.
    pub fn keep_secrets(&mut self, stored: &ConnectionConfig) -> Result<(), ConfigError> {
        /// `url` with its hidden password restored from the stored URL it was shown as.
        fn url_kept(key: &str, url: &mut String, stored: &[&String]) -> Result<(), ConfigError> {
            if let Some(original) = stored.iter().find(|o| redact(o) == *url) {
                *url = (*original).clone();
                return Ok(());
            }
            if shows_hidden(url) {
                return Err(invalid(
                    key,
                    "holds a hidden secret (***), but not as it was stored: a stored password is kept only for the same URL; give it again",
                ));
            }
            Ok(())
        }
        match (&mut *self, stored) {
            (ConnectionConfig::Amqp(new), ConnectionConfig::Amqp(old)) => {
                let old_urls: Vec<&String> = old.url.iter().chain(&old.urls).collect();
                if let Some(url) = &mut new.url {
                    url_kept("url", url, &old_urls)?;
                }
                for (i, url) in new.urls.iter_mut().enumerate() {
                    url_kept(&format!("urls[{i}]"), url, &old_urls)?;
                }
                bundle_password_kept(&mut new.tls, &old.tls)?;
            }
            // Secrets go back only to the same brokers.
            (ConnectionConfig::Kafka(new), ConnectionConfig::Kafka(old))
                if new.brokers == old.brokers =>
            {
                if let (Some(sasl), Some(stored)) = (&mut new.sasl, &old.sasl)
                    && sasl.password == HIDDEN
                    && sasl.username == stored.username
                {
                    sasl.password = stored.password.clone();
                }
                for (part, stored) in [
                    (&mut new.settings, &old.settings),
                    (&mut new.producer, &old.producer),
                    (&mut new.consumer, &old.consumer),
                ] {
                    for (name, value) in part.iter_mut() {
                        if value == HIDDEN
                            && let Some(original) = stored.get(name)
                        {
                            *value = original.clone();
                        }
                    }
                }
                bundle_password_kept(&mut new.tls, &old.tls)?;
            }
            (ConnectionConfig::Http(new), ConnectionConfig::Http(old)) => {
                let same_host = new.base_url.as_deref().map(origin_of)
                    == old.base_url.as_deref().map(origin_of);
                if let Some(url) = &mut new.base_url {
                    url_kept("base_url", url, &old.base_url.iter().collect::<Vec<_>>())?;
                }
                for (name, value) in new.headers.iter_mut() {
                    if value != HIDDEN {
                        continue;
                    }
                    match old.headers.get(name) {
                        Some(original) if same_host => *value = original.clone(),
                        Some(_) => {
                            return Err(invalid(
                                format!("headers.{name}"),
                                "is hidden (***) but base_url now names another host: a stored secret is not carried there; give it again",
                            ));
                        }
                        None => {
                            return Err(invalid(
                                format!("headers.{name}"),
                                "is hidden (***) but none is stored; give its value",
                            ));
                        }
                    }
                }
                bundle_password_kept(&mut new.tls, &old.tls)?;
            }
            _ => {}
        }
        match self.hidden_field() {
            Some(field) => Err(invalid(
                field,
                "is hidden (***), and nothing stored goes there (another kind, another host or a new field): give its value",
            )),
            None => Ok(()),
        }
    }

    /// The first field that still holds a secret as shown hidden (`***`), if any: such a
    /// definition is refused, never stored with `***` for a secret.
    pub fn hidden_field(&self) -> Option<String> {
        let bundle = |tls: &Option<TlsConfig>| {
            tls.as_ref()
                .is_some_and(|t| t.pkcs12_password == HIDDEN)
                .then(|| "tls.pkcs12_password".to_owned())
        };
        match self {
            ConnectionConfig::Embedded(_) => None,
            ConnectionConfig::Amqp(amqp) => amqp
                .url
                .iter()
                .map(|url| ("url".to_owned(), url))
                .chain(
                    amqp.urls
                        .iter()
                        .enumerate()
                        .map(|(i, url)| (format!("urls[{i}]"), url)),
                )
                .find(|(_, url)| shows_hidden(url))
                .map(|(field, _)| field)
                .or_else(|| bundle(&amqp.tls)),
            ConnectionConfig::Kafka(kafka) => kafka
                .sasl
                .as_ref()
                .filter(|sasl| sasl.password == HIDDEN)
                .map(|_| "sasl.password".to_owned())
                .or_else(|| {
                    [
                        ("settings", &kafka.settings),
                        ("producer", &kafka.producer),
                        ("consumer", &kafka.consumer),
                    ]
                    .into_iter()
                    .find_map(|(part, settings)| {
                        settings
                            .iter()
                            .find(|(_, value)| *value == HIDDEN)
                            .map(|(name, _)| format!("{part}.{name}"))
                    })
                })
                .or_else(|| bundle(&kafka.tls)),
            ConnectionConfig::Http(http) => http
                .base_url
                .as_deref()
                .filter(|url| shows_hidden(url))
                .map(|_| "base_url".to_owned())
                .or_else(|| {
                    http.headers
                        .iter()
                        .find(|(_, value)| *value == HIDDEN)
                        .map(|(name, _)| format!("headers.{name}"))
                })
                .or_else(|| bundle(&http.tls)),
        }
    }
}

/// A client bundle's password sent back hidden keeps the stored one, for the same bundle only.
fn bundle_password_kept(
    new: &mut Option<TlsConfig>,
    old: &Option<TlsConfig>,
) -> Result<(), ConfigError> {
    let Some(tls) = new.as_mut().filter(|t| t.pkcs12_password == HIDDEN) else {
        return Ok(());
    };
    match old {
        Some(old) if old.pkcs12 == tls.pkcs12 => {
            tls.pkcs12_password = old.pkcs12_password.clone();
            Ok(())
        }
        _ => Err(invalid(
            "tls.pkcs12_password",
            "is hidden (***) but the bundle is another: give its password",
        )),
    }
}

/// Whether `url` holds a secret as shown hidden (`***` as its password, its user name or a
/// secret query value) rather than the secret itself.
fn shows_hidden(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(parsed) => {
            parsed.password() == Some(HIDDEN)
                || parsed.username() == HIDDEN
                || parsed
                    .query_pairs()
                    .any(|(name, value)| is_secret_name(&name) && value == HIDDEN)
        }
        Err(_) => url.contains(HIDDEN),
    }
}

/// The scheme, host and port a URL sends to (what a stored secret is bound to).
fn origin_of(url: &str) -> Option<(String, String, Option<u16>)> {
    let parsed = url::Url::parse(url).ok()?;
    Some((
        parsed.scheme().to_owned(),
        parsed.host_str()?.to_ascii_lowercase(),
        parsed.port_or_known_default(),
    ))
}

impl RouteConfig {
    /// Checks one route on its own (what serde cannot): its name, the shape of its
    /// addresses, that their connections exist, and its limits. `prefix` is put before each
    /// key named in an error (`routes[0].`, or nothing for an API body).
    pub fn check(
        &self,
        prefix: &str,
        has_connection: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{prefix}{field}");
        check_item_name(&key("name"), &self.name)?;
        check_address(&key("from"), &self.from, has_connection)?;
        if let Some(to) = &self.to {
            check_address(&key("to"), to, has_connection)?;
        }
        if let Some(reply_to) = &self.reply_to {
            check_address(&key("reply_to"), reply_to, has_connection)?;
        }
        match &self.dead_letter {
            Some(dead) => check_address(&key("dead_letter"), dead, has_connection)?,
            // The default, `{from}.dead`, must be a name too.
            None => check_address(&key("from"), &format!("{}.dead", self.from), has_connection)
                .map_err(|e| match e {
                    ConfigError::Invalid { key, problem } => ConfigError::Invalid {
                        key,
                        problem: format!("{problem} (with `.dead` added, the default dead_letter; set `dead_letter` or use a shorter name)"),
                    },
                    other => other,
                })?,
        }
        if self.concurrency == 0 {
            return Err(invalid(key("concurrency"), "must be at least 1"));
        }
        if self.max_outputs == Some(0) {
            return Err(invalid(key("max_outputs"), "must be at least 1"));
        }
        if self.max_deliveries == 0 {
            return Err(invalid(key("max_deliveries"), "must be at least 1"));
        }
        self.reply_grants()
            .map_err(|e| invalid(key("reply_to_allow"), e.to_string()))?;
        for (i, plugin) in self.through.iter().enumerate() {
            let (name, version) = plugin_ref(plugin);
            check_item_name(&key(&format!("through[{i}]")), name)?;
            if version == Some("") {
                return Err(invalid(
                    key(&format!("through[{i}]")),
                    format!("`{plugin}` has no version after `@`"),
                ));
            }
        }
        Ok(())
    }
    /// The route's `reply_to_allow`, as `publish:` grants.
    pub fn reply_grants(&self) -> Result<crate::grant::Grants, crate::grant::GrantError> {
        let patterns: Vec<String> = self
            .reply_to_allow
            .iter()
            .map(|p| format!("publish:{p}"))
            .collect();
        crate::grant::Grants::new(&patterns)
    }
}

/// What a secret is shown as.
pub const HIDDEN: &str = "***";

/// A plugin as a route names it: `name` (its newest enabled version) or `name@version`.
pub fn plugin_ref(text: &str) -> (&str, Option<&str>) {
    match text.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (text, None),
    }
}

fn check_address(
    key: &str,
    address: &str,
    has_connection: &dyn Fn(&str) -> bool,
) -> Result<(), ConfigError> {
    let Some((connection, rest)) = address.split_once(':') else {
        return Err(invalid(
            key,
            format!("`{address}` is not connection:address"),
        ));
    };
    if rest.is_empty() {
        return Err(invalid(
            key,
            format!("`{address}` has no address after the colon"),
        ));
    }
    if !has_connection(connection) {
        return Err(invalid(
            key,
            format!("`{address}` names connection `{connection}`, which is not configured"),
        ));
    }
    // A queue, or an exchange and a routing key: each within what brokers take.
    let (name, routing_key) = rest.split_once('/').unwrap_or((rest, ""));
    check_name(key, name)?;
    check_routing_key(key, routing_key)
}

/// Whether a header, a URL's query parameter or a plugin's config value holds a secret
/// (`Authorization`, `password`, `token`, `api_key`, …), by its name.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "password",
        "passwd",
        "token",
        "secret",
        "key",
        "credential",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// `url` with its secrets hidden, for messages, logs and answers: the password in the
/// authority (`amqp://user:***@host`), an http(s) URL's user name too (a token:
/// `https://***@host`, `https://***:***@host`), another scheme's user name when it stands
/// alone with no password anywhere, and query parameters with secret names (`?token=***`,
/// PostgreSQL's `password=`). Parsed with the `url` crate; what it cannot parse is hidden by its shape.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.cannot_be_a_base() => {
            let secret_query = parsed.query_pairs().any(|(name, _)| is_secret_name(&name));
            // On the web a URL's user name is a credential more often than not
            // (`https://TOKEN@host`, `https://TOKEN:x-oauth-basic@host`); elsewhere a user
            // name alone is hidden unless the password is plainly in the query (PostgreSQL's
            // `postgres://user@host/db?password=…`).
            let web = matches!(parsed.scheme(), "http" | "https" | "ws" | "wss");
            let password_in_query = parsed.query_pairs().any(|(name, _)| {
                let name = name.to_ascii_lowercase();
                name.contains("password") || name.contains("passwd")
            });
            let has_password = parsed.password().is_some();
            if has_password {
                let _ = parsed.set_password(Some(HIDDEN));
            }
            if !parsed.username().is_empty() && (web || (!has_password && !password_in_query)) {
                let _ = parsed.set_username(HIDDEN);
            }
            if secret_query {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(name, value)| {
                        let value = if is_secret_name(&name) {
                            HIDDEN.to_owned()
                        } else {
                            value.into_owned()
                        };
                        (name.into_owned(), value)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        _ => redact_by_shape(url),
    }
}

/// [`redact`] for what is not a URL the parser takes: whatever stands between `://` and the
/// last `@` is hidden but a user name before a `:`, and secret query values.
fn redact_by_shape(url: &str) -> String {
    let mut shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:{HIDDEN}{}", &url[..scheme + 3], &url[at..]),
                None => format!("{}{HIDDEN}{}", &url[..scheme + 3], &url[at..]),
            }
        }
        _ => url.to_owned(),
    };
    if let Some(query) = shown.find('?') {
        let (base, params) = shown.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if is_secret_name(name) => format!("{name}={HIDDEN}"),
                _ => param.to_owned(),
            })
            .collect();
        shown = format!("{base}{}", params.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wharf.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path))
    }

    #[test]
    fn no_file_means_the_embedded_defaults_and_the_demo_route() {
        let config = Config::default();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.database, "sqlite://wharf.db");
        assert!(matches!(
            config.connections["local"],
            ConnectionConfig::Embedded(_)
        ));
        assert_eq!(config.routes[0].from, "local:demo.in");
        assert_eq!(config.routes[0].to.as_deref(), Some("local:demo.out"));
    }

    #[test]
    fn a_file_is_read_and_local_is_always_there() {
        let config = load_text(
            r#"
            [server]
            listen = "127.0.0.1:9999"
            plugin_dir = "/nonexistent"
            [plugins.up]
            path = "up.wasm"
            timeout_ms = 50
            [[routes]]
            name = "r"
            from = "local:a"
            through = ["up"]
            to = "local:b"
            retry = { max = 2, backoff_ms = 10 }
            "#,
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.plugins["up"].timeout_ms, 50);
        assert_eq!(config.routes[0].retry.max, 2);
        assert_eq!(config.routes[0].retry.max_backoff_ms, 30_000);
        assert!(config.connections.contains_key("local"));
    }

    #[test]
    fn amqp_connections_are_checked_by_key() {
        let base =
            "[server]\nplugin_dir = \"/nonexistent\"\n[connections.rabbit]\nkind = \"amqp\"\n";
        let e = load_text(base).unwrap_err().to_string();
        assert!(e.contains("connections.rabbit.url"), "{e}");
        let e = load_text(&format!("{base}url = \"http://x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("connections.rabbit.url") && e.contains("http://x"),
            "{e}"
        );
        let e = load_text(&format!(
            "{base}url = \"amqp://u:secret@h/%2f\"\n[[connections.rabbit.queues]]\nname = \"q\"\ntype = \"stream\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("connections.rabbit.queues[0].type"), "{e}");
        let e = load_text(&format!(
            "{base}url = \"amqp://h\"\ntls = {{ cert = \"c.pem\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("connections.rabbit.tls"), "{e}");
        load_text(&format!(
            "{base}url = \"amqps://h\"\ntls = {{ pkcs12 = \"c.p12\", pkcs12_password = \"x\" }}\n"
        ))
        .expect("a PKCS#12 bundle alone is a client certificate");
        let e = load_text(&format!("{base}url = \"amqp://h\"\nurll = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("urll"), "{e}");
        let config = load_text(&format!(
            "{base}url = \"amqp://h\"\nurls = [\"amqp://h2\"]\n[[connections.rabbit.exchanges]]\nname = \"events\"\ntype = \"topic\"\n"
        ))
        .unwrap();
        let ConnectionConfig::Amqp(amqp) = &config.connections["rabbit"] else {
            panic!("an amqp connection");
        };
        assert_eq!(amqp.all_urls(), ["amqp://h", "amqp://h2"]);
        assert!(amqp.exchanges[0].durable);
        assert_eq!(redact("amqp://u:secret@h/%2f"), "amqp://u:***@h/%2f");
        assert_eq!(
            redact("https://ghp_TOKEN123@api.example.com/hooks"),
            "https://***@api.example.com/hooks"
        );
        assert_eq!(
            redact("https://h.example/x?api_key=k1&page=2"),
            "https://h.example/x?api_key=***&page=2"
        );
        assert_eq!(
            redact("https://ghp_TOKEN123:x-oauth-basic@github.com/o/r"),
            "https://***:***@github.com/o/r"
        );
        assert_eq!(
            redact("https://ghp_TOKEN123@h.example/?signature=s1"),
            "https://***@h.example/?signature=***"
        );
        assert_eq!(redact("not a url :// tok@en"), "not a url ://***@en");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=secret&sslpassword=key"),
            "postgres://u@h/db?sslmode=require&password=***&sslpassword=***"
        );
        let mut config = Config::default();
        config.server.database = "postgres://u:hunter2@h/db".into();
        config.connections.insert(
            "rabbit".into(),
            ConnectionConfig::Amqp(Box::new(AmqpConfig {
                url: Some("amqp://u:hunter2@h/%2f".into()),
                urls: vec!["amqps://u:hunter2@h2/%2f".into()],
                tls: Some(TlsConfig {
                    ca: None,
                    cert: None,
                    key: None,
                    pkcs12: Some("id.p12".into()),
                    pkcs12_password: "hunter2".into(),
                }),
                ..AmqpConfig::default()
            })),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn limits_that_would_lose_or_loop_messages_are_refused_by_key() {
        let base = "[server]\nplugin_dir = \"/nonexistent\"\n[connections.rabbit]\nkind = \"amqp\"\nurl = \"amqp://h\"\n";
        // A queue the broker would silently trim or expire.
        for limit in ["max_length = 10", "message_ttl_ms = 1000"] {
            let e = load_text(&format!(
                "{base}[[connections.rabbit.queues]]\nname = \"q\"\n{limit}\n"
            ))
            .unwrap_err()
            .to_string();
            let field = limit.split(' ').next().unwrap();
            assert!(
                e.contains(&format!("connections.rabbit.queues[0].{field}"))
                    && e.contains("dead_letter_exchange"),
                "{e}"
            );
        }
        // With a dead-letter exchange they keep what they remove.
        load_text(&format!(
            "{base}[[connections.rabbit.queues]]\nname = \"q\"\nmax_length = 10\ndead_letter_exchange = \"\"\ndead_letter_routing_key = \"q.dead\"\n"
        ))
        .unwrap();
        let long = "q".repeat(256);
        let e = load_text(&format!(
            "{base}[[connections.rabbit.queues]]\nname = \"{long}\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("connections.rabbit.queues[0].name") && e.contains("255"),
            "{e}"
        );
        let e = load_text(
            "[server]\nplugin_dir = \"/nonexistent\"\n[connections.local]\nkind = \"embedded\"\n[[connections.local.queues]]\nname = \"q\"\nmax_deliveries = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("connections.local.queues[0].max_deliveries"),
            "{e}"
        );
        let route = "[server]\nplugin_dir = \"/nonexistent\"\n[[routes]]\nname = \"r\"\nfrom = \"local:a\"\nto = \"local:b\"\n";
        for (line, key) in [
            ("max_outputs = 0", "routes[0].max_outputs"),
            ("max_deliveries = 0", "routes[0].max_deliveries"),
            ("reply_to_allow = [\"nocolon\"]", "routes[0].reply_to_allow"),
        ] {
            let e = load_text(&format!("{route}{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{line}: {e}");
        }
        let e = load_text("[server]\nplugin_dir = \"/nonexistent\"\nmax_outputs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.max_outputs"), "{e}");
    }

    #[test]
    fn a_file_without_routes_runs_none() {
        let config = load_text("[server]\nplugin_dir = \"/nonexistent\"\n").unwrap();
        assert!(config.routes.is_empty());
        assert_eq!(config.connections.len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_text("[server]\nlisten = 12\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
        let e = load_text("[server]\nlisen = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = load_text("[[routes]]\nname = \"r\"\nfrom = \"nowhere:q\"\nto = \"local:b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("routes[0].from") && e.contains("nowhere"), "{e}");
        let e = load_text("[[routes]]\nname = \"r\"\nfrom = \"local:a\"\nthrough = [\"ghost\"]\nto = \"local:b\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("routes[0].through") && e.contains("ghost"),
            "{e}"
        );
        let e = Config::load(Some(Path::new("/no/such/wharf.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
