//! Publishing to RabbitMQ: confirmed, mandatory sends on the shared publishing channels, in
//! order when asked, and delayed sends through the holding queues.

use super::*;

impl AmqpBroker {
    /// A publishing channel in confirm mode, replacing a closed one.
    pub(super) async fn publish_channel(&self, live: &Live) -> Result<Channel, BrokerError> {
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
    pub(super) fn target<'a>(
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
    pub(super) async fn begin_publish(
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

    pub(super) async fn publish_raw(
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

    pub(super) async fn declare_holding(&self, name: &str, ms: u64) -> Result<(), BrokerError> {
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
}

/// Rounds a delay up to two significant digits (1234 ms → 1300 ms), so the holding queues
/// stay few.
pub(super) fn delay_bucket(ms: u64) -> u64 {
    let mut scale = 1;
    while ms / scale >= 100 {
        scale *= 10;
    }
    ms.div_ceil(scale).max(1) * scale
}

/// A publish's target as an error names it.
pub(super) fn describe_target(exchange: &str, routing_key: &str) -> String {
    if exchange.is_empty() {
        format!("queue `{routing_key}`")
    } else {
        format!("exchange `{exchange}` with key `{routing_key}`")
    }
}

/// What a publisher confirm says of one message.
pub(super) fn confirmed(confirmation: Confirmation, target: &str) -> Result<(), BrokerError> {
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
