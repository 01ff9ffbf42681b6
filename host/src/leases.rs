//! Leased takes: take now, settle later (PyQueuer's `basic_get`, then `basic_ack`).
//!
//! A message taken through the API with a lease is held unsettled under a lease id until its
//! taker acks it, nacks it (back to the queue, or to its dead letters) or extends its deadline;
//! one still held at its deadline goes back to its queue, so a taker that dies loses nothing.
//! Leases live in this host's memory, so a taker settles them on the host it took them from.
//! If the host stops, they go back at once; if it dies, the broker returns them (AMQP when the
//! channel closes, the embedded broker at the lease's deadline, which each lease sets as the
//! message's visibility).
//!
//! Invariants:
//! - A leased message is settled once: by its taker, by the deadline, or at shutdown.
//! - Only its taker (the same token or user) or an admin settles or extends a lease.
//! - Bounded: at most [`MAX_LEASES`] held per host, reserved before anything is taken so
//!   callers at once cannot pass the bound together, in at most [`MAX_LEASE_BATCHES`] open
//!   batches (leased takes of one AMQP queue share one channel, of one Kafka topic one
//!   member of the take group); each for at most [`MAX_LEASE`] at a
//!   time and [`MAX_LEASE_LIFETIME`] in all, however often it is extended.
//! - A lease stream (a worker's standing consumer, [`LeaseStream`]) is one batch while it is
//!   open and after, until the last message it leased is settled; it leases a delivery only
//!   when there is room for it, and the broker hands it at most its prefetch unsettled.

use crate::broker::{AckHandle, Address, BrokerError, Consumer, DeadLetter, Delivery, Nack};
use crate::message::now_ms;
use crate::shutdown::Shutdown;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The most leases one host holds at once.
pub const MAX_LEASES: usize = 10_000;
/// The longest one lease lasts before it is extended.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);
/// The longest a message is held under a lease in all, extensions included.
pub const MAX_LEASE_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The most leased batches one host holds open at once: each keeps its consumer (on AMQP
/// a consumer tag on its queue's shared channel, on Kafka a handle on its topic's shared
/// member) until the last of its messages is settled.
pub const MAX_LEASE_BATCHES: usize = 256;

/// The leases this host holds. Cheap to clone.
#[derive(Clone, Default)]
pub struct Leases {
    held: Arc<Mutex<HashMap<String, Held>>>,
    /// Room promised to takes under way, not yet held.
    reserved: Arc<Mutex<usize>>,
    /// Batches open: their consumers held open for what they took.
    batches: Arc<std::sync::atomic::AtomicUsize>,
    /// Lease streams open now.
    streams: Arc<Mutex<HashMap<String, Arc<StreamInfo>>>>,
}

/// Room for leases promised to one take, given back (what was not used) when dropped.
pub struct Room {
    reserved: Arc<Mutex<usize>>,
    pub count: usize,
}

impl Drop for Room {
    fn drop(&mut self) {
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        *reserved = reserved.saturating_sub(self.count);
    }
}

/// How a leased message is given back.
#[derive(Debug, Clone)]
pub enum GiveBack {
    /// To its queue: at once, or after `delay` (at most [`MAX_LEASE`]), a retry that does not
    /// hold the message meanwhile.
    Requeue { delay: Option<Duration> },
    /// To its dead letters: with the taker's own error, or as refused by the client.
    DeadLetter(Option<TakerError>),
}

/// The error a taker gives a dead letter, as edeposit's daemons reported one: its text
/// (`exception`), its class's name (`exception_name`: `KeyError`) and its type
/// (`exception_type`). Checked for length by whoever takes it from a caller.
#[derive(Debug, Clone)]
pub struct TakerError {
    pub message: String,
    pub name: String,
    pub kind: String,
}

/// Who settles a lease: only its taker, or an admin.
pub struct Settler<'a> {
    /// The audit log's name of the caller.
    pub actor: &'a str,
    pub admin: bool,
}

struct Held {
    /// Who took it (the audit log's name for them).
    taker: String,
    /// When it was taken: a lease ends [`MAX_LEASE_LIFETIME`] after, extended or not.
    taken: Instant,
    address: String,
    message_id: String,
    ack: AckHandle,
    deadline: Instant,
    deadline_ms: u64,
    /// The consumer the message came from, open while any of its messages is held.
    _source: Arc<Source>,
}

/// A consumer kept open while messages it delivered are held (an AMQP delivery can only be
/// settled on its channel); closed when the last of them is settled.
struct Source(Mutex<Option<Consumer>>, Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Source {
    fn drop(&mut self) {
        self.1.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let consumer = self.0.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(consumer), Ok(runtime)) = (consumer, tokio::runtime::Handle::try_current()) {
            runtime.spawn(consumer.close());
        }
    }
}

