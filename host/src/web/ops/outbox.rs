//! The outbox: messages handed over to be sent whatever the brokers do, its backlog, and the
//! messages their destination refused for good.

use super::{AppError, AppState, audit};
use crate::message::Message;
use crate::store::{Committed, DeadOutboxRow, DeadSourceRow, OutboxEntry, OutboxStats, UnitOfWork};
use crate::web::MAX_COUNT;
use crate::web::caller::{Allowed, Operator, Viewer};
use crate::web::error::invalid;
use serde_json::Value;

/// One message to hand over: where it goes and the message (its JSON form).
pub struct Handover {
    pub to: String,
    pub message: Value,
}

/// Checks every message, then commits them all in one transaction: all or none. Returns
/// their ids once committed; the relay sends them from then on.
pub async fn accept(
    state: &AppState,
    _: &Allowed<Operator>,
    origin: &str,
    handovers: Vec<Handover>,
) -> Result<Vec<String>, AppError> {
    if handovers.is_empty() || handovers.len() > MAX_COUNT {
        return Err(invalid(
            "messages",
            format!(
                "{} messages: one call hands over 1 to {MAX_COUNT}",
                handovers.len()
            ),
        ));
    }
    let one = handovers.len() == 1;
    let mut entries = Vec::with_capacity(handovers.len());
    for (i, handover) in handovers.into_iter().enumerate() {
        // In a batch, each problem names the message it is in.
        let at = |field: &str| {
            if one {
                field.to_owned()
            } else {
                format!("messages[{i}].{field}")
            }
        };
        let address = super::queues::parse(state, &handover.to).map_err(|e| match e {
            AppError::NotFound(message) | AppError::Invalid { message, .. } => {
                invalid(&at("to"), message)
            }
            other => other,
        })?;
        let mut msg = Message::from_json(&handover.message).map_err(|e| AppError::Invalid {
            message: e.to_string(),
            field: at(&format!("message.{}", e.field)),
        })?;
        msg.check_text().map_err(|e| AppError::Invalid {
            message: e.to_string(),
            field: at(&format!("message.{}", e.field)),
        })?;
        if msg.size_bytes() > state.max_message_bytes {
            return Err(invalid(
                &at("message"),
                format!(
                    "the message is {} bytes (payload, key and headers), over the host's limit of {} (server.max_message_bytes)",
                    msg.size_bytes(),
                    state.max_message_bytes
                ),
            ));
        }
        if msg.topic.is_empty() {
            msg.topic = address.address.clone();
        }
        entries.push(OutboxEntry {
            destination: address.to_string(),
            origin: origin.to_owned(),
            message: msg,
        });
    }
    let ids = entries.iter().map(|e| e.message.id.clone()).collect();
    let work = UnitOfWork {
        outbox: entries,
        ..UnitOfWork::default()
    };
    match state.outbox.commit(&work).await? {
        Committed::Done => Ok(ids),
        other => Err(AppError::BadRequest(format!(
            "the outbox did not take the messages: {other:?}"
        ))),
    }
}

pub async fn stats(state: &AppState, _: &Allowed<Viewer>) -> Result<OutboxStats, AppError> {
    Ok(state.outbox.stats().await?)
}

/// The messages their destination refused for good, newest first.
pub async fn dead(
    state: &AppState,
    _: &Allowed<Viewer>,
    count: usize,
) -> Result<Vec<DeadOutboxRow>, AppError> {
    Ok(state
        .outbox
        .store()
        .outbox_dead_rows(count as i64, state.max_response_bytes)
        .await?)
}

/// Sends a dead message again (after its destination was fixed).
pub async fn retry(state: &AppState, who: &Allowed<Operator>, seq: i64) -> Result<(), AppError> {
    let now = crate::message::now_ms() as i64;
    if !state.outbox.store().outbox_revive(seq, now).await? {
        return Err(AppError::NotFound(format!(
            "no dead outbox message numbered {seq}"
        )));
    }
    state.outbox.wake();
    state.outbox.stats_changed().await;
    audit::record(state, who, "outbox.retry", &seq.to_string(), Value::Null).await;
    Ok(())
}

/// Deletes a dead message for good.
pub async fn forget(state: &AppState, who: &Allowed<Operator>, seq: i64) -> Result<(), AppError> {
    if !state.outbox.store().outbox_forget(seq).await? {
        return Err(AppError::NotFound(format!(
            "no dead outbox message numbered {seq}"
        )));
    }
    state.outbox.stats_changed().await;
    audit::record(state, who, "outbox.delete", &seq.to_string(), Value::Null).await;
    Ok(())
}

/// The application's outbox table `name` (404 if this host relays none of that name).
fn source<'a>(
    state: &'a AppState,
    name: &str,
) -> Result<&'a crate::outbox::source::Source, AppError> {
    state.outbox.sources().get(name).ok_or_else(|| {
        AppError::NotFound(format!(
            "this host relays no source named `{}`",
            crate::broker::shorten(name)
        ))
    })
}

/// The rows of source `name` refused for good, newest first.
pub async fn dead_in_source(
    state: &AppState,
    _: &Allowed<Viewer>,
    name: &str,
    count: usize,
) -> Result<Vec<DeadSourceRow>, AppError> {
    Ok(source(state, name)?.table.dead_rows(count as i64).await?)
}

/// Sends a dead row of source `name` again.
pub async fn retry_in_source(
    state: &AppState,
    who: &Allowed<Operator>,
    name: &str,
    seq: i64,
) -> Result<(), AppError> {
    let found = source(state, name)?;
    if !found.table.revive(seq).await? {
        return Err(AppError::NotFound(format!(
            "no dead row numbered {seq} in source `{name}`"
        )));
    }
    found.wake();
    state.outbox.stats_changed().await;
    audit::record(
        state,
        who,
        "outbox.retry",
        &format!("{name}:{seq}"),
        Value::Null,
    )
    .await;
    Ok(())
}

/// Deletes a dead row of source `name`.
pub async fn forget_in_source(
    state: &AppState,
    who: &Allowed<Operator>,
    name: &str,
    seq: i64,
) -> Result<(), AppError> {
    if !source(state, name)?.table.forget(seq).await? {
        return Err(AppError::NotFound(format!(
            "no dead row numbered {seq} in source `{name}`"
        )));
    }
    state.outbox.stats_changed().await;
    audit::record(
        state,
        who,
        "outbox.delete",
        &format!("{name}:{seq}"),
        Value::Null,
    )
    .await;
    Ok(())
}
