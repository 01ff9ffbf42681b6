//! RabbitMQ (AMQP 0-9-1) through lapin.
//!
//! One [`AmqpBroker`] per configured connection owns one AMQP connection and a task that keeps
//! it up: it tries the configured URLs in turn (or shuffled), each within the connect timeout,
//! declares the topology, opens the publishing channels, and when the connection drops (broker
//! restart, `rabbitmqctl close_all_connections`, a missed heartbeat) logs it, reports the
//! connection as down to `/healthz` and `/readyz`, and connects again with capped exponential
//! backoff and jitter. Consumers opened on the old connection end with an error; their routes'
//! supervisors open new ones once the connection is back. Unacked messages of the old
//! connection are redelivered by the broker, so nothing is lost; settling one of them on the
//! dead channel fails, which is logged.
//!
//! Guarantees:
//! - *Sends are confirmed*: every publishing channel is in confirm mode and a send completes
//!   only on the broker's ack. Sends are `mandatory`, so a message no queue would take comes
//!   back as [`BrokerError::Unroutable`] instead of vanishing.
//! - *Consumers ack manually*, with prefetch equal to the route's concurrency.
//! - *Delayed sends* (retries) go through a per-delay holding queue `wharf.retry.{ms}` whose
//!   messages expire into the default exchange with their original routing key, that is, back
//!   into the target queue. Delays are rounded up to two significant digits so few holding
//!   queues exist. The holding queues are quorum queues with at-least-once dead-lettering
//!   (RabbitMQ 3.10 or later), so a retry copy leaves one only once the target queue has it.

pub mod map;
pub mod topology;

use super::{AckHandle, BrokerError, Delivery, Nack, check_name};
pub mod config;
mod connect;
mod consume;
mod kind;
mod publish;

use crate::message::Message;
use crate::redact::redact;
use crate::units::RouteConfig;
pub use config::AmqpConfig;
pub use connect::declare_once;
use connect::*;
use consume::*;
pub use consume::{AmqpAck, AmqpConsumer};
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
pub use topology::{Outcome, Topology, TopologyError};

/// Where the connection stands, as `/healthz` reports it.
#[derive(Clone)]
enum Link {
    /// Not connected yet, or lost: trying again.
    Down {
        since: Instant,
        error: Option<String>,
        /// The last attempt failed in a way retrying cannot fix (a topology mismatch).
        permanent: bool,
        attempts: u32,
    },
    Up(Arc<Live>),
    /// The broker handle was shut down.
    Closed,
}

/// One established connection and its publishing channels.
struct Live {
    connection: Connection,
    url: String,
    channels: Mutex<Vec<Channel>>,
    next: AtomicUsize,
}

/// A handle on one AMQP connection. Cheap to clone.
#[derive(Clone)]
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: AmqpConfig,
    tls: OwnedTLSConfig,
    topology: Topology,
    /// Queues routes added while the host runs need: declared now, and again on reconnect.
    ensured: Mutex<Vec<String>>,
    /// Events exchanges and subscriptions' queues and bindings made while the host runs:
    /// declared now, and again on reconnect.
    events: Mutex<Topology>,
    link: watch::Sender<Link>,
    /// Holding queues for delayed sends already declared.
    delays: Mutex<HashSet<u64>>,
    /// Redeliveries counted by the host, for queues whose broker does not count them.
    redeliveries: Arc<Redeliveries>,
    /// The channel depth checks share (queue stats, a drain's polls): a new one is opened
    /// only when it has closed (a passive declare of a missing queue closes it), not per
    /// check, so polling a depth cannot use up the connection's channels.
    inspect: tokio::sync::Mutex<Option<Channel>>,
    /// The channel shared by the passing consumers of each queue that ask to share one
    /// (leased takes), open while any of their deliveries is held.
    shared: tokio::sync::Mutex<HashMap<String, std::sync::Weak<ChannelGuard>>>,
    /// Bytes of deliveries kept for dead letters that carry their taker's headers
    /// (`consume::Kept`), at most [`consume::MAX_KEPT_BYTES`].
    kept: AtomicUsize,
}

