//! The embedded broker: durable FIFO queues in the host's own database.
//!
//! Guarantees, and where they are kept:
//! - *Durable*: [`EmbeddedBroker::publish`] returns only after the transaction holding the
//!   message has committed (SQLite with `synchronous = FULL`, or PostgreSQL), so an accepted
//!   message survives a SIGKILL of the host. Writes from all callers are batched by one writer
//!   task into one transaction per batch: the cost of a commit is shared, not skipped.
//! - *At-least-once*: a claimed message is invisible for the queue's visibility timeout. If it
//!   is not acked by then (the consumer died, or is stuck) it becomes ready again and is
//!   delivered with its delivery count raised. An ack that arrives after that is refused
//!   ([`BrokerError::LeaseLost`]) rather than deleting a message someone else now holds.
//! - *Competing consumers*: a claim marks rows in the same statement that selects them
//!   (one writer on SQLite; `FOR UPDATE SKIP LOCKED` on PostgreSQL), so no message is held by
//!   two consumers at once.
//! - *FIFO* per queue, apart from redeliveries and delayed retries, which rejoin by time.
//! - *Nothing dropped silently*: an expired message, or one past the queue's
//!   `max_deliveries` (10 unless declared otherwise), is moved to the queue's dead letters
//!   with the reason in its headers, so a message that keeps failing is not delivered forever.
//! - *One caller's bad input fails only that caller*: a message is checked before it joins a
//!   batch, and a batch the database refuses is applied again one write at a time, so a row
//!   it cannot take fails its own sender and nobody else's publish, ack or claim.
//! - *Queues belong to their connection*: two embedded connections on one database each have
//!   their own queues; the store keys a queue by `connection:queue`.
//! - *Topic exchanges* as AMQP's: a send to `exchange/routing-key` puts a copy in every queue
//!   bound to the exchange with a pattern the key matches (`*` one word, `#` zero or more),
//!   one copy per queue however many of its patterns match. An exchange no queue is bound to
//!   takes the message and keeps none (an event nobody subscribes to); one never declared is
//!   an error, so a mistyped address does not swallow messages.
pub mod config;
mod consume;
mod kind;

use super::{AckHandle, BrokerError, DeadLetter, Delivery, Nack};
use crate::message::{HeaderValue, Message, now_ms};
use crate::store::queue::{Claimed, OpOutcome, QueueOp};
use crate::store::{QueueOptions, QueueStats, Store};
pub use config::EmbeddedConnectionConfig;
pub use consume::{EmbeddedAck, EmbeddedConsumer};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Tuning of the embedded broker.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// How often an idle consumer looks for messages it was not woken for: delayed retries
    /// coming due, expired leases, and publishes by other hosts on a shared PostgreSQL.
    pub poll_interval: Duration,
    /// The most writes committed in one transaction.
    pub max_batch: usize,
    /// Largest payload accepted.
    pub max_message_bytes: usize,
    /// The connection this broker serves: its queues are its own, even when another embedded
    /// connection on the same database uses the same names.
    pub connection: String,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            poll_interval: Duration::from_millis(200),
            max_batch: 512,
            max_message_bytes: 16 * 1024 * 1024,
            connection: "local".into(),
        }
    }
}

/// A handle on the embedded broker. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedBroker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: EmbeddedConfig,
    writes: mpsc::Sender<Write>,
    /// Options of the queues this host has used, so a publish does not read them again.
    queues: Mutex<HashMap<String, QueueOptions>>,
    /// Exchanges known to exist.
    exchanges: Mutex<std::collections::HashSet<String>>,
    /// Wakes this host's idle consumers of a queue when a publish to it commits.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

struct Write {
    op: QueueOp,
    done: oneshot::Sender<Result<OpOutcome, Arc<BrokerError>>>,
}

/// The answer to a write under way.
pub(super) type Written = oneshot::Receiver<Result<OpOutcome, Arc<BrokerError>>>;

