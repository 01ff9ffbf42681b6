//! Leased takes through the API: a take that holds what it took under leases, a lease
//! stream (a worker's standing take), and settling leases: one, a batch, or an admin's in a
//! taker's place.

use super::queues::Taking;
use super::{AppError, AppState, audit};
use crate::broker::Address;
use crate::leases::GiveBack;
use crate::web::MAX_COUNT;
use crate::web::caller::{Admin, Allowed, Operator};
use crate::web::error::invalid;
use serde_json::json;
use std::time::Duration;

/// Takes up to `count` messages, waiting up to `timeout` for them, and holds each unsettled
/// under a lease of `lease` (see `crate::leases`): a service that crashes while working on one
/// loses nothing. A message that would take the answer past `max_response_bytes` is returned
/// to the queue and ends the take.
pub async fn lease(
    state: &AppState,
    who: &Allowed<Operator>,
    address: &Address,
    count: usize,
    timeout: Duration,
    lease: Duration,
) -> Result<Vec<crate::leases::Leased>, AppError> {
    // Room is reserved before anything is taken: takes at once cannot pass the bound together.
    let room = state.leases.reserve(count);
    if room.count == 0 {
        return Err(AppError::Conflict(format!(
            "this host holds {} leased messages already; settle some first",
            crate::leases::MAX_LEASES
        )));
    }
    if state.leases.batches() >= crate::leases::MAX_LEASE_BATCHES {
        return Err(AppError::Conflict(format!(
            "this host holds {} leased batches open already; settle some first, or lease more messages per take",
            crate::leases::MAX_LEASE_BATCHES
        )));
    }
    let mut taking = Taking::open(state, address, room.count, timeout, true).await?;
    // Each is leased as it arrives, so none waits unleased for the others.
    let mut batch = state
        .leases
        .batch(&who.caller.actor(), address, lease, taking.deadline);
    loop {
        match taking.next().await {
            Ok(Some(delivery)) => {
                taking.handed_over(&delivery.message);
                batch.hold(delivery).await;
            }
            Ok(None) => break,
            Err(error) => {
                // Nothing was handed over (else the take ends with what it has).
                batch.finish(taking.consumer).await;
                return Err(error);
            }
        }
    }
    let held = batch.finish(taking.consumer).await;
    if held.is_empty() {
        return Ok(held);
    }
    drop(room);
    audit::record(
        state,
        who,
        "queue.lease",
        &address.to_string(),
        json!({ "leased": held.len(), "lease_ms": lease.as_millis() as u64 }),
    )
    .await;
    Ok(held)
}

/// Opens a lease stream of `address` (see [`crate::leases::LeaseStream`]): a standing
/// consumer whose every delivery is leased for `lease` as it arrives, at most `prefetch`
/// unsettled. Counts as one leased batch while it is open, and after, until what it leased
/// is settled.
pub async fn lease_stream(
    state: &AppState,
    who: &Allowed<Operator>,
    address: &Address,
    prefetch: usize,
    lease: Duration,
) -> Result<crate::leases::LeaseStream, AppError> {
    if state.leases.reserve(1).count == 0 {
        return Err(crate::leases::LeaseError::Full.into());
    }
    if state.leases.batches() >= crate::leases::MAX_LEASE_BATCHES {
        return Err(AppError::Conflict(format!(
            "this host holds {} leased batches and streams open already; settle or stop some first",
            crate::leases::MAX_LEASE_BATCHES
        )));
    }
    let options = crate::broker::ConsumeOptions {
        shared: true,
        dead_letter_copies: true,
        ..crate::broker::ConsumeOptions::new(prefetch)
    };
    let consumer = state.connections.consume_with(address, options).await?;
    let stream = state.leases.stream(
        &who.caller.actor(),
        address,
        consumer,
        prefetch,
        lease,
        state.shutdown.clone(),
    );
    audit::record(
        state,
        who,
        "queue.lease_stream",
        &address.to_string(),
        json!({ "stream": stream.id(), "prefetch": prefetch, "lease_ms": lease.as_millis() as u64 }),
    )
    .await;
    Ok(stream)
}

