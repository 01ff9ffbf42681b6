//! Transports: the only module that knows brokers.
//!
//! Every transport offers the same two halves. A [`Consumer`] yields [`Delivery`]s, each with
//! an [`AckHandle`] that settles it: `ack` when its outputs are confirmed, `nack` to return it
//! (now or after a delay) or dead-letter it. A [`Producer`]'s send completes only when the
//! broker has confirmed the message. Both are trait objects ([`Source`], [`Settle`],
//! [`Transport`]): each transport is a folder of this module (its definition, its registry
//! entry, its client), and [`registry`] is the one list of them. What differs between kinds is
//! asked of [`Capabilities`], never of a kind's name.

pub mod amqp;
mod connections;
pub mod embedded;
pub mod http;
pub mod kafka;
pub mod log;
pub mod mqtt;
pub mod nats;
pub mod registry;
mod textual;

pub use amqp::{AmqpAck, AmqpBroker, AmqpConsumer};
pub use connections::{Connections, HealthStates, ReplySink};
pub use embedded::{EmbeddedAck, EmbeddedBroker, EmbeddedConfig, EmbeddedConsumer};
pub use http::HttpBroker;
pub use kafka::KafkaBroker;
pub use registry::{Capabilities, ConnectionConfig, Events};
// Addresses and the name rules every transport keeps live beside the transports, not in them.
pub(crate) use crate::address::shorten;
pub use crate::address::{Address, InvalidAddress, MAX_NAME_BYTES, check_name};

use crate::message::{HeaderValue, Message};
use crate::store::StoreError;
use crate::units::RouteConfig;
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
    /// What a broker said went wrong, in its words.
    #[error("{0}")]
    Broker(String),
    #[error("connection `{connection}` is down ({detail}); try again when it is back")]
    Unavailable { connection: String, detail: String },
    /// A `mandatory` message no queue would take.
    #[error("no queue takes messages sent to {target} ({reason}); declare the queue or binding")]
    Unroutable { target: String, reason: String },
    #[error("message field `{field}` cannot be sent: {problem}")]
    Mapping { field: String, problem: String },
    /// What this transport cannot do at all (count an MQTT queue), in its words.
    #[error("{0}")]
    Unsupported(String),
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
            | BrokerError::Mapping { .. }
            | BrokerError::Unsupported(_) => false,
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
            BrokerError::Broker(_) => "Broker",
            BrokerError::Unavailable { .. } => "Unavailable",
            BrokerError::Unroutable { .. } => "Unroutable",
            BrokerError::Unsupported(_) => "Unsupported",
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

/// Settles one delivery: what every transport's acknowledgement does.
#[async_trait::async_trait]
pub trait Settle: Send + Sync + std::fmt::Debug + 'static {
    /// The message is done with: remove it from its queue (commit its offset).
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    async fn nack(self: Box<Self>, nack: Nack) -> Result<(), BrokerError>;
    /// Keeps the delivery unsettled and away from other consumers for `lease` from now. A
    /// transport whose deliveries stay with their consumer until settled (AMQP, Kafka) has
    /// nothing to do; the embedded broker's return after their visibility timeout otherwise.
    async fn extend(&self, _lease: Duration) -> Result<(), BrokerError> {
        Ok(())
    }
}

/// Settles one delivery, whatever its transport.
#[derive(Debug)]
pub struct AckHandle(Box<dyn Settle>);

impl AckHandle {
    pub fn new(settle: impl Settle) -> AckHandle {
        AckHandle(Box::new(settle))
    }

    /// The message is done with: remove it from its queue.
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.0.ack().await
    }

    pub async fn nack(self, nack: Nack) -> Result<(), BrokerError> {
        self.0.nack(nack).await
    }

    /// Keeps the delivery unsettled for `lease` from now (see [`Settle::extend`]).
    pub async fn extend(&self, lease: Duration) -> Result<(), BrokerError> {
        self.0.extend(lease).await
    }
}

