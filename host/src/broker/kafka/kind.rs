//! What a Kafka connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, tested, opened and given its topology.

use super::config::KafkaConfig;
use super::{KafkaBroker, create_topics, test, topics_for};
use crate::broker::registry::{
    Applied, Capabilities, Events, Field, Input, Kind, TLS_CA, TLS_CERT, TLS_KEY, TransportConfig,
};
use crate::broker::{BrokerError, ConnectionTest, Producer};
use crate::check::ConfigError;
use crate::store::Store;
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

    fn check(&self, prefix: &str) -> Result<(), ConfigError> {
        self.validate(prefix)
    }
    fn redacted(&self) -> Self {
        KafkaConfig::redacted(self)
    }
    fn keep_secrets(&mut self, stored: &Self) -> Result<(), ConfigError> {
        KafkaConfig::keep_secrets(self, stored)
    }
    fn hidden_field(&self) -> Option<String> {
        KafkaConfig::hidden_field(self)
    }
    async fn test(&self, name: &str, _store: &Store) -> ConnectionTest {
        test(name, self).await
    }
    async fn open(
        &self,
        name: &str,
        store: &Store,
        routes: &[RouteConfig],
    ) -> Result<Producer, String> {
        KafkaBroker::start(name, self.clone(), store.clone(), routes)
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
