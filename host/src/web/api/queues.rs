//! `/api/v1/queues/{connection}/{queue}`: stats, peek (GET: the messages stay), publish,
//! take (POST: taken and acked), purge and replay, the same on every transport.

use crate::message::Message;
use crate::web::caller::{Allowed, Operator, Viewer};
use crate::web::json::JsonBody;
use crate::web::ops::leases as lease_ops;
use crate::web::ops::queues::{self as ops, ReplayParams, Replayed};
use crate::web::{AppError, AppState, MAX_WAIT_MS};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// A message in its JSON form, as published and as read. Every field is optional when
/// publishing; unknown fields are refused.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes `Message::to_json` and `from_json`
pub struct MessageDoc {
    /// Generated (a UUID) when left out.
    id: Option<String>,
    /// By default the queue's name.
    topic: Option<String>,
    /// Text; or `payload_base64` for bytes. A JSON value is stored as its text.
    payload: Option<Value>,
    payload_base64: Option<String>,
    key: Option<String>,
    key_base64: Option<String>,
    /// Values: strings, numbers, booleans, or `{"bytes_base64": …}`, `{"json": …}`.
    headers: Option<std::collections::BTreeMap<String, Value>>,
    content_type: Option<String>,
    correlation_id: Option<String>,
    reply_to: Option<String>,
    priority: Option<u8>,
    expiration_ms: Option<u64>,
    /// True unless set.
    persistent: Option<bool>,
    timestamp_ms: Option<u64>,
}

/// The id of a published message.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Published {
    id: String,
}

type QueuePath = Path<(String, String)>;

/// How full a queue is: for the embedded broker, ready, in flight and delayed; for
/// RabbitMQ, ready and consumers.
#[utoipa::path(get, path = "/api/v1/queues/{connection}/{queue}", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path)),
    responses((status = 200, body = Object), (status = 404)))]
pub async fn stats(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
    Path((connection, queue)): QueuePath,
) -> Result<Json<Value>, AppError> {
    let address = ops::known(&state, &connection, &queue)?;
    Ok(Json(ops::stats(&state, &who, &address).await?))
}

/// Publishes the message in the body (the JSON form of `Message`); answers once committed.
#[utoipa::path(post, path = "/api/v1/queues/{connection}/{queue}/messages", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path)), request_body = MessageDoc,
    responses((status = 201, body = Published), (status = 400), (status = 413)))]
pub async fn publish(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path((connection, queue)): QueuePath,
    body: JsonBody<Value>,
) -> Result<(StatusCode, Json<Published>), AppError> {
    let address = ops::known(&state, &connection, &queue)?;
    let JsonBody(body) = body;
    let id = ops::publish(&state, &who, &address, &body).await?;
    Ok((StatusCode::CREATED, Json(Published { id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    pub count: Option<usize>,
    pub timeout_ms: Option<u64>,
}

fn messages(messages: Vec<Message>) -> Json<Value> {
    Json(Value::Array(
        messages.iter().map(Message::to_json).collect(),
    ))
}

/// Up to `count` ready messages (default 10), left in the queue: reading changes nothing.
/// At most `max_response_bytes` of messages, headers and keys counted (but always one).
#[utoipa::path(get, path = "/api/v1/queues/{connection}/{queue}/messages", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path),
        ("count" = Option<usize>, Query, description = "1 to 1,000; 10 by default")),
    responses((status = 200, body = [MessageDoc]), (status = 404)))]
pub async fn peek(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
    Path((connection, queue)): QueuePath,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(params) = params?;
    let count = ops::count(params.count, 10)?;
    let address = ops::known(&state, &connection, &queue)?;
    Ok(messages(ops::peek(&state, &who, &address, count).await?))
}

/// Takes up to `count` messages (default 1), waiting up to `timeout_ms` (default 5000) for
/// them, acking each as it arrives: for people and tests, not for services that need
/// at-least-once (they use a broker of their own). A message that would take the answer past
/// `max_response_bytes` is returned to the queue and ends the take; a shutdown ends the wait
/// with what has arrived.
#[utoipa::path(post, path = "/api/v1/queues/{connection}/{queue}/take", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path),
        ("count" = Option<usize>, Query, description = "1 to 1,000; 1 by default"),
        ("timeout_ms" = Option<u64>, Query, description = "how long to wait; 5,000 by default")),
    responses((status = 200, body = [MessageDoc]), (status = 404)))]
