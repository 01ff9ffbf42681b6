//! Consuming Kafka in order, at least once.
//!
//! A consumer joins the group `{group}.{unit}` (a route's name; a passing consumer, a take,
//! joins `{group}.take`) and subscribes to its topic, or to a pattern (`^orders\..*`). Records
//! are read into a buffer per partition and handed out one partition at a time: the next
//! record of a partition only once the one before it is settled, and at most `prefetch`
//! records in all. Acking a record stores its offset (the next one to read), which the
//! consumer commits every second and on every rebalance before its partitions go, so a
//! committed offset never passes a record whose outputs are not confirmed. A partition whose
//! buffer fills (one slow record ahead of many) is paused until it drains: memory stays
//! bounded whatever the broker holds.
//!
//! Settling:
//! - `ack` stores the offset (the next record's);
//! - `nack(Requeue)` hands the same record out again next (its delivery count raised), and
//!   `RequeueAfter` after the delay, holding its partition meanwhile (a route's retries do
//!   not come here: they are delayed sends, see [`super::DELAYED`]);
//! - `nack(DeadLetter)` sends it to `{topic}.dead` with the dead letter's headers, then
//!   stores the offset.
//! - a delivery dropped unsettled is handed out again, as `Requeue`.
//!
//! After a rebalance the partitions taken away are forgotten: a record of theirs settled late
//! stores nothing (its partition's new owner reads it again from the last commit).

use super::{KafkaBroker, Part, client_config, error, map};
use crate::broker::{
    AckHandle, BrokerError, ConsumeOptions, ConsumerState, Delivery, Nack, PartitionDepth,
    PartitionLag, Settle, Source,
};
use crate::message::Message;
use rdkafka::Offset;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::topic_partition_list::TopicPartitionList;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Records buffered for one partition before it is paused.
const PAUSE_AT: usize = 256;

type Partition = (Arc<str>, i32);

struct Pending {
    message: Message,
    offset: i64,
    deliveries: u32,
}

#[derive(Default)]
struct State {
    /// Raised at every revocation: settlements of an older generation store nothing.
    generation: u64,
    buffers: HashMap<Partition, VecDeque<Pending>>,
    /// Partitions with a record handed out and not settled.
    busy: HashSet<Partition>,
    paused: HashSet<Partition>,
    in_flight: usize,
    /// Partitions assigned to this consumer now.
    assigned: Vec<(String, i32)>,
    /// The next offset to read of each partition, as its acks stored it: what a commit on
    /// revoke or close sends (never the consumer's position, which is past records read but
    /// not yet handled).
    stored: HashMap<Partition, i64>,
}

/// Commits `offsets` now, waiting for the brokers' answer.
fn commit_stored<C: ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    offsets: &HashMap<Partition, i64>,
) -> rdkafka::error::KafkaResult<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&list, CommitMode::Sync)
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The consumer-group members of one connection on this host: what each holds and its lag,
/// for the status, the dashboard and `/metrics`.
#[derive(Clone, Default)]
pub struct Members(Arc<Mutex<std::collections::BTreeMap<String, ConsumerState>>>);

impl Members {
    pub fn states(&self) -> Vec<ConsumerState> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn update(&self, group: &str, change: impl FnOnce(&mut ConsumerState)) {
        let mut members = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = members.get_mut(group) {
            change(state);
        }
    }
}

struct Context {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    group: String,
    members: Members,
}

impl ClientContext for Context {
    /// librdkafka's statistics, every 5 s: each assigned partition's lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lags = Vec::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    lags.push((topic.clone(), *partition, p.consumer_lag));
                }
            }
        }
        self.members.update(&self.group, |state| {
            for (topic, partition, lag) in &lags {
                if let Some(held) = state
                    .partitions
                    .iter_mut()
                    .find(|h| &h.topic == topic && h.partition == *partition)
                {
                    held.lag = Some(*lag);
                    crate::metrics::kafka_lag(&self.group, topic, *partition, *lag);
                }
            }
        });
    }
}

