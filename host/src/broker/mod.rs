//! Transports: the only module that knows brokers.
//!
//! Every transport offers the same two halves. A [`Consumer`] yields [`Delivery`]s, each with
//! an [`AckHandle`] that settles it: `ack` when its outputs are confirmed, `nack` to return it
//! (now or after a delay) or dead-letter it. A producer's send completes only when the broker
//! has confirmed the message. The set of transports is closed, so each half is an enum with a
//! variant per transport (a module each): the embedded broker, AMQP (RabbitMQ) and HTTP. An
//! HTTP connection consumes from queues it holds in the embedded broker (what its ingress
//! accepted), so its deliveries are the embedded broker's; its producer sends requests.
//!
//! The shape leaves room for what comes: Kafka's `AckHandle` will mark an offset done and
//! commit per partition in order.

pub mod amqp;
pub mod embedded;
pub mod http;

pub use amqp::{AmqpAck, AmqpBroker, AmqpConsumer};
pub use embedded::{EmbeddedAck, EmbeddedBroker, EmbeddedConfig, EmbeddedConsumer};
pub use http::HttpBroker;
// Addresses and the name rules every transport keeps live beside the transports, not in them.
pub(crate) use crate::address::shorten;
pub use crate::address::{Address, InvalidAddress, MAX_NAME_BYTES, check_name};

use crate::message::{HeaderValue, Message};
use crate::store::StoreError;
use std::time::Duration;

/// What went wrong in a transport.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("`{address}` is not a valid address: {problem}")]
    InvalidAddress { address: String, problem: String },
    #[error("the message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The delivery's lease ran out (visibility timeout) and the message was delivered again,
    /// so this settlement came too late and changed nothing.
    #[error(
        "message `{id}` from `{queue}` was not settled: its visibility timeout ran out and it was delivered again"
    )]
    LeaseLost { queue: String, id: String },
    #[error("embedded broker: {0}")]
    Store(#[from] StoreError),
    #[error("the broker connection is closed")]
    Closed,
    #[error("{0}")]
    Amqp(String),
    #[error("connection `{connection}` is down ({detail}); try again when it is back")]
    Unavailable { connection: String, detail: String },
    /// A `mandatory` message no queue would take.
    #[error("no queue takes messages sent to {target} ({reason}); declare the queue or binding")]
    Unroutable { target: String, reason: String },
    #[error("message field `{field}` cannot be sent: {problem}")]
    Mapping { field: String, problem: String },
    /// An HTTP endpoint answered with a status other than 2xx.
    #[error("{request} answered {status}: {body}")]
    HttpStatus {
        request: String,
        status: u16,
        body: String,
    },
}

impl From<InvalidAddress> for BrokerError {
    fn from(e: InvalidAddress) -> Self {
        BrokerError::InvalidAddress {
            address: e.address,
            problem: e.problem,
        }
    }
}

impl BrokerError {
    /// Whether trying again later may succeed: a broker that is down or busy may come back;
    /// a name, a size or a field that is wrong will be wrong next time too.
    /// An HTTP endpoint's 5xx, 408 (timeout) and 429 (busy) may pass; its other 4xx will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            BrokerError::InvalidAddress { .. }
            | BrokerError::TooLarge { .. }
            | BrokerError::Mapping { .. } => false,
            BrokerError::HttpStatus { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            _ => true,
        }
    }

    /// The error's kind, for a dead letter's `exception_name`.
    pub fn exception_name(&self) -> &'static str {
        match self {
            BrokerError::InvalidAddress { .. } => "InvalidAddress",
            BrokerError::TooLarge { .. } => "TooLarge",
            BrokerError::LeaseLost { .. } => "LeaseLost",
            BrokerError::Store(_) => "Store",
            BrokerError::Closed => "Closed",
            BrokerError::Amqp(_) => "Broker",
            BrokerError::Unavailable { .. } => "Unavailable",
            BrokerError::Unroutable { .. } => "Unroutable",
            BrokerError::Mapping { .. } => "InvalidMessage",
            BrokerError::HttpStatus { status, .. } if *status >= 500 => "HttpServerError",
            BrokerError::HttpStatus { status, .. } if *status >= 400 => "HttpClientError",
            BrokerError::HttpStatus { .. } => "HttpRedirect",
        }
    }
}

