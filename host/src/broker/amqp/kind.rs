//! What a RabbitMQ connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, tested, opened and given its topology.

use super::config::AmqpConfig;
use super::{AmqpBroker, declare_once, test, topology_for};
use crate::broker::registry::{
    Applied, Capabilities, Events, Field, Input, Kind, TLS_CA, TLS_CERT, TLS_KEY, TransportConfig,
};
use crate::broker::{BrokerError, ConnectionTest, Producer};
use crate::check::ConfigError;
use crate::store::Store;
use crate::units::RouteConfig;

impl TransportConfig for AmqpConfig {
    const KIND: Kind = Kind {
        name: "amqp",
        title: "RabbitMQ (AMQP)",
        address_field: Some("url"),
        fields: &[
            Field {
                path: "url",
                flag: "broker-url",
                label: "URL",
                help: "the broker: amqp://user:password@host:5672/%2f (the password is never shown back)",
                input: Input::Text,
            },
            TLS_CA,
            TLS_CERT,
            TLS_KEY,
        ],
        can: Capabilities {
            events: Events::Exchange,
            subscriptions: true,
            depth: true,
            purge: true,
            peek: true,
            leases: true,
            lag: false,
            ingress: false,
        },
    };

    fn check(&self, prefix: &str) -> Result<(), ConfigError> {
        self.validate(prefix)
    }
    fn redacted(&self) -> Self {
        AmqpConfig::redacted(self)
    }
    fn keep_secrets(&mut self, stored: &Self) -> Result<(), ConfigError> {
        AmqpConfig::keep_secrets(self, stored)
    }
    fn hidden_field(&self) -> Option<String> {
        AmqpConfig::hidden_field(self)
    }
    async fn test(&self, name: &str, _store: &Store) -> ConnectionTest {
        test(name, self).await
    }
    async fn open(
        &self,
        name: &str,
        _store: &Store,
        routes: &[RouteConfig],
    ) -> Result<Producer, String> {
        let topology = topology_for(name, self, routes);
        AmqpBroker::start(name, self.clone(), topology)
            .map(Producer::new)
            .map_err(|e| e.to_string())
    }
    fn schema(&self, name: &str, routes: &[RouteConfig]) -> Option<Vec<String>> {
        Some(topology_for(name, self, routes).describe())
    }
    async fn apply_schema(
        &self,
        name: &str,
        routes: &[RouteConfig],
    ) -> Result<Option<Applied>, BrokerError> {
        let topology = topology_for(name, self, routes);
        let (url, report) = declare_once(name, self.clone(), topology).await?;
        let report = report
            .into_iter()
            .map(|(item, outcome)| (item, outcome.to_string()))
            .collect();
        Ok(Some((url, report)))
    }
}
