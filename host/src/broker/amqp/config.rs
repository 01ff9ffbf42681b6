//! A RabbitMQ (AMQP 0-9-1) connection's definition, the topology it declares, and its checks.

use crate::redact::redact;
use crate::tls::TlsConfig;
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

impl AmqpConfig {}
