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
mod kind;

use crate::message::Message;
use crate::redact::redact;
use crate::units::RouteConfig;
pub use config::AmqpConfig;
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

    /// Counts one more redelivery of `id` from `queue`; returns the deliveries so far.
    fn count(&self, queue: &Arc<str>, id: &str) -> u32 {
        let mut counts = self.lock();
        if counts.len() >= Self::MAX {
            counts.clear();
        }
        let seen = counts.entry((queue.clone(), id.to_owned())).or_insert(1);
        *seen = seen.saturating_add(1);
        *seen
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

    /// Starts consuming `queue` with manual acks and at most `prefetch` unacked deliveries.
    pub async fn consume(&self, queue: &str, prefetch: usize) -> Result<AmqpConsumer, BrokerError> {
        check_name("queue", queue, false)?;
        let (_, guard) = self.own_channel().await?;
        self.consume_on(Arc::new(guard), queue, prefetch).await
    }

    /// Consumes `queue` on the channel its shared consumers use (opened when there is none
    /// open): each consumer has its own tag and prefetch, and the channel closes once the
    /// last of them is closed and its deliveries settled.
    pub async fn consume_shared(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<AmqpConsumer, BrokerError> {
        check_name("queue", queue, false)?;
        // Held across the prefetch and the consume, so each consumer gets its own prefetch.
        let mut shared = self.inner.shared.lock().await;
        shared.retain(|_, guard| guard.strong_count() > 0);
        let open = shared
            .get(queue)
            .and_then(std::sync::Weak::upgrade)
            .filter(|guard| guard.0.status().connected());
        let guard = match open {
            Some(guard) => guard,
            None => {
                let (_, guard) = self.own_channel().await?;
                let guard = Arc::new(guard);
                shared.insert(queue.to_owned(), Arc::downgrade(&guard));
                guard
            }
        };
        self.consume_on(guard, queue, prefetch).await
    }

    async fn consume_on(
        &self,
        guard: Arc<ChannelGuard>,
        queue: &str,
        prefetch: usize,
    ) -> Result<AmqpConsumer, BrokerError> {
        let channel = &guard.0;
        // Per consumer (not global): it applies to the consumers started after it.
        channel
            .basic_qos(
                prefetch.clamp(1, usize::from(u16::MAX)) as u16,
                BasicQosOptions::default(),
            )
            .await
            .map_err(|e| amqp_error("setting prefetch", e))?;
        let tag = format!("wharf-{}", uuid::Uuid::new_v4());
        let consumer = channel
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| amqp_error(&format!("consuming queue `{queue}`"), e))?;
        let dead_letters = self
            .inner
            .topology
            .queues
            .iter()
            .any(|q| q.name == queue && q.dead_letter_exchange.is_some());
        Ok(AmqpConsumer {
            consumer,
            channel: guard,
            tag,
            queue: Arc::from(queue),
            dead_letters,
            redeliveries: self.inner.redeliveries.clone(),
        })
    }

    /// How long an operation waits for the connection to come back before failing.
    fn connect_wait(&self) -> Duration {
        Duration::from_millis(self.inner.config.connect_timeout_ms)
    }

    /// A publishing channel in confirm mode, replacing a closed one.
    async fn publish_channel(&self, live: &Live) -> Result<Channel, BrokerError> {
        let index = live.next.fetch_add(1, Ordering::Relaxed);
        let current = {
            let channels = live.channels.lock().expect("channel pool");
            let index = index % channels.len();
            (index, channels[index].clone())
        };
        if current.1.status().connected() {
            return Ok(current.1);
        }
        let channel = open_publish_channel(&live.connection).await?;
        live.channels.lock().expect("channel pool")[current.0] = channel.clone();
        Ok(channel)
    }

    /// Publishes `msg` to `address` (`exchange/routing-key`, `exchange/` to route by the
    /// message's topic, or a queue name) and waits for the broker's confirm.
    pub async fn publish(&self, address: &str, msg: Message) -> Result<(), BrokerError> {
        let (exchange, routing_key, properties) = Self::target(address, &msg)?;
        self.publish_raw(exchange, &routing_key, &msg.payload, properties)
            .await
    }

    /// Where `msg` goes for `address`: the exchange, the routing key, and its properties.
    fn target<'a>(
        address: &'a str,
        msg: &Message,
    ) -> Result<(&'a str, String, lapin::BasicProperties), BrokerError> {
        let (exchange, routing_key) = match address.split_once('/') {
            Some((exchange, "")) => (exchange, msg.topic.clone()),
            Some((exchange, key)) => (exchange, key.to_owned()),
            None => ("", address.to_owned()),
        };
        check_name("exchange", exchange, true)?;
        // The default exchange's key is a queue name; any other exchange takes any key, the
        // empty one too (fanout exchanges, topic-less messages).
        if exchange.is_empty() {
            check_name("queue", &routing_key, false)?;
        } else {
            check_name("routing key", &routing_key, true)?;
        }
        let properties = map::to_amqp(msg, &routing_key)?;
        Ok((exchange, routing_key, properties))
    }

    /// Publishes `msgs` to `address` in order on one channel, every one in flight at once, and
    /// then waits for each confirm: the results in the same order. AMQP keeps a channel's
    /// order, so the broker takes them as sent; a message the broker cannot take (a return, a
    /// nack) fails alone, and a channel that fails fails the rest.
    pub async fn publish_ordered(
        &self,
        address: &str,
        msgs: Vec<Message>,
    ) -> Vec<Result<(), BrokerError>> {
        let live = match self.live(self.connect_wait()).await {
            Ok(live) => live,
            Err(error) => return vec![Err(error)],
        };
        let channel = match self.publish_channel(&live).await {
            Ok(channel) => channel,
            Err(error) => return vec![Err(error)],
        };
        let mut started = Vec::with_capacity(msgs.len());
        for msg in &msgs {
            let begun = match Self::target(address, msg) {
                Ok((exchange, routing_key, properties)) => {
                    let target = describe_target(exchange, &routing_key);
                    self.begin_publish(&channel, exchange, &routing_key, &msg.payload, properties)
                        .await
                        .map(|confirm| (confirm, target))
                }
                Err(error) => Err(error),
            };
            let failed_channel = matches!(&begun, Err(e) if e.is_retryable());
            started.push(begun);
            if failed_channel {
                break;
            }
        }
        let mut results = Vec::with_capacity(started.len());
        for begun in started {
            results.push(match begun {
                Ok((confirm, target)) => match confirm.await {
                    Ok(confirmation) => confirmed(confirmation, &target),
                    Err(e) => Err(amqp_error(&format!("publishing to {target}"), e)),
                },
                Err(error) => Err(error),
            });
        }
        results
    }

    /// Starts publishing one message on `channel`: it is sent, its confirm still to come.
    async fn begin_publish(
        &self,
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: lapin::BasicProperties,
    ) -> Result<lapin::PublisherConfirm, BrokerError> {
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    // An event no subscriber takes is not an error: nobody wanted it.
                    mandatory: !self.is_events_exchange(exchange),
                    ..Default::default()
                },
                payload,
                properties,
            )
            .await
            .map_err(|e| {
                amqp_error(
                    &format!("publishing to {}", describe_target(exchange, routing_key)),
                    e,
                )
            })
    }

    async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: lapin::BasicProperties,
    ) -> Result<(), BrokerError> {
        let live = self.live(self.connect_wait()).await?;
        let channel = self.publish_channel(&live).await?;
        let target = describe_target(exchange, routing_key);
        let confirm = self
            .begin_publish(&channel, exchange, routing_key, payload, properties)
            .await?
            .await
            .map_err(|e| amqp_error(&format!("publishing to {target}"), e))?;
        confirmed(confirm, &target)
    }

    /// Publishes `msg` to `queue` so that it arrives there after `delay`.
    pub async fn publish_delayed(
        &self,
        queue: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        if delay.is_zero() {
            return self.publish(queue, msg).await;
        }
        if queue.contains('/') {
            return Err(BrokerError::InvalidAddress {
                address: queue.to_owned(),
                problem: "a delayed send goes to a queue, not an exchange".into(),
            });
        }
        check_name("queue", queue, false)?;
        let ms = delay_bucket(delay.as_millis() as u64);
        let holding = format!("wharf.retry.{ms}");
        if !self.inner.delays.lock().expect("delays").contains(&ms) {
            self.declare_holding(&holding, ms).await?;
            self.inner.delays.lock().expect("delays").insert(ms);
        }
        let properties = map::to_amqp(&msg, queue)?;
        let result = self
            .publish_raw(&holding, queue, &msg.payload, properties)
            .await;
        if result.is_err() {
            // Declared again next time, in case the broker lost it.
            self.inner.delays.lock().expect("delays").remove(&ms);
        }
        result
    }

    async fn declare_holding(&self, name: &str, ms: u64) -> Result<(), BrokerError> {
        let (channel, _guard) = self.own_channel().await?;
        let failed = |e| amqp_error(&format!("declaring the delay queue `{name}`"), e);
        channel
            .exchange_declare(
                name.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(failed)?;
        let mut args = std::collections::BTreeMap::new();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms as i64));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        // A quorum queue with at-least-once dead-lettering (RabbitMQ 3.10 or later): a copy
        // leaves the holding queue only once the target queue has it.
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions::durable(),
                FieldTable::from(args),
            )
            .await
            .map_err(failed)?;
        channel
            .queue_bind(
                name.into(),
                name.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(failed)?;
        Ok(())
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

/// Rounds a delay up to two significant digits (1234 ms → 1300 ms), so the holding queues
/// stay few.
fn delay_bucket(ms: u64) -> u64 {
    let mut scale = 1;
    while ms / scale >= 100 {
        scale *= 10;
    }
    ms.div_ceil(scale).max(1) * scale
}

fn load_tls(name: &str, config: &AmqpConfig) -> Result<OwnedTLSConfig, BrokerError> {
    let Some(tls) = &config.tls else {
        return Ok(OwnedTLSConfig::default());
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            BrokerError::Broker(format!(
                "connections.{name}.tls: cannot read {}: {e}",
                path.display()
            ))
        })
    };
    let cert_chain = match &tls.ca {
        Some(path) => Some(String::from_utf8_lossy(&read(path)?).into_owned()),
        None => None,
    };
    let identity = match (&tls.pkcs12, &tls.cert, &tls.key) {
        (Some(bundle), _, _) => Some(OwnedIdentity::PKCS12 {
            der: read(bundle)?,
            password: tls.pkcs12_password.clone(),
        }),
        (None, Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read(cert)?,
            key: read(key)?,
        }),
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

