//! A Kafka connection's definition and its checks.

use crate::tls::TlsConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// `PLAIN` (unless set), `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(default = "plain")]
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

fn plain() -> String {
    "PLAIN".into()
}

fn one() -> i32 {
    1
}

/// Settings Wharf sets itself, for its delivery guarantees: not taken from a definition.
pub(super) const KAFKA_OWN_SETTINGS: [&str; 6] = [
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

impl KafkaConfig {}
