//! A model event as a message: its routing key `{Model}.{event}` and its headers. A leaf; where
//! events go is `events`.

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