async fn open_publish_channel(connection: &Connection) -> Result<Channel, BrokerError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| amqp_error("opening a publishing channel", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| amqp_error("enabling publisher confirms", e))?;
    Ok(channel)
}

/// Why one attempt to connect failed; `permanent` when retrying cannot help.
struct ConnectFailure {
    error: String,
    permanent: bool,
}

/// Connects once to connection `name`, declares its topology and disconnects: `wharf schema
/// apply`. Returns the broker it reached and what each item needed.
pub async fn declare_once(
    name: &str,
    config: AmqpConfig,
    topology: Topology,
) -> Result<(String, Vec<(String, Outcome)>), BrokerError> {
    let tls = load_tls(name, &config)?;
    let (connection, url, report) = connect(name, &config, &tls, &topology)
        .await
        .map_err(|failure| BrokerError::Broker(failure.error))?;
    let _ = connection.close(200, "schema applied".into()).await;
    Ok((url, report))
}

/// Connects to the first URL that answers and declares the topology; returns the connection,
/// the URL (password hidden) and what each item of the topology needed.
async fn connect(
    name: &str,
    config: &AmqpConfig,
    tls: &OwnedTLSConfig,
    topology: &Topology,
) -> Result<(Connection, String, Vec<(String, Outcome)>), ConnectFailure> {
    let mut urls = config.all_urls();
    if config.shuffle {
        use rand::seq::SliceRandom as _;
        urls.shuffle(&mut rand::rng());
    }
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let mut errors = Vec::new();
    for url in urls {
        let shown = redact(&url);
        let mut uri: lapin::uri::AMQPUri = match url.parse() {
            Ok(uri) => uri,
            Err(e) => {
                errors.push(format!("{shown}: {e}"));
                continue;
            }
        };
        uri.query.heartbeat = Some(config.heartbeat_s);
        uri.query.connection_timeout = Some(config.connect_timeout_ms);
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("wharf {} (pid {})", name, std::process::id()).into());
        let runtime = match lapin::runtime::default_runtime() {
            Ok(runtime) => runtime,
            Err(e) => {
                errors.push(format!("{shown}: {e}"));
                continue;
            }
        };
        let attempt = tokio::time::timeout(
            timeout,
            Connection::connect_uri_with_config(uri, properties, tls.clone(), runtime),
        )
        .await;
        let connection = match attempt {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => {
                errors.push(format!("{shown}: {e}"));
                continue;
            }
            Err(_) => {
                errors.push(format!(
                    "{shown}: no answer within {} ms",
                    timeout.as_millis()
                ));
                continue;
            }
        };
        let report = topology
            .apply(&connection)
            .await
            .map_err(|e| ConnectFailure {
                permanent: e.is_permanent(),
                error: format!("connections.{name}: {e}"),
            });
        let report = match report {
            Ok(report) => report,
            Err(failure) => {
                let _ = connection.close(200, "topology".into()).await;
                return Err(failure);
            }
        };
        return Ok((connection, shown, report));
    }
    Err(ConnectFailure {
        error: errors.join("; "),
        permanent: false,
    })
}

