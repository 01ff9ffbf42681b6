//! Reading an address: the session the broker keeps for this host on its filter, the
//! messages it holds unacked for the host's readers, and how each is settled.

use super::{MAX_DELIVERIES, MqttBroker, map, wire};
use crate::broker::{AckHandle, BrokerError, DeadLetter, Delivery, Nack, Settle, Source};
use crate::message::{Message, now_ms};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use wire::Event;

/// A session reading one filter for this host, and what it holds for its readers.
pub(super) struct Reader {
    pub(super) filter: String,
    pub(super) session: wire::Session,
    /// Where a retry goes back to, after its delay.
    pub(super) requeue: mpsc::Sender<Held>,
    pub(super) held: tokio::sync::Mutex<mpsc::Receiver<Held>>,
    pub(super) state: Arc<Mutex<ReaderState>>,
    /// Its readers open now.
    pub(super) open: AtomicUsize,
    /// Whether a unit (a route) reads it: then it stays when its readers close (the host is
    /// stopping or the route restarting, and what arrives meanwhile waits in it).
    pub(super) for_unit: AtomicBool,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
pub(super) struct ReaderState {
    /// Counts the sessions the broker started afresh: what came in an earlier one is not
    /// acked in a later (its packet id may name another message there).
    pub(super) epoch: u64,
    /// Packet ids handed in and not yet acked.
    pub(super) outstanding: HashSet<u16>,
}

/// A message the host holds unacked.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) publish: wire::Publish,
    pub(super) message: Message,
    pub(super) deliveries: u32,
    pub(super) epoch: u64,
}

/// Drives a reading session: subscribes whenever the broker has no session for it, and
/// hands each message in once.
pub(super) async fn read(
    client: wire::Client,
    filter: String,
    mut events: mpsc::Receiver<Event>,
    held: mpsc::Sender<Held>,
    state: Arc<Mutex<ReaderState>>,
    ready: watch::Sender<Option<Result<(), String>>>,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Connected { session_present } => {
                if !session_present {
                    let mut state = state.lock().unwrap();
                    state.epoch += 1;
                    state.outstanding.clear();
                }
                // Subscribing again to what the session has changes nothing (a shared
                // subscription gets no retained messages), and restores what it lost.
                if let Err(e) = client.subscribe(&filter).await {
                    tracing::warn!(%filter, error = %e, "cannot subscribe");
                }
            }
            Event::Subscribed(refused) => {
                if let Some(why) = &refused {
                    tracing::warn!(%filter, %why, "the broker refused a subscription");
                }
                let _ = ready.send(Some(refused.map_or(Ok(()), Err)));
            }
            Event::Message(publish) => {
                let epoch = {
                    let mut state = state.lock().unwrap();
                    if publish.dup() && state.outstanding.contains(&publish.pkid()) {
                        continue;
                    }
                    state.outstanding.insert(publish.pkid());
                    state.epoch
                };
                let message = map::from_publish(&publish);
                let one = Held {
                    publish,
                    message,
                    deliveries: 1,
                    epoch,
                };
                if held.send(one).await.is_err() {
                    return;
                }
            }
            Event::Down(why) => tracing::debug!(%filter, %why, "MQTT session down"),
            Event::Sent(_) | Event::Acked { .. } => {}
        }
    }
}

/// Hands `held` to the reader's readers again after `after`.
pub(super) fn hold(reader: &Arc<Reader>, held: Held, after: Duration) {
    let requeue = reader.requeue.clone();
    // Without a runtime (the host is gone) it stays with the broker, unacked.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        tokio::time::sleep(after).await;
        let _ = requeue.send(held).await;
    });
}

/// One reader of an address: takes from the host's session on it, no more than `prefetch`
/// unsettled.
pub(super) struct MqttSource {
    pub(super) broker: MqttBroker,
    pub(super) reader: Arc<Reader>,
    pub(super) address: String,
    pub(super) slots: Arc<Semaphore>,
    pub(super) limited: bool,
}

#[async_trait::async_trait]
impl Source for MqttSource {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        loop {
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| BrokerError::Closed)?;
            let held = self
                .reader
                .held
                .lock()
                .await
                .recv()
                .await
                .ok_or(BrokerError::Closed)?;
            if let Some(at) = map::not_before(&held.publish)
                && at > now_ms()
            {
                hold(&self.reader, held, Duration::from_millis(at - now_ms()));
                continue;
            }
            if self.limited && held.deliveries > MAX_DELIVERIES {
                let dead = DeadLetter::new(
                    format!("delivered {MAX_DELIVERIES} times without being acked"),
                    "DeliveryLimit",
                    "broker",
                );
                self.broker
                    .dead_letter(&self.address, held.message.clone(), dead)
                    .await?;
                self.broker.ack_held(&self.reader, &held).await?;
                continue;
            }
            return Ok(Delivery {
                message: held.message.clone(),
                deliveries: held.deliveries,
                ack: AckHandle::new(MqttAck {
                    held: Some(held),
                    reader: self.reader.clone(),
                    broker: self.broker.clone(),
                    address: self.address.clone(),
                    _slot: slot,
                }),
            });
        }
    }

    /// What the session holds stays for the next reader of the address on this host (and
    /// with the broker, unacked, if the host goes).
    async fn close(self: Box<Self>) {}

    fn retries_in_place(&self) -> bool {
        true
    }
}

/// A session only passing readers used (a take, a lease) is let go of when the last of them
/// closes or is dropped, so that it holds no share of the topic.
impl Drop for MqttSource {
    fn drop(&mut self) {
        let last = self.reader.open.fetch_sub(1, Ordering::Relaxed) == 1;
        if !last || self.reader.for_unit.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (broker, filter) = (self.broker.clone(), self.reader.filter.clone());
        runtime.spawn(async move {
            if let Err(error) = broker.let_go(&filter).await {
                tracing::warn!(%filter, %error, "cannot let go of a passing MQTT session");
            }
        });
    }
}

/// One delivery's settlement. Dropped unsettled (its task panicked or was cancelled), the
/// message goes back to the reader's readers, counted as delivered again.
#[derive(Debug)]
struct MqttAck {
    held: Option<Held>,
    reader: Arc<Reader>,
    broker: MqttBroker,
    address: String,
    _slot: OwnedSemaphorePermit,
}

impl MqttAck {
    fn give_back(&mut self, after: Duration) {
        if let Some(mut held) = self.held.take() {
            held.deliveries = held.deliveries.saturating_add(1);
            hold(&self.reader, held, after);
        }
    }

    /// Acks the message; one that cannot be acked goes back (by the drop).
    async fn settle(mut self: Box<Self>) -> Result<(), BrokerError> {
        let Some(held) = &self.held else {
            return Ok(());
        };
        let result = self.broker.ack_held(&self.reader, held).await;
        if result.is_ok() {
            self.held = None;
        }
        result
    }
}

impl Drop for MqttAck {
    fn drop(&mut self) {
        self.give_back(Duration::ZERO);
    }
}

#[async_trait::async_trait]
impl Settle for MqttAck {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.settle().await
    }

    async fn nack(mut self: Box<Self>, nack: Nack) -> Result<(), BrokerError> {
        match nack {
            Nack::Requeue => self.give_back(Duration::ZERO),
            Nack::RequeueAfter(delay) => self.give_back(delay),
            Nack::DeadLetter(dead) => {
                if let Some(held) = &self.held {
                    self.broker
                        .dead_letter(&self.address, held.message.clone(), dead)
                        .await?;
                }
                return self.settle().await;
            }
        }
        Ok(())
    }
}