/// Sends `msgs` one after another with `send`, stopping after the first error that may pass
/// later (the rest are not sent, so the results are fewer).
async fn one_by_one<F, Fut>(msgs: Vec<Message>, mut send: F) -> Vec<Result<(), BrokerError>>
where
    F: FnMut(Message) -> Fut,
    Fut: Future<Output = Result<(), BrokerError>>,
{
    let mut results = Vec::with_capacity(msgs.len());
    for msg in msgs {
        let result = send(msg).await;
        let stop = matches!(&result, Err(e) if e.is_retryable());
        results.push(result);
        if stop {
            break;
        }
    }
    results
}

/// How a subscription reads its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The address to consume on the connection.
    pub address: String,
    /// The consumer-group name, where consumers share work by one (Kafka).
    pub group: String,
    /// Whether the address holds every event, not only the matching ones (a Kafka topic),
    /// so the consumer filters by the pattern and retries in place rather than sending a
    /// copy back where every subscriber would see it again.
    pub shared_log: bool,
}

impl Subscribed {
    /// A queue of the subscription's own, bound to the exchange.
    pub fn queue(queue: &str) -> Subscribed {
        Subscribed {
            address: queue.to_owned(),
            group: queue.to_owned(),
            shared_log: false,
        }
    }
}

fn no_events(kind: &str) -> BrokerError {
    let carriers: Vec<&str> = registry::KINDS
        .iter()
        .filter(|k| k.can.events != Events::None)
        .map(|k| k.name)
        .collect();
    BrokerError::Unsupported(format!(
        "a connection of kind `{kind}` carries no events; name a connection of kind {} in [events]",
        carriers.join(", ")
    ))
}

/// A transport's stream of deliveries from one address.
#[async_trait::async_trait]
pub trait Source: Send + 'static {
    /// The next delivery; waits until there is one. An error means the consumer is finished
    /// and its owner should reconnect or give up.
    async fn next(&mut self) -> Result<Delivery, BrokerError>;
    /// Stops consuming; what was taken but not handed out goes back.
    async fn close(self: Box<Self>);
    /// Whether a retry stays with this source (a nack with a delay, the delivery count kept
    /// by the source) rather than going back to the address as a copy: where a copy would
    /// lose what the count is read from (MQTT 3.1.1 carries no headers) or be seen by others.
    fn retries_in_place(&self) -> bool {
        false
    }
}

/// A stream of deliveries from one address, whatever its transport.
pub struct Consumer(Box<dyn Source>);

impl Consumer {
    pub fn new(source: impl Source) -> Consumer {
        Consumer(Box::new(source))
    }

    /// The next delivery; waits until there is one. An error means the consumer is finished
    /// and its owner should reconnect or give up.
    pub async fn next(&mut self) -> Result<Delivery, BrokerError> {
        self.0.next().await
    }

    /// Stops consuming and returns what was taken but not handed out.
    pub async fn close(self) {
        self.0.close().await
    }

    /// Whether a retry stays with this consumer (see [`Source::retries_in_place`]).
    pub fn retries_in_place(&self) -> bool {
        self.0.retries_in_place()
    }
}

/// How a consumer is opened.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Deliveries handed out and not yet settled, at most.
    pub prefetch: usize,
    /// Whether the broker itself dead-letters past a queue's delivery limit; a route, which
    /// counts deliveries and dead-letters on its own, says no.
    pub limited: bool,
    /// The consuming unit's stable name (a route's), for transports whose consumers share
    /// work by a group name (Kafka's consumer groups): the same name on every host, so that
    /// hosts running one route share its input and two routes never share a group. `None`
    /// for a passing consumer (a take, the live view), which gets a group of its own.
    pub unit: Option<String>,
    /// A passing consumer that may share one channel (or client) with the others of its
    /// queue that say so, where the transport can: leased takes, which keep what they took
    /// unsettled for long, so a caller's many small leases hold one channel, not one each.
    pub shared: bool,
    /// Whether a dead letter of this consumer's deliveries carries the headers its taker
    /// gives (`Nack::DeadLetter`'s exception): a transport whose own dead-lettering cannot
    /// add headers (RabbitMQ's dead-letter exchange) keeps a copy of each delivery to send in
    /// its place, within a budget. For takers that cannot send the copy themselves (leased
    /// takes, daemons); a route sends its own.
    pub dead_letter_copies: bool,
}