impl Live {
    /// A connection made live: its `count` publishing channels opened in confirm mode.
    async fn open(connection: Connection, url: String, count: usize) -> Result<Live, BrokerError> {
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count {
            channels.push(open_publish_channel(&connection).await?);
        }
        Ok(Live {
            connection,
            url,
            channels: Mutex::new(channels),
            next: AtomicUsize::new(0),
        })
    }
}

/// The task behind every [`AmqpBroker`]: connect, watch, reconnect, until the handle is gone.
async fn keep_connected(inner: std::sync::Weak<Inner>) {
    let initial = Duration::from_millis(100);
    let mut backoff: Option<crate::backoff::Backoff> = None;
    let mut attempts = 0u32;
    let mut since = Instant::now();
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if matches!(*strong.link.borrow(), Link::Closed) {
            return;
        }
        attempts += 1;
        let topology = strong.topology_now();
        let live = match connect(&strong.name, &strong.config, &strong.tls, &topology).await {
            Ok((connection, url, _)) => Live::open(connection, url, strong.config.channels)
                .await
                .map_err(|e| ConnectFailure {
                    error: e.to_string(),
                    permanent: false,
                }),
            Err(failure) => Err(failure),
        };
        match live {
            Ok(live) => {
                tracing::info!(connection = %strong.name, url = %live.url, "connected to the AMQP broker");
                let live = Arc::new(live);
                let mut events = live.connection.events_listener();
                let replaced = strong.link.send_if_modified(|link| {
                    if matches!(link, Link::Closed) {
                        return false;
                    }
                    *link = Link::Up(live.clone());
                    true
                });
                if !replaced {
                    let _ = live.connection.close(200, "wharf is stopping".into()).await;
                    return;
                }
                backoff = None;
                let mut closed = strong.link.subscribe();
                drop(strong);
                // Watch until the connection drops or the broker handle is closed.
                let error = loop {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(lapin::Event::Error(e)) => break Some(e.to_string()),
                            Some(_) => {}
                            None => break None,
                        },
                        changed = closed.changed() => {
                            if changed.is_err() || matches!(*closed.borrow(), Link::Closed) {
                                return;
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if !live.connection.status().connected() {
                                break None;
                            }
                        }
                    }
                };
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                let error = error.unwrap_or_else(|| "the connection closed".into());
                tracing::warn!(connection = %strong.name, %error, "AMQP connection lost; reconnecting");
                since = Instant::now();
                attempts = 0;
                strong.link.send_if_modified(|link| {
                    if matches!(link, Link::Closed) {
                        return false;
                    }
                    *link = Link::Down {
                        since,
                        error: Some(error.clone()),
                        permanent: false,
                        attempts: attempts.max(1),
                    };
                    true
                });
                continue;
            }
            Err(failure) => {
                let max = Duration::from_millis(strong.config.reconnect_max_ms);
                let wait = backoff
                    .get_or_insert_with(|| crate::backoff::Backoff::new(initial, max))
                    .next_delay();
                if failure.permanent {
                    tracing::error!(connection = %strong.name, error = %failure.error, retry_in_ms = wait.as_millis() as u64, "cannot set up the AMQP connection");
                } else {
                    tracing::warn!(connection = %strong.name, error = %failure.error, retry_in_ms = wait.as_millis() as u64, "cannot connect to the AMQP broker");
                }
                strong.link.send_if_modified(|link| {
                    if matches!(link, Link::Closed) {
                        return false;
                    }
                    *link = Link::Down {
                        since,
                        error: Some(failure.error.clone()),
                        permanent: failure.permanent,
                        attempts,
                    };
                    true
                });
                let mut closed = strong.link.subscribe();
                drop(strong);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = closed.wait_for(|l| matches!(l, Link::Closed)) => return,
                }
            }
        }
    }
}