impl Context {
    /// Shows the partitions held now in the status and `/metrics`.
    fn publish(&self, assigned: &[(String, i32)]) {
        crate::metrics::kafka_assigned(&self.group, assigned.len());
        self.members.update(&self.group, |state| {
            let old = std::mem::take(&mut state.partitions);
            state.partitions = assigned
                .iter()
                .map(|(topic, partition)| PartitionLag {
                    topic: topic.clone(),
                    partition: *partition,
                    lag: old
                        .iter()
                        .find(|o| &o.topic == topic && o.partition == *partition)
                        .and_then(|o| o.lag),
                })
                .collect();
        });
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // What is done is committed before the partitions go.
            let stored = std::mem::take(&mut lock(&self.state).stored);
            if let Err(e) = commit_stored(consumer, &stored) {
                tracing::warn!(group = %self.group, error = %e, "committing on revoke failed; the partitions' new owner reads again from the last commit");
            }
            let mut state = lock(&self.state);
            state.generation += 1;
            for element in partitions.elements() {
                let key: Partition = (element.topic().into(), element.partition());
                state.buffers.remove(&key);
                state.busy.remove(&key);
                state.paused.remove(&key);
            }
            state.assigned.retain(|(topic, partition)| {
                !partitions
                    .elements()
                    .iter()
                    .any(|e| e.topic() == topic && e.partition() == *partition)
            });
            self.publish(&state.assigned);
            tracing::info!(group = %self.group, revoked = partitions.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let mut state = lock(&self.state);
            for element in partitions.elements() {
                let key = (element.topic().to_owned(), element.partition());
                if !state.assigned.contains(&key) {
                    state.assigned.push(key);
                }
            }
            tracing::info!(group = %self.group, assigned = partitions.count(), "partitions assigned");
            self.publish(&state.assigned);
        }
        self.notify.notify_one();
    }
}

/// Consumes one topic (or pattern) as a member of a group.
pub struct KafkaConsumer {
    consumer: Arc<StreamConsumer<Context>>,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    broker: KafkaBroker,
    prefetch: usize,
    group: String,
}

