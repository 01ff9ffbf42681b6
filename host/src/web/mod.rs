//! The HTTP side of the host: health, readiness and the JSON API. The only module that knows
//! axum. The admin UI will live here too.

use crate::broker::{Address, BrokerError, Connections, QueueDepth};
use crate::message::Message;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Clone)]
pub struct AppState {
    pub connections: Connections,
}

/// Every error the API returns: a status and a message that says what to fix, never internals.
pub enum AppError {
    BadRequest(String),
    NotFound(String),
    Unavailable(String),
}

impl From<BrokerError> for AppError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::InvalidAddress { .. }
            | BrokerError::TooLarge { .. }
            | BrokerError::Unroutable { .. }
            | BrokerError::Mapping { .. } => AppError::BadRequest(e.to_string()),
            BrokerError::Unavailable { .. } => AppError::Unavailable(e.to_string()),
            other => {
                tracing::error!(error = %other, "broker error in the API");
                AppError::Unavailable("the broker could not complete the request; try again".into())
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            AppError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/queues/{connection}/{queue}", get(queue_stats))
        .route(
            "/api/v1/queues/{connection}/{queue}/messages",
            get(consume).post(publish).delete(purge),
        )
        .with_state(state)
}

/// Every connection's state, and whether all are up.
async fn connection_states(state: &AppState) -> (bool, serde_json::Map<String, Value>) {
    let checks = state.connections.check().await;
    let up = checks.iter().all(|(_, state)| state.is_ok());
    let connections = checks
        .into_iter()
        .map(|(name, state)| {
            let state = match state {
                Ok(()) => json!({ "status": "up" }),
                Err(e) => json!({ "status": "down", "error": e }),
            };
            (name, state)
        })
        .collect();
    (up, connections)
}

/// Liveness: the process answers (always 200). `status` is `degraded` while a connection is
/// down (the host is reconnecting it), with each connection's state.
async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let (up, connections) = connection_states(&state).await;
    Json(json!({
        "status": if up { "ok" } else { "degraded" },
        "connections": connections,
    }))
}

/// Readiness: every connection is up (503 otherwise).
async fn readyz(State(state): State<AppState>) -> Response {
    let (ready, connections) = connection_states(&state).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "connections": connections })),
    )
        .into_response()
}

fn known(state: &AppState, connection: String, queue: String) -> Result<Address, AppError> {
    if !state.connections.contains(&connection) {
        return Err(AppError::NotFound(format!(
            "there is no connection named `{connection}`"
        )));
    }
    Ok(Address {
        connection,
        address: queue,
    })
}

async fn queue_stats(
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
async fn publish(
    State(state): State<AppState>,
    Path((connection, queue)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let mut msg = Message::from_json(&body).map_err(|e| AppError::BadRequest(e.to_string()))?;
    if msg.topic.is_empty() {
        msg.topic = queue.clone();
    }
    let id = msg.id.clone();
    let address = Address {
        connection,
        address: queue,
    };
    state
        .connections
        .producer(&address)?
        .send(&address.address, msg)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

#[derive(serde::Deserialize)]
struct ConsumeParams {
    count: Option<usize>,
    timeout_ms: Option<u64>,
}

/// Takes up to `count` messages (default 1), waiting up to `timeout_ms` (default 5000) for
/// them, and acks them as they are returned: for people and tests, not for services that need
/// at-least-once (they use a broker of their own).
async fn consume(
    State(state): State<AppState>,
    Path((connection, queue)): Path<(String, String)>,
    Query(params): Query<ConsumeParams>,
) -> Result<Json<Value>, AppError> {
    let count = params.count.unwrap_or(1).clamp(1, 10_000);
    let timeout = Duration::from_millis(params.timeout_ms.unwrap_or(5_000).min(300_000));
    let address = Address {
        connection,
        address: queue,
    };
    let mut consumer = state.connections.consume(&address, count).await?;
    // Deliveries are held until the end, so the consumer's prefetch never lets it claim
    // more than `count`: nothing is left leased when the request returns.
    let mut deliveries = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while deliveries.len() < count {
        let Ok(delivery) = tokio::time::timeout_at(deadline, consumer.next()).await else {
            break;
        };
        deliveries.push(delivery?);
    }
    let mut messages = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        messages.push(delivery.message.to_json());
        delivery.ack.ack().await?;
    }
    Ok(Json(Value::Array(messages)))
}

async fn purge(
    State(state): State<AppState>,
    Path((connection, queue)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let address = known(&state, connection, queue)?;
    let purged = state.connections.purge(&address).await?;
    Ok(Json(json!({ "purged": purged })))
}
