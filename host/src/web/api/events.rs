//! `POST /api/v1/events/{model}/{event}`: publish a model event, as pubsubpy's
//! `publish_model_event(model, event, obj)` did.

use crate::web::caller::{Allowed, Operator};
use crate::web::json::JsonBody;
use crate::web::ops::events::{self as ops, Published};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Through the outbox: committed now, sent by the relay whether or not the broker is up.
    #[serde(default)]
    durable: bool,
}

/// Publishes event `{event}` of `{model}` (a class name or a dotted path; its last part is the
/// class) with the body, any JSON, as its payload: routing key `{Class}.{event}` on this
/// host's events exchange. Every subscription whose pattern matches gets it.
#[utoipa::path(post, path = "/api/v1/events/{model}/{event}", tag = "events",
    params(("model" = String, Path, description = "`Booking` or `shop.models.Booking`"),
        ("event" = String, Path, description = "`created`, `updated`, …"), EventQuery),
    request_body(content = Object, description = "the event's data, any JSON"),
    responses((status = 200, body = Published), (status = 400), (status = 503)))]
pub async fn publish(
    State(state): State<AppState>,
    who: Allowed<Operator>,
    Path((model, event)): Path<(String, String)>,
    query: Result<Query<EventQuery>, QueryRejection>,
    JsonBody(data): JsonBody<serde_json::Value>,
) -> Result<Json<Published>, AppError> {
    let Query(query) = query.map_err(|e| crate::web::error::invalid("durable", e.body_text()))?;
    Ok(Json(
        ops::publish(&state, &who, &model, &event, &data, query.durable).await?,
    ))
}