/// How often each message has come back, per queue, for queues without `x-delivery-count`
/// (classic queues): the broker only says "redelivered", and a message that keeps failing
/// before its route settles it must still reach a delivery limit. Counted in memory, so a
/// restart starts the count again; bounded, so it cannot grow without end.
#[derive(Default)]
struct Redeliveries(Mutex<HashMap<(Arc<str>, String), u32>>);

impl Redeliveries {
    /// The most messages counted at once; past it the counts start again.
    const MAX: usize = 100_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Arc<str>, String), u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more redelivery of `id` from `queue`; returns the deliveries so far. A
    /// message not counted yet was handed out once before (it is redelivered).
    fn count(&self, queue: &Arc<str>, id: &str) -> u32 {
        let mut counts = self.lock();
        if counts.len() >= Self::MAX {
            counts.clear();
        }
        let seen = counts.entry((queue.clone(), id.to_owned())).or_insert(1);
        *seen = seen.saturating_add(1);
        *seen
    }

    /// `id` went back to `queue` without being handed to anyone (a consumer closed with it
    /// prefetched). Counts are of hand-outs, and a first hand-out is not recorded (most
    /// messages have only that one): a message not counted yet that came `redelivered` has
    /// had exactly that one hand-out, so its next counts as its second; one that did not come
    /// redelivered has had none, so its next (redelivered) hand-out is its first. One counted
    /// keeps its count.
    fn not_delivered(&self, queue: &Arc<str>, id: &str, redelivered: bool) {
        let mut counts = self.lock();
        if counts.len() >= Self::MAX {
            counts.clear();
        }
        counts
            .entry((queue.clone(), id.to_owned()))
            .or_insert(u32::from(redelivered));
    }

    fn forget(&self, queue: &Arc<str>, id: &str) {
        self.lock().remove(&(queue.clone(), id.to_owned()));
    }
}

impl Inner {
    /// The topology with the queues routes added since start.
    fn topology_now(&self) -> Topology {
        let mut topology = self.topology.clone();
        {
            let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            topology.exchanges.extend(events.exchanges.iter().cloned());
            topology.ensured.extend(events.ensured.iter().cloned());
            topology.bindings.extend(events.bindings.iter().cloned());
        }
        for queue in self
            .ensured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if !topology.ensured.contains(queue)
                && !topology.queues.iter().any(|q| &q.name == queue)
            {
                topology.ensured.push(queue.clone());
            }
        }
        topology
    }
}

fn amqp_error(context: &str, e: lapin::Error) -> BrokerError {
    BrokerError::Broker(format!("{context}: {e}"))
}