pub async fn take(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path((connection, queue)): QueuePath,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(params) = params?;
    let count = ops::count(params.count, 1)?;
    let timeout = match params.timeout_ms.unwrap_or(5_000) {
        ms @ 0..=MAX_WAIT_MS => Duration::from_millis(ms),
        ms => {
            return Err(crate::web::error::invalid(
                "timeout_ms",
                format!("timeout_ms {ms} is out of range: at most {MAX_WAIT_MS}"),
            ));
        }
    };
    let address = ops::known(&state, &connection, &queue)?;
    Ok(messages(
        ops::take(&state, &who, &address, count, timeout).await?,
    ))
}

/// What a leased take asks for.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LeaseParams {
    pub count: Option<usize>,
    pub timeout_ms: Option<u64>,
    pub lease_ms: Option<u64>,
}

fn lease_duration(field: &str, ms: u64) -> Result<Duration, AppError> {
    let most = crate::leases::MAX_LEASE.as_millis() as u64;
    if ms == 0 || ms > most {
        return Err(crate::web::error::invalid(
            field,
            format!("{field} {ms} is out of range: 1 to {most}"),
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// Takes up to `count` messages (default 1), waiting up to `timeout_ms` (default 5000), and
/// holds each unsettled under a lease of `lease_ms` (default 30,000; at most an hour) from the
/// end of the wait (one that arrives early is held meanwhile, for no one else): settle
/// each with `/api/v1/leases/{lease}/ack`, `/nack` or `/extend`. One not settled by its
/// deadline goes back to its queue. Leases are this host's: settle them here.
#[utoipa::path(post, path = "/api/v1/queues/{connection}/{queue}/lease", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path),
        ("count" = Option<usize>, Query, description = "1 to 1,000; 1 by default"),
        ("timeout_ms" = Option<u64>, Query, description = "how long to wait; 5,000 by default"),
        ("lease_ms" = Option<u64>, Query, description = "how long each is held; 30,000 by default, at most 3,600,000")),
    responses((status = 200, body = [crate::leases::Leased]), (status = 400), (status = 404), (status = 409)))]
pub async fn lease(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path((connection, queue)): QueuePath,
    params: Result<Query<LeaseParams>, QueryRejection>,
) -> Result<Json<Vec<crate::leases::Leased>>, AppError> {
    let Query(params) = params?;
    let count = ops::count(params.count, 1)?;
    let timeout = match params.timeout_ms.unwrap_or(5_000) {
        ms @ 0..=MAX_WAIT_MS => Duration::from_millis(ms),
        ms => {
            return Err(crate::web::error::invalid(
                "timeout_ms",
                format!("timeout_ms {ms} is out of range: at most {MAX_WAIT_MS}"),
            ));
        }
    };
    let lease = lease_duration("lease_ms", params.lease_ms.unwrap_or(30_000))?;
    let address = ops::known(&state, &connection, &queue)?;
    Ok(Json(
        lease_ops::lease(&state, &who, &address, count, timeout, lease).await?,
    ))
}

/// What a lease stream asks for.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    pub prefetch: Option<usize>,
    pub lease_ms: Option<u64>,
    pub heartbeat_ms: Option<u64>,
}

/// The shortest and longest heartbeat a lease stream may ask for, in ms.
const HEARTBEAT_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// A standing leased take, for a worker: the answer is `application/x-ndjson` that goes on
/// until the caller hangs up, the stream is stopped (`DELETE /api/v1/leases/streams/{id}`,
/// its id in the `Wharf-Lease-Stream` header) or the host stops. Each line is a leased
/// message as `/lease` answers one, sent as the broker delivers it; an empty line when
/// nothing came for `heartbeat_ms` (10,000 by default, 100 to 60,000); a last line
/// `{"error": …}` if the stream fails. At most `prefetch` (64 by default, 1 to 1,000) are
/// unsettled at once: the broker sends the next as one is settled. Settle each as any lease;
/// those held when the stream ends stay held until settled or due.
#[utoipa::path(post, path = "/api/v1/queues/{connection}/{queue}/lease/stream", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path),
        ("prefetch" = Option<usize>, Query, description = "1 to 1,000; 64 by default"),
        ("lease_ms" = Option<u64>, Query, description = "how long each is held; 30,000 by default, at most 3,600,000"),
        ("heartbeat_ms" = Option<u64>, Query, description = "an empty line after this long without a message; 10,000 by default, 100 to 60,000")),
    responses((status = 200, description = "one leased message per line (`Leased`), an empty line as a heartbeat", content_type = "application/x-ndjson", body = crate::leases::Leased,
        headers(("Wharf-Lease-Stream" = String, description = "the stream's id, to stop it"))),
        (status = 400), (status = 404), (status = 409)))]