impl KafkaConsumer {
    pub fn start(
        broker: &KafkaBroker,
        address: &str,
        options: &ConsumeOptions,
    ) -> Result<KafkaConsumer, BrokerError> {
        super::check_topic(broker.name(), address, true)?;
        let config = broker.config();
        let group = format!(
            "{}.{}",
            config.group,
            options.unit.as_deref().unwrap_or("take")
        );
        let state = Arc::new(Mutex::new(State::default()));
        let notify = Arc::new(Notify::new());
        broker
            .members()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                group.clone(),
                ConsumerState {
                    group: group.clone(),
                    unit: options.unit.clone(),
                    ..ConsumerState::default()
                },
            );
        let context = Context {
            state: state.clone(),
            notify: notify.clone(),
            group: group.clone(),
            members: broker.members().clone(),
        };
        let mut client = client_config(config, Part::Consumer);
        client.set("group.id", &group);
        let consumer: StreamConsumer<Context> = client
            .create_with_context(context)
            .map_err(|e| error(broker.name(), "creating a consumer", e))?;
        consumer
            .subscribe(&[address])
            .map_err(|e| error(broker.name(), &format!("subscribing to `{address}`"), e))?;
        Ok(KafkaConsumer {
            consumer: Arc::new(consumer),
            state,
            notify,
            broker: broker.clone(),
            prefetch: options.prefetch.max(1),
            group,
        })
    }

    /// The next record a partition free to go may hand out, if any.
    fn ready(&self) -> Option<Delivery> {
        let mut state = lock(&self.state);
        if state.in_flight >= self.prefetch {
            return None;
        }
        let state = &mut *state;
        let key = state
            .buffers
            .iter()
            .find(|(key, buffer)| !buffer.is_empty() && !state.busy.contains(*key))
            .map(|(key, _)| key.clone())?;
        let buffer = state.buffers.get_mut(&key)?;
        let pending = buffer.pop_front()?;
        let left = buffer.len();
        state.busy.insert(key.clone());
        state.in_flight += 1;
        if left < PAUSE_AT / 2 && state.paused.remove(&key) {
            let mut list = TopicPartitionList::new();
            list.add_partition(&key.0, key.1);
            if let Err(e) = self.consumer.resume(&list) {
                tracing::warn!(group = %self.group, error = %e, "resuming a partition failed");
            }
        }
        Some(Delivery {
            deliveries: pending.deliveries,
            ack: AckHandle::new(KafkaAck {
                consumer: self.consumer.clone(),
                state: self.state.clone(),
                notify: self.notify.clone(),
                broker: self.broker.clone(),
                partition: key,
                offset: pending.offset,
                generation: state.generation,
                deliveries: pending.deliveries,
                message: Some(pending.message.clone()),
            }),
            message: pending.message,
        })
    }

    fn take(&self, record: &rdkafka::message::BorrowedMessage<'_>) {
        use rdkafka::Message as _;
        let key: Partition = (record.topic().into(), record.partition());
        let pending = Pending {
            message: map::from_record(record),
            offset: record.offset(),
            deliveries: 1,
        };
        let mut state = lock(&self.state);
        let buffer = state.buffers.entry(key.clone()).or_default();
        buffer.push_back(pending);
        if buffer.len() >= PAUSE_AT && !state.paused.contains(&key) {
            let mut list = TopicPartitionList::new();
            list.add_partition(&key.0, key.1);
            match self.consumer.pause(&list) {
                Ok(()) => {
                    state.paused.insert(key);
                }
                Err(e) => {
                    tracing::warn!(group = %self.group, error = %e, "pausing a partition failed")
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Source for KafkaConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        loop {
            if let Some(delivery) = self.ready() {
                return Ok(delivery);
            }
            tokio::select! {
                received = self.consumer.recv() => match received {
                    Ok(record) => self.take(&record),
                    Err(e) => {
                        tracing::warn!(group = %self.group, error = %e, "reading from the brokers failed; librdkafka tries again");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                _ = self.notify.notified() => {}
            }
        }
    }

    /// Stops handing out records and leaves the group once the records handed out are
    /// settled (or 30 s passed), returning when it has left: their offsets are committed
    /// first, so the partitions' next owner starts after them. Records read and not handed out
    /// are read again by that owner. The consumer keeps polling meanwhile, so the group's
    /// rebalances are answered.
    async fn close(self: Box<Self>) {
        self.broker
            .members()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.group);
        crate::metrics::kafka_assigned(&self.group, 0);
        lock(&self.state).buffers.clear();
        let (consumer, state) = (self.consumer.clone(), self.state.clone());
        drop(self);
        // Done here, not left to a task: a unit replaced on this host (a route updated) starts
        // its new consumer only once this one has left the group, so the group never sees
        // the new member join while the old one is still leaving (a rebalance nisshi does not
        // finish).
        let poll = |wait: Duration| {
            let consumer = consumer.clone();
            async move {
                // Records read now are dropped unstored: the next owner reads them.
                let _ = tokio::time::timeout(wait, consumer.recv()).await;
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while lock(&state).in_flight > 0 && tokio::time::Instant::now() < deadline {
            poll(Duration::from_millis(50)).await;
        }
        let leaving = consumer.clone();
        let stored = std::mem::take(&mut lock(&state).stored);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = commit_stored(&*leaving, &stored);
            leaving.unsubscribe();
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            poll(Duration::from_millis(100)).await;
        }
        // The last handle closes the consumer, which blocks until it has left the group.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }
}

/// Settles one record.
struct KafkaAck {
    consumer: Arc<StreamConsumer<Context>>,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    broker: KafkaBroker,
    partition: Partition,
    offset: i64,
    generation: u64,
    deliveries: u32,
    /// The record, to hand out again; `None` once settled.
    message: Option<Message>,
}

impl std::fmt::Debug for KafkaAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAck")
            .field("topic", &self.partition.0)
            .field("partition", &self.partition.1)
            .field("offset", &self.offset)
            .finish()
    }
}

impl KafkaAck {
    /// Done with: the partition may go on, and its offset is stored if it is still ours.
    fn done(&mut self) {
        self.message = None;
        let mut state = lock(&self.state);
        if state.generation == self.generation {
            // `rd_kafka_offset_store` stores the offset after the one it is given: the next
            // record to read.
            match self
                .consumer
                .store_offset(&self.partition.0, self.partition.1, self.offset)
            {
                Ok(()) => {
                    state.stored.insert(self.partition.clone(), self.offset + 1);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "storing an offset failed; the record is read again")
                }
            }
            state.busy.remove(&self.partition);
        }
        state.in_flight = state.in_flight.saturating_sub(1);
        drop(state);
        self.notify.notify_one();
    }

    /// Hands the record out again, first of its partition.
    fn again(&mut self) {
        let Some(message) = self.message.take() else {
            return;
        };
        let mut state = lock(&self.state);
        if state.generation == self.generation {
            state
                .buffers
                .entry(self.partition.clone())
                .or_default()
                .push_front(Pending {
                    message,
                    offset: self.offset,
                    deliveries: self.deliveries + 1,
                });
            state.busy.remove(&self.partition);
        }
        state.in_flight = state.in_flight.saturating_sub(1);
        drop(state);
        self.notify.notify_one();
    }
}

impl Drop for KafkaAck {
    fn drop(&mut self) {
        self.again();
    }
}

#[async_trait::async_trait]
impl Settle for KafkaAck {
    async fn ack(mut self: Box<Self>) -> Result<(), BrokerError> {
        self.done();
        Ok(())
    }

    async fn nack(mut self: Box<Self>, nack: Nack) -> Result<(), BrokerError> {
        match nack {
            Nack::Requeue => self.again(),
            Nack::RequeueAfter(delay) => {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    self.again();
                });
            }
            Nack::DeadLetter(dead) => {
                let Some(mut message) = self.message.clone() else {
                    return Ok(());
                };
                message.headers.extend(dead.headers);
                let to = format!("{}.dead", self.partition.0);
                self.broker.ensure_topic(&to).await?;
                self.broker.publish(&to, message).await?;
                self.done();
            }
        }
        Ok(())
    }
}

