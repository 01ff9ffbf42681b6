//! NATS as a transport, through `async-nats`.
//!
//! **Queues** are JetStream streams: queue `orders` is a work-queue stream (`{prefix}orders_…`)
//! on subject `orders`, made on first use, so a plain NATS client publishing to `orders` with
//! JetStream feeds the route that reads it. Every reader of a queue pulls from the stream's
//! one durable consumer (`wharf`), so readers on every host compete for its messages. A send
//! completes once the stream has stored the message (its publish ack); a delivery is acked
//! when its outputs are confirmed, nacked with a delay for a retry (`NAK` with a delay, held
//! by the server), and dead-lettered by publishing a copy with the `exception` headers to
//! `{queue}.dead` and acking the original. An unsettled delivery comes back after
//! `ack_wait_ms`; at most `prefetch` deliveries are unsettled per reader. A reader that takes
//! with a limit dead-letters a message past its tenth delivery itself (JetStream only stops
//! delivering it).
//!
//! **Replies** to a NATS reply subject (`_INBOX.…`, which a requester names in
//! `x-wharf-reply-to` beside its `x-wharf-correlation-id`) are core publishes no stream keeps,
//! as NATS's own request/reply answers.
//!
//! **Delayed sends** (a route's retries) carry `x-wharf-not-before`; a reader that gets one
//! early hands it back with a `NAK` for the time left, and does not count that delivery.
//!
//! **Events** go to subjects `{exchange}.{key}` on an interest stream (`{prefix}{exchange}`
//! on `{exchange}.>`): an event is kept until every subscription that wants it has acked it,
//! and one nobody wants is dropped. A subscription is a durable consumer of that stream with
//! its pattern as the filter (`*` one word, `#` as the last word is `>`); it retries in place.

pub mod config;
mod kind;
mod map;

use super::{
    AckHandle, BrokerError, ConsumeOptions, Consumer, DeadLetter, Delivery, Depth, Nack, Settle,
    Source, Subscribed, Transport, check_message,
};
use crate::message::{Message, now_ms};
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
pub use config::NatsConfig;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The durable consumer every reader of a queue shares.
const QUEUE_CONSUMER: &str = "wharf";
/// How many deliveries a reader with a limit allows before it dead-letters a message.
const MAX_DELIVERIES: u32 = crate::units::DEFAULT_MAX_DELIVERIES;
/// How long one pull waits for messages before it asks again. Short, because what the
/// server sends to the pull of a reader that has gone meanwhile is lost to it until the ack
/// wait brings it back.
const PULL_WAIT: Duration = Duration::from_secs(2);
/// How often an idle server says it is there, within a pull.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// The most messages one pull asks for.
const MAX_PULL: usize = 256;
/// How long closing waits for each message already on its way to the reader, to hand it back.
const CLOSE_DRAIN: Duration = Duration::from_millis(50);
/// Early deliveries of delayed sends remembered per reader, to leave them out of the count.
const MAX_HOLDS: usize = 4096;

/// A NATS connection. Cheap to clone.
#[derive(Clone)]
pub struct NatsBroker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: NatsConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Queue streams known to exist, by address.
    streams: Mutex<HashMap<String, stream::Stream>>,
    /// Subscriptions' consumers, by the address a route reads them at.
    subscriptions: Mutex<HashMap<String, (String, String)>>,
}

fn failed(connection: &str, doing: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable {
        connection: connection.to_owned(),
        detail: format!("{doing}: {e}"),
    }
}

/// A stream's name from its prefix and what it holds: the readable part and a hash, so two
/// addresses never share one (`orders.in` and `orders_in` differ).
fn stream_name(prefix: &str, of: &str) -> String {
    use sha2::Digest as _;
    let readable: String = of
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = hex::encode(&sha2::Sha256::digest(of.as_bytes())[..4]);
    format!("{prefix}{readable}_{hash}")
}