/// A leased take under way (see [`Leases::batch`]).
pub struct Batch {
    leases: Leases,
    taker: String,
    address: String,
    lease: Duration,
    until: Instant,
    source: Arc<Source>,
    leased: Vec<Leased>,
}

impl Batch {
    /// Holds `delivery` under a new lease. One whose lease cannot be set (its message was
    /// lost to a redelivery) is left out.
    pub async fn hold(&mut self, delivery: Delivery) {
        let lease = self.lease + self.until.saturating_duration_since(Instant::now());
        let held = self
            .leases
            .hold_one(&self.taker, &self.address, &self.source, delivery, lease)
            .await;
        if let Some(leased) = held {
            crate::metrics::leases_taken(1);
            self.leased.push(leased);
        }
    }

    /// The take is done: each lease now runs `lease` from now (a take that ended before its
    /// wait did held them longer meanwhile), and the consumer stays open until the last of
    /// its messages is settled (closed at once if it took none). Answers what was leased.
    pub async fn finish(mut self, consumer: Consumer) -> Vec<Leased> {
        if self.leased.is_empty() {
            consumer.close().await;
            return self.leased;
        }
        *self.source.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(consumer);
        if self.until > Instant::now() {
            let by = Settler {
                actor: &self.taker,
                admin: false,
            };
            for leased in &mut self.leased {
                if let Ok(deadline_ms) = self.leases.extend(&leased.lease, self.lease, &by).await {
                    leased.deadline_ms = deadline_ms;
                }
            }
        }
        self.leased
    }
}

/// A lease stream open now: a worker's standing consumer, each delivery leased as it comes.
pub struct StreamInfo {
    id: String,
    taker: String,
    address: String,
    prefetch: usize,
    lease_ms: u64,
    opened_ms: u64,
    streamed: std::sync::atomic::AtomicU64,
    stopped: std::sync::atomic::AtomicBool,
    stop: tokio::sync::Notify,
}

/// A lease stream, as `GET /api/v1/leases/streams` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamView {
    /// Names the stream to stop it (`DELETE /api/v1/leases/streams/{stream}`).
    pub stream: String,
    /// Where it takes from: `connection:queue`.
    pub address: String,
    /// Who opened it (a user's or a token's name).
    pub taker: String,
    /// Messages it holds unsettled at most (the broker hands it no more).
    pub prefetch: usize,
    /// Each message's lease.
    pub lease_ms: u64,
    /// When it was opened (ms since the epoch).
    pub opened_ms: u64,
    /// Messages it has leased so far.
    pub streamed: u64,
}

/// A standing leased take (`POST /api/v1/queues/{connection}/{queue}/lease/stream`): one
/// consumer, kept open, whose every delivery is leased as it arrives and handed to the
/// caller, so a worker pays no round trip per batch; the broker's prefetch bounds what it
/// holds unsettled, and the caller settles as it would any lease. Dropped (its caller gone,
/// stopped, the host stopping), it takes no more; what it leased stays held until settled
/// or due, and its consumer is closed once the last of that is settled.
pub struct LeaseStream {
    leases: Leases,
    info: Arc<StreamInfo>,
    lease: Duration,
    /// What the stream's reader took from the consumer: a task of its own, so waiting for a
    /// heartbeat never cancels a consumer's `next` half-way.
    deliveries: tokio::sync::mpsc::Receiver<Result<Delivery, BrokerError>>,
    source: Arc<Source>,
    shutdown: Shutdown,
}

/// A lease stream's reader: hands each delivery over until the stream is dropped or the
/// consumer fails, then leaves the consumer with the stream's source, which closes it once
/// the last message the stream leased is settled.
async fn read(
    mut consumer: Consumer,
    deliveries: tokio::sync::mpsc::Sender<Result<Delivery, BrokerError>>,
    source: Arc<Source>,
) {
    loop {
        let next = tokio::select! {
            _ = deliveries.closed() => break,
            next = consumer.next() => next,
        };
        let failed = next.is_err();
        if let Err(tokio::sync::mpsc::error::SendError(unsent)) = deliveries.send(next).await {
            if let Ok(delivery) = unsent
                && let Err(error) = delivery.ack.nack(Nack::Requeue).await
            {
                tracing::warn!(%error, "a streamed message could not be returned; the broker returns it by itself");
            }
            break;
        }
        if failed {
            break;
        }
    }
    *source.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(consumer);
}

