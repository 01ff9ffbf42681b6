//! `/api/v1/queues/{connection}/{queue}`: stats, peek (GET: the messages stay), publish,
//! take (POST: taken and acked) and purge, the same on every transport. Reading needs viewer,
//! the rest operator (`caller::authorize`).

use crate::broker::{Address, QueueDepth};
use crate::message::Message;
use crate::web::{AppError, AppState, MAX_COUNT, MAX_WAIT_MS};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
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

/// The address of a queue on a connection that exists.
fn known(state: &AppState, connection: String, queue: String) -> Result<Address, AppError> {
    if !state.connections.contains(&connection) {
        return Err(AppError::NotFound(format!(
            "there is no connection named `{}`",
            crate::broker::shorten(&connection)
        )));
    }
    Ok(Address {
        connection,
        address: queue,
    })
}

/// How full a queue is: for the embedded broker, ready, in flight and delayed; for
/// RabbitMQ, ready and consumers.
#[utoipa::path(get, path = "/api/v1/queues/{connection}/{queue}", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path)),
    responses((status = 200, body = Object), (status = 404)))]
pub async fn queue_stats(
    State(state): State<AppState>,
    Path((connection, queue)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let address = known(&state, connection, queue)?;
    Ok(Json(match state.connections.depth(&address).await? {
        QueueDepth::Embedded(stats) => json!({
            "connection": address.connection,
            "queue": stats.queue,
            "depth": stats.depth(),
            "ready": stats.ready,
            "in_flight": stats.in_flight,
            "delayed": stats.delayed,
            "oldest_age_ms": stats.oldest_age_ms,
        }),
        QueueDepth::Amqp { ready, consumers } => json!({
            "connection": address.connection,
            "queue": address.address,
            "ready": ready,
            "consumers": consumers,
        }),
    }))
}

/// Publishes the message in the body (the JSON form of `Message`); answers once committed.
#[utoipa::path(post, path = "/api/v1/queues/{connection}/{queue}/messages", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path)), request_body = MessageDoc,
    responses((status = 201, body = Published), (status = 400), (status = 413)))]
pub async fn publish(
    State(state): State<AppState>,
    Path((connection, queue)): Path<(String, String)>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let address = known(&state, connection, queue)?;
    let Json(body) = body?;
    let mut msg = Message::from_json(&body)?;
    crate::broker::check_message(&msg)?;
    if msg.topic.is_empty() {
        msg.topic = address.address.clone();
    }
    let id = msg.id.clone();
    state
        .connections
        .producer(&address)?
        .send(&address.address, msg)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(Published { id }))))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    pub count: Option<usize>,
    pub timeout_ms: Option<u64>,
}

impl ReadParams {
    fn count(&self, default: usize) -> Result<usize, AppError> {
        match self.count.unwrap_or(default) {
            count @ 1..=MAX_COUNT => Ok(count),
            count => Err(AppError::Invalid {
                field: "count".into(),
                message: format!("count {count} is out of range: from 1 to {MAX_COUNT}"),
            }),
        }
    }

    fn timeout(&self) -> Result<Duration, AppError> {
        match self.timeout_ms.unwrap_or(5_000) {
            ms @ 0..=MAX_WAIT_MS => Ok(Duration::from_millis(ms)),
            ms => Err(AppError::Invalid {
                field: "timeout_ms".into(),
                message: format!("timeout_ms {ms} is out of range: at most {MAX_WAIT_MS}"),
            }),
        }
    }
}

/// Up to `count` ready messages (default 10), left in the queue: reading changes nothing.
/// At most `max_response_bytes` of payload (but always one message).
#[utoipa::path(get, path = "/api/v1/queues/{connection}/{queue}/messages", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path),
        ("count" = Option<usize>, Query, description = "1 to 1,000; 10 by default")),
    responses((status = 200, body = [MessageDoc]), (status = 404)))]