/// Checks what every transport needs of a message before it is sent.
pub fn check_message(msg: &Message) -> Result<(), BrokerError> {
    msg.check_text().map_err(|e| BrokerError::Mapping {
        field: e.field,
        problem: e.problem,
    })
}

/// One message taken from a queue, to be settled through its [`AckHandle`].
#[derive(Debug)]
pub struct Delivery {
    pub message: Message,
    /// How many times the message has been delivered, this time included.
    pub deliveries: u32,
    pub ack: AckHandle,
}

impl Delivery {
    /// Whether the message was delivered before (and not acked then).
    pub fn redelivered(&self) -> bool {
        self.deliveries > 1
    }
}

/// What to do with a message that was not handled.
#[derive(Debug, Clone)]
pub enum Nack {
    /// Make it ready again at once (behind nothing: FIFO order is not kept for redeliveries).
    Requeue,
    /// Make it ready again after a delay, without holding it unacked meanwhile.
    RequeueAfter(Duration),
    /// Move it to the queue's dead letters, adding these headers.
    DeadLetter(DeadLetter),
}

/// The headers a dead letter carries, besides its original ones.
#[derive(Debug, Clone, Default)]
pub struct DeadLetter {
    pub headers: Vec<(String, HeaderValue)>,
}

impl DeadLetter {
    /// A dead letter with the `exception` headers: the message, the error's kind (`Trap`,
    /// `Rejected`, `Expired`, ...) and where it came from (`plugin`, `host` or `broker`).
    pub fn new(exception: impl Into<String>, name: &str, source: &str) -> Self {
        DeadLetter {
            headers: vec![
                ("exception".into(), HeaderValue::Text(exception.into())),
                ("exception_name".into(), HeaderValue::Text(name.into())),
                ("exception_type".into(), HeaderValue::Text(source.into())),
            ],
        }
    }

    pub fn with_header(mut self, name: &str, value: HeaderValue) -> Self {
        self.headers.push((name.into(), value));
        self
    }
}

/// Settles one delivery.
#[derive(Debug)]
pub enum AckHandle {
    Embedded(EmbeddedAck),
    Amqp(AmqpAck),
}

impl AckHandle {
    /// The message is done with: remove it from its queue.
    pub async fn ack(self) -> Result<(), BrokerError> {
        match self {
            AckHandle::Embedded(ack) => ack.ack().await,
            AckHandle::Amqp(ack) => ack.ack().await,
        }
    }

    pub async fn nack(self, nack: Nack) -> Result<(), BrokerError> {
        match self {
            AckHandle::Embedded(ack) => ack.nack(nack).await,
            AckHandle::Amqp(ack) => ack.nack(nack).await,
        }
    }
}

/// A stream of deliveries from one address.
pub enum Consumer {
    Embedded(EmbeddedConsumer),
    Amqp(AmqpConsumer),
}

impl Consumer {
    /// The next delivery; waits until there is one. An error means the consumer is finished
    /// and its owner should reconnect or give up.
    pub async fn next(&mut self) -> Result<Delivery, BrokerError> {
        match self {
            Consumer::Embedded(consumer) => consumer.next().await,
            Consumer::Amqp(consumer) => consumer.next().await,
        }
    }

    /// Stops consuming and returns what was taken but not handed out.
    pub async fn close(self) {
        match self {
            Consumer::Embedded(consumer) => consumer.close().await,
            Consumer::Amqp(consumer) => consumer.close().await,
        }
    }
}

/// One connection's broker, as its senders hold it. A send completes only once the broker has
/// confirmed the message (committed, for the embedded broker), so its caller may then ack the
/// input that produced it.
#[derive(Clone)]
pub enum Producer {
    Embedded(EmbeddedBroker),
    Amqp(AmqpBroker),
    Http(HttpBroker),
}

