//! Model events: publish `{Model}.{event}` on this host's events exchange, straight to the
//! broker or through the outbox.

use super::{AppError, AppState};
use crate::store::{Committed, OutboxEntry, UnitOfWork};
use crate::web::caller::{Allowed, Operator};
use crate::web::error::invalid;
use serde::Serialize;

/// A published event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Published {
    pub id: String,
    /// `{Model}.{event}`.
    pub routing_key: String,
    /// Where it went: `connection:address`.
    pub to: String,
    /// Whether it went through the outbox (committed; the relay sends it).
    pub durable: bool,
}

/// Publishes event `event` of `model` with `data` (its JSON, as the payload). Durable: it is
/// committed to the outbox and the relay sends it, whether or not the broker is up.
pub async fn publish(
    state: &AppState,
    _: &Allowed<Operator>,
    model: &str,
    event: &str,
    data: &serde_json::Value,
    durable: bool,
) -> Result<Published, AppError> {
    let payload = serde_json::to_vec(data).expect("JSON serialises");
    if payload.len() > state.max_message_bytes {
        return Err(invalid(
            "data",
            format!(
                "the event is {} bytes, over the host's limit of {} (server.max_message_bytes)",
                payload.len(),
                state.max_message_bytes
            ),
        ));
    }
    let mut msg =
        crate::events::message(model, event, payload).map_err(|e| invalid(e.field, e.problem))?;
    let events = &state.supervisor.file().events;
    msg.topic = events.key(&msg.topic);
    let connections = state.supervisor.connections();
    let to = crate::events::address(connections, events, &msg.topic)?;
    let published = Published {
        id: msg.id.clone(),
        routing_key: msg.topic.clone(),
        to: to.to_string(),
        durable,
    };
    if durable {
        let work = UnitOfWork {
            outbox: vec![OutboxEntry {
                destination: to.to_string(),
                origin: "api:events".into(),
                message: msg,
            }],
            ..UnitOfWork::default()
        };
        return match state.outbox.commit(&work).await? {
            Committed::Done => Ok(published),
            other => Err(AppError::BadRequest(format!(
                "the outbox did not take the event: {other:?}"
            ))),
        };
    }
    crate::events::publish(connections, events, msg).await?;
    crate::metrics::event_published();
    Ok(published)
}
