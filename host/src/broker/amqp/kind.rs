//! What a RabbitMQ connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, redacted, tested, opened and given its topology.

use super::config::AmqpConfig;
use super::{AmqpBroker, declare_once, test, topology_for};
use crate::broker::registry::{
    Applied, Capabilities, Events, Field, Input, Kind, Opening, TLS_CA, TLS_CERT, TLS_KEY,
    TransportConfig,
};
use crate::broker::{BrokerError, ConnectionTest, Producer};
use crate::check::{ConfigError, check_name, check_routing_key, invalid};
use crate::redact::{HIDDEN, redact, shows_hidden};
use crate::store::Store;
use crate::tls::bundle_password_kept;
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

    fn check(&self, key: &str) -> Result<(), ConfigError> {
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
    /// The same definition with its passwords hidden.
    fn redacted(&self) -> Self {
        let mut amqp = self.clone();
        amqp.url = amqp.url.as_deref().map(redact);
        amqp.urls = amqp.urls.iter().map(|u| redact(u)).collect();
        if let Some(tls) = &mut amqp.tls
            && !tls.pkcs12_password.is_empty()
        {
            tls.pkcs12_password = HIDDEN.into();
        }
        amqp
    }
    /// A password shown hidden in a URL keeps the stored one for that very URL only.
    fn keep_secrets(&mut self, old: &Self) -> Result<(), ConfigError> {
        let old_urls: Vec<&String> = old.url.iter().chain(&old.urls).collect();
        if let Some(url) = &mut self.url {
            crate::redact::url_kept("url", url, &old_urls)?;
        }
        for (i, url) in self.urls.iter_mut().enumerate() {
            crate::redact::url_kept(&format!("urls[{i}]"), url, &old_urls)?;
        }
        bundle_password_kept(&mut self.tls, &old.tls)
    }
    /// The first field still holding a secret as shown hidden.
    fn hidden_field(&self) -> Option<String> {
        self.url
            .iter()
            .map(|url| ("url".to_owned(), url))
            .chain(
                self.urls
                    .iter()
                    .enumerate()
                    .map(|(i, url)| (format!("urls[{i}]"), url)),
            )
            .find(|(_, url)| shows_hidden(url))
            .map(|(field, _)| field)
            .or_else(|| crate::tls::hidden_bundle(&self.tls))
    }
    async fn test(&self, name: &str, _store: &Store) -> ConnectionTest {
        test(name, self).await
    }
    async fn open(&self, name: &str, at: &Opening<'_>) -> Result<Producer, String> {
        let topology = topology_for(name, self, at.routes);
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