impl Producer {
    /// Closes the broker connection (the embedded broker lives in the store: nothing to do).
    pub async fn close(&self) {
        if let Producer::Amqp(broker) = self {
            broker.close().await;
        }
    }

    /// Sends `msg` to `address` (for the embedded broker, a queue) and waits for the confirm.
    pub async fn send(&self, address: &str, msg: Message) -> Result<(), BrokerError> {
        match self {
            Producer::Embedded(broker) => broker.publish(address, msg).await,
            Producer::Amqp(broker) => broker.publish(address, msg).await,
            Producer::Http(broker) => broker.publish(address, msg).await,
        }
    }

    /// Sends `msg` so that it is ready only after `delay` (retries re-queued with a delay).
    pub async fn send_delayed(
        &self,
        address: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        match self {
            Producer::Embedded(broker) => broker.publish_delayed(address, msg, delay).await,
            Producer::Amqp(broker) => broker.publish_delayed(address, msg, delay).await,
            Producer::Http(broker) => broker.publish_delayed(address, msg, delay).await,
        }
    }
}

/// The host's broker connections, by name: each is the handle its producers share, and
/// every other operation dispatches on it. Shared by every clone: the supervisor adds,
/// replaces and removes connections while the host runs, and routes see the change at their
/// next send.
#[derive(Clone, Default)]
pub struct Connections {
    brokers: std::sync::Arc<std::sync::RwLock<std::collections::BTreeMap<String, Producer>>>,
    /// This host's own reply queue, where replies to its requests are handed straight to
    /// their callers.
    replies: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<dyn ReplySink>>>,
}

/// Takes replies addressed to this host's reply queue straight to their waiting callers: a
/// reply made on this host for a request made on this host need not cross a broker (nor the
/// database) to reach a caller in the same process.
pub trait ReplySink: Send + Sync {
    /// The reply queue's name (the same on every connection).
    fn queue(&self) -> &str;
    /// Hands `reply` to its caller, or gives it back when none of this process waits for it
    /// (a late or unknown reply goes the broker's way, to be logged or dead-lettered there).
    fn deliver(&self, reply: Message) -> Result<(), Box<Message>>;
}

/// How full a queue is, as far as its transport can tell.
#[derive(Debug, Clone)]
pub enum QueueDepth {
    Embedded(crate::store::QueueStats),
    /// What AMQP tells: messages ready (not the unacked ones) and consumers.
    Amqp {
        ready: u32,
        consumers: u32,
    },
}