impl EmbeddedBroker {
    /// Starts the broker on `store`, with its writer task on the current tokio runtime.
    pub fn new(store: Store, config: EmbeddedConfig) -> EmbeddedBroker {
        let (writes, queue) = mpsc::channel(config.max_batch * 4);
        let inner = Arc::new(Inner {
            store,
            config,
            writes,
            queues: Mutex::default(),
            exchanges: Mutex::default(),
            wakers: Mutex::default(),
        });
        tokio::spawn(write_batches(Arc::downgrade(&inner), queue));
        EmbeddedBroker { inner }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Creates `queue` with `options`, or changes the options of an existing queue.
    pub async fn declare(&self, queue: &str, options: QueueOptions) -> Result<(), BrokerError> {
        check_queue_name(queue)?;
        if let Some(dead_letter) = &options.dead_letter {
            check_queue_name(dead_letter)?;
        }
        self.inner
            .store
            .declare_queue(&self.stored(queue), &options, now_ms() as i64)
            .await?;
        self.lock_queues().insert(queue.to_owned(), options);
        Ok(())
    }

    /// Stores `msg` in `queue` (created on first use); returns once it is committed.
    pub async fn publish(&self, queue: &str, msg: Message) -> Result<(), BrokerError> {
        self.publish_delayed(queue, msg, Duration::ZERO).await
    }

    /// Stores `msg` in `queue`, ready after `delay`; returns once it is committed. An address
    /// `exchange/routing-key` goes through that topic exchange (`exchange/` routes by the
    /// message's topic).
    pub async fn publish_delayed(
        &self,
        queue: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        if let Some((exchange, key)) = queue.split_once('/') {
            return self.publish_to_exchange(exchange, key, msg, delay).await;
        }
        // The whole message counts (payload, key, headers): every byte of it is stored and
        // read back by whoever peeks.
        let limit = self.inner.config.max_message_bytes;
        if msg.size_bytes() > limit {
            return Err(BrokerError::TooLarge {
                size: msg.size_bytes(),
                limit,
            });
        }
        super::check_message(&msg)?;
        self.ensure_queue(queue).await?;
        let now = now_ms() as i64;
        self.write(QueueOp::Publish {
            queue: self.stored(queue),
            message: msg,
            visible_at_ms: now + delay.as_millis() as i64,
            now_ms: now,
        })
        .await?;
        if delay.is_zero() {
            self.waker(queue).notify_waiters();
        }
        Ok(())
    }

    /// Declares topic exchange `exchange` (nothing if it exists).
    pub async fn declare_exchange(&self, exchange: &str) -> Result<(), BrokerError> {
        if self.lock_exchanges().contains(exchange) {
            return Ok(());
        }
        check_queue_name(exchange)?;
        self.inner
            .store
            .declare_exchange(&self.stored(exchange), now_ms() as i64)
            .await?;
        self.lock_exchanges().insert(exchange.to_owned());
        Ok(())
    }

    /// Binds `queue` (created if new) to topic exchange `exchange` (declared if new) with
    /// `pattern`: every message sent to the exchange with a key the pattern matches gets a
    /// copy in the queue.
    pub async fn bind(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<(), BrokerError> {
        self.declare_exchange(exchange).await?;
        self.ensure_queue(queue).await?;
        super::check_name("binding pattern", pattern, true)?;
        self.inner
            .store
            .bind_queue(
                &self.stored(exchange),
                &self.stored(queue),
                pattern,
                now_ms() as i64,
            )
            .await?;
        Ok(())
    }

    /// Removes the binding of `queue` to `exchange` with `pattern`.
    pub async fn unbind(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<(), BrokerError> {
        self.inner
            .store
            .unbind_queue(&self.stored(exchange), &self.stored(queue), pattern)
            .await?;
        Ok(())
    }

    /// The bindings of `exchange`, as `(queue, pattern)`.
    pub async fn bindings(&self, exchange: &str) -> Result<Vec<(String, String)>, BrokerError> {
        let prefix = format!("{}:", self.inner.config.connection);
        Ok(self
            .inner
            .store
            .bindings(&self.stored(exchange))
            .await?
            .into_iter()
            .filter_map(|(queue, pattern)| {
                queue
                    .strip_prefix(&prefix)
                    .map(|queue| (queue.to_owned(), pattern))
            })
            .collect())
    }

    /// Puts a copy of `msg` (its topic set to the routing key) in every queue bound to
    /// `exchange` with a pattern `key` matches; an empty key routes by the message's topic.
    async fn publish_to_exchange(
        &self,
        exchange: &str,
        key: &str,
        mut msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        if !key.is_empty() {
            super::check_name("routing key", key, true)?;
            msg.topic = key.to_owned();
        }
        let bindings = self.bindings(exchange).await?;
        if bindings.is_empty() && !self.exchange_known(exchange).await? {
            return Err(BrokerError::Unroutable {
                target: format!("exchange `{}`", super::shorten(exchange)),
                reason: "no such exchange".into(),
            });
        }
        let queues: std::collections::BTreeSet<String> = bindings
            .into_iter()
            .filter(|(_, pattern)| crate::topic::matches(pattern, &msg.topic))
            .map(|(queue, _)| queue)
            .collect();
        // Sent together, so the one writer commits them in one batch.
        futures::future::try_join_all(
            queues
                .iter()
                .map(|queue| Box::pin(self.publish_delayed(queue, msg.clone(), delay))),
        )
        .await?;
        Ok(())
    }

    async fn exchange_known(&self, exchange: &str) -> Result<bool, BrokerError> {
        if self.lock_exchanges().contains(exchange) {
            return Ok(true);
        }
        let known = self
            .inner
            .store
            .exchange_exists(&self.stored(exchange))
            .await?;
        if known {
            self.lock_exchanges().insert(exchange.to_owned());
        }
        Ok(known)
    }

    fn lock_exchanges(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.inner
            .exchanges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Starts consuming `queue` with at most `prefetch` unsettled deliveries at a time. A
    /// message delivered more often than the queue's `max_deliveries` is dead-lettered.
    pub async fn consume(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<EmbeddedConsumer, BrokerError> {
        self.consume_limited(queue, prefetch, true).await
    }

    /// `limited: false` is for a consumer that enforces a delivery limit of its own (a
    /// route, which dead-letters to its own dead letters): every delivery is handed out with
    /// its count.
    pub(crate) async fn consume_limited(
        &self,
        queue: &str,
        prefetch: usize,
        limited: bool,
    ) -> Result<EmbeddedConsumer, BrokerError> {
        let options = self.options(queue).await?;
        let dead_letter_queue = options.dead_letter_queue(queue);
        Ok(EmbeddedConsumer {
            broker: self.clone(),
            queue: queue.into(),
            stored_queue: self.stored(queue).into(),
            stored_dead_letter_queue: self.stored(&dead_letter_queue).into(),
            dead_letter_queue: dead_letter_queue.into(),
            waker: self.waker(queue),
            options,
            limited,
            prefetch: prefetch.max(1),
            permits: Arc::new(Semaphore::new(prefetch.max(1))),
            ready: VecDeque::new(),
            claiming: None,
            doomed: Vec::new(),
        })
    }

    pub async fn stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        check_queue_name(queue)?;
        let mut stats = self
            .inner
            .store
            .queue_stats(&self.stored(queue), now_ms() as i64)
            .await?;
        stats.queue = queue.to_owned();
        Ok(stats)
    }

    /// Up to `count` ready messages of `queue`, in order, left where they are; no more than
    /// `max_bytes` of whole messages (payload, key and headers), but always the first.
    pub async fn peek(
        &self,
        queue: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        check_queue_name(queue)?;
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        Ok(self
            .inner
            .store
            .peek_queue(&self.stored(queue), count, max_bytes, now_ms() as i64)
            .await?)
    }

    /// Moves the ready message `id` of `queue` elsewhere: `send` gets it, and only once `send`
    /// has succeeded is it removed here. `Ok(false)` if no ready message has that id.
    pub async fn move_by_id<F, Fut>(
        &self,
        queue: &str,
        id: &str,
        send: F,
    ) -> Result<bool, BrokerError>
    where
        F: FnOnce(Message) -> Fut,
        Fut: Future<Output = Result<(), BrokerError>>,
    {
        check_queue_name(queue)?;
        let stored = self.stored(queue);
        let store = &self.inner.store;
        let Some((seq, message)) = store.find_ready(&stored, id, now_ms() as i64).await? else {
            return Ok(false);
        };
        send(message).await?;
        if !store.remove_ready(&stored, seq).await? {
            tracing::warn!(
                queue,
                id,
                "a message moved by id was claimed meanwhile; it may be handled twice"
            );
        }
        Ok(true)
    }

    /// Removes the ready messages of `queue`, as AMQP's purge does: not those a consumer
    /// holds (they are acked or come back) nor those waiting out a delay (a route's retry);
    /// returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u64, BrokerError> {
        check_queue_name(queue)?;
        Ok(self
            .inner
            .store
            .purge_queue(&self.stored(queue), now_ms() as i64)
            .await?)
    }

    /// Whether this connection has a queue named `queue`.
    pub async fn has_queue(&self, queue: &str) -> Result<bool, BrokerError> {
        Ok(self.inner.store.queue_exists(&self.stored(queue)).await?)
    }

    /// The names of this connection's queues, sorted.
    pub async fn queues(&self) -> Result<Vec<String>, BrokerError> {
        let prefix = format!("{}:", self.inner.config.connection);
        Ok(self
            .inner
            .store
            .queue_names()
            .await?
            .into_iter()
            .filter_map(|name| name.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }

    /// The name the store keeps `queue` under: the connection's name, a colon, the queue.
    fn stored(&self, queue: &str) -> String {
        format!("{}:{queue}", self.inner.config.connection)
    }

    fn lock_queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueueOptions>> {
        self.inner.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The options of `queue`, creating it with defaults if it does not exist.
    async fn options(&self, queue: &str) -> Result<QueueOptions, BrokerError> {
        self.ensure_queue(queue).await?;
        Ok(self.lock_queues()[queue].clone())
    }

    /// Makes sure `queue` exists (once per queue and host; a publish only checks a map).
    async fn ensure_queue(&self, queue: &str) -> Result<(), BrokerError> {
        if self.lock_queues().contains_key(queue) {
            return Ok(());
        }
        check_queue_name(queue)?;
        let options = self
            .inner
            .store
            .ensure_queue(&self.stored(queue), now_ms() as i64)
            .await?;
        self.lock_queues().insert(queue.to_owned(), options);
        Ok(())
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        let mut wakers = self.inner.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(waker) = wakers.get(queue) {
            return waker.clone();
        }
        wakers.entry(queue.to_owned()).or_default().clone()
    }

    async fn write(&self, op: QueueOp) -> Result<OpOutcome, BrokerError> {
        let outcome = self.begin_write(op).await?;
        Self::written(outcome).await
    }

    /// Hands `op` to the writer; its outcome comes on the answer. Awaiting the answer (by
    /// `&mut`) may be given up and taken up again: the op is written either way.
    pub(super) async fn begin_write(&self, op: QueueOp) -> Result<Written, BrokerError> {
        let (done, outcome) = oneshot::channel();
        self.inner
            .writes
            .send(Write { op, done })
            .await
            .map_err(|_| BrokerError::Closed)?;
        Ok(outcome)
    }

    /// The outcome of a write begun with [`Self::begin_write`].
    pub(super) async fn written(
        outcome: impl std::future::Future<
            Output = Result<Result<OpOutcome, Arc<BrokerError>>, oneshot::error::RecvError>,
        >,
    ) -> Result<OpOutcome, BrokerError> {
        match outcome.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(shared)) => Err(match Arc::try_unwrap(shared) {
                Ok(error) => error,
                Err(shared) => {
                    BrokerError::Store(crate::store::StoreError::Invalid(shared.to_string()))
                }
            }),
            Err(_) => Err(BrokerError::Closed),
        }
    }
}

/// The broker-wide name rules, and no spaces: an embedded queue name is also a path segment
/// and a command-line word.
fn check_queue_name(queue: &str) -> Result<(), BrokerError> {
    super::check_name("queue", queue, false)?;
    if queue.contains('/') {
        return Err(BrokerError::InvalidAddress {
            address: super::shorten(queue),
            problem: "a queue name cannot hold `/` (`exchange/routing-key` sends through a topic exchange)".into(),
        });
    }
    if queue.chars().any(char::is_whitespace) {
        return Err(BrokerError::InvalidAddress {
            address: super::shorten(queue),
            problem: "a queue name cannot hold spaces".into(),
        });
    }
    Ok(())
}

/// The one writer: takes every pending write, applies them in one transaction, answers each.
/// It ends when the broker is dropped.
async fn write_batches(inner: std::sync::Weak<Inner>, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::new();
    loop {
        let max_batch = match inner.upgrade() {
            Some(inner) => inner.config.max_batch,
            None => return,
        };
        if queue.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        let (ops, answers): (Vec<QueueOp>, Vec<_>) =
            batch.drain(..).map(|w| (w.op, w.done)).unzip();
        let mut orphans = Vec::new();
        match inner.store.apply_queue_ops(&ops).await {
            Ok(outcomes) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    answer_write(answer, Ok(outcome), &mut orphans);
                }
            }
            // The database refused something in the batch, which was rolled back whole. Apply
            // its writes again one at a time, so that a write the database refuses fails its
            // own caller only, and the others commit. (A lost connection or a timeout fails
            // the batch at once: retrying each write would only wait that long again.)
            Err(error) if ops.len() > 1 && error.is_refused_data() => {
                tracing::warn!(%error, writes = ops.len(), "embedded broker: a batch failed; applying its writes one by one");
                for (op, answer) in ops.into_iter().zip(answers) {
                    let outcome = inner
                        .store
                        .apply_queue_ops(std::slice::from_ref(&op))
                        .await
                        .map(|mut outcomes| outcomes.remove(0))
                        .map_err(|error| Arc::new(BrokerError::Store(error)));
                    if let Err(error) = &outcome {
                        tracing::warn!(%error, "embedded broker: a write failed");
                    }
                    answer_write(answer, outcome, &mut orphans);
                }
            }
            Err(error) => {
                tracing::error!(%error, "embedded broker: a write failed");
                let error = Arc::new(BrokerError::Store(error));
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
        if !orphans.is_empty()
            && let Err(error) = inner.store.apply_queue_ops(&orphans).await
        {
            tracing::warn!(%error, messages = orphans.len(), "could not return unclaimed messages; they come back after their visibility timeout");
        }
    }
}

/// Answers one write. A consumer that stopped waiting (its `next` was cancelled, say by a
/// shutdown) while its claim committed gets its messages returned at once (through
/// `orphans`) instead of leaving them leased until their visibility timeout.
fn answer_write(
    answer: oneshot::Sender<Result<OpOutcome, Arc<BrokerError>>>,
    outcome: Result<OpOutcome, Arc<BrokerError>>,
    orphans: &mut Vec<QueueOp>,
) {
    if let Err(Ok(OpOutcome::Claimed(claimed))) = answer.send(outcome) {
        orphans.extend(claimed.into_iter().map(|c| QueueOp::Release {
            seq: c.seq,
            deliveries: c.deliveries,
            visible_at_ms: now_ms() as i64,
        }));
    }
}

#[async_trait::async_trait]
impl super::Transport for EmbeddedBroker {
    async fn send(&self, queue: &str, msg: Message) -> Result<(), BrokerError> {
        self.publish(queue, msg).await
    }

    async fn send_delayed(
        &self,
        queue: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        self.publish_delayed(queue, msg, delay).await
    }

    async fn consume(
        &self,
        queue: &str,
        options: super::ConsumeOptions,
    ) -> Result<super::Consumer, BrokerError> {
        Ok(super::Consumer::new(
            self.consume_limited(queue, options.prefetch, options.limited)
                .await?,
        ))
    }

    async fn depth(&self, queue: &str) -> Result<super::Depth, BrokerError> {
        Ok(depth_of(self.stats(queue).await?))
    }

    async fn peek(
        &self,
        queue: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        EmbeddedBroker::peek(self, queue, count, max_bytes).await
    }

    async fn purge(&self, queue: &str) -> Result<u64, BrokerError> {
        EmbeddedBroker::purge(self, queue).await
    }

    async fn check(&self) -> Result<(), String> {
        self.store().ping().await.map_err(|e| e.to_string())
    }

    fn held(&self) -> Option<&EmbeddedBroker> {
        Some(self)
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn declare_events(&self, exchange: &str) -> Result<(), BrokerError> {
        self.declare_exchange(exchange).await
    }

    async fn subscribe(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<super::Subscribed, BrokerError> {
        self.bind(exchange, queue, pattern).await?;
        Ok(super::Subscribed::queue(queue))
    }

    async fn unsubscribe(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<(), BrokerError> {
        self.unbind(exchange, queue, pattern).await
    }
}

/// A queue's stats in the words every transport shares.
pub(crate) fn depth_of(stats: QueueStats) -> super::Depth {
    super::Depth {
        depth: Some(stats.depth()),
        ready: Some(stats.ready),
        in_flight: Some(stats.in_flight),
        delayed: Some(stats.delayed),
        oldest_age_ms: stats.oldest_age_ms,
        queue: stats.queue,
        ..super::Depth::default()
    }
}

/// Opens embedded connection `name`, declaring the queues its definition names. The
/// broker's own size limit (its default) stays above the routes' (`server.max_message_bytes`),
/// so a message a route refuses as too large can still be dead-lettered.
pub(crate) async fn open(
    name: &str,
    config: &EmbeddedConnectionConfig,
    store: &Store,
) -> Result<EmbeddedBroker, String> {
    let broker = EmbeddedBroker::new(
        store.clone(),
        EmbeddedConfig {
            connection: name.to_owned(),
            ..EmbeddedConfig::default()
        },
    );
    for queue in &config.queues {
        broker
            .declare(&queue.name, queue_options(queue))
            .await
            .map_err(|e| format!("declaring queue `{}`: {e}", queue.name))?;
    }
    Ok(broker)
}

/// The options of an embedded queue declared in a connection's definition.
pub fn queue_options(queue: &config::QueueConfig) -> QueueOptions {
    let defaults = QueueOptions::default();
    QueueOptions {
        dead_letter: queue.dead_letter.clone(),
        visibility_timeout: queue
            .visibility_timeout_ms
            .map_or(defaults.visibility_timeout, Duration::from_millis),
        max_deliveries: queue
            .max_deliveries
            .unwrap_or(crate::units::DEFAULT_MAX_DELIVERIES),
    }
}

/// The embedded broker lives in the host's database: it works while the database answers.
pub(crate) async fn test(store: &Store) -> super::ConnectionTest {
    match store.ping().await {
        Ok(()) => super::ConnectionTest::new(
            true,
            "the embedded broker lives in this host's database, which answers",
        ),
        Err(e) => super::ConnectionTest::new(false, format!("the database does not answer: {e}")),
    }
}