impl AmqpBroker {
    /// Starts keeping connection `name` up, in the background. Fails only if the TLS files
    /// cannot be read; see [`AmqpBroker::wait_first_attempt`] for the broker itself.
    pub fn start(
        name: &str,
        config: AmqpConfig,
        topology: Topology,
    ) -> Result<AmqpBroker, BrokerError> {
        let tls = load_tls(name, &config)?;
        let (link, _) = watch::channel(Link::Down {
            since: Instant::now(),
            error: None,
            permanent: false,
            attempts: 0,
        });
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            config,
            tls,
            topology,
            ensured: Mutex::default(),
            events: Mutex::default(),
            link,
            delays: Mutex::default(),
            redeliveries: Arc::default(),
            inspect: tokio::sync::Mutex::new(None),
            shared: tokio::sync::Mutex::default(),
            kept: AtomicUsize::new(0),
        });
        tokio::spawn(keep_connected(Arc::downgrade(&inner)));
        Ok(AmqpBroker { inner })
    }

    /// Waits until the first connection attempt has succeeded or failed. A failure that
    /// retrying cannot fix (the topology does not match the broker's) is returned; the broker
    /// being unreachable is not (the host starts degraded and keeps trying).
    pub async fn wait_first_attempt(&self) -> Result<(), BrokerError> {
        let mut link = self.inner.link.subscribe();
        let state = link
            .wait_for(|link| !matches!(link, Link::Down { attempts: 0, .. }))
            .await
            .map_err(|_| BrokerError::Closed)?
            .clone();
        match state {
            Link::Down {
                error: Some(error),
                permanent: true,
                ..
            } => Err(BrokerError::Broker(error)),
            _ => Ok(()),
        }
    }

    /// The live connection, waiting up to `wait` for one.
    async fn live(&self, wait: Duration) -> Result<Arc<Live>, BrokerError> {
        // The common case, without a timer: connected now.
        if let Link::Up(live) = &*self.inner.link.borrow()
            && live.connection.status().connected()
        {
            return Ok(live.clone());
        }
        let mut link = self.inner.link.subscribe();
        let found = tokio::time::timeout(
            wait,
            link.wait_for(|l| {
                matches!(l, Link::Up(live) if live.connection.status().connected())
                    || matches!(l, Link::Closed)
            }),
        )
        .await;
        match found {
            Ok(Ok(state)) => match &*state {
                Link::Up(live) => Ok(live.clone()),
                _ => Err(BrokerError::Closed),
            },
            Ok(Err(_)) => Err(BrokerError::Closed),
            Err(_) => Err(self.unavailable()),
        }
    }

    fn unavailable(&self) -> BrokerError {
        let detail = match &*self.inner.link.borrow() {
            Link::Down { error: Some(e), .. } => e.clone(),
            Link::Down { .. } => "connecting".into(),
            Link::Up(_) => "reconnecting".into(),
            Link::Closed => "closed".into(),
        };
        BrokerError::Unavailable {
            connection: self.inner.name.clone(),
            detail,
        }
    }

    /// Makes sure `queues` exist (declared as the topology's plain queues are, only if
    /// missing), now if the connection is up and again after every reconnect: the queues of a
    /// route added while the host runs.
    pub async fn ensure_queues(&self, queues: &[String]) -> Result<(), BrokerError> {
        let new: Vec<String> = {
            let mut ensured = self.inner.ensured.lock().unwrap_or_else(|p| p.into_inner());
            let new: Vec<String> = queues
                .iter()
                .filter(|q| {
                    !ensured.contains(q)
                        && !self.inner.topology.ensured.contains(q)
                        && !self.inner.topology.queues.iter().any(|c| &c.name == *q)
                })
                .cloned()
                .collect();
            ensured.extend(new.iter().cloned());
            new
        };
        if new.is_empty() {
            return Ok(());
        }
        for queue in &new {
            check_name("queue", queue, false)?;
        }
        let live = self.live(Duration::from_secs(5)).await?;
        Topology {
            ensured: new,
            ..Topology::default()
        }
        .apply(&live.connection)
        .await
        .map(drop)
        .map_err(|e| BrokerError::Broker(e.to_string()))
    }

    fn is_events_exchange(&self, exchange: &str) -> bool {
        !exchange.is_empty()
            && self
                .inner
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .exchanges
                .iter()
                .any(|e| e.name == exchange)
    }

    /// Adds `more` to what this connection declares (now, if it is up, and on every
    /// reconnect).
    async fn declare_more(&self, more: Topology) -> Result<(), BrokerError> {
        {
            let mut events = self.inner.events.lock().unwrap_or_else(|p| p.into_inner());
            for exchange in more.exchanges.iter() {
                if !events.exchanges.iter().any(|e| e.name == exchange.name) {
                    events.exchanges.push(exchange.clone());
                }
            }
            for queue in more.ensured.iter() {
                if !events.ensured.contains(queue) {
                    events.ensured.push(queue.clone());
                }
            }
            for binding in more.bindings.iter() {
                if !events.bindings.iter().any(|b| {
                    b.exchange == binding.exchange
                        && b.queue == binding.queue
                        && b.key == binding.key
                }) {
                    events.bindings.push(binding.clone());
                }
            }
        }
        let live = self.live(Duration::from_secs(5)).await?;
        more.apply(&live.connection)
            .await
            .map(drop)
            .map_err(|e| BrokerError::Broker(e.to_string()))
    }

    /// A durable topic exchange.
    fn topic_exchange(name: &str) -> config::ExchangeConfig {
        config::ExchangeConfig {
            name: name.to_owned(),
            kind: "topic".into(),
            durable: true,
            auto_delete: false,
        }
    }

    /// Up, or why not (for `/healthz` and `/readyz`).
    pub fn check(&self) -> Result<(), String> {
        match &*self.inner.link.borrow() {
            Link::Up(live) if live.connection.status().connected() => Ok(()),
            Link::Up(_) => Err("the connection dropped; reconnecting".into()),
            Link::Down { since, error, .. } => Err(format!(
                "down for {:.1} s, reconnecting{}",
                since.elapsed().as_secs_f64(),
                error
                    .as_ref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            )),
            Link::Closed => Err("closed".into()),
        }
    }

    /// Closes the connection; unacked deliveries go back to their queues.
    pub async fn close(&self) {
        let previous = self.inner.link.send_replace(Link::Closed);
        if let Link::Up(live) = previous
            && live.connection.status().connected()
        {
            let _ = live.connection.close(200, "wharf is stopping".into()).await;
        }
    }

    /// How long an operation waits for the connection to come back before failing.
    fn connect_wait(&self) -> Duration {
        Duration::from_millis(self.inner.config.connect_timeout_ms)
    }

    /// A channel of its own (a consumer's, or one short operation's), closed when the guard
    /// is dropped.
    async fn own_channel(&self) -> Result<(Channel, ChannelGuard), BrokerError> {
        let channel = self.new_channel().await?;
        Ok((channel.clone(), ChannelGuard(channel)))
    }

    /// A new channel on the live connection (waiting for it up to the connect timeout).
    async fn new_channel(&self) -> Result<Channel, BrokerError> {
        let live = self.live(self.connect_wait()).await?;
        live.connection
            .create_channel()
            .await
            .map_err(|e| amqp_error("opening a channel", e))
    }

    /// Messages ready in `queue` and its consumers (a passive declare).
    pub async fn queue_depth(&self, queue: &str) -> Result<(u32, u32), BrokerError> {
        check_name("queue", queue, false)?;
        let mut inspect = self.inner.inspect.lock().await;
        let channel = match inspect.as_ref().filter(|c| c.status().connected()) {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.new_channel().await?;
                *inspect = Some(channel.clone());
                channel
            }
        };
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(q) => Ok((q.message_count(), q.consumer_count())),
            Err(e) => {
                // The broker closed the channel (the queue is missing): the next check opens
                // another.
                *inspect = None;
                Err(amqp_error(&format!("queue `{queue}`"), e))
            }
        }
    }

    /// Up to `count` ready messages of `queue` (no more than `max_bytes` of whole messages,
    /// payload, key and headers, but always the first), left in it: they are fetched unacked on a channel of their own and
    /// put back before it closes, where they were, marked redelivered. A quorum queue would
    /// count that as a delivery towards its messages' limits, so peeking one the config
    /// declares is refused.
    pub async fn peek(
        &self,
        queue: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        check_name("queue", queue, false)?;
        if self
            .inner
            .topology
            .queues
            .iter()
            .any(|q| q.name == queue && q.kind.as_deref() == Some("quorum"))
        {
            return Err(BrokerError::InvalidAddress {
                address: queue.to_owned(),
                problem: "a quorum queue cannot be read without counting a delivery of each message; take messages instead".into(),
            });
        }
        let (channel, _guard) = self.own_channel().await?;
        let mut messages = Vec::new();
        let mut last = None;
        let mut bytes = 0usize;
        while messages.len() < count && (messages.is_empty() || bytes < max_bytes) {
            let got = channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| amqp_error(&format!("reading queue `{queue}`"), e))?;
            let Some(got) = got else { break };
            let delivery = got.delivery;
            last = Some(delivery.acker);
            let message = map::from_amqp(
                delivery.routing_key.as_str(),
                &delivery.properties,
                delivery.data,
            );
            bytes = bytes.saturating_add(message.size_bytes());
            if !messages.is_empty() && bytes > max_bytes {
                break;
            }
            messages.push(message);
        }
        // Put them all back before answering, so the next reader sees them again.
        if let Some(last) = last {
            last.nack(BasicNackOptions {
                multiple: true,
                requeue: true,
            })
            .await
            .map_err(|e| amqp_error(&format!("returning messages to queue `{queue}`"), e))?;
        }
        let _ = channel.close(200, "peeked".into()).await;
        Ok(messages)
    }

    /// Removes every ready message from `queue`; returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u64, BrokerError> {
        check_name("queue", queue, false)?;
        let (channel, _guard) = self.own_channel().await?;
        let n = channel
            .queue_purge(queue.into(), QueuePurgeOptions::default())
            .await
            .map_err(|e| amqp_error(&format!("purging queue `{queue}`"), e))?;
        Ok(u64::from(n))
    }
}

