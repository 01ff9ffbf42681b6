//! A RabbitMQ (AMQP 0-9-1) connection's definition, the topology it declares, and its checks.

use crate::check::{ConfigError, check_name, check_routing_key, invalid};
use crate::redact::{HIDDEN, redact, shows_hidden};
use crate::tls::{TlsConfig, bundle_password_kept};
use serde::{Deserialize, Serialize};

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

impl AmqpConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
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

impl AmqpConfig {
    /// The same definition with its passwords hidden.
    pub fn redacted(&self) -> AmqpConfig {
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
    pub fn keep_secrets(&mut self, old: &AmqpConfig) -> Result<(), ConfigError> {
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
    pub fn hidden_field(&self) -> Option<String> {
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
}