/// Closes its channel when the last user (consumer or unsettled delivery) is gone, so
/// whatever is still unacked on it goes back to the queue.
struct ChannelGuard(Channel);

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        if self.0.status().connected()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let channel = self.0.clone();
            runtime.spawn(async move {
                let _ = channel.close(200, "done".into()).await;
            });
        }
    }
}

/// Deliveries from one queue.
pub struct AmqpConsumer {
    consumer: lapin::Consumer,
    channel: Arc<ChannelGuard>,
    tag: String,
    queue: Arc<str>,
    /// The queue is configured with a dead-letter exchange.
    dead_letters: bool,
    redeliveries: Arc<Redeliveries>,
}

impl AmqpConsumer {
    pub async fn next(&mut self) -> Result<Delivery, BrokerError> {
        match self.consumer.next().await {
            Some(Ok(delivery)) => {
                let counted = delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("x-delivery-count"))
                    .and_then(|count| match count {
                        AMQPValue::LongLongInt(n) => Some(*n),
                        AMQPValue::LongInt(n) => Some(i64::from(*n)),
                        _ => None,
                    });
                let message = map::from_amqp(
                    delivery.routing_key.as_str(),
                    &delivery.properties,
                    delivery.data,
                );
                let (deliveries, host_counted) = match counted {
                    // Quorum queues count earlier deliveries.
                    Some(n) => (
                        (n.clamp(0, i64::from(u32::MAX)) as u32).saturating_add(1),
                        false,
                    ),
                    // Only a message with an id of its own is counted: ids derived from
                    // content are shared by identical messages, which must not share a count.
                    None if delivery.redelivered && map::own_id(&delivery.properties).is_some() => {
                        (self.redeliveries.count(&self.queue, &message.id), true)
                    }
                    None if delivery.redelivered => (2, false),
                    None => (1, false),
                };
                Ok(Delivery {
                    ack: AckHandle::new(AmqpAck {
                        acker: Some(delivery.acker),
                        channel: self.channel.clone(),
                        queue: self.queue.clone(),
                        dead_letters: self.dead_letters,
                        counted: host_counted
                            .then(|| (self.redeliveries.clone(), message.id.clone())),
                    }),
                    message,
                    deliveries,
                })
            }
            Some(Err(e)) => Err(amqp_error(&format!("consuming queue `{}`", self.queue), e)),
            None => Err(BrokerError::Broker(format!(
                "the consumer of queue `{}` was cancelled (the queue was deleted, or the channel closed)",
                self.queue
            ))),
        }
    }

    /// Stops deliveries and returns the ones received but not handed out. The channel stays
    /// open until the deliveries handed out are settled.
    pub async fn close(mut self) {
        if self.channel.0.status().connected() {
            let _ = self
                .channel
                .0
                .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
                .await;
        }
        while let Some(Some(Ok(delivery))) = futures::FutureExt::now_or_never(self.consumer.next())
        {
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
        }
    }
}

