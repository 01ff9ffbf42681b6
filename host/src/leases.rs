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

    /// How many leased batches hold their consumers open now.
    pub fn batches(&self) -> usize {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many leases this host holds now.
    pub fn count(&self) -> usize {
        lock(&self.held).len()
    }

    /// Holds `deliveries`, taken from `address` by `consumer`, each under a new lease of
    /// `lease`. A delivery whose lease cannot be set (its message was lost to a redelivery)
    /// is left out.
    pub async fn hold(
        &self,
        taker: &str,
        address: &Address,
        consumer: Consumer,
        deliveries: Vec<Delivery>,
        lease: Duration,
    ) -> Vec<Leased> {
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let source = Arc::new(Source(Mutex::new(Some(consumer)), self.batches.clone()));
        let lease = lease.min(MAX_LEASE);
        let mut leased = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            if let Err(error) = delivery.ack.extend(lease).await {
                tracing::warn!(%error, "a taken message could not be leased; it stays in its queue");
                continue;
            }
            let id = uuid::Uuid::new_v4().simple().to_string();
            let deadline_ms = now_ms() + lease.as_millis() as u64;
            leased.push(Leased {
                lease: id.clone(),
                deadline_ms,
                deliveries: delivery.deliveries,
                message: delivery.message.to_json(),
            });
            lock(&self.held).insert(
                id,
                Held {
                    taker: taker.to_owned(),
                    taken: Instant::now(),
                    address: address.to_string(),
                    message_id: delivery.message.id.clone(),
                    ack: delivery.ack,
                    deadline: Instant::now() + lease,
                    deadline_ms,
                    _source: source.clone(),
                },
            );
        }
        crate::metrics::leases_taken(leased.len());
        leased
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