/// What a lease stream has next.
pub enum Streamed {
    /// A message, leased.
    Leased(Leased),
    /// Nothing came within the heartbeat: the caller is told the stream is alive.
    Idle,
}

impl LeaseStream {
    /// The stream's name.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The next message leased; [`Streamed::Idle`] when none came within `heartbeat`;
    /// `None` once the stream is over (stopped, or the host stopping). An error ends it: the
    /// consumer failed, or the host holds [`MAX_LEASES`] (the delivery goes back first).
    pub async fn next(&mut self, heartbeat: Duration) -> Result<Option<Streamed>, LeaseError> {
        if self.info.stopped.load(std::sync::atomic::Ordering::Acquire) || self.shutdown.is_fired()
        {
            return Ok(None);
        }
        let delivery = tokio::select! {
            delivery = self.deliveries.recv() => match delivery {
                Some(delivery) => delivery?,
                None => return Ok(None),
            },
            _ = tokio::time::sleep(heartbeat) => return Ok(Some(Streamed::Idle)),
            _ = self.info.stop.notified() => return Ok(None),
            _ = self.shutdown.fired() => return Ok(None),
        };
        let room = self.leases.reserve(1);
        if room.count == 0 {
            if let Err(error) = delivery.ack.nack(Nack::Requeue).await {
                tracing::warn!(%error, "a streamed message could not be returned; the broker returns it by itself");
            }
            return Err(LeaseError::Full);
        }
        let info = &self.info;
        let Some(leased) = self
            .leases
            .hold_one(
                &info.taker,
                &info.address,
                &self.source,
                delivery,
                self.lease,
            )
            .await
        else {
            return Ok(Some(Streamed::Idle));
        };
        drop(room);
        self.info
            .streamed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::leases_taken(1);
        Ok(Some(Streamed::Leased(leased)))
    }
}

impl Drop for LeaseStream {
    fn drop(&mut self) {
        // The reader stops; a delivery it had handed over and nobody leased goes back.
        self.deliveries.close();
        while let Ok(Ok(delivery)) = self.deliveries.try_recv() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(delivery.ack.nack(Nack::Requeue));
            }
        }
        self.leases
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.info.id);
    }
}

/// One message taken with a lease, as the API answers it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Leased {
    /// Names the lease to ack, nack or extend it.
    pub lease: String,
    /// When it goes back to its queue unless settled or extended (ms since the epoch).
    pub deadline_ms: u64,
    /// How many times the message has been delivered, this time included (as the broker
    /// counts them: a taker retries or gives up by it).
    pub deliveries: u32,
    /// The message, in its JSON form.
    #[schema(value_type = Object)]
    pub message: serde_json::Value,
}

