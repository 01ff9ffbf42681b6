//! `/api/v1/outbox`: hand over messages a service must not lose (accepted means committed to
//! the host's database; the relay sends them when their broker takes them), the backlog, and
//! the messages their destination refused for good.

use crate::web::caller::{Allowed, Operator, Viewer};
use crate::web::error::invalid;
use crate::web::json::JsonBody;
use crate::web::ops::outbox::{self as ops, Handover};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

/// One message for the outbox: `{"to": "connection:address", "message": {…}}`; or a batch,
/// `{"messages": [{"to": …, "message": …}, …]}` (1 to 1,000), committed all or none.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes what `handovers` reads
pub struct OutboxRequest {
    /// `connection:address`, as for a publish.
    to: Option<String>,
    /// The message's JSON form (see `MessageDoc`).
    #[schema(value_type = Object)]
    message: Option<Value>,
    /// A batch instead: each item `{"to", "message"}`.
    #[schema(value_type = Vec<Object>)]
    messages: Option<Vec<Value>>,
}

/// The ids of the messages committed.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    ids: Vec<String>,
}

/// Reads one `{"to", "message"}`, refusing any other field.
fn handover(item: &Value, at: &str) -> Result<Handover, AppError> {
    let Some(object) = item.as_object() else {
        return Err(invalid(
            at,
            "expected {\"to\": \"connection:address\", \"message\": {…}}",
        ));
    };
    if let Some(other) = object.keys().find(|k| *k != "to" && *k != "message") {
        return Err(invalid(
            &format!("{at}{other}"),
            format!(
                "unknown field `{}`; expected `to` and `message`",
                crate::broker::shorten(other)
            ),
        ));
    }
    let to = match object.get("to") {
        Some(Value::String(to)) => to.clone(),
        _ => {
            return Err(invalid(
                &format!("{at}to"),
                "`to` (connection:address) is required",
            ));
        }
    };
    let message = match object.get("message") {
        Some(message @ Value::Object(_)) => message.clone(),
        _ => {
            return Err(invalid(
                &format!("{at}message"),
                "`message` (an object) is required",
            ));
        }
    };
    Ok(Handover { to, message })
}

fn handovers(body: &Value) -> Result<Vec<Handover>, AppError> {
    match body.get("messages") {
        Some(Value::Array(items)) => {
            if body.as_object().is_some_and(|o| o.len() > 1) {
                return Err(invalid("messages", "a batch has only `messages`"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| handover(item, &format!("messages[{i}].")))
                .collect()
        }
        Some(_) => Err(invalid("messages", "`messages` is a list")),
        None => Ok(vec![handover(body, "")?]),
    }
}

/// Hands over one message or a batch to the outbox: answered 201 once committed to the
/// host's database, whether or not the broker is up; the relay sends them in order per key.
#[utoipa::path(post, path = "/api/v1/outbox", tag = "outbox", request_body = OutboxRequest,
    responses((status = 201, body = Accepted), (status = 400), (status = 413)))]
pub async fn accept(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    body: JsonBody<Value>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    let JsonBody(body) = body;
    let origin = format!("api:{}", who.caller.actor());
    let ids = ops::accept(&state, &who, &origin, handovers(&body)?).await?;
    Ok((StatusCode::CREATED, Json(Accepted { ids })))
}

/// The backlog: messages not sent yet (count, oldest age, per destination, last error) and
/// those refused for good.
#[utoipa::path(get, path = "/api/v1/outbox", tag = "outbox",
    responses((status = 200, body = crate::store::OutboxStats)))]
pub async fn stats(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
) -> Result<Json<crate::store::OutboxStats>, AppError> {
    Ok(Json(ops::stats(&state, &who).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadParams {
    pub count: Option<usize>,
    /// An application's outbox table (`[[sources]]`) instead of the host's own.
    pub source: Option<String>,
}

/// Which outbox a dead row is in: the host's own, or a source's.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceParams {
    pub source: Option<String>,
}

/// Messages their destination refused for good, newest first (up to `count`, 50 by default,
/// and `max_response_bytes` of them, but always one), each with its number (`seq`),
/// destination, error and message.
#[utoipa::path(get, path = "/api/v1/outbox/dead", tag = "outbox",
    params(("count" = Option<usize>, Query, description = "1 to 1,000; 50 by default"),
        ("source" = Option<String>, Query, description = "an application's outbox table (`[[sources]]`): its dead rows, each with its message as the row holds it")),
    responses((status = 200, body = [Object]), (status = 404)))]
pub async fn dead(
    State(state): State<AppState>,
    who: Allowed<Viewer>,
    params: Result<Query<DeadParams>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(params) = params?;
    let count = crate::web::ops::queues::count(params.count, 50)?;
    if let Some(name) = &params.source {
        let rows = ops::dead_in_source(&state, &who, name, count).await?;
        return Ok(Json(Value::Array(
            rows.into_iter()
                .map(|row| {
                    // The row's message as it holds it: JSON where it parses, else its text.
                    let message = serde_json::from_str::<Value>(&row.message)
                        .unwrap_or(Value::String(row.message));
                    json!({
                        "source": name,
                        "seq": row.seq,
                        "destination": row.destination,
                        "attempts": row.attempts,
                        "error": row.error,
                        "message": message,
                    })
                })
                .collect(),
        )));
    }
    let rows = ops::dead(&state, &who, count).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|row| {
                json!({
                    "seq": row.seq,
                    "destination": row.destination,
                    "origin": row.origin,
                    "attempts": row.attempts,
                    "error": row.error,
                    "created_ms": row.created_ms,
                    "dead_ms": row.dead_ms,
                    "message": row.message.to_json(),
                })
            })
            .collect(),
    )))
}

/// Sends a dead message again.
#[utoipa::path(post, path = "/api/v1/outbox/dead/{seq}/retry", tag = "outbox",
    params(("seq" = i64, Path), ("source" = Option<String>, Query, description = "the row is a source's")),
    responses((status = 204), (status = 404)))]
pub async fn retry(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path(seq): Path<i64>,
    params: Result<Query<SourceParams>, QueryRejection>,
) -> Result<StatusCode, AppError> {
    let Query(params) = params?;
    match &params.source {
        Some(name) => ops::retry_in_source(&state, &who, name, seq).await?,
        None => ops::retry(&state, &who, seq).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a dead message.
#[utoipa::path(delete, path = "/api/v1/outbox/dead/{seq}", tag = "outbox",
    params(("seq" = i64, Path), ("source" = Option<String>, Query, description = "the row is a source's")),
    responses((status = 204), (status = 404)))]
pub async fn forget(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path(seq): Path<i64>,
    params: Result<Query<SourceParams>, QueryRejection>,
) -> Result<StatusCode, AppError> {
    let Query(params) = params?;
    match &params.source {
        Some(name) => ops::forget_in_source(&state, &who, name, seq).await?,
        None => ops::forget(&state, &who, seq).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}