impl ConsumeOptions {
    pub fn new(prefetch: usize) -> ConsumeOptions {
        ConsumeOptions {
            prefetch,
            limited: true,
            unit: None,
            shared: false,
            dead_letter_copies: false,
        }
    }
}

/// How full a queue (or topic) is, as far as its transport can tell: what it cannot tell is
/// left out.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Depth {
    pub connection: String,
    pub queue: String,
    /// Every message held, whatever its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<u64>,
    /// Messages a consumer could take now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<u64>,
    /// Messages taken and not yet settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
    /// Messages waiting out a delay before they become ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delayed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<u32>,
    /// A log's partitions (Kafka): each one's first and next offsets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionDepth>,
}

/// One partition of a topic: the offsets it holds.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PartitionDepth {
    pub partition: i32,
    /// The oldest offset still kept.
    pub low: i64,
    /// The offset the next message gets.
    pub high: i64,
}

/// One consumer group's member on this host (a route reading Kafka): the partitions it holds
/// and how far behind each is.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ConsumerState {
    pub connection: String,
    pub group: String,
    /// The unit consuming (a route's name), if it is one.
    pub unit: Option<String>,
    pub partitions: Vec<PartitionLag>,
}

/// A partition assigned to this host, and the records in it not yet read (as last measured;
/// `None` until measured).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: Option<i64>,
}