/// The lease streams open on this host.
pub fn lease_streams(state: &AppState, _: &Allowed<Operator>) -> Vec<crate::leases::StreamView> {
    state.leases.streams()
}

/// Stops a lease stream: its taker's, or any for an admin. What it leased stays held.
pub async fn stop_lease_stream(
    state: &AppState,
    who: &Allowed<Operator>,
    id: &str,
) -> Result<(), AppError> {
    let actor = who.caller.actor();
    let by = settler(who, &actor);
    let address = state.leases.stop(id, &by)?;
    audit::record(
        state,
        who,
        "queue.lease_stream_stopped",
        &address,
        json!({ "stream": crate::broker::shorten(id) }),
    )
    .await;
    Ok(())
}

/// The leases this host holds.
pub fn leases(state: &AppState, _: &Allowed<Operator>) -> Vec<crate::leases::LeaseView> {
    state.leases.list()
}

/// Settles a leased message: `ack`, `nack` (back to its queue with `requeue`, else to its
/// dead letters), or `extend` (a new deadline `lease` from now; answers it).
pub async fn settle_lease(
    state: &AppState,
    who: &Allowed<Operator>,
    id: &str,
    settle: Settle,
) -> Result<Option<u64>, AppError> {
    let actor = who.caller.actor();
    let by = settler(who, &actor);
    let (action, detail, answer) = match settle {
        Settle::Ack => {
            state.leases.ack(id, &by).await?;
            ("lease.ack", json!({}), None)
        }
        Settle::Nack(back) => {
            let detail = match &back {
                GiveBack::Requeue { delay } => json!({
                    "requeue": true,
                    "delay_ms": delay.map(|d| d.as_millis() as u64),
                }),
                GiveBack::DeadLetter(error) => json!({
                    "requeue": false,
                    "exception_name": error.as_ref().map(|e| e.name.clone()),
                }),
            };
            state.leases.nack(id, back, &by).await?;
            ("lease.nack", detail, None)
        }
        Settle::Extend { lease } => {
            let until = state.leases.extend(id, lease, &by).await?;
            ("lease.extend", json!({ "until_ms": until }), Some(until))
        }
    };
    audit::record(state, who, action, &crate::broker::shorten(id), detail).await;
    Ok(answer)
}

/// The most leases one batch settles: as many as one take leases.
pub const MAX_SETTLE: usize = MAX_COUNT;
/// The longest lease name a batch may hold (the host's are 32 characters).
const MAX_LEASE_NAME: usize = 64;

/// How a batch of leases was settled.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Settled {
    /// How many of the batch were settled.
    pub settled: usize,
    /// Those that were not, each with why; the rest of the batch is settled all the same.
    pub failed: Vec<SettleFailure>,
}

/// A lease of a batch that was not settled.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SettleFailure {
    pub lease: String,
    /// `unknown` (settled already, or back in its queue at its deadline: the message will be
    /// delivered again), `not_yours` (another caller's) or `broker` (the broker refused: the
    /// lease is given back at its deadline).
    pub reason: &'static str,
    pub error: String,
}