#[async_trait::async_trait]
impl super::Transport for AmqpBroker {
    async fn send(&self, address: &str, msg: Message) -> Result<(), BrokerError> {
        self.publish(address, msg).await
    }

    async fn send_ordered(
        &self,
        address: &str,
        msgs: Vec<Message>,
    ) -> Vec<Result<(), BrokerError>> {
        self.publish_ordered(address, msgs).await
    }

    async fn send_delayed(
        &self,
        address: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        self.publish_delayed(address, msg, delay).await
    }

    /// AMQP always reports a delivery's count; a queue's own limit (a quorum queue's
    /// `x-delivery-limit`) is the broker's business.
    async fn consume(
        &self,
        queue: &str,
        options: super::ConsumeOptions,
    ) -> Result<super::Consumer, BrokerError> {
        let mut consumer = if options.shared {
            AmqpBroker::consume_shared(self, queue, options.prefetch).await?
        } else {
            AmqpBroker::consume(self, queue, options.prefetch).await?
        };
        if options.dead_letter_copies {
            consumer.keep_copies(self);
        }
        Ok(super::Consumer::new(consumer))
    }

    async fn ensure(&self, queues: &[String]) -> Result<(), BrokerError> {
        self.ensure_queues(queues).await
    }

    /// What AMQP tells: messages ready (not the unacked ones) and consumers.
    async fn depth(&self, queue: &str) -> Result<super::Depth, BrokerError> {
        let (ready, consumers) = self.queue_depth(queue).await?;
        Ok(super::Depth {
            queue: queue.to_owned(),
            ready: Some(ready.into()),
            consumers: Some(consumers),
            ..super::Depth::default()
        })
    }