/// A lease this host holds, as `GET /api/v1/leases` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeaseView {
    pub lease: String,
    /// Where the message was taken from: `connection:queue`.
    pub address: String,
    /// The held message's id.
    pub message_id: String,
    pub deadline_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "no lease `{0}` is held on this host: settled already, returned at its deadline, or taken on another host"
    )]
    Unknown(String),
    #[error("lease `{0}` was taken by another caller; only its taker or an admin settles it")]
    NotYours(String),
    #[error(
        "lease `{0}` cannot be extended past {hours} hours from when its message was taken",
        hours = MAX_LEASE_LIFETIME.as_secs() / 3600
    )]
    TooLong(String),
    #[error("this host holds {MAX_LEASES} leased messages already; settle some first")]
    Full,
    #[error("no lease stream `{0}` is open on this host")]
    NoStream(String),
    #[error("lease stream `{0}` was opened by another caller; only its taker or an admin stops it")]
    StreamNotYours(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

fn lock(held: &Mutex<HashMap<String, Held>>) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

impl Leases {
    /// Reserves room for up to `wanted` leases (fewer when the host holds many): a take
    /// takes at most that many, and what it does not hold goes back when the room is dropped.
    pub fn reserve(&self, wanted: usize) -> Room {
        let held = self.count();
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        let count = wanted.min(MAX_LEASES.saturating_sub(held + *reserved));
        *reserved += count;
        Room {
            reserved: self.reserved.clone(),
            count,
        }
    }

    /// Opens a lease stream of `address` on `consumer` for `taker`: up to `prefetch`
    /// unsettled, each leased for `lease`.
    pub fn stream(
        &self,
        taker: &str,
        address: &Address,
        consumer: Consumer,
        prefetch: usize,
        lease: Duration,
        shutdown: Shutdown,
    ) -> LeaseStream {
        let lease = lease.min(MAX_LEASE);
        let info = Arc::new(StreamInfo {
            id: uuid::Uuid::new_v4().simple().to_string(),
            taker: taker.to_owned(),
            address: address.to_string(),
            prefetch,
            lease_ms: lease.as_millis() as u64,
            opened_ms: now_ms(),
            streamed: Default::default(),
            stopped: Default::default(),
            stop: Default::default(),
        });
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.id.clone(), info.clone());
        let source = self.source(None);
        let (sender, deliveries) = tokio::sync::mpsc::channel(1);
        tokio::spawn(read(consumer, sender, source.clone()));
        LeaseStream {
            leases: self.clone(),
            info,
            lease,
            deliveries,
            source,
            shutdown,
        }
    }

    /// The lease streams open now, oldest first.
    pub fn streams(&self) -> Vec<StreamView> {
        let mut streams: Vec<StreamView> = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|s| StreamView {
                stream: s.id.clone(),
                address: s.address.clone(),
                taker: s.taker.clone(),
                prefetch: s.prefetch,
                lease_ms: s.lease_ms,
                opened_ms: s.opened_ms,
                streamed: s.streamed.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect();
        streams.sort_by_key(|s| s.opened_ms);
        streams
    }

    /// How many lease streams are open now.
    pub fn stream_count(&self) -> usize {
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Stops a lease stream (only its taker or an admin): it takes nothing more and ends its
    /// answer after what it has sent; its leases stay held. Answers where it took from.
    pub fn stop(&self, id: &str, by: &Settler<'_>) -> Result<String, LeaseError> {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        match streams.get(id) {
            None => Err(LeaseError::NoStream(crate::broker::shorten(id))),
            Some(s) if !by.admin && s.taker != by.actor => {
                Err(LeaseError::StreamNotYours(crate::broker::shorten(id)))
            }
            Some(s) => {
                s.stopped.store(true, std::sync::atomic::Ordering::Release);
                s.stop.notify_one();
                Ok(s.address.clone())
            }
        }
    }

    /// How many leased batches hold their consumers open now.
    pub fn batches(&self) -> usize {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many leases this host holds now.
    pub fn count(&self) -> usize {
        lock(&self.held).len()
    }

    /// A leased take under way, which waits for its messages until `until`: each delivery
    /// is held as it arrives (so a message waiting in the take for the others is not given
    /// to anyone else meanwhile) until `lease` after `until`, so none runs out before it is
    /// answered; the consumer it came from is handed over when the take is done.
    pub fn batch(&self, taker: &str, address: &Address, lease: Duration, until: Instant) -> Batch {
        Batch {
            leases: self.clone(),
            taker: taker.to_owned(),
            address: address.to_string(),
            lease,
            until,
            source: self.source(None),
            leased: Vec::new(),
        }
    }

    /// A batch's source, counted among the open batches until it is dropped.
    fn source(&self, consumer: Option<Consumer>) -> Arc<Source> {
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(Source(Mutex::new(consumer), self.batches.clone()))
    }

    async fn hold_one(
        &self,
        taker: &str,
        address: &str,
        source: &Arc<Source>,
        delivery: Delivery,
        lease: Duration,
    ) -> Option<Leased> {
        let lease = lease.min(MAX_LEASE);
        if let Err(error) = delivery.ack.extend(lease).await {
            tracing::warn!(%error, "a taken message could not be leased; it stays in its queue");
            return None;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let deadline_ms = now_ms() + lease.as_millis() as u64;
        let leased = Leased {
            lease: id.clone(),
            deadline_ms,
            deliveries: delivery.deliveries,
            message: delivery.message.to_json(),
        };
        lock(&self.held).insert(
            id,
            Held {
                taker: taker.to_owned(),
                taken: Instant::now(),
                address: address.to_owned(),
                message_id: delivery.message.id.clone(),
                ack: delivery.ack,
                deadline: Instant::now() + lease,
                deadline_ms,
                _source: source.clone(),
            },
        );
        Some(leased)
    }

    fn take(&self, id: &str, by: &Settler<'_>) -> Result<Held, LeaseError> {
        let mut held = lock(&self.held);
        match held.get(id) {
            None => Err(LeaseError::Unknown(crate::broker::shorten(id))),
            Some(h) if !by.admin && h.taker != by.actor => {
                Err(LeaseError::NotYours(crate::broker::shorten(id)))
            }
            Some(_) => Ok(held.remove(id).expect("present")),
        }
    }

    /// The message is done with: removed from its queue.
    pub async fn ack(&self, id: &str, by: &Settler<'_>) -> Result<(), LeaseError> {
        self.take(id, by)?.ack.ack().await?;
        crate::metrics::lease_settled("ack");
        Ok(())
    }

    /// Gives it back: to its queue (at once, or after a delay: a retry), or to its dead
    /// letters with the taker's reason. Answers where it was taken from.
    pub async fn nack(
        &self,
        id: &str,
        back: GiveBack,
        by: &Settler<'_>,
    ) -> Result<String, LeaseError> {
        let (nack, outcome) = match back {
            GiveBack::Requeue { delay: None } => (Nack::Requeue, "requeue"),
            GiveBack::Requeue { delay: Some(delay) } => {
                (Nack::RequeueAfter(delay.min(MAX_LEASE)), "retry")
            }
            GiveBack::DeadLetter(None) => (
                Nack::DeadLetter(DeadLetter::new(
                    "refused by the client that leased it",
                    "Rejected",
                    "client",
                )),
                "dead_letter",
            ),
            GiveBack::DeadLetter(Some(error)) => (
                Nack::DeadLetter(DeadLetter::new(error.message, &error.name, &error.kind)),
                "dead_letter",
            ),
        };
        let held = self.take(id, by)?;
        held.ack.nack(nack).await?;
        crate::metrics::lease_settled(outcome);
        Ok(held.address)
    }

    /// Settles a batch at once (a worker's acks and nacks of one round trip): each as
    /// [`Self::ack`] or [`Self::nack`] would, side by side; answers each one's outcome in
    /// the batch's order. One that fails leaves the others settled.
    pub async fn settle_all(
        &self,
        batch: Vec<(String, Option<GiveBack>)>,
        by: &Settler<'_>,
    ) -> Vec<Result<(), LeaseError>> {
        futures::future::join_all(batch.into_iter().map(|(id, back)| async move {
            match back {
                None => self.ack(&id, by).await,
                Some(back) => self.nack(&id, back, by).await.map(drop),
            }
        }))
        .await
    }

    /// Moves the deadline to `lease` from now; answers the new deadline.
    pub async fn extend(
        &self,
        id: &str,
        lease: Duration,
        by: &Settler<'_>,
    ) -> Result<u64, LeaseError> {
        let lease = lease.min(MAX_LEASE);
        // Out of the map while the broker is asked, so the reaper cannot return it meanwhile.
        let mut held = self.take(id, by)?;
        if held.taken.elapsed() + lease > MAX_LEASE_LIFETIME {
            let id = id.to_owned();
            lock(&self.held).insert(id.clone(), held);
            return Err(LeaseError::TooLong(crate::broker::shorten(&id)));
        }
        if let Err(error) = held.ack.extend(lease).await {
            return Err(error.into());
        }
        held.deadline = Instant::now() + lease;
        held.deadline_ms = now_ms() + lease.as_millis() as u64;
        let deadline_ms = held.deadline_ms;
        lock(&self.held).insert(id.to_owned(), held);
        Ok(deadline_ms)
    }

    /// Every lease this host holds, soonest deadline first.
    pub fn list(&self) -> Vec<LeaseView> {
        let mut leases: Vec<LeaseView> = lock(&self.held)
            .iter()
            .map(|(id, held)| LeaseView {
                lease: id.clone(),
                address: held.address.clone(),
                message_id: held.message_id.clone(),
                deadline_ms: held.deadline_ms,
            })
            .collect();
        leases.sort_by_key(|l| l.deadline_ms);
        leases
    }

    /// Returns every lease past its deadline to its queue, every 250 ms, until `shutdown`;
    /// then returns them all.
    pub async fn reap(self, mut shutdown: Shutdown) {
        let mut every = tokio::time::interval(Duration::from_millis(250));
        loop {
            let stopping = tokio::select! {
                _ = shutdown.fired() => true,
                _ = every.tick() => false,
            };
            let now = Instant::now();
            let due: Vec<Held> = {
                let mut held = lock(&self.held);
                let ids: Vec<String> = held
                    .iter()
                    .filter(|(_, h)| stopping || h.deadline <= now)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.iter().filter_map(|id| held.remove(id)).collect()
            };
            if !due.is_empty() {
                tracing::info!(
                    messages = due.len(),
                    "leased messages go back to their queues unsettled"
                );
            }
            for held in due {
                crate::metrics::lease_settled(if stopping { "shutdown" } else { "expired" });
                if let Err(error) = held.ack.nack(Nack::Requeue).await {
                    tracing::warn!(address = %held.address, %error, "a leased message could not be returned; the broker returns it by itself");
                }
            }
            if stopping {
                return;
            }
        }
    }
}