impl Connections {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, std::collections::BTreeMap<String, Producer>> {
        self.brokers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds connection `name`, or replaces it; returns the one it replaced.
    pub fn insert(&self, name: &str, producer: Producer) -> Option<Producer> {
        self.brokers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), producer)
    }

    /// Sets where replies to this host's requests go without a broker (once).
    pub fn set_reply_sink(&self, sink: std::sync::Arc<dyn ReplySink>) {
        let _ = self.replies.set(sink);
    }

    /// Sends `msg` to `to` and waits for the confirm; a reply to one of this host's own
    /// requests, whose caller waits here, is handed to it at once.
    pub async fn send(&self, to: &Address, msg: Message) -> Result<(), BrokerError> {
        let msg = match self.replies.get() {
            Some(sink) if to.address == sink.queue() => match sink.deliver(msg) {
                Ok(()) => return Ok(()),
                Err(msg) => *msg,
            },
            _ => msg,
        };
        self.producer(to)?.send(&to.address, msg).await
    }

    /// Removes connection `name`; returns it, to be closed.
    pub fn remove(&self, name: &str) -> Option<Producer> {
        self.brokers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    pub fn add_embedded(&mut self, name: &str, broker: EmbeddedBroker) {
        self.insert(name, Producer::Embedded(broker));
    }

    pub fn add_amqp(&mut self, name: &str, broker: AmqpBroker) {
        self.insert(name, Producer::Amqp(broker));
    }

    /// Whether a connection of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Whether connection `name` keeps its queues in the host's database (an embedded
    /// broker, or an HTTP connection's ingress).
    pub fn is_embedded(&self, name: &str) -> bool {
        matches!(
            self.read().get(name),
            Some(Producer::Embedded(_) | Producer::Http(_))
        )
    }

    /// The names of every connection.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    pub fn amqp(&self, name: &str) -> Option<AmqpBroker> {
        match self.read().get(name) {
            Some(Producer::Amqp(broker)) => Some(broker.clone()),
            _ => None,
        }
    }

    pub fn http(&self, name: &str) -> Option<HttpBroker> {
        match self.read().get(name) {
            Some(Producer::Http(broker)) => Some(broker.clone()),
            _ => None,
        }
    }

    fn broker(&self, address: &Address) -> Result<Producer, BrokerError> {
        self.read()
            .get(&address.connection)
            .cloned()
            .ok_or_else(|| BrokerError::InvalidAddress {
                address: address.to_string(),
                problem: format!("there is no connection named `{}`", address.connection),
            })
    }

    pub fn producer(&self, address: &Address) -> Result<Producer, BrokerError> {
        self.broker(address)
    }

    pub async fn consume(
        &self,
        address: &Address,
        prefetch: usize,
    ) -> Result<Consumer, BrokerError> {
        self.open_consumer(address, prefetch, true).await
    }

    /// Like [`Connections::consume`], for a consumer that enforces its own delivery limit
    /// from each delivery's count (a route): the broker does not dead-letter on its own.
    pub async fn consume_counted(
        &self,
        address: &Address,
        prefetch: usize,
    ) -> Result<Consumer, BrokerError> {
        self.open_consumer(address, prefetch, false).await
    }

    /// `limited`: whether the broker itself dead-letters past a queue's delivery limit (only
    /// the embedded broker has one of its own; AMQP always reports the count).
    async fn open_consumer(
        &self,
        address: &Address,
        prefetch: usize,
        limited: bool,
    ) -> Result<Consumer, BrokerError> {
        Ok(match self.broker(address)? {
            Producer::Embedded(broker) => Consumer::Embedded(
                broker
                    .consume_limited(&address.address, prefetch, limited)
                    .await?,
            ),
            Producer::Amqp(broker) => {
                Consumer::Amqp(broker.consume(&address.address, prefetch).await?)
            }
            Producer::Http(broker) => Consumer::Embedded(
                broker
                    .held()
                    .consume_limited(&address.address, prefetch, limited)
                    .await?,
            ),
        })
    }

    /// How many messages wait in the queue at `address`.
    pub async fn depth(&self, address: &Address) -> Result<QueueDepth, BrokerError> {
        Ok(match self.broker(address)? {
            Producer::Embedded(broker) => {
                QueueDepth::Embedded(broker.stats(&address.address).await?)
            }
            Producer::Http(broker) => {
                QueueDepth::Embedded(broker.held().stats(&address.address).await?)
            }
            Producer::Amqp(broker) => {
                let (ready, consumers) = broker.queue_depth(&address.address).await?;
                QueueDepth::Amqp { ready, consumers }
            }
        })
    }

    /// Up to `count` ready messages of the queue at `address`, left in the queue; no more
    /// than `max_bytes` of payload (but always the first).
    pub async fn peek(
        &self,
        address: &Address,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        match self.broker(address)? {
            Producer::Embedded(broker) => broker.peek(&address.address, count, max_bytes).await,
            Producer::Amqp(broker) => broker.peek(&address.address, count, max_bytes).await,
            Producer::Http(broker) => broker.held().peek(&address.address, count, max_bytes).await,
        }
    }

    /// The embedded broker holding connection `name`'s queues: an embedded connection's
    /// own, or an HTTP connection's (its ingress queues and dead letters).
    pub fn embedded(&self, name: &str) -> Option<EmbeddedBroker> {
        match self.read().get(name) {
            Some(Producer::Embedded(broker)) => Some(broker.clone()),
            Some(Producer::Http(broker)) => Some(broker.held().clone()),
            _ => None,
        }
    }

    /// Removes the ready messages of the queue at `address`; returns how many.
    pub async fn purge(&self, address: &Address) -> Result<u64, BrokerError> {
        match self.broker(address)? {
            Producer::Embedded(broker) => broker.purge(&address.address).await,
            Producer::Amqp(broker) => broker.purge(&address.address).await,
            Producer::Http(broker) => broker.held().purge(&address.address).await,
        }
    }

    /// Whether every connection can serve right now; the problem of each that cannot.
    pub async fn check(&self) -> Vec<(String, Result<(), String>)> {
        let brokers = self.read().clone();
        let mut states = Vec::new();
        for (name, broker) in &brokers {
            let state = match broker {
                Producer::Embedded(broker) => {
                    broker.store().ping().await.map_err(|e| e.to_string())
                }
                Producer::Amqp(broker) => broker.check(),
                // Ingress is up while its database answers; an egress endpoint that is down
                // fails its own requests, which are retried.
                Producer::Http(broker) => broker
                    .held()
                    .store()
                    .ping()
                    .await
                    .map_err(|e| e.to_string()),
            };
            states.push((name.clone(), state));
        }
        states
    }

    /// Closes the broker connections (the embedded broker lives in the store).
    pub async fn close(&self) {
        let brokers = self.read().clone();
        for broker in brokers.values() {
            broker.close().await;
        }
    }
}