    async fn peek(
        &self,
        queue: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        AmqpBroker::peek(self, queue, count, max_bytes).await
    }

    async fn purge(&self, queue: &str) -> Result<u64, BrokerError> {
        AmqpBroker::purge(self, queue).await
    }

    async fn check(&self) -> Result<(), String> {
        AmqpBroker::check(self)
    }

    async fn started(&self) -> Result<(), BrokerError> {
        self.wait_first_attempt().await
    }

    async fn close(&self) {
        AmqpBroker::close(self).await
    }

    fn kind(&self) -> &'static str {
        "amqp"
    }

    async fn declare_events(&self, exchange: &str) -> Result<(), BrokerError> {
        check_name("exchange", exchange, false)?;
        if self.is_events_exchange(exchange) {
            // Declared already, and again on every reconnect.
            return Ok(());
        }
        self.declare_more(Topology {
            exchanges: vec![Self::topic_exchange(exchange)],
            ..Topology::default()
        })
        .await
    }

    /// A durable queue of the subscription's own, bound to the topic exchange.
    async fn subscribe(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<super::Subscribed, BrokerError> {
        check_name("exchange", exchange, false)?;
        check_name("queue", queue, false)?;
        check_name("binding pattern", pattern, true)?;
        self.declare_more(Topology {
            exchanges: vec![Self::topic_exchange(exchange)],
            ensured: vec![queue.to_owned()],
            bindings: vec![config::BindingConfig {
                exchange: exchange.to_owned(),
                queue: queue.to_owned(),
                key: pattern.to_owned(),
            }],
            ..Topology::default()
        })
        .await?;
        Ok(super::Subscribed::queue(queue))
    }

    /// Unbinds the queue (its messages stay until someone reads or purges them).
    async fn unsubscribe(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<(), BrokerError> {
        {
            let mut events = self.inner.events.lock().unwrap_or_else(|p| p.into_inner());
            events
                .bindings
                .retain(|b| !(b.exchange == exchange && b.queue == queue && b.key == pattern));
            events.ensured.retain(|q| q != queue);
        }
        let live = self.live(Duration::from_secs(5)).await?;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| amqp_error("opening a channel", e))?;
        channel
            .queue_unbind(
                queue.into(),
                exchange.into(),
                pattern.into(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| amqp_error(&format!("unbinding queue `{queue}`"), e))?;
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }
}

/// What AMQP connection `name` declares: its configured topology, plus the queues `routes`
/// use on it (inputs, plain-queue outputs, dead-letter queues), ensured to exist.
pub fn topology_for(name: &str, amqp: &AmqpConfig, routes: &[RouteConfig]) -> Topology {
    let mut ensured: Vec<String> = Vec::new();
    for address in routes.iter().flat_map(super::route_addresses) {
        if address.connection == name
            && !amqp.queues.iter().any(|q| q.name == address.address)
            && !ensured.contains(&address.address)
        {
            ensured.push(address.address);
        }
    }
    Topology {
        exchanges: amqp.exchanges.clone(),
        queues: amqp.queues.clone(),
        bindings: amqp.bindings.clone(),
        ensured,
    }
}

/// Whether the broker takes a connection now (closed at once).
pub(crate) async fn test(name: &str, config: &AmqpConfig) -> super::ConnectionTest {
    use super::ConnectionTest;
    let mut config = config.clone();
    config.connect_timeout_ms = config.connect_timeout_ms.min(5_000);
    let attempt = declare_once(name, config, Topology::default());
    match tokio::time::timeout(Duration::from_secs(15), attempt).await {
        Ok(Ok((url, _))) => ConnectionTest::new(true, format!("connected to {url}")),
        Ok(Err(e)) => ConnectionTest::new(false, e.to_string()),
        Err(_) => ConnectionTest::new(false, "no answer within 15 s"),
    }
}

#[cfg(test)]
mod tests {
    use super::Redeliveries;
    use std::sync::Arc;

    /// Counts are of hand-outs, whichever consumer returned a message it never handed out.
    #[test]
    fn a_message_returned_unhanded_keeps_its_count_of_hand_outs() {
        let counts = Redeliveries::default();
        let queue: Arc<str> = Arc::from("q");
        // Handed out once (not recorded), given back, then prefetched by a consumer that
        // closed before handing it out: it came redelivered, so its next hand-out is its
        // second.
        counts.not_delivered(&queue, "a", true);
        assert_eq!(counts.count(&queue, "a"), 2);
        assert_eq!(counts.count(&queue, "a"), 3);
        // Prefetched on its first delivery and returned unhanded: its next is its first.
        counts.not_delivered(&queue, "b", false);
        assert_eq!(counts.count(&queue, "b"), 1);
        // One counted keeps its count.
        counts.not_delivered(&queue, "a", true);
        assert_eq!(counts.count(&queue, "a"), 4);
    }
}
