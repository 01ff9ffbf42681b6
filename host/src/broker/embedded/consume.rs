//! Consuming from the embedded broker: a consumer's claims with their lease, and the
//! acknowledgement of each delivery.

use super::*;

/// Consumes one queue. Holds at most `prefetch` unsettled deliveries.
pub struct EmbeddedConsumer {
    pub(super) broker: EmbeddedBroker,
    /// Shared with every delivery's settlement, so a delivery costs no copy of the names.
    pub(super) queue: Arc<str>,
    pub(super) dead_letter_queue: Arc<str>,
    /// The names the store keeps them under (`connection:queue`).
    pub(super) stored_queue: Arc<str>,
    pub(super) stored_dead_letter_queue: Arc<str>,
    /// Woken when a publish to this queue commits on this host.
    pub(super) waker: Arc<Notify>,
    pub(super) options: QueueOptions,
    /// Whether this consumer dead-letters past the queue's `max_deliveries`.
    pub(super) limited: bool,
    pub(super) prefetch: usize,
    /// One permit per unsettled delivery; a delivery gives its permit back when settled or
    /// dropped.
    pub(super) permits: Arc<Semaphore>,
    /// Claimed messages not yet handed out.
    pub(super) ready: VecDeque<Delivery>,
    /// A claim written and not yet answered, with the permits it asked for and its time:
    /// kept here, so a `next` given up half-way (its caller stopped waiting) loses no
    /// claimed message; the next `next`, or `close`, takes its answer.
    pub(super) claiming: Option<(Written, Vec<OwnedSemaphorePermit>, i64)>,
    /// Claimed messages that must not be delivered, still to dead-letter.
    pub(super) doomed: Vec<(Claimed, DeadLetter)>,
}

impl EmbeddedConsumer {
    /// Stops consuming: messages claimed but not yet handed out go back to the queue now.
    /// (Dropping the consumer instead leaves them until their visibility timeout.)
    pub async fn close(mut self) {
        // A claim under way, and what is still to dead-letter: back to the queue too (the
        // next claim of an undeliverable one dead-letters it).
        let mut back: Vec<Claimed> = self.doomed.drain(..).map(|(claimed, _)| claimed).collect();
        if let Some((written, _, _)) = self.claiming.take()
            && let Ok(OpOutcome::Claimed(claimed)) = EmbeddedBroker::written(written).await
        {
            back.extend(claimed);
        }
        for claimed in back {
            if let Err(error) = self.settlement(&claimed, None).nack(Nack::Requeue).await {
                tracing::warn!(queue = %self.queue, %error, "could not return a claimed message on close");
            }
        }
        for delivery in std::mem::take(&mut self.ready) {
            if let Err(error) = delivery.ack.nack(Nack::Requeue).await {
                tracing::warn!(queue = %self.queue, %error, "could not return a claimed message on close");
            }
        }
    }

    /// The next delivery. Given up half-way (a caller that stops waiting), it loses nothing:
    /// a claim under way is answered at the next call, or returned by `close`.
    pub async fn next(&mut self) -> Result<Delivery, BrokerError> {
        loop {
            // Undeliverable messages claimed earlier: dead-lettered before anything else, each
            // removed once done (again harmlessly if the call was given up after the write).
            while let Some((claimed, reason)) = self.doomed.last() {
                self.dead_letter(claimed.clone(), reason.clone()).await?;
                self.doomed.pop();
            }
            if let Some(delivery) = self.ready.pop_front() {
                return Ok(delivery);
            }
            let waker = self.waker.clone();
            let woken = waker.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.claiming.is_none() {
                // Wait for room under the prefetch, then take as much room as there is.
                let mut permits = vec![
                    self.permits
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| BrokerError::Closed)?,
                ];
                while permits.len() < self.prefetch {
                    match self.permits.clone().try_acquire_owned() {
                        Ok(permit) => permits.push(permit),
                        Err(_) => break,
                    }
                }
                let now = now_ms() as i64;
                let lease = self.options.visibility_timeout.as_millis() as i64;
                let written = self
                    .broker
                    .begin_write(QueueOp::Claim {
                        queue: self.stored_queue.to_string(),
                        max: permits.len() as i64,
                        now_ms: now,
                        lease_until_ms: now + lease,
                    })
                    .await?;
                self.claiming = Some((written, permits, now));
            }
            let (written, _, _) = self.claiming.as_mut().expect("a claim under way");
            let outcome = EmbeddedBroker::written(written).await;
            let (_, mut permits, now) = self.claiming.take().expect("a claim under way");
            let claimed = match outcome? {
                OpOutcome::Claimed(claimed) => claimed,
                OpOutcome::Done(_) => unreachable!("a claim answers with messages"),
            };
            for claimed in claimed {
                if let Some(reason) = self.undeliverable(&claimed, now) {
                    self.doomed.push((claimed, reason));
                    continue;
                }
                let permit = permits.pop().expect("no more claimed than permits");
                self.ready.push_back(self.delivery(claimed, permit));
            }
            if !self.doomed.is_empty() {
                continue;
            }
            if self.ready.is_empty() {
                tokio::select! {
                    _ = &mut woken => {}
                    _ = tokio::time::sleep(self.broker.inner.config.poll_interval) => {}
                }
            }
        }
    }

    /// Why a claimed message must not be delivered, if it must not.
    pub(super) fn undeliverable(&self, claimed: &Claimed, now: i64) -> Option<DeadLetter> {
        if let Some(expiration) = claimed.message.expiration_ms
            && claimed.enqueued_ms.saturating_add(expiration as i64) <= now
        {
            return Some(DeadLetter::new(
                format!("the message expired {expiration} ms after it was queued"),
                "Expired",
                "broker",
            ));
        }
        let max = self.options.max_deliveries;
        (self.limited && claimed.deliveries > i64::from(max)).then(|| {
            DeadLetter::new(
                format!("delivered {max} times without being acked"),
                "MaxDeliveries",
                "broker",
            )
        })
    }

    /// The settlement of one claimed message.
    pub(super) fn settlement(
        &self,
        claimed: &Claimed,
        permit: Option<OwnedSemaphorePermit>,
    ) -> EmbeddedAck {
        EmbeddedAck {
            broker: self.broker.clone(),
            queue: self.queue.clone(),
            dead_letter_queue: self.dead_letter_queue.clone(),
            stored_dead_letter_queue: self.stored_dead_letter_queue.clone(),
            id: claimed.message.id.clone(),
            seq: claimed.seq,
            deliveries: claimed.deliveries,
            _permit: permit,
        }
    }

    pub(super) async fn dead_letter(
        &self,
        claimed: Claimed,
        reason: DeadLetter,
    ) -> Result<(), BrokerError> {
        let ack = self.settlement(&claimed, None);
        tracing::warn!(queue = %self.queue, id = %claimed.message.id, reason = ?reason.headers.first(), "dead-lettering an undeliverable message");
        ack.nack(Nack::DeadLetter(reason)).await
    }

    pub(super) fn delivery(&self, claimed: Claimed, permit: OwnedSemaphorePermit) -> Delivery {
        Delivery {
            deliveries: claimed.deliveries.clamp(0, u32::MAX as i64) as u32,
            ack: AckHandle::new(self.settlement(&claimed, Some(permit))),
            message: claimed.message,
        }
    }
}

