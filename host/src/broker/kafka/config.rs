//! A Kafka connection's definition and its checks.

use crate::check::{ConfigError, invalid};
use crate::redact::{HIDDEN, hidden_in, redacted_map};
use crate::tls::{TlsConfig, bundle_password_kept};
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
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
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
}

impl KafkaConfig {
    /// The same definition with the SASL password and secret settings hidden.
    pub fn redacted(&self) -> KafkaConfig {
        let mut kafka = self.clone();
        if let Some(sasl) = &mut kafka.sasl {
            sasl.password = HIDDEN.into();
        }
        kafka.settings = redacted_map(&kafka.settings);
        kafka.producer = redacted_map(&kafka.producer);
        kafka.consumer = redacted_map(&kafka.consumer);
        if let Some(tls) = &mut kafka.tls
            && !tls.pkcs12_password.is_empty()
        {
            tls.pkcs12_password = HIDDEN.into();
        }
        kafka
    }

    /// Secrets go back only to the same brokers.
    pub fn keep_secrets(&mut self, old: &KafkaConfig) -> Result<(), ConfigError> {
        if self.brokers != old.brokers {
            return Ok(());
        }
        if let (Some(sasl), Some(stored)) = (&mut self.sasl, &old.sasl)
            && sasl.password == HIDDEN
            && sasl.username == stored.username
        {
            sasl.password = stored.password.clone();
        }
        for (part, stored) in [
            (&mut self.settings, &old.settings),
            (&mut self.producer, &old.producer),
            (&mut self.consumer, &old.consumer),
        ] {
            for (name, value) in part.iter_mut() {
                if value == HIDDEN
                    && let Some(original) = stored.get(name)
                {
                    *value = original.clone();
                }
            }
        }
        bundle_password_kept(&mut self.tls, &old.tls)
    }

    /// The first field still holding a secret as shown hidden.
    pub fn hidden_field(&self) -> Option<String> {
        self.sasl
            .as_ref()
            .filter(|sasl| sasl.password == HIDDEN)
            .map(|_| "sasl.password".to_owned())
            .or_else(|| hidden_in("settings", &self.settings))
            .or_else(|| hidden_in("producer", &self.producer))
            .or_else(|| hidden_in("consumer", &self.consumer))
            .or_else(|| crate::tls::hidden_bundle(&self.tls))
    }
}