/// Records the leased takes of one topic may hold at once through their shared member.
const SHARED_PREFETCH: usize = 1_024;
/// How long a topic's shared member stays in its group once nothing uses it, so that a
/// worker's next leased take does not wait for a new member to join (and the group is not
/// made to rebalance at every empty take).
const SHARED_LINGER: Duration = Duration::from_secs(30);

type Shared = Arc<Mutex<HashMap<String, Arc<SharedTake>>>>;

/// The leased takes of each topic, sharing one member of the take group: a caller's many
/// small leases hold one librdkafka client, not one each, and no take makes the group
/// rebalance away the partitions whose records other leases hold.
#[derive(Default)]
pub(super) struct SharedTakes(Shared);

/// One topic's shared member. It leaves the group [`SHARED_LINGER`] after the last take
/// using it, and the last lease holding a record of it, are done.
struct SharedTake {
    consumer: tokio::sync::Mutex<Option<KafkaConsumer>>,
    last_used: Mutex<tokio::time::Instant>,
}

impl Drop for SharedTake {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.get_mut().take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(Box::new(consumer).close());
        }
    }
}

impl SharedTakes {
    /// A handle on `address`'s shared member, started if there is none.
    pub fn consume(
        &self,
        broker: &KafkaBroker,
        address: &str,
        options: &ConsumeOptions,
    ) -> Result<SharedConsumer, BrokerError> {
        let mut takes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(take) = takes.get(address) {
            return Ok(SharedConsumer(take.clone()));
        }
        let options = ConsumeOptions {
            prefetch: options.prefetch.max(SHARED_PREFETCH),
            ..options.clone()
        };
        let consumer = KafkaConsumer::start(broker, address, &options)?;
        let take = Arc::new(SharedTake {
            consumer: tokio::sync::Mutex::new(Some(consumer)),
            last_used: Mutex::new(tokio::time::Instant::now()),
        });
        takes.insert(address.to_owned(), take.clone());
        tokio::spawn(linger(Arc::downgrade(&self.0), address.to_owned()));
        Ok(SharedConsumer(take))
    }
}

/// Removes `address`'s shared member once nothing has used it for [`SHARED_LINGER`] (or
/// the connection is gone).
async fn linger(takes: std::sync::Weak<Mutex<HashMap<String, Arc<SharedTake>>>>, address: String) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let Some(takes) = takes.upgrade() else { return };
        let mut takes = takes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(take) = takes.get(&address) else {
            return;
        };
        let idle = *take.last_used.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(take) == 1 && idle.elapsed() >= SHARED_LINGER {
            takes.remove(&address);
            return;
        }
    }
}

/// A leased take's handle on its topic's shared member: takes read from it one at a time,
/// and closing the handle leaves the member to the others.
pub(super) struct SharedConsumer(Arc<SharedTake>);

impl Drop for SharedConsumer {
    fn drop(&mut self) {
        *self.0.last_used.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }
}

