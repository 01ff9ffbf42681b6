//! The Queues page: a queue's stats in people's words, its messages peeked (they stay),
//! take, purge (the ready messages), dead letters replayed, the messages held under a lease
//! (returned to the queue or dead-lettered by an operator), and the live consume (each
//! message taken as it arrives, over server-sent events).

use super::{Page, Params, Taking, done, escape, flash};
use crate::message::Message;
use crate::web::caller::Admin;
use crate::web::caller::{Operator, Viewer};
use crate::web::ops::leases as lease_ops;
use crate::web::ops::queues::{self as ops, ReplayParams};
use crate::web::{AppError, AppState};
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// A message as the pages show it: JSON pretty-printed, text as it is, bytes as hex rows.
pub fn shown(message: &Value) -> Value {
    let mut message = message.clone();
    let text = match (message.get("payload"), message.get("payload_base64")) {
        (Some(Value::String(text)), _) => match serde_json::from_str::<Value>(text) {
            Ok(json @ (Value::Object(_) | Value::Array(_))) => {
                serde_json::to_string_pretty(&json).unwrap_or_else(|_| text.clone())
            }
            _ => text.clone(),
        },
        (_, Some(Value::String(b64))) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            bytes
                .chunks(16)
                .map(|row| {
                    row.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => String::new(),
    };
    message["shown"] = json!(text);
    message
}

/// A queue's stats as people say them: `ready 3 · in flight 1 · oldest 69 ms`.
fn described(stats: &Value) -> Vec<String> {
    let count = |key: &str, label: &str| {
        stats
            .get(key)
            .and_then(Value::as_u64)
            .map(|n| format!("{label} {n}"))
    };
    [
        count("depth", "messages"),
        count("ready", "ready"),
        count("in_flight", "in flight"),
        count("delayed", "waiting to retry"),
        count("consumers", "consumers"),
        stats
            .get("oldest_age_ms")
            .and_then(Value::as_u64)
            .map(|ms| format!("oldest {}", crate::time::span_text(ms))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

pub async fn page(State(state): State<AppState>, page: Page<Viewer>, params: Params) -> Response {
    let address = params.get("address").cloned().unwrap_or_default();
    if address.is_empty() {
        return list(&state, &page, &params).await;
    }
    render(&state, &page, &address, flash(&params), None).await
}

/// The list of every queue the host uses, filtered by `?filter=`.
async fn list(state: &AppState, page: &Page<Viewer>, params: &Params) -> Response {
    let filter = page_filter(params);
    match crate::web::ops::overview::list(state, &page.who, &filter).await {
        Ok(list) => {
            let rows: Vec<Value> = list.queues.iter().map(row_shown).collect();
            page.render(
                "queues.html",
                "/queue",
                StatusCode::OK,
                context! { title => "Queues", rows, filter, truncated => list.truncated, flash => flash(params) },
            )
        }
        Err(error) => page.error(error),
    }
}

/// The Queues page for `address` (its stats and the messages waiting, peeked), with a note
/// and the message just taken, if one was.
async fn render<R>(
    state: &AppState,
    page: &Page<R>,
    address: &str,
    note: Option<minijinja::Value>,
    taken: Option<Value>,
) -> Response {
    let mut ctx = context! { title => "Queues", address, flash => note, taken };
    if !address.is_empty() {
        let read = async {
            let at = ops::parse(state, address)?;
            let stats = ops::stats(state, &page.who.lesser(), &at).await?;
            let messages = ops::peek(state, &page.who.lesser(), &at, 50).await?;
            Ok::<_, AppError>((at, stats, messages))
        }
        .await;
        match read {
            Ok((at, stats, messages)) => {
                let messages: Vec<Value> = messages.iter().map(|m| shown(&m.to_json())).collect();
                // A queue of dead letters: its name says so, or its messages carry exceptions.
                let dead_letters = at.address.ends_with(".dead")
                    || messages
                        .iter()
                        .any(|m| m["headers"].get("exception").is_some());
                let embedded = state.connections.is_embedded(&at.connection);
                let stats = described(&stats);
                // Leases are an operator's to see (as in the API); a viewer's page leaves them out.
                let (leases, streams) = if page.who.caller.role >= crate::auth::Role::Operator {
                    (held(state, &at), streams(state, &at))
                } else {
                    (Vec::new(), Vec::new())
                };
                // Only a lease's taker or an admin settles it.
                let settles_leases = page.who.caller.role >= crate::auth::Role::Admin;
                ctx = context! { stats, messages, dead_letters, embedded, leases, streams, settles_leases, ..ctx };
            }
            Err(error) => return page.error(error),
        }
    }
    page.render("queue.html", "/queue", StatusCode::OK, ctx)
}

/// The messages of `at` this host holds under a lease, soonest back first, with how long each
/// has left.
fn held(state: &AppState, at: &crate::address::Address) -> Vec<Value> {
    let address = at.to_string();
    let now = crate::message::now_ms();
    state
        .leases
        .list()
        .into_iter()
        .filter(|l| l.address == address)
        .map(|l| {
            json!({
                "lease": l.lease,
                "message_id": l.message_id,
                "deadline_ms": l.deadline_ms,
                "left": crate::time::span_text(l.deadline_ms.saturating_sub(now)),
            })
        })
        .collect()
}

/// The lease streams open on `at` (workers' standing consumers), oldest first, with how long
/// each has been open.
fn streams(state: &AppState, at: &crate::address::Address) -> Vec<Value> {
    let address = at.to_string();
    let now = crate::message::now_ms();
    state
        .leases
        .streams()
        .into_iter()
        .filter(|s| s.address == address)
        .map(|s| {
            json!({
                "stream": s.stream,
                "taker": s.taker,
                "prefetch": s.prefetch,
                "lease": crate::time::span_text(s.lease_ms),
                "opened_ms": s.opened_ms,
                "open_for": crate::time::span_text(now.saturating_sub(s.opened_ms)),
                "streamed": s.streamed,
            })
        })
        .collect()
}

/// The filter the page was asked for (at most 200 bytes).
fn page_filter(params: &Params) -> String {
    let mut filter = params.get("filter").cloned().unwrap_or_default();
    if filter.len() > 200 {
        let mut end = 200;
        while !filter.is_char_boundary(end) {
            end -= 1;
        }
        filter.truncate(end);
    }
    filter
}

/// One row of the list, in people's words.
fn row_shown(row: &crate::web::ops::overview::QueueRow) -> Value {
    let depth = row.depth.as_ref();
    let count = |n: Option<u64>| n.map_or_else(|| "—".to_owned(), |n| n.to_string());
    let used: Vec<Value> = row
        .used_by
        .iter()
        .map(|u| {
            json!({
                "unit": u.unit,
                "role": u.role,
                "href": format!(
                    "/{}/{}",
                    if u.kind == crate::supervisor::UnitKind::Subscription { "subscriptions" } else { "routes" },
                    escape(&u.unit)
                ),
            })
        })
        .collect();
    json!({
        "address": row.address,
        "transport": row.transport,
        "used_by": used,
        "waiting": count(depth.and_then(|d| d.ready.or(d.depth))),
        "in_flight": count(depth.and_then(|d| d.in_flight)),
        "delayed": count(depth.and_then(|d| d.delayed)),
        "oldest": depth
            .and_then(|d| d.oldest_age_ms)
            .map_or_else(|| "—".to_owned(), crate::time::span_text),
        "consumers": count(depth.and_then(|d| d.consumers.map(u64::from))),
        "rate": row
            .taken_per_minute
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.1}/min")),
        "dead_letters": count(row.dead_letters),
        "dead_letter_address": row.dead_letter_address,
        "error": row.error,
    })
}

#[derive(Deserialize)]
pub struct QueueForm {
    address: String,
}

fn back(address: &str) -> String {
    format!("/queue?address={}", escape(address))
}

/// Takes the oldest message and shows it here, on this answer: a message taken is acked, so
/// it is shown at once rather than carried through a redirect.
pub async fn take(
    State(state): State<AppState>,
    page: Page<Operator>,
    Form(form): Form<QueueForm>,
) -> Response {
    let result = async {
        let at = ops::parse(&state, &form.address)?;
        ops::take(&state, &page.who, &at, 1, Duration::ZERO).await
    }
    .await;
    match result {
        Ok(taken) => {
            let (note, taken) = match taken.first() {
                Some(m) => (
                    super::ok_note(format!(
                        "Took message {}; it is no longer in the queue.",
                        m.id
                    )),
                    Some(shown(&m.to_json())),
                ),
                None => (super::ok_note("Nothing to take."), None),
            };
            render(&state, &page, &form.address, Some(note), taken).await
        }
        Err(error) => page.error(error),
    }
}

pub async fn purge(
    State(state): State<AppState>,
    page: Page<Operator>,
    Form(form): Form<QueueForm>,
) -> Response {
    let result = async {
        let at = ops::parse(&state, &form.address)?;
        ops::purge(&state, &page.who, &at).await
    }
    .await;
    match result {
        Ok(purged) => done(
            &back(&form.address),
            &format!("Purged {purged} ready messages."),
        ),
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct ReplayForm {
    address: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    count: Option<usize>,
    /// One chosen message.
    #[serde(default)]
    id: Option<String>,
}

pub async fn replay(
    State(state): State<AppState>,
    page: Page<Operator>,
    Form(form): Form<ReplayForm>,
) -> Response {
    let result = async {
        let at = ops::parse(&state, &form.address)?;
        let params = ReplayParams {
            count: form.count,
            to: Some(form.to.trim().to_owned()).filter(|t| !t.is_empty()),
            id: form.id.clone().filter(|id| !id.is_empty()),
        };
        ops::replay(&state, &page.who, &at, params).await
    }
    .await;
    match result {
        Ok(replayed) => {
            let went: Vec<String> = replayed
                .to
                .iter()
                .map(|(to, n)| format!("{n} to {to}"))
                .collect();
            let mut note = format!(
                "Replayed {}{}.",
                replayed.replayed,
                if went.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", went.join(", "))
                }
            );
            if replayed.left > 0 {
                note.push_str(&format!(
                    " {} left: no route input known; give an address to replay them to.",
                    replayed.left
                ));
            }
            done(&back(&form.address), &note)
        }
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct LeaseForm {
    lease: String,
    action: LeaseAction,
}

/// What an operator does with a message a client holds under a lease.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum LeaseAction {
    /// Back to the queue, for another taker (its taker's settling then fails: the lease is
    /// gone).
    Requeue,
    /// To the queue's dead letters.
    DeadLetter,
}

/// Settles a leased message in its taker's place (a client that took it and hangs on to it),
/// then shows the queue it was taken from. An admin's: only a lease's taker or an admin
/// settles it.
pub async fn settle_lease(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(form): Form<LeaseForm>,
) -> Response {
    let requeue = matches!(form.action, LeaseAction::Requeue);
    match lease_ops::return_lease(&state, &page.who, &form.lease, requeue).await {
        Ok(address) => done(
            &back(&address),
            &if requeue {
                format!("Returned the message of lease {} to the queue.", form.lease)
            } else {
                format!("Dead-lettered the message of lease {}.", form.lease)
            },
        ),
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct LeasesForm {
    address: String,
    action: LeaseAction,
}

/// Gives back every message of a queue clients hold under a lease, in their takers' place
/// (a worker that hangs on to a batch), then shows the queue. An admin's.
pub async fn settle_leases(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(form): Form<LeasesForm>,
) -> Response {
    let requeue = matches!(form.action, LeaseAction::Requeue);
    let returned = async {
        let at = ops::parse(&state, &form.address)?;
        lease_ops::return_leases(&state, &page.who, &at, requeue).await
    }
    .await;
    match returned {
        Ok(count) => done(
            &back(&form.address),
            &if requeue {
                format!("Returned {count} leased messages to the queue.")
            } else {
                format!("Dead-lettered {count} leased messages.")
            },
        ),
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct StreamForm {
    stream: String,
    address: String,
}

/// Stops a worker's lease stream in its taker's place (a worker to move elsewhere, or one
/// that takes from a queue it should not), then shows the queue. An admin's; what the stream
/// leased stays with its taker to settle.
pub async fn stop_stream(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(form): Form<StreamForm>,
) -> Response {
    match lease_ops::stop_lease_stream(&state, &page.who.lesser(), &form.stream).await {
        Ok(()) => done(
            &back(&form.address),
            &format!("Stopped lease stream {}.", form.stream),
        ),
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct LiveParams {
    address: String,
}

/// Server-sent events: each message taken from the queue as it arrives (acked once sent),
/// until the page goes away or the host stops. It takes messages, so its CSRF token is
/// checked although it is a GET (the page's script puts it in the URL).
pub async fn live(
    State(state): State<AppState>,
    page: Taking<Operator>,
    Query(params): Query<LiveParams>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let consumer = async {
        let at = ops::parse(&state, &params.address)?;
        ops::consume_live(&state, &page.who, &at).await
    }
    .await;
    let consumer = match consumer {
        Ok(consumer) => consumer,
        Err(error) => return error.into_response(),
    };
    let stream = futures::stream::unfold(
        (consumer, state.shutdown.clone()),
        |(mut consumer, mut shutdown)| async move {
            let delivery = tokio::select! {
                _ = shutdown.fired() => None,
                delivery = consumer.next() => delivery.ok(),
            };
            let Some(delivery) = delivery else {
                consumer.close().await;
                return None;
            };
            let shown = shown(&Message::to_json(&delivery.message));
            if let Err(error) = delivery.ack.ack().await {
                tracing::warn!(%error, "a message shown live could not be acked; it comes back");
            }
            let event = Event::default().event("message").data(shown.to_string());
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (consumer, shutdown),
            ))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