pub async fn lease_stream(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path((connection, queue)): QueuePath,
    params: Result<Query<StreamParams>, QueryRejection>,
) -> Result<axum::response::Response, AppError> {
    let Query(params) = params?;
    let prefetch = match params.prefetch.unwrap_or(64) {
        n @ 1..=crate::web::MAX_COUNT => n,
        n => {
            return Err(crate::web::error::invalid(
                "prefetch",
                format!(
                    "prefetch {n} is out of range: from 1 to {}",
                    crate::web::MAX_COUNT
                ),
            ));
        }
    };
    let lease = lease_duration("lease_ms", params.lease_ms.unwrap_or(30_000))?;
    let heartbeat = match params.heartbeat_ms.unwrap_or(10_000) {
        ms if HEARTBEAT_MS.contains(&ms) => Duration::from_millis(ms),
        ms => {
            return Err(crate::web::error::invalid(
                "heartbeat_ms",
                format!(
                    "heartbeat_ms {ms} is out of range: {} to {}",
                    HEARTBEAT_MS.start(),
                    HEARTBEAT_MS.end()
                ),
            ));
        }
    };
    let address = ops::known(&state, &connection, &queue)?;
    let stream = lease_ops::lease_stream(&state, &who, &address, prefetch, lease).await?;
    let id = stream.id().to_owned();
    let lines = futures::stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        let line = match stream.next(heartbeat).await {
            Ok(None) => return None,
            Ok(Some(crate::leases::Streamed::Idle)) => "\n".to_owned(),
            Ok(Some(crate::leases::Streamed::Leased(leased))) => {
                let mut line = serde_json::to_string(&leased).expect("a lease serialises");
                line.push('\n');
                line
            }
            Err(error) => {
                let mut line = AppError::from(error).body().to_string();
                line.push('\n');
                // The last line: the stream ends after it.
                return Some((Ok::<_, std::convert::Infallible>(line), None));
            }
        };
        Some((Ok(line), Some(stream)))
    });
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/x-ndjson"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        [("wharf-lease-stream", id)],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

/// The lease streams open on this host, oldest first.
#[utoipa::path(get, path = "/api/v1/leases/streams", tag = "queues",
    responses((status = 200, body = [crate::leases::StreamView])))]
pub async fn lease_streams(
    State(state): State<AppState>,
    who: Allowed<Operator>,
) -> Json<Vec<crate::leases::StreamView>> {
    Json(lease_ops::lease_streams(&state, &who))
}

/// Stops a lease stream (its taker's, or any for an admin): it takes nothing more and its
/// answer ends after the messages already sent; their leases stay held until settled.
#[utoipa::path(delete, path = "/api/v1/leases/streams/{id}", tag = "queues",
    params(("id" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn stop_lease_stream(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    lease_ops::stop_lease_stream(&state, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The leased messages this host holds, soonest deadline first.
#[utoipa::path(get, path = "/api/v1/leases", tag = "queues",
    responses((status = 200, body = [crate::leases::LeaseView])))]
pub async fn leases(
    State(state): State<AppState>,
    who: Allowed<Operator>,
) -> Json<Vec<crate::leases::LeaseView>> {
    Json(lease_ops::leases(&state, &who))
}

/// A leased message is done with: removed from its queue.
#[utoipa::path(post, path = "/api/v1/leases/{id}/ack", tag = "queues",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn ack(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    lease_ops::settle_lease(&state, &who, &id, lease_ops::Settle::Ack).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How to give a leased message back.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackBody {
    /// Back to its queue (true, the default), or to its dead letters.
    #[serde(default = "yes")]
    pub requeue: bool,
    /// Back to its queue after this long (a retry; 1 to 3,600,000), not at once. Only with
    /// `requeue`.
    pub delay_ms: Option<u64>,
    /// Why it goes to its dead letters, carried in its `exception` headers. Only without
    /// `requeue`.
    pub exception: Option<NackException>,
}

/// The taker's error a dead letter carries, as edeposit's daemons reported one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackException {
    /// Its text (`exception`); at most 4,096 bytes.
    pub message: String,
    /// Its class's name (`exception_name`: `KeyError`); 1 to 255 bytes, no control characters.
    pub name: String,
    /// Its type (`exception_type`: `<class 'KeyError'>`); at most 255 bytes, `client` if left
    /// out.
    pub r#type: Option<String>,
}