/// Settles a batch of leases in one call (a worker's round trip): each `None` acked, each
/// `Some` given back so. One audit record for the batch, with its counts.
pub async fn settle_leases(
    state: &AppState,
    who: &Allowed<Operator>,
    batch: Vec<(String, Option<GiveBack>)>,
) -> Result<Settled, AppError> {
    if batch.len() > MAX_SETTLE {
        return Err(invalid(
            "ack",
            format!("{} leases in one batch; at most {MAX_SETTLE}", batch.len()),
        ));
    }
    // A lease is named by 32 characters: a longer name is no lease, and is not echoed back.
    if let Some((id, _)) = batch.iter().find(|(id, _)| id.len() > MAX_LEASE_NAME) {
        return Err(invalid(
            "ack",
            format!(
                "`{}` is no lease: a lease's name is at most {MAX_LEASE_NAME} characters",
                crate::broker::shorten(id)
            ),
        ));
    }
    let actor = who.caller.actor();
    let by = settler(who, &actor);
    let (mut acks, mut requeues, mut dead) = (0usize, 0usize, 0usize);
    for (_, back) in &batch {
        match back {
            None => acks += 1,
            Some(GiveBack::Requeue { .. }) => requeues += 1,
            Some(GiveBack::DeadLetter(_)) => dead += 1,
        }
    }
    let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
    let outcomes = state.leases.settle_all(batch, &by).await;
    let failed: Vec<SettleFailure> = ids
        .into_iter()
        .zip(outcomes)
        .filter_map(|(lease, outcome)| {
            let error = outcome.err()?;
            let reason = match error {
                crate::leases::LeaseError::Unknown(_) => "unknown",
                crate::leases::LeaseError::NotYours(_) => "not_yours",
                _ => "broker",
            };
            Some(SettleFailure {
                lease,
                reason,
                error: error.to_string(),
            })
        })
        .collect();
    let settled = acks + requeues + dead - failed.len();
    if settled > 0 || !failed.is_empty() {
        audit::record(
            state,
            who,
            "lease.settle",
            &format!("{} leases", acks + requeues + dead),
            json!({ "acks": acks, "requeues": requeues, "dead_letters": dead, "failed": failed.len() }),
        )
        .await;
    }
    Ok(Settled { settled, failed })
}

/// An admin gives back a message a client holds under a lease, in its taker's place: to its
/// queue (`requeue`) or to its dead letters. Recorded in the audit log, since the taker's own
/// settling then fails. Answers the queue it was taken from.
pub async fn return_lease(
    state: &AppState,
    who: &Allowed<Admin>,
    id: &str,
    requeue: bool,
) -> Result<String, AppError> {
    let actor = who.caller.actor();
    let by = settler(who, &actor);
    let back = if requeue {
        GiveBack::Requeue { delay: None }
    } else {
        GiveBack::DeadLetter(None)
    };
    let address = state.leases.nack(id, back, &by).await?;
    audit::record(
        state,
        who,
        if requeue {
            "queue.lease_returned"
        } else {
            "queue.lease_dead_lettered"
        },
        &address,
        json!({ "lease": id }),
    )
    .await;
    Ok(address)
}

/// An admin gives back every message clients hold under a lease from `address`, in their
/// takers' place: to the queue (`requeue`) or to its dead letters. One audit record; answers
/// how many went back.
pub async fn return_leases(
    state: &AppState,
    who: &Allowed<Admin>,
    address: &Address,
    requeue: bool,
) -> Result<usize, AppError> {
    let actor = who.caller.actor();
    let by = settler(who, &actor);
    let at = address.to_string();
    let ids: Vec<String> = state
        .leases
        .list()
        .into_iter()
        .filter(|l| l.address == at)
        .map(|l| l.lease)
        .collect();
    let back = if requeue {
        GiveBack::Requeue { delay: None }
    } else {
        GiveBack::DeadLetter(None)
    };
    let mut returned = 0;
    for chunk in ids.chunks(MAX_SETTLE) {
        let batch = chunk
            .iter()
            .map(|id| (id.clone(), Some(back.clone())))
            .collect();
        // One settled meanwhile by its taker is not an error here: it is no longer held.
        returned += state
            .leases
            .settle_all(batch, &by)
            .await
            .iter()
            .filter(|outcome| outcome.is_ok())
            .count();
    }
    audit::record(
        state,
        who,
        if requeue {
            "queue.leases_returned"
        } else {
            "queue.leases_dead_lettered"
        },
        &at,
        json!({ "messages": returned }),
    )
    .await;
    Ok(returned)
}

/// What to do with a leased message.
pub enum Settle {
    Ack,
    Nack(GiveBack),
    Extend { lease: Duration },
}

/// Who settles (or stops) as `who`: the lease's taker by the audit log's name `actor`, or an
/// admin, who may settle anyone's.
fn settler<'a, R>(who: &Allowed<R>, actor: &'a str) -> crate::leases::Settler<'a> {
    crate::leases::Settler {
        actor,
        admin: who.caller.role >= crate::auth::Role::Admin,
    }
}