/// Settles one AMQP delivery on the channel it came from. Dropped unsettled (its task
/// panicked or was cancelled), it returns the message to the queue at once, so the delivery
/// does not hold a prefetch slot until the channel closes.
pub struct AmqpAck {
    /// Taken when the delivery is settled.
    acker: Option<lapin::Acker>,
    channel: Arc<ChannelGuard>,
    queue: Arc<str>,
    dead_letters: bool,
    /// Set when the host counts this message's redeliveries: forgotten once it is settled.
    counted: Option<(Arc<Redeliveries>, String)>,
}

impl Drop for AmqpAck {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take()
            && self.channel.0.status().connected()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            tracing::warn!(queue = %self.queue, "a delivery was dropped unsettled; returning it to the queue");
            runtime.spawn(async move {
                let _ = acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
            });
        }
    }
}

impl std::fmt::Debug for AmqpAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpAck")
            .field("queue", &self.queue)
            .finish()
    }
}

impl AmqpAck {
    fn settle_error(&self, e: lapin::Error) -> BrokerError {
        BrokerError::Broker(format!(
            "settling a message from queue `{}` (it will be delivered again): {e}",
            self.queue
        ))
    }

    fn take_acker(&mut self) -> lapin::Acker {
        self.acker
            .take()
            .expect("an AMQP delivery is settled once (settling takes it by value)")
    }

