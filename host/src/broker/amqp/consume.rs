//! Consuming from RabbitMQ: a consumer on a channel of its own (or, for leased takes, on the
//! queue's shared channel), and the acknowledgement of each delivery.

use super::*;
use crate::broker::DeadLetter;
use crate::message::HeaderValue;

impl AmqpBroker {
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

    pub(super) async fn consume_on(
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
            copies: None,
        })
    }
}

/// Closes its channel when the last user (consumer or unsettled delivery) is gone, so
/// whatever is still unacked on it goes back to the queue.
pub(super) struct ChannelGuard(pub(super) Channel);

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
    /// Where a copy of a dead letter goes, when its deliveries keep copies for dead letters
    /// that carry their taker's headers (see [`AmqpConsumer::keep_copies`]).
    copies: Option<(AmqpBroker, Arc<DeadLetterTo>)>,
}

/// The budget of bytes kept for dead letters that carry their taker's headers, per
/// connection: past it a delivery keeps no copy, and its dead letter is RabbitMQ's own.
pub(super) const MAX_KEPT_BYTES: usize = 64 << 20;

/// Where a queue's dead letters go: its dead-letter exchange, with its dead-letter routing
/// key or else the message's own.
pub(super) struct DeadLetterTo {
    exchange: String,
    routing_key: Option<String>,
}

impl DeadLetterTo {
    fn address(&self, msg: &Message) -> String {
        let key = self.routing_key.as_deref().unwrap_or(&msg.topic);
        if self.exchange.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.exchange)
        }
    }
}

/// A delivery's message kept so its dead letter can carry its taker's headers; its bytes
/// count against the connection's budget until it is dropped.
pub(super) struct Kept {
    broker: AmqpBroker,
    to: Arc<DeadLetterTo>,
    message: Option<Message>,
    bytes: usize,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.broker
            .inner
            .kept
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Kept {
    /// Sends the copy with `dead`'s headers and `x-wharf-queue`, confirmed.
    async fn send(mut self, queue: &str, dead: DeadLetter) -> Result<(), BrokerError> {
        let mut message = self.message.take().expect("a kept copy is sent once");
        message.headers.extend(dead.headers);
        message.set_header("x-wharf-queue", HeaderValue::Text(queue.to_owned()));
        let address = self.to.address(&message);
        self.broker.publish(&address, message).await
    }
}

impl AmqpConsumer {
    /// Keeps a copy of each delivery (within [`MAX_KEPT_BYTES`] per connection) so that its
    /// dead letter is sent as a copy carrying the taker's headers, then acked: RabbitMQ's own
    /// dead-lettering adds only `x-death`. Only for a queue the config gives a dead-letter
    /// exchange.
    pub(super) fn keep_copies(&mut self, broker: &AmqpBroker) {
        let queue = broker
            .inner
            .topology
            .queues
            .iter()
            .find(|q| *q.name == *self.queue);
        if let Some(q) = queue
            && let Some(exchange) = &q.dead_letter_exchange
        {
            self.copies = Some((
                broker.clone(),
                Arc::new(DeadLetterTo {
                    exchange: exchange.clone(),
                    routing_key: q.dead_letter_routing_key.clone(),
                }),
            ));
        }
    }

    /// A copy of `message` for its dead letter, if this consumer keeps them and the budget
    /// has room.
    fn kept(&self, message: &Message) -> Option<Box<Kept>> {
        let (broker, to) = self.copies.as_ref()?;
        let bytes = message.payload.len()
            + message
                .headers
                .iter()
                .map(|(name, _)| name.len() + 64)
                .sum::<usize>();
        let before = broker.inner.kept.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > MAX_KEPT_BYTES {
            broker.inner.kept.fetch_sub(bytes, Ordering::Relaxed);
            tracing::debug!(queue = %self.queue, "no room to keep a copy for a dead letter; its dead letter will be RabbitMQ's own");
            return None;
        }
        Some(Box::new(Kept {
            broker: broker.clone(),
            to: to.clone(),
            message: Some(message.clone()),
            bytes,
        }))
    }

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
                        kept: self.kept(&message),
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
            // Never handed out: its coming back is not a delivery of it.
            if let Some(id) = map::own_id(&delivery.properties) {
                self.redeliveries
                    .not_delivered(&self.queue, id, delivery.redelivered);
            }
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
    /// A copy for a dead letter that carries its taker's headers.
    kept: Option<Box<Kept>>,
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
    pub(super) fn settle_error(&self, e: lapin::Error) -> BrokerError {
        BrokerError::Broker(format!(
            "settling a message from queue `{}` (it will be delivered again): {e}",
            self.queue
        ))
    }

    pub(super) fn take_acker(&mut self) -> lapin::Acker {
        self.acker
            .take()
            .expect("an AMQP delivery is settled once (settling takes it by value)")
    }

    /// The message will not come back from this queue: stop counting its redeliveries.
    pub(super) fn forget(&self) {
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
            Nack::DeadLetter(dead) => {
                self.forget();
                let mut this = self;
                if let Some(kept) = this.kept.take() {
                    // The copy carries the taker's headers; once RabbitMQ has confirmed it,
                    // the delivery is done with. A copy that cannot be sent leaves
                    // RabbitMQ's own dead letter.
                    match kept.send(&this.queue, dead).await {
                        Ok(()) => {
                            return this
                                .take_acker()
                                .ack(BasicAckOptions::default())
                                .await
                                .map(drop)
                                .map_err(|e| this.settle_error(e));
                        }
                        Err(error) => {
                            tracing::warn!(queue = %this.queue, %error, "the dead letter's copy could not be sent; RabbitMQ dead-letters the message itself")
                        }
                    }
                }
                this.take_acker()
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                    .map(drop)
                    .map_err(|e| this.settle_error(e))
            }
        }
    }

    pub(super) async fn requeue(mut self) -> Result<(), BrokerError> {
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
impl crate::broker::Settle for AmqpAck {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        AmqpAck::ack(*self).await
    }

    async fn nack(self: Box<Self>, nack: Nack) -> Result<(), BrokerError> {
        AmqpAck::nack(*self, nack).await
    }
}

#[async_trait::async_trait]
impl crate::broker::Source for AmqpConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        AmqpConsumer::next(self).await
    }

    async fn close(self: Box<Self>) {
        AmqpConsumer::close(*self).await
    }
}