/// Whether `address` is a NATS reply subject (a requester's inbox), answered by a core
/// publish rather than kept in a stream.
fn is_inbox(address: &str) -> bool {
    address.starts_with("_INBOX.")
}

/// Whether NATS takes `subject` to publish to: dot-separated tokens of printable ASCII,
/// without wildcards.
fn check_subject(subject: &str) -> Result<(), String> {
    let fine = !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && token.bytes().all(|b| b.is_ascii_graphic())
        });
    if fine {
        Ok(())
    } else {
        Err("a NATS subject is dot-separated words of printable ASCII, without empty words or `*`/`>`".into())
    }
}

/// A binding pattern as a NATS filter: `*` stays one word, `#` as the last word is `>`.
fn filter_of(exchange: &str, pattern: &str) -> Result<String, BrokerError> {
    let words: Vec<&str> = pattern.split('.').collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        match *word {
            "#" if i + 1 == words.len() => out.push(">"),
            "#" => {
                return Err(BrokerError::Broker(format!(
                    "NATS takes `#` only as the pattern's last word, not in `{pattern}`"
                )));
            }
            word => out.push(word),
        }
    }
    Ok(format!("{exchange}.{}", out.join(".")))
}

impl NatsBroker {
    /// Connects to the servers in the background: a server that is down is retried, and
    /// sends fail as unavailable meanwhile.
    pub async fn start(name: &str, config: NatsConfig) -> Result<NatsBroker, BrokerError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("wharf {name}"))
            .connection_timeout(Duration::from_millis(config.timeout_ms))
            .request_timeout(Some(Duration::from_millis(config.timeout_ms)))
            .retry_on_initial_connect();
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let Some(seed) = &config.nkey {
            options = options.nkey(seed.clone());
        }
        if let Some(path) = &config.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| failed(name, &format!("reading {}", path.display()), e))?;
        }
        if let Some(tls) = &config.tls {
            options = options.require_tls(true);
            if let Some(ca) = &tls.ca {
                options = options.add_root_certificates(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        let servers: Vec<async_nats::ServerAddr> = config
            .servers()
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| BrokerError::Broker(format!("connection `{name}`: {e}")))?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| failed(name, "connecting", e))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_millis(config.timeout_ms));
        Ok(NatsBroker {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                config,
                client,
                js,
                streams: Mutex::new(HashMap::new()),
                subscriptions: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn unavailable(&self, doing: &str, e: impl std::fmt::Display) -> BrokerError {
        failed(&self.inner.name, doing, e)
    }

    /// The stream of queue `address`, made when it is missing.
    async fn queue_stream(&self, address: &str) -> Result<stream::Stream, BrokerError> {
        self.stream(address, address, stream::RetentionPolicy::WorkQueue)
            .await
    }

    /// The interest stream of events exchange `exchange`, made when it is missing.
    async fn events_stream(&self, exchange: &str) -> Result<stream::Stream, BrokerError> {
        self.stream(
            exchange,
            &format!("{exchange}.>"),
            stream::RetentionPolicy::Interest,
        )
        .await
    }

    /// The stream named after `name` on `subjects`, kept in `retention`: looked up once,
    /// made when it is missing.
    async fn stream(
        &self,
        name: &str,
        subjects: &str,
        retention: stream::RetentionPolicy,
    ) -> Result<stream::Stream, BrokerError> {
        if let Some(stream) = self.inner.streams.lock().unwrap().get(subjects) {
            return Ok(stream.clone());
        }
        check_subject(name).map_err(|problem| BrokerError::InvalidAddress {
            address: name.to_owned(),
            problem,
        })?;
        let config = stream::Config {
            name: stream_name(&self.inner.config.stream_prefix, name),
            subjects: vec![subjects.to_owned()],
            retention,
            storage: stream::StorageType::File,
            num_replicas: self.inner.config.replicas,
            ..Default::default()
        };
        let stream = self
            .inner
            .js
            .get_or_create_stream(config)
            .await
            .map_err(|e| self.unavailable(&format!("making the stream of `{name}`"), e))?;
        self.inner
            .streams
            .lock()
            .unwrap()
            .insert(subjects.to_owned(), stream.clone());
        Ok(stream)
    }

    /// Where `address` is published: a queue's subject, or `exchange.key` for `exchange/key`.
    async fn subject(&self, address: &str) -> Result<String, BrokerError> {
        match address.split_once('/') {
            Some((exchange, key)) => {
                self.events_stream(exchange).await?;
                let subject = format!("{exchange}.{key}");
                check_subject(&subject).map_err(|problem| BrokerError::InvalidAddress {
                    address: address.to_owned(),
                    problem,
                })?;
                Ok(subject)
            }
            None => {
                self.queue_stream(address).await?;
                Ok(address.to_owned())
            }
        }
    }

    async fn publish(
        &self,
        address: &str,
        msg: &Message,
        not_before: Option<u64>,
    ) -> Result<(), BrokerError> {
        check_message(msg)?;
        if is_inbox(address) {
            return self.reply(address, msg).await;
        }
        let subject = self.subject(address).await?;
        let mut headers = map::to_headers(msg, &subject)?;
        if let Some(at) = not_before {
            headers.insert(map::NOT_BEFORE, at.to_string());
        }
        let ack = self
            .inner
            .js
            .publish_with_headers(subject, headers, msg.payload.clone().into())
            .await
            .map_err(|e| self.unavailable(&format!("publishing to `{address}`"), e))?;
        ack.await
            .map_err(|e| self.unavailable(&format!("storing a message of `{address}`"), e))?;
        Ok(())
    }

    /// Answers a request at a NATS reply subject (`_INBOX.…`, a requester's own): a core
    /// publish no stream keeps, sent once the server has it (a flush), as NATS's own
    /// request/reply does.
    async fn reply(&self, inbox: &str, msg: &Message) -> Result<(), BrokerError> {
        check_subject(inbox).map_err(|problem| BrokerError::InvalidAddress {
            address: inbox.to_owned(),
            problem,
        })?;
        let headers = map::to_headers(msg, inbox)?;
        let client = &self.inner.client;
        client
            .publish_with_headers(inbox.to_owned(), headers, msg.payload.clone().into())
            .await
            .map_err(|e| self.unavailable(&format!("replying to `{inbox}`"), e))?;
        client
            .flush()
            .await
            .map_err(|e| self.unavailable(&format!("replying to `{inbox}`"), e))
    }

    /// The stream and durable consumer that `address` is read from.
    async fn reader(
        &self,
        address: &str,
    ) -> Result<jetstream::consumer::PullConsumer, BrokerError> {
        let subscribed = self
            .inner
            .subscriptions
            .lock()
            .unwrap()
            .get(address)
            .cloned();
        let (stream, consumer) = match subscribed {
            Some((exchange, consumer)) => (self.events_stream(&exchange).await?, consumer),
            None => (self.queue_stream(address).await?, QUEUE_CONSUMER.to_owned()),
        };
        stream
            .get_or_create_consumer(&consumer, self.consumer_config(&consumer, None))
            .await
            .map_err(|e| self.unavailable(&format!("opening the reader of `{address}`"), e))
    }

    fn consumer_config(&self, name: &str, filter: Option<String>) -> pull::Config {
        pull::Config {
            durable_name: Some(name.to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_millis(self.inner.config.ack_wait_ms),
            max_deliver: -1,
            max_ack_pending: 100_000,
            filter_subject: filter.unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Sends `msg` to the dead letters of `address` with the dead letter's headers.
    async fn dead_letter(
        &self,
        address: &str,
        mut msg: Message,
        dead: DeadLetter,
    ) -> Result<(), BrokerError> {
        msg.headers.extend(dead.headers);
        let queue = match address.split_once('/') {
            Some((_, consumer)) => consumer,
            None => address,
        };
        self.publish(&format!("{queue}.dead"), &msg, None).await
    }
}

/// The reader of one address: a pull stream that keeps a batch of `prefetch` on its way (the
/// next pull asked for before the last is used up), handing out no more than `prefetch`
/// unsettled.
struct NatsSource {
    broker: NatsBroker,
    address: String,
    messages: pull::Stream,
    /// How many messages one pull asks for: at most that many are on their way at a close.
    batch: usize,
    slots: Arc<Semaphore>,
    limited: bool,
    /// Early deliveries of delayed sends, by stream sequence.
    holds: HashMap<u64, i64>,
}

#[async_trait::async_trait]
impl Source for NatsSource {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        loop {
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| BrokerError::Closed)?;
            let raw = match self.messages.next().await {
                Some(Ok(raw)) => raw,
                Some(Err(e)) => {
                    return Err(self
                        .broker
                        .unavailable(&format!("reading `{}`", self.address), e));
                }
                None => return Err(BrokerError::Closed),
            };
            let (stream_seq, delivered, stream) = match raw.info() {
                Ok(info) => (info.stream_sequence, info.delivered, info.stream.to_owned()),
                Err(_) => (0, 1, String::new()),
            };
            if let Some(at) = raw
                .headers
                .as_ref()
                .and_then(|h| h.get(map::NOT_BEFORE))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                && at > now_ms()
            {
                let wait = Duration::from_millis(at - now_ms());
                let _ = raw.ack_with(AckKind::Nak(Some(wait))).await;
                if self.holds.len() >= MAX_HOLDS {
                    self.holds.clear();
                }
                *self.holds.entry(stream_seq).or_default() += 1;
                continue;
            }
            let held = self.holds.remove(&stream_seq).unwrap_or(0);
            let deliveries = u32::try_from((delivered - held).max(1)).unwrap_or(u32::MAX);
            let message = map::from_nats(
                &raw.subject,
                raw.headers.as_ref(),
                &raw.payload,
                (&stream, stream_seq),
            );
            if self.limited && deliveries > MAX_DELIVERIES {
                let dead = DeadLetter::new(
                    format!("delivered {MAX_DELIVERIES} times without being acked"),
                    "DeliveryLimit",
                    "broker",
                );
                self.broker
                    .dead_letter(&self.address, message, dead)
                    .await?;
                let _ = raw.ack().await;
                continue;
            }
            return Ok(Delivery {
                message,
                deliveries,
                ack: AckHandle::new(NatsAck {
                    raw,
                    broker: self.broker.clone(),
                    address: self.address.clone(),
                    _slot: slot,
                }),
            });
        }
    }

    /// What is already on its way to this reader goes back at once (the rest of a pull
    /// comes back after the ack wait).
    async fn close(mut self: Box<Self>) {
        // No more than one pull's worth: what is handed back could otherwise come straight
        // back to this very stream.
        for _ in 0..self.batch {
            match tokio::time::timeout(CLOSE_DRAIN, self.messages.next()).await {
                Ok(Some(Ok(raw))) => {
                    let _ = raw.ack_with(AckKind::Nak(None)).await;
                }
                _ => break,
            }
        }
    }
}

#[derive(Debug)]
struct NatsAck {
    raw: jetstream::Message,
    broker: NatsBroker,
    address: String,
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Settle for NatsAck {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.raw
            .ack()
            .await
            .map_err(|e| self.broker.unavailable("acking", e))
    }

    async fn nack(self: Box<Self>, nack: Nack) -> Result<(), BrokerError> {
        let kind = match nack {
            Nack::Requeue => AckKind::Nak(None),
            Nack::RequeueAfter(delay) => AckKind::Nak(Some(delay)),
            Nack::DeadLetter(dead) => {
                let stream_seq = self.raw.info().map_or(0, |i| i.stream_sequence);
                let message = map::from_nats(
                    &self.raw.subject,
                    self.raw.headers.as_ref(),
                    &self.raw.payload,
                    ("", stream_seq),
                );
                self.broker
                    .dead_letter(&self.address, message, dead)
                    .await?;
                AckKind::Ack
            }
        };
        self.raw
            .ack_with(kind)
            .await
            .map_err(|e| self.broker.unavailable("settling", e))
    }

    /// Resets the server's redelivery timer (by a whole `ack_wait_ms`).
    async fn extend(&self, _lease: Duration) -> Result<(), BrokerError> {
        self.raw
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| self.broker.unavailable("extending", e))
    }
}

#[async_trait::async_trait]
impl Transport for NatsBroker {
    async fn send(&self, address: &str, msg: Message) -> Result<(), BrokerError> {
        self.publish(address, &msg, None).await
    }

    async fn send_delayed(
        &self,
        address: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        let at = now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self.publish(address, &msg, Some(at)).await
    }

    async fn consume(
        &self,
        address: &str,
        options: ConsumeOptions,
    ) -> Result<Consumer, BrokerError> {
        let consumer = self.reader(address).await?;
        let prefetch = options.prefetch.max(1);
        let batch = prefetch.min(MAX_PULL);
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .expires(PULL_WAIT)
            .heartbeat(HEARTBEAT)
            .messages()
            .await
            .map_err(|e| self.unavailable(&format!("reading `{address}`"), e))?;
        Ok(Consumer::new(NatsSource {
            broker: self.clone(),
            address: address.to_owned(),
            messages,
            batch,
            slots: Arc::new(Semaphore::new(prefetch)),
            limited: options.limited,
            holds: HashMap::new(),
        }))
    }

    async fn ensure(&self, addresses: &[String]) -> Result<(), BrokerError> {
        for address in addresses {
            self.queue_stream(address).await?;
        }
        Ok(())
    }

    async fn depth(&self, address: &str) -> Result<Depth, BrokerError> {
        let mut consumer = self.reader(address).await?;
        let info = consumer
            .info()
            .await
            .map_err(|e| self.unavailable(&format!("asking `{address}`'s depth"), e))?;
        Ok(Depth {
            queue: address.to_owned(),
            depth: Some(info.num_pending + info.num_ack_pending as u64),
            ready: Some(info.num_pending),
            in_flight: Some(info.num_ack_pending as u64),
            consumers: Some(u32::try_from(info.num_waiting).unwrap_or(u32::MAX)),
            ..Depth::default()
        })
    }

    /// The stream's oldest messages, read by sequence (those in flight included).
    async fn peek(
        &self,
        address: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        if self
            .inner
            .subscriptions
            .lock()
            .unwrap()
            .contains_key(address)
        {
            return Err(BrokerError::Unsupported(format!(
                "`{address}` is a subscription on a shared events stream: peek its events with a leased take instead"
            )));
        }
        let mut stream = self.queue_stream(address).await?;
        let state = stream
            .info()
            .await
            .map_err(|e| self.unavailable(&format!("asking `{address}`"), e))?
            .state
            .clone();
        let mut found = Vec::new();
        let mut bytes = 0usize;
        let mut seq = state.first_sequence;
        // Deleted sequences are skipped; a bounded number of reads in any case.
        let mut reads = count.saturating_mul(2).saturating_add(64);
        while seq <= state.last_sequence && found.len() < count && reads > 0 {
            reads -= 1;
            if let Ok(raw) = stream.get_raw_message(seq).await {
                let msg = map::from_nats(
                    &raw.subject,
                    Some(&raw.headers),
                    &raw.payload,
                    (&stream.cached_info().config.name, seq),
                );
                let size = msg.size_bytes();
                if !found.is_empty() && bytes + size > max_bytes {
                    break;
                }
                bytes += size;
                found.push(msg);
            }
            seq += 1;
        }
        Ok(found)
    }

    /// Removes every message the queue's stream holds (those in flight too).
    async fn purge(&self, address: &str) -> Result<u64, BrokerError> {
        let stream = self.queue_stream(address).await?;
        stream
            .purge()
            .await
            .map(|r| r.purged)
            .map_err(|e| self.unavailable(&format!("purging `{address}`"), e))
    }

    async fn check(&self) -> Result<(), String> {
        match self.inner.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(format!("the NATS server is not connected ({state})")),
        }
    }

    async fn started(&self) -> Result<(), BrokerError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.inner.config.timeout_ms);
        while self.check().await.is_err() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Sends what is still buffered, waiting no longer than a request may take (a server
    /// that never let the client in would have it wait for ever).
    async fn close(&self) {
        let wait = Duration::from_millis(self.inner.config.timeout_ms);
        let _ = tokio::time::timeout(wait, self.inner.client.flush()).await;
    }

    async fn declare_events(&self, exchange: &str) -> Result<(), BrokerError> {
        self.events_stream(exchange).await.map(|_| ())
    }

    async fn subscribe(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<Subscribed, BrokerError> {
        let stream = self.events_stream(exchange).await?;
        let name = stream_name("", queue);
        let filter = filter_of(exchange, pattern)?;
        stream
            .get_or_create_consumer(&name, self.consumer_config(&name, Some(filter)))
            .await
            .map_err(|e| self.unavailable(&format!("subscribing `{queue}`"), e))?;
        self.inner
            .subscriptions
            .lock()
            .unwrap()
            .insert(queue.to_owned(), (exchange.to_owned(), name));
        // The events stream is shared: a retry goes back to the consumer (a NAK with a
        // delay), never as a copy every subscriber would see.
        Ok(Subscribed {
            address: queue.to_owned(),
            group: queue.to_owned(),
            shared_log: true,
        })
    }

    /// Deletes the subscription's consumer: the events it had not taken go with it.
    async fn unsubscribe(
        &self,
        exchange: &str,
        queue: &str,
        _pattern: &str,
    ) -> Result<(), BrokerError> {
        let stream = self.events_stream(exchange).await?;
        let name = stream_name("", queue);
        self.inner.subscriptions.lock().unwrap().remove(queue);
        match stream.delete_consumer(&name).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(self.unavailable(&format!("unsubscribing `{queue}`"), e)),
        }
    }

    fn kind(&self) -> &'static str {
        "nats"
    }
}