    /// The message will not come back from this queue: stop counting its redeliveries.
    fn forget(&self) {
        if let Some((redeliveries, id)) = &self.counted {
            redeliveries.forget(&self.queue, id);
        }
    }

    pub async fn ack(mut self) -> Result<(), BrokerError> {
        self.forget();
        self.take_acker()
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|e| self.settle_error(e))
    }

    /// `Requeue` returns the message now; `RequeueAfter` after the delay (held unacked until
    /// then, without holding up the caller); `DeadLetter` rejects it to the queue's
    /// dead-letter exchange, which the broker records in `x-death`. A queue the config does
    /// not give a dead-letter exchange gets the message back instead (the broker would drop
    /// it), and the call fails saying so.
    pub async fn nack(self, nack: Nack) -> Result<(), BrokerError> {
        if !self.channel.0.status().connected() {
            return Err(BrokerError::Broker(format!(
                "the channel of queue `{}` is closed; the broker will deliver the message again",
                self.queue
            )));
        }
        match nack {
            Nack::Requeue => self.requeue().await,
            Nack::RequeueAfter(delay) => {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Err(error) = self.requeue().await {
                        tracing::warn!(%error, "returning a message after its delay failed");
                    }
                });
                Ok(())
            }
            Nack::DeadLetter(_) if !self.dead_letters => {
                let queue = self.queue.clone();
                self.requeue().await?;
                Err(BrokerError::Broker(format!(
                    "queue `{queue}` has no dead-letter exchange in the config, so the message was returned to it rather than dropped"
                )))
            }
            Nack::DeadLetter(_) => {
                self.forget();
                let mut this = self;
                this.take_acker()
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                    .map(drop)
                    .map_err(|e| this.settle_error(e))
            }
        }
    }

    async fn requeue(mut self) -> Result<(), BrokerError> {
        self.take_acker()
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .map(drop)
            .map_err(|e| self.settle_error(e))
    }
}

#[async_trait::async_trait]
impl super::Settle for AmqpAck {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        AmqpAck::ack(*self).await
    }

    async fn nack(self: Box<Self>, nack: Nack) -> Result<(), BrokerError> {
        AmqpAck::nack(*self, nack).await
    }
}

#[async_trait::async_trait]
impl super::Source for AmqpConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        AmqpConsumer::next(self).await
    }

    async fn close(self: Box<Self>) {
        AmqpConsumer::close(*self).await
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
        let consumer = if options.shared {
            AmqpBroker::consume_shared(self, queue, options.prefetch).await?
        } else {
            AmqpBroker::consume(self, queue, options.prefetch).await?
        };
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

/// A publish's target as an error names it.
fn describe_target(exchange: &str, routing_key: &str) -> String {
    if exchange.is_empty() {
        format!("queue `{routing_key}`")
    } else {
        format!("exchange `{exchange}` with key `{routing_key}`")
    }
}

/// What a publisher confirm says of one message.
fn confirmed(confirmation: Confirmation, target: &str) -> Result<(), BrokerError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(BrokerError::Unroutable {
                target: target.to_owned(),
                reason: returned.reply_text.to_string(),
            })
        }
        Confirmation::Nack(None) => Err(BrokerError::Broker(format!(
            "the broker refused the message for {target} (nack)"
        ))),
        Confirmation::NotRequested => Err(BrokerError::Broker(
            "the publishing channel is not in confirm mode".into(),
        )),
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
    use super::*;

    #[test]
    fn delays_round_up_to_two_significant_digits() {
        assert_eq!(delay_bucket(1), 1);
        assert_eq!(delay_bucket(99), 99);
        assert_eq!(delay_bucket(100), 100);
        assert_eq!(delay_bucket(101), 110);
        assert_eq!(delay_bucket(1234), 1300);
        assert_eq!(delay_bucket(30_000), 30_000);
        assert_eq!(delay_bucket(33_001), 34_000);
    }
}