pub async fn peek(
    State(state): State<AppState>,
    Path((connection, queue)): Path<(String, String)>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(params) = params?;
    let count = params.count(10)?;
    let address = known(&state, connection, queue)?;
    let messages = state
        .connections
        .peek(&address, count, state.max_response_bytes)
        .await?;
    Ok(Json(Value::Array(
        messages.iter().map(Message::to_json).collect(),
    )))
}

/// The most deliveries a take holds at once: each is acked as it arrives, so a large count
/// does not mean as many messages in memory.
const TAKE_PREFETCH: usize = 32;

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
    Path((connection, queue)): Path<(String, String)>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(params) = params?;
    let (count, timeout) = (params.count(1)?, params.timeout()?);
    let address = known(&state, connection, queue)?;
    let mut consumer = state
        .connections
        .consume(&address, count.min(TAKE_PREFETCH))
        .await?;
    let mut messages = Vec::new();
    let mut bytes = 0usize;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shutdown = state.shutdown.clone();
    while messages.len() < count {
        let delivery = tokio::select! {
            delivery = tokio::time::timeout_at(deadline, consumer.next()) => delivery,
            _ = shutdown.fired() => break,
        };
        let delivery = match delivery {
            Err(_) => break,
            Ok(Ok(delivery)) => delivery,
            Ok(Err(error)) if messages.is_empty() => return Err(error.into()),
            // What was taken is acked already: answer with it.
            Ok(Err(error)) => {
                tracing::warn!(%error, "a take ended early");
                break;
            }
        };
        let size = delivery.message.payload.len();
        if !messages.is_empty() && bytes.saturating_add(size) > state.max_response_bytes {
            if let Err(error) = delivery.ack.nack(crate::broker::Nack::Requeue).await {
                tracing::warn!(%error, "could not return a message past the answer's size; it comes back by itself");
            }
            break;
        }
        let doc = delivery.message.to_json();
        match delivery.ack.ack().await {
            Ok(()) => {
                bytes = bytes.saturating_add(size);
                messages.push(doc);
            }
            // Not acked (its lease ran out): it stays in the queue and is not answered.
            Err(error) => tracing::warn!(%error, "a taken message could not be acked"),
        }
    }
    consumer.close().await;
    Ok(Json(Value::Array(messages)))
}

/// Removes the ready messages of a queue; says how many.
#[utoipa::path(delete, path = "/api/v1/queues/{connection}/{queue}/messages", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path)),
    responses((status = 200, body = Object), (status = 404)))]
pub async fn purge(
    State(state): State<AppState>,
    Path((connection, queue)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let address = known(&state, connection, queue)?;
    let purged = state.connections.purge(&address).await?;
    Ok(Json(json!({ "purged": purged })))
}

/// The headers a dead letter gained, removed when it is replayed.
const DEAD_LETTER_HEADERS: [&str; 6] = [
    "exception",
    "exception_name",
    "exception_type",
    "x-wharf-plugin",
    "x-wharf-route",
    "x-wharf-attempts",
];

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReplayParams {
    /// How many to replay, oldest first (1 to 1,000; all up to 1,000 by default).
    pub count: Option<usize>,
    /// Where to send them (`connection:address`); by default the input of the route each
    /// names in its `x-wharf-route` header.
    pub to: Option<String>,
    /// Replay only the message with this id (embedded broker queues: a RabbitMQ queue cannot
    /// be read by id).
    pub id: Option<String>,
}

/// What a replay did.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub replayed: usize,
    /// Where they went, by address.
    pub to: std::collections::BTreeMap<String, usize>,
    /// Messages left in the queue because no destination was known (no `to`, and no route of
    /// the name their `x-wharf-route` header gives).
    pub left: usize,
}

/// Replays dead letters: each taken message, without its dead-letter headers, is published
/// to `to` or to its route's input, and removed from this queue only once that publish is
/// confirmed.
#[utoipa::path(post, path = "/api/v1/queues/{connection}/{queue}/replay", tag = "queues",
    params(("connection" = String, Path), ("queue" = String, Path), ReplayParams),
    responses((status = 200, body = Replayed), (status = 400), (status = 404)))]
