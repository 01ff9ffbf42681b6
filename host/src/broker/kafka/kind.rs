//! What a Kafka connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, redacted, tested, opened and given its topology.

use super::config::{KAFKA_OWN_SETTINGS, KafkaConfig, is_kafka_topic};
use super::{KafkaBroker, create_topics, test, topics_for};
use crate::broker::registry::{
    Applied, Capabilities, Events, Field, Input, Kind, Opening, TLS_CA, TLS_CERT, TLS_KEY,
    TransportConfig,
};
use crate::broker::{BrokerError, ConnectionTest, Producer};
use crate::check::{ConfigError, invalid};
use crate::redact::{HIDDEN, hidden_in, redacted_map};
use crate::store::Store;
use crate::tls::bundle_password_kept;
use crate::units::RouteConfig;

impl TransportConfig for KafkaConfig {
    const KIND: Kind = Kind {
        name: "kafka",
        title: "Kafka",
        address_field: Some("brokers"),
        fields: &[
            Field {
                path: "brokers",
                flag: "brokers",
                label: "Bootstrap brokers",
                help: "host:9092[,host2:9092...]",
                input: Input::Text,
            },
            Field {
                path: "group",
                flag: "group",
                label: "Group prefix",
                help: "a route's consumer group is {group}.{route} (wharf unless set)",
                input: Input::Text,
            },
            Field {
                path: "sasl.mechanism",
                flag: "sasl-mechanism",
                label: "SASL mechanism",
                help: "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN unless set)",
                input: Input::Text,
            },
            Field {
                path: "sasl.username",
                flag: "sasl-username",
                label: "SASL user",
                help: "",
                input: Input::Text,
            },
            Field {
                path: "sasl.password",
                flag: "sasl-password",
                label: "SASL password",
                help: "never shown back",
                input: Input::Secret,
            },
            Field {
                path: "settings",
                flag: "setting",
                label: "librdkafka settings",
                help: "NAME=VALUE, one a line",
                input: Input::Pairs,
            },
            TLS_CA,
            TLS_CERT,
            TLS_KEY,
        ],
        can: Capabilities {
            events: Events::Log,
            subscriptions: true,
            depth: true,
            purge: true,
            peek: true,
            leases: true,
            lag: true,
            ingress: false,
        },
    };

    fn check(&self, key: &str) -> Result<(), ConfigError> {
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
    /// The same definition with the SASL password and secret settings hidden.
    fn redacted(&self) -> Self {
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
    fn keep_secrets(&mut self, old: &Self) -> Result<(), ConfigError> {
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
    fn hidden_field(&self) -> Option<String> {
        self.sasl
            .as_ref()
            .filter(|sasl| sasl.password == HIDDEN)
            .map(|_| "sasl.password".to_owned())
            .or_else(|| hidden_in("settings", &self.settings))
            .or_else(|| hidden_in("producer", &self.producer))
            .or_else(|| hidden_in("consumer", &self.consumer))
            .or_else(|| crate::tls::hidden_bundle(&self.tls))
    }
    async fn test(&self, name: &str, _store: &Store) -> ConnectionTest {
        test(name, self).await
    }
    async fn open(&self, name: &str, at: &Opening<'_>) -> Result<Producer, String> {
        KafkaBroker::start(name, self.clone(), at.store.clone(), at.routes)
            .map(Producer::new)
            .map_err(|e| e.to_string())
    }
    fn schema(&self, name: &str, routes: &[RouteConfig]) -> Option<Vec<String>> {
        Some(
            topics_for(name, self, routes)
                .iter()
                .map(|t| {
                    format!(
                        "topic {} (partitions {}, replication {}{})",
                        t.name,
                        t.partitions,
                        t.replication,
                        t.settings
                            .iter()
                            .map(|(k, v)| format!(", {k}={v}"))
                            .collect::<String>()
                    )
                })
                .collect(),
        )
    }
    async fn apply_schema(
        &self,
        name: &str,
        routes: &[RouteConfig],
    ) -> Result<Option<Applied>, BrokerError> {
        let topics = topics_for(name, self, routes);
        let report = create_topics(name, self, &topics).await?;
        Ok(Some((self.brokers.clone(), report)))
    }
}