/// What a transport is: every connection is one. Each transport is a folder of `broker/`
/// implementing this; nothing above `broker/` names one. A send completes only once the
/// broker has confirmed the message (committed, for the embedded broker), so its caller may
/// then ack the input that produced it.
#[async_trait::async_trait]
pub trait Transport: AsAny + Send + Sync + 'static {
    /// Sends `msg` to `address` and waits for the confirm.
    async fn send(&self, address: &str, msg: Message) -> Result<(), BrokerError>;
    /// Sends `msg` so that it is ready only after `delay` (retries re-queued with a delay).
    async fn send_delayed(
        &self,
        address: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError>;
    /// Sends `msgs` to `address` in order, each confirmed; their results in the same order.
    /// By default one after another, stopping after the first error that may pass later (the
    /// rest are not sent, so the results are fewer); a transport that keeps order with many
    /// in flight (one AMQP channel) sends them all at once.
    async fn send_ordered(
        &self,
        address: &str,
        msgs: Vec<Message>,
    ) -> Vec<Result<(), BrokerError>> {
        one_by_one(msgs, |msg| self.send(address, msg)).await
    }
    /// Consumes from `address`.
    async fn consume(
        &self,
        address: &str,
        options: ConsumeOptions,
    ) -> Result<Consumer, BrokerError>;
    /// Makes sure these addresses exist (a route's queues, the reply queue), where the
    /// transport needs them declared before use.
    async fn ensure(&self, _addresses: &[String]) -> Result<(), BrokerError> {
        Ok(())
    }
    async fn depth(&self, address: &str) -> Result<Depth, BrokerError>;
    /// Up to `count` ready messages of `address`, left where they are; no more than
    /// `max_bytes` of whole messages (payload, key and headers), but always the first.
    async fn peek(
        &self,
        address: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError>;
    /// Removes the ready messages of `address`; returns how many.
    async fn purge(&self, address: &str) -> Result<u64, BrokerError>;
    /// Whether the connection can serve right now, and if not why.
    async fn check(&self) -> Result<(), String>;
    /// Waits for the first attempt to connect (at start, so that a broker that is down is
    /// reported before the host runs without it); an error is a definition that cannot work.
    async fn started(&self) -> Result<(), BrokerError> {
        Ok(())
    }
    /// Closes the connection.
    async fn close(&self) {}
    /// The embedded broker holding this connection's queues in the host's database, if it
    /// does (the embedded broker itself, HTTP ingress).
    fn held(&self) -> Option<&EmbeddedBroker> {
        None
    }
    /// The consumer-group members this connection runs on this host (Kafka), with their
    /// partitions and lag.
    fn consumers(&self) -> Vec<ConsumerState> {
        Vec::new()
    }
    /// Makes `exchange` this connection's events exchange (or topic): declared, and a send
    /// to it that no subscriber takes is fine (an event nobody wants), not `Unroutable`.
    async fn declare_events(&self, _exchange: &str) -> Result<(), BrokerError> {
        Err(no_events(self.kind()))
    }
    /// Gives a subscription its own queue (or consumer group) on events exchange `exchange`,
    /// taking every event whose key matches `pattern`; returns how to consume it.
    async fn subscribe(
        &self,
        _exchange: &str,
        _queue: &str,
        _pattern: &str,
    ) -> Result<Subscribed, BrokerError> {
        Err(no_events(self.kind()))
    }
    /// Takes a deleted subscription's queue off the exchange (its messages stay, to be read
    /// or purged).
    async fn unsubscribe(
        &self,
        _exchange: &str,
        _queue: &str,
        _pattern: &str,
    ) -> Result<(), BrokerError> {
        Ok(())
    }
    /// The unit that read `address` on this host is gone for good (deleted; not stopped, and
    /// not because the host stops): let go of what the transport keeps for it on the broker
    /// (an MQTT session's share of the topic), handing back what it holds.
    async fn release(&self, _address: &str) -> Result<(), BrokerError> {
        Ok(())
    }
    /// The transport's kind, as connections name it (`embedded`, `amqp`, …).
    fn kind(&self) -> &'static str;
    /// Whether requests to `address` are answered by [`Transport::request`].
    fn answers(&self, _address: &str) -> bool {
        false
    }
    /// The answer to `msg` sent as a request to `address`, for a transport whose requests
    /// are answered by the broker itself (HTTP's response); `None` where replies come back
    /// through a reply queue.
    async fn request(&self, _address: &str, _msg: Message) -> Option<Result<Message, BrokerError>> {
        None
    }
}

/// A transport as `Any`, so that the web server's HTTP ingress can reach an HTTP connection.
pub trait AsAny {
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: std::any::Any> AsAny for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// One connection's transport, as its senders hold it. Cheap to clone.
#[derive(Clone)]
pub struct Producer(std::sync::Arc<dyn Transport>);

impl Producer {
    pub fn new(transport: impl Transport) -> Producer {
        Producer(std::sync::Arc::new(transport))
    }

    /// Closes the broker connection (the embedded broker lives in the store: nothing to do).
    pub async fn close(&self) {
        self.0.close().await
    }

    /// Sends `msg` to `address` and waits for the confirm.
    pub async fn send(&self, address: &str, msg: Message) -> Result<(), BrokerError> {
        self.0.send(address, msg).await
    }

    /// Sends `msg` so that it is ready only after `delay` (retries re-queued with a delay).
    pub async fn send_delayed(
        &self,
        address: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        self.0.send_delayed(address, msg, delay).await
    }

    /// What its kind can and cannot do.
    pub fn capabilities(&self) -> Capabilities {
        registry::kind(self.0.kind()).map_or(Capabilities::NONE, |kind| kind.can)
    }

    /// The transport itself.
    pub fn transport(&self) -> &dyn Transport {
        &*self.0
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
    pub(crate) fn new(ok: bool, detail: impl Into<String>) -> ConnectionTest {
        ConnectionTest {
            ok,
            detail: detail.into(),
        }
    }
}

/// The plain queues a route uses: its input, its output (unless an exchange), its dead
/// letters, its fixed reply address.
pub fn route_addresses(route: &RouteConfig) -> Vec<Address> {
    let dead = route
        .dead_letter
        .clone()
        .unwrap_or_else(|| format!("{}.dead", route.from));
    [
        Some(route.from.as_str()),
        route.to.as_deref(),
        Some(dead.as_str()),
        route.reply_to.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|text| Address::parse(text).ok())
    .filter(|address| !address.address.contains('/'))
    .collect()
}