pub async fn replay(
    State(state): State<AppState>,
    Path((connection, queue)): Path<(String, String)>,
    params: Result<Query<ReplayParams>, QueryRejection>,
) -> Result<Json<Replayed>, AppError> {
    let Query(params) = params?;
    let count = match params.count.unwrap_or(MAX_COUNT) {
        count @ 1..=MAX_COUNT => count,
        count => {
            return Err(AppError::Invalid {
                field: "count".into(),
                message: format!("count {count} is out of range: from 1 to {MAX_COUNT}"),
            });
        }
    };
    let to = params
        .to
        .as_deref()
        .map(|to| {
            Address::parse(to).map_err(|e| AppError::Invalid {
                field: "to".into(),
                message: e.to_string(),
            })
        })
        .transpose()?;
    if let Some(to) = &to
        && !state.connections.contains(&to.connection)
    {
        return Err(AppError::Invalid {
            field: "to".into(),
            message: format!("there is no connection named `{}`", to.connection),
        });
    }
    let address = known(&state, connection, queue)?;
    let routes = crate::supervisor::Desired::load(&state.store, state.supervisor.file())
        .await?
        .routes;
    // Where a dead letter goes: `to`, else its route's input.
    let target_of = |message: &crate::message::Message| {
        to.clone()
            .or_else(|| match message.header("x-wharf-route") {
                Some(crate::message::HeaderValue::Text(route)) => routes
                    .get(route)
                    .and_then(|r| Address::parse(&r.spec.from).ok()),
                _ => None,
            })
    };
    let cleaned = |message: &crate::message::Message| {
        let mut message = message.clone();
        message
            .headers
            .retain(|(name, _)| !DEAD_LETTER_HEADERS.contains(&name.as_str()));
        message
    };
    if let Some(id) = &params.id {
        let Some(broker) = state.connections.embedded(&address.connection) else {
            return Err(AppError::Invalid {
                field: "id".into(),
                message: "a RabbitMQ queue cannot be read by id; replay the oldest or all".into(),
            });
        };
        let mut went = None;
        let moved = broker
            .move_by_id(&address.address, id, |message| {
                let target = target_of(&message);
                went = target.clone();
                let connections = state.connections.clone();
                let message = cleaned(&message);
                async move {
                    let Some(target) = target else {
                        return Err(crate::broker::BrokerError::InvalidAddress {
                            address: String::new(),
                            problem: "no route input is known for this message; give `to`".into(),
                        });
                    };
                    connections
                        .producer(&target)?
                        .send(&target.address, message)
                        .await
                }
            })
            .await?;
        if !moved {
            return Err(AppError::NotFound(format!(
                "no ready message with id `{}` in {address}",
                crate::broker::shorten(id)
            )));
        }
        let to = went.map(|t| t.to_string()).unwrap_or_default();
        return Ok(Json(Replayed {
            replayed: 1,
            to: [(to, 1)].into(),
            left: 0,
        }));
    }
    let mut consumer = state
        .connections
        .consume(&address, count.min(TAKE_PREFETCH))
        .await?;
    let mut done = Replayed {
        replayed: 0,
        to: Default::default(),
        left: 0,
    };
    let mut kept = Vec::new();
    while done.replayed + kept.len() < count {
        let delivery = match tokio::time::timeout(Duration::from_millis(200), consumer.next()).await
        {
            Err(_) => break,
            Ok(delivery) => delivery?,
        };
        let Some(target) = target_of(&delivery.message) else {
            kept.push(delivery);
            continue;
        };
        let message = cleaned(&delivery.message);
        state
            .connections
            .producer(&target)?
            .send(&target.address, message)
            .await?;
        delivery.ack.ack().await?;
        done.replayed += 1;
        *done.to.entry(target.to_string()).or_default() += 1;
    }
    done.left = kept.len();
    for delivery in kept {
        if let Err(error) = delivery.ack.nack(crate::broker::Nack::Requeue).await {
            tracing::warn!(%error, "a dead letter with nowhere to go could not be returned; it comes back by itself");
        }
    }
    consumer.close().await;
    Ok(Json(done))
}
