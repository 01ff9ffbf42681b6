//! Model events: `publish_model_event(model, event, data)` as pubsubpy had it. An event is a
//! message whose routing key is `{Model}.{event}` (the model's class name: the last part of a
//! dotted path, so `shop.models.Booking` publishes `Booking.created`), sent to the host's
//! events exchange (`[events]`): a topic exchange on AMQP or the embedded broker, a topic on
//! Kafka (the key then travels in the record's `x-wharf-topic` header). Subscriptions read
//! them from queues of their own (`supervisor`).

use crate::broker::{Address, BrokerError, Connections, Events};
use crate::config::EventsConfig;
use crate::message::Message;

pub use crate::event::{EVENT_HEADER, InvalidEvent, MODEL_HEADER, message, routing_key};

/// Where an event with routing key `key` goes on `events`: `exchange/key` on a topic
/// exchange, the topic itself on Kafka (the key is the message's topic).
pub fn address(
    connections: &Connections,
    events: &EventsConfig,
    key: &str,
) -> Result<Address, BrokerError> {
    let base = Address {
        connection: events.connection.clone(),
        address: events.exchange.clone(),
    };
    let producer = connections.producer(&base)?;
    Ok(match producer.capabilities().events {
        Events::Log => base,
        Events::Exchange | Events::None => base.sibling(format!("{}/{key}", events.exchange)),
    })
}

/// Publishes `msg` (made by [`message`]) on `events` and waits for the broker's confirm. An
/// event no subscription takes is published all the same.
pub async fn publish(
    connections: &Connections,
    events: &EventsConfig,
    msg: Message,
) -> Result<(), BrokerError> {
    let to = address(connections, events, &msg.topic)?;
    connections
        .producer(&to)?
        .transport()
        .declare_events(&events.exchange)
        .await?;
    connections.send(&to, msg).await
}
