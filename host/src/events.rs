//! Model events: `publish_model_event(model, event, data)` as pubsubpy had it. An event is a
//! message whose routing key is `{Model}.{event}` (the model's class name: the last part of a
//! dotted path, so `shop.models.Booking` publishes `Booking.created`), sent to the host's
//! events exchange (`[events]`): a topic exchange on AMQP or the embedded broker, a topic on
//! Kafka (the key then travels in the record's `x-wharf-topic` header). Subscriptions read
//! them from queues of their own (`supervisor`).

use crate::broker::{Address, BrokerError, Connections, Events};
use crate::config::EventsConfig;
use crate::message::{HeaderValue, Message};

/// The header naming the model's full path, as the publisher gave it.
pub const MODEL_HEADER: &str = "x-wharf-model";
/// The header naming the event.
pub const EVENT_HEADER: &str = "x-wharf-event";

/// Why an event cannot be published as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {problem}")]
pub struct InvalidEvent {
    pub field: &'static str,
    pub problem: String,
}

fn is_word(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 100
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// The routing key of `event` on `model`: `{class name}.{event}`.
pub fn routing_key(model: &str, event: &str) -> Result<String, InvalidEvent> {
    let class = model.rsplit('.').next().unwrap_or(model);
    if model.len() > 200 || !model.split('.').all(is_word) {
        return Err(InvalidEvent {
            field: "model",
            problem: format!(
                "`{}` is not a model: a class name or a dotted path of them (`shop.models.Booking`), each part letters, digits, `_` or `-`",
                crate::address::shorten(model)
            ),
        });
    }
    if !is_word(event) {
        return Err(InvalidEvent {
            field: "event",
            problem: format!(
                "`{}` is not an event name: 1 to 100 letters, digits, `_` or `-`",
                crate::address::shorten(event)
            ),
        });
    }
    Ok(format!("{class}.{event}"))
}

/// The message of `event` on `model` carrying `payload`.
pub fn message(model: &str, event: &str, payload: Vec<u8>) -> Result<Message, InvalidEvent> {
    let key = routing_key(model, event)?;
    let mut msg = Message::new(key, payload);
    msg.content_type = Some("application/json".into());
    msg.set_header(MODEL_HEADER, HeaderValue::Text(model.to_owned()));
    msg.set_header(EVENT_HEADER, HeaderValue::Text(event.to_owned()));
    Ok(msg)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_class_name_and_the_event() {
        assert_eq!(
            routing_key("shop.models.Booking", "created").unwrap(),
            "Booking.created"
        );
        assert_eq!(routing_key("Order", "paid").unwrap(), "Order.paid");
        for (model, event, field) in [
            ("", "created", "model"),
            ("shop..Booking", "created", "model"),
            ("Book ing", "created", "model"),
            ("Booking.*", "created", "model"),
            ("Booking", "", "event"),
            ("Booking", "up.dated", "event"),
            ("Booking", "#", "event"),
        ] {
            assert_eq!(
                routing_key(model, event).unwrap_err().field,
                field,
                "{model} {event}"
            );
        }
    }
}