/// The outcome of a connection test.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectionTest {
    pub ok: bool,
    /// What was tried, and what went wrong.
    pub detail: String,
}

impl ConnectionTest {
    fn new(ok: bool, detail: impl Into<String>) -> ConnectionTest {
        ConnectionTest {
            ok,
            detail: detail.into(),
        }
    }
}

/// Connects to connection `name` as `spec` defines it, afresh, and says whether it works now
/// (not only what a running host last saw): the embedded broker's database answers; a
/// RabbitMQ broker takes a connection (closed at once); an HTTP endpoint answers a HEAD on
/// its base URL through the very client egress uses (its TLS, its headers, no redirects).
pub async fn test_connection(
    name: &str,
    spec: &crate::config::ConnectionConfig,
    store: &crate::store::Store,
) -> ConnectionTest {
    use crate::config::ConnectionConfig;
    match spec {
        ConnectionConfig::Embedded(_) => match store.ping().await {
            Ok(()) => ConnectionTest::new(
                true,
                "the embedded broker lives in this host's database, which answers",
            ),
            Err(e) => ConnectionTest::new(false, format!("the database does not answer: {e}")),
        },
        ConnectionConfig::Http(config) => {
            let Some(base) = &config.base_url else {
                return ConnectionTest::new(
                    true,
                    "ingress only (no base_url): its messages are held in this host's database",
                );
            };
            let shown = crate::config::redact(base);
            let timeout = Duration::from_millis(config.timeout_ms.min(15_000));
            let client = match http::client(name, config, timeout) {
                Ok(client) => client,
                Err(e) => return ConnectionTest::new(false, e.to_string()),
            };
            match client.head(base).send().await {
                // Any answer shows the endpoint is there; what it says of HEAD on its base
                // URL says nothing of the requests routes will send. A redirect is said as
                // it is: egress does not follow one either.
                Ok(answer) if answer.status().is_redirection() => ConnectionTest::new(
                    true,
                    format!(
                        "{shown} answers (HEAD: {}, a redirect, which egress does not follow)",
                        answer.status()
                    ),
                ),
                Ok(answer) => ConnectionTest::new(
                    true,
                    format!("{shown} answers (HEAD: {})", answer.status()),
                ),
                Err(e) => ConnectionTest::new(
                    false,
                    format!("{shown} does not answer: {}", http::reason(e)),
                ),
            }
        }
        ConnectionConfig::Amqp(config) => {
            let mut config = (**config).clone();
            config.connect_timeout_ms = config.connect_timeout_ms.min(5_000);
            let attempt = amqp::declare_once(name, config, amqp::Topology::default());
            match tokio::time::timeout(Duration::from_secs(15), attempt).await {
                Ok(Ok((url, _))) => ConnectionTest::new(true, format!("connected to {url}")),
                Ok(Err(e)) => ConnectionTest::new(false, e.to_string()),
                Err(_) => ConnectionTest::new(false, "no answer within 15 s"),
            }
        }
    }
}