/// Connects afresh and says whether the server answers JetStream.
pub(crate) async fn test(name: &str, config: &NatsConfig) -> super::ConnectionTest {
    let shown = crate::redact::redact(&config.url);
    let broker = match NatsBroker::start(name, config.clone()).await {
        Ok(broker) => broker,
        Err(e) => return super::ConnectionTest::new(false, format!("{shown}: {e}")),
    };
    broker.started().await.ok();
    // Listing the streams asks JetStream itself, as every queue will.
    let mut names = broker.inner.js.stream_names();
    let result = tokio::time::timeout(Duration::from_millis(config.timeout_ms), names.next()).await;
    broker.close().await;
    match result {
        Ok(None | Some(Ok(_))) => {
            super::ConnectionTest::new(true, format!("{shown} answers, with JetStream"))
        }
        Ok(Some(Err(e))) => super::ConnectionTest::new(false, format!("{shown}: {e}")),
        Err(_) => super::ConnectionTest::new(
            false,
            format!("{shown}: no answer within {} ms", config.timeout_ms),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_addresses_never_share_a_stream() {
        assert_ne!(
            stream_name("w_", "orders.in"),
            stream_name("w_", "orders_in")
        );
        let name = stream_name("w_", "orders.in");
        assert!(name.starts_with("w_orders_in_"), "{name}");
        assert!(!name.contains('.'));
    }

    #[test]
    fn patterns_become_filters() {
        assert_eq!(
            filter_of("events", "Booking.*").unwrap(),
            "events.Booking.*"
        );
        assert_eq!(filter_of("events", "#").unwrap(), "events.>");
        assert!(filter_of("events", "a.#.b").is_err());
        assert!(check_subject("orders.in").is_ok());
        assert!(check_subject("orders..in").is_err());
        assert!(check_subject("a b").is_err());
    }
}