/// Settles one delivery of the embedded broker. Dropping it unsettled leaves the message
/// leased until the queue's visibility timeout, then it is delivered again.
pub struct EmbeddedAck {
    broker: EmbeddedBroker,
    queue: Arc<str>,
    dead_letter_queue: Arc<str>,
    stored_dead_letter_queue: Arc<str>,
    id: String,
    seq: i64,
    deliveries: i64,
    /// Held until the delivery is settled, to keep the consumer within its prefetch.
    _permit: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for EmbeddedAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedAck")
            .field("queue", &self.queue)
            .field("id", &self.id)
            .field("deliveries", &self.deliveries)
            .finish()
    }
}

impl EmbeddedAck {
    pub async fn ack(self) -> Result<(), BrokerError> {
        let op = QueueOp::Ack {
            seq: self.seq,
            deliveries: self.deliveries,
        };
        self.settle(op).await
    }

    pub async fn nack(self, nack: Nack) -> Result<(), BrokerError> {
        let now = now_ms() as i64;
        let op = match nack {
            Nack::Requeue => QueueOp::Release {
                seq: self.seq,
                deliveries: self.deliveries,
                visible_at_ms: now,
            },
            Nack::RequeueAfter(delay) => QueueOp::Release {
                seq: self.seq,
                deliveries: self.deliveries,
                visible_at_ms: now + delay.as_millis() as i64,
            },
            Nack::DeadLetter(dead) => {
                let mut headers = dead.headers;
                headers.push((
                    "x-wharf-queue".into(),
                    HeaderValue::Text(self.queue.to_string()),
                ));
                headers.push((
                    "x-wharf-deliveries".into(),
                    HeaderValue::Int(self.deliveries),
                ));
                QueueOp::Move {
                    seq: self.seq,
                    deliveries: self.deliveries,
                    to_queue: self.stored_dead_letter_queue.to_string(),
                    headers,
                    now_ms: now,
                }
            }
        };
        self.settle(op).await
    }

    /// Applies a settlement; a message made ready again (here or in the dead-letter queue)
    /// wakes that queue's idle consumers.
    /// Keeps the message leased to this delivery for `lease` from now.
    pub async fn extend(&self, lease: Duration) -> Result<(), BrokerError> {
        let op = QueueOp::Extend {
            seq: self.seq,
            deliveries: self.deliveries,
            visible_at_ms: now_ms() as i64 + lease.as_millis() as i64,
        };
        match self.broker.write(op).await? {
            OpOutcome::Done(true) => Ok(()),
            _ => Err(BrokerError::LeaseLost {
                queue: self.queue.to_string(),
                id: self.id.clone(),
            }),
        }
    }

    pub(super) async fn settle(self, op: QueueOp) -> Result<(), BrokerError> {
        let woken = match &op {
            QueueOp::Release { .. } => Some(self.queue.clone()),
            QueueOp::Move { .. } => {
                self.broker.ensure_queue(&self.dead_letter_queue).await?;
                Some(self.dead_letter_queue.clone())
            }
            _ => None,
        };
        match self.broker.write(op).await? {
            OpOutcome::Done(true) => {
                if let Some(queue) = woken {
                    self.broker.waker(&queue).notify_waiters();
                }
                Ok(())
            }
            _ => Err(BrokerError::LeaseLost {
                queue: self.queue.to_string(),
                id: self.id,
            }),
        }
    }
}

#[async_trait::async_trait]
impl crate::broker::Settle for EmbeddedAck {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        EmbeddedAck::ack(*self).await
    }

    async fn nack(self: Box<Self>, nack: Nack) -> Result<(), BrokerError> {
        EmbeddedAck::nack(*self, nack).await
    }

    async fn extend(&self, lease: Duration) -> Result<(), BrokerError> {
        EmbeddedAck::extend(self, lease).await
    }
}

#[async_trait::async_trait]
impl crate::broker::Source for EmbeddedConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        EmbeddedConsumer::next(self).await
    }

    async fn close(self: Box<Self>) {
        EmbeddedConsumer::close(*self).await
    }
}