#[async_trait::async_trait]
impl Source for SharedConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        let mut consumer = self.0.consumer.lock().await;
        match consumer.as_mut() {
            Some(consumer) => consumer.next().await,
            None => Err(BrokerError::Broker("the shared consumer has closed".into())),
        }
    }

    async fn close(self: Box<Self>) {}
}

/// The client peeks read with: one per connection, made at the first peek and kept, so a
/// viewer refreshing the Queues page does not start a librdkafka client (its threads and
/// connections) each time. Peeks take turns on it.
#[derive(Default)]
pub(super) struct Peeker(tokio::sync::Mutex<Option<StreamConsumer>>);

/// What librdkafka may hold for the peek client at once (its fetch queue), in KiB.
const PEEK_QUEUE_KIB: &str = "16384";

/// Up to the last `count` records of `topic` (by their time, across partitions) whose whole
/// size (payload, key, headers) fits in `max_bytes`; the newest always fits. What is read
/// is trimmed to the budget as it arrives, so a topic of large records never holds more than
/// about twice the budget in memory.
pub(super) async fn peek(
    broker: &KafkaBroker,
    peeker: &Peeker,
    topic: &str,
    marks: &[PartitionDepth],
    count: usize,
    max_bytes: usize,
) -> Result<Vec<Message>, BrokerError> {
    let mut list = TopicPartitionList::new();
    let mut expected = 0usize;
    for mark in marks {
        let start = (mark.high - count as i64).max(mark.low);
        if start < mark.high {
            list.add_partition_offset(topic, mark.partition, Offset::Offset(start))
                .map_err(|e| error(broker.name(), "peeking", e))?;
            expected += (mark.high - start) as usize;
        }
    }
    if expected == 0 {
        return Ok(Vec::new());
    }
    let mut slot = peeker.0.lock().await;
    if slot.is_none() {
        let mut client = client_config(broker.config(), Part::Consumer);
        client
            .set("group.id", format!("{}.peek", broker.config().group))
            .set("enable.auto.commit", "false")
            .set("queued.max.messages.kbytes", PEEK_QUEUE_KIB);
        let consumer: StreamConsumer = client
            .create()
            .map_err(|e| error(broker.name(), "creating a consumer", e))?;
        *slot = Some(consumer);
    }
    let consumer = slot.as_ref().expect("made above");
    consumer
        .assign(&list)
        .map_err(|e| error(broker.name(), "peeking", e))?;
    let read = read_within(consumer, topic, expected, count, max_bytes).await;
    // Nothing is fetched between peeks.
    if let Err(e) = consumer.unassign() {
        tracing::warn!(connection = %broker.name(), error = %e, "cannot unassign the peek client");
        *slot = None;
    }
    read.map_err(|e| error(broker.name(), "peeking", e))
}

/// Reads up to `expected` records of `topic` from `consumer` (5 s at most), keeping the
/// newest `count` within `max_bytes`, oldest first.
async fn read_within(
    consumer: &StreamConsumer,
    topic: &str,
    expected: usize,
    count: usize,
    max_bytes: usize,
) -> Result<Vec<Message>, rdkafka::error::KafkaError> {
    let mut kept: Vec<Message> = Vec::new();
    let mut bytes = 0usize;
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen < expected {
        let record = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(record)) => record,
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        };
        // A record of an earlier peek's assignment, still queued: not this topic's.
        if rdkafka::Message::topic(&record) != topic {
            continue;
        }
        seen += 1;
        let message = map::from_record(&record);
        bytes = bytes.saturating_add(message.size_bytes());
        kept.push(message);
        if kept.len() > count.saturating_mul(2).max(64) || bytes > max_bytes.saturating_mul(2) {
            bytes = trim(&mut kept, count, max_bytes);
        }
    }
    trim(&mut kept, count, max_bytes);
    Ok(kept)
}

/// Keeps in `kept` the newest `count` messages within `max_bytes` (the newest always),
/// oldest first; returns their size.
fn trim(kept: &mut Vec<Message>, count: usize, max_bytes: usize) -> usize {
    kept.sort_by_key(|m| std::cmp::Reverse(m.timestamp_ms));
    let mut total = 0usize;
    let mut fit = 0;
    for message in kept.iter().take(count) {
        let size = message.size_bytes();
        if fit > 0 && total.saturating_add(size) > max_bytes {
            break;
        }
        total = total.saturating_add(size);
        fit += 1;
    }
    kept.truncate(fit);
    kept.reverse();
    total
}