/// The longest `exception.message` a nack carries.
const MAX_EXCEPTION_MESSAGE: usize = 4096;
/// The longest `exception.name` and `exception.type`.
const MAX_EXCEPTION_NAME: usize = 255;

fn yes() -> bool {
    true
}

impl NackBody {
    /// What it asks for, checked: a delay only with `requeue`, an exception only without, and
    /// each within its bounds.
    fn give_back(self) -> Result<crate::leases::GiveBack, AppError> {
        use crate::leases::{GiveBack, TakerError};
        use crate::web::error::invalid;
        let bad_text = |text: &str| text.chars().any(char::is_control);
        match (self.requeue, self.delay_ms, self.exception) {
            (true, _, Some(_)) => Err(invalid(
                "exception",
                "an exception goes with a dead letter: send it with \"requeue\": false",
            )),
            (false, Some(_), _) => Err(invalid(
                "delay_ms",
                "a delay goes with a requeue: leave it out with \"requeue\": false",
            )),
            (true, delay, None) => Ok(GiveBack::Requeue {
                delay: delay.map(|ms| lease_duration("delay_ms", ms)).transpose()?,
            }),
            (false, None, None) => Ok(GiveBack::DeadLetter(None)),
            (false, None, Some(e)) => {
                if e.message.len() > MAX_EXCEPTION_MESSAGE {
                    return Err(invalid(
                        "exception.message",
                        format!(
                            "is {} bytes; at most {MAX_EXCEPTION_MESSAGE}",
                            e.message.len()
                        ),
                    ));
                }
                if e.name.is_empty() || e.name.len() > MAX_EXCEPTION_NAME || bad_text(&e.name) {
                    return Err(invalid(
                        "exception.name",
                        format!(
                            "must be 1 to {MAX_EXCEPTION_NAME} bytes without control characters"
                        ),
                    ));
                }
                let kind = e.r#type.unwrap_or_else(|| "client".into());
                if kind.is_empty() || kind.len() > MAX_EXCEPTION_NAME || bad_text(&kind) {
                    return Err(invalid(
                        "exception.type",
                        format!(
                            "must be 1 to {MAX_EXCEPTION_NAME} bytes without control characters"
                        ),
                    ));
                }
                Ok(GiveBack::DeadLetter(Some(TakerError {
                    message: e.message,
                    name: e.name,
                    kind,
                })))
            }
        }
    }
}

/// Gives a leased message back: to its queue (at once, or after `delay_ms`: a retry), or
/// (`requeue: false`) to its dead letters, with the taker's `exception` if it gives one.
#[utoipa::path(post, path = "/api/v1/leases/{id}/nack", tag = "queues",
    params(("id" = String, Path)), request_body = Option<NackBody>,
    responses((status = 204), (status = 400), (status = 404)))]
pub async fn nack(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, AppError> {
    // No body is `{"requeue": true}`.
    let back = if body.is_empty() {
        crate::leases::GiveBack::Requeue { delay: None }
    } else {
        crate::web::json::parse_json::<NackBody>(&body)?.give_back()?
    };
    lease_ops::settle_lease(&state, &who, &id, lease_ops::Settle::Nack(back)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A batch of leases to settle in one call.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleBody {
    /// Leases whose messages are done with.
    #[serde(default)]
    pub ack: Vec<String>,
    /// Leases whose messages go back: each as `/api/v1/leases/{id}/nack` takes it.
    #[serde(default)]
    pub nack: Vec<NackOne>,
}

/// One lease given back, in a batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackOne {
    pub lease: String,
    #[serde(default = "yes")]
    pub requeue: bool,
    pub delay_ms: Option<u64>,
    pub exception: Option<NackException>,
}

/// Settles up to 1,000 leases in one call, as a worker does after each batch: each of `ack`
/// acked, each of `nack` given back as `/api/v1/leases/{id}/nack` would. Each is settled or
/// named in `failed` with why (one that ran out meanwhile is `unknown`: it is back in its
/// queue); the others are settled all the same. A malformed entry refuses the whole batch
/// before anything is settled.
#[utoipa::path(post, path = "/api/v1/leases/settle", tag = "queues",
    request_body = SettleBody,
    responses((status = 200, body = lease_ops::Settled), (status = 400)))]
pub async fn settle(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    crate::web::json::JsonBody(body): crate::web::json::JsonBody<SettleBody>,
) -> Result<Json<lease_ops::Settled>, AppError> {
    let mut batch: Vec<(String, Option<crate::leases::GiveBack>)> =
        body.ack.into_iter().map(|id| (id, None)).collect();
    for (index, one) in body.nack.into_iter().enumerate() {
        let back = NackBody {
            requeue: one.requeue,
            delay_ms: one.delay_ms,
            exception: one.exception,
        }
        .give_back()
        .map_err(|error| match error {
            AppError::Invalid { field, message } => AppError::Invalid {
                field: format!("nack[{index}].{field}"),
                message,
            },
            other => other,
        })?;
        batch.push((one.lease, Some(back)));
    }
    Ok(Json(lease_ops::settle_leases(&state, &who, batch).await?))
}

/// A new deadline for a leased message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// From now, 1 to 3,600,000.
    pub lease_ms: u64,
}

/// Moves a leased message's deadline to `lease_ms` from now; answers the new deadline.
#[utoipa::path(post, path = "/api/v1/leases/{id}/extend", tag = "queues",
    params(("id" = String, Path)), request_body = ExtendBody,
    responses((status = 200, body = Object), (status = 400), (status = 404)))]
pub async fn extend(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path(id): Path<String>,
    crate::web::json::JsonBody(body): crate::web::json::JsonBody<ExtendBody>,
) -> Result<Json<Value>, AppError> {
    let lease = lease_duration("lease_ms", body.lease_ms)?;
    let deadline =
        lease_ops::settle_lease(&state, &who, &id, lease_ops::Settle::Extend { lease }).await?;
    Ok(Json(
        serde_json::json!({ "lease": id, "deadline_ms": deadline }),
    ))
}

/// Removes the ready messages of a queue (not those a consumer holds, nor those waiting out
/// a retry's delay); says how many.
#[utoipa::path(delete, path = "/api/v1/queues/{connection}/{queue}/messages", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path)),
    responses((status = 200, body = Object), (status = 404)))]
pub async fn purge(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path((connection, queue)): QueuePath,
) -> Result<Json<Value>, AppError> {
    let address = ops::known(&state, &connection, &queue)?;
    let purged = ops::purge(&state, &who, &address).await?;
    Ok(Json(json!({ "purged": purged })))
}

/// Replays dead letters: each taken message, without its dead-letter headers, is published
/// to `to` or to its route's input, and removed from this queue only once that publish is
/// confirmed.
#[utoipa::path(post, path = "/api/v1/queues/{connection}/{queue}/replay", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path), ReplayParams),
    responses((status = 200, body = Replayed), (status = 400), (status = 404)))]
pub async fn replay(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path((connection, queue)): QueuePath,
    params: Result<Query<ReplayParams>, QueryRejection>,
) -> Result<Json<Replayed>, AppError> {
    let Query(params) = params?;
    let address = ops::known(&state, &connection, &queue)?;
    Ok(Json(ops::replay(&state, &who, &address, params).await?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only queues whose address or unit contains this (any case).
    #[serde(default)]
    filter: String,
}

/// Every queue the host uses, on every connection: the units that read and write it, how
/// full it is, how fast it is read, and its dead letters (at most 500; `truncated` says so).
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues", params(ListParams),
    responses((status = 200, body = crate::web::ops::overview::QueueList)))]
pub async fn list(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<crate::web::ops::overview::QueueList>, AppError> {
    let Query(params) = params.map_err(|e| crate::web::error::invalid("filter", e.body_text()))?;
    if params.filter.len() > 200 {
        return Err(crate::web::error::invalid(
            "filter",
            "a filter is at most 200 bytes",
        ));
    }
    Ok(Json(
        crate::web::ops::overview::list(&state, &who, &params.filter).await?,
    ))
}
