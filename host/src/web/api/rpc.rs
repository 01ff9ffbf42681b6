//! `POST /api/v1/rpc/{connection}/{address}`: a service's request through Wharf. The body is
//! the request (the JSON form of a message), the answer its reply, paired by the host's
//! correlation table; a timeout is 504 saying how long it waited. Operator role.

use super::{AppError, AppState};
use crate::broker::Address;
use crate::message::Message;
use crate::rpc::RpcError;
use crate::web::MAX_WAIT_MS;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde_json::Value;
use std::time::Duration;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RpcParams {
    /// How long to wait for the reply (5,000 ms by default, at most 300,000).
    pub timeout_ms: Option<u64>,
}

/// Sends a request and answers with its reply.
#[utoipa::path(post, path = "/api/v1/rpc/{connection}/{address}", tag = "rpc",
    params(("connection" = String, Path), ("address" = String, Path), RpcParams),
    request_body = super::queues::MessageDoc,
    responses((status = 200, body = super::queues::MessageDoc, description = "the reply"),
        (status = 400), (status = 404), (status = 504, description = "no reply in time")))]
pub async fn call(
    State(state): State<AppState>,
    Path((connection, address)): Path<(String, String)>,
    params: Result<Query<RpcParams>, QueryRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(params) = params?;
    let timeout = match params.timeout_ms.unwrap_or(5_000) {
        ms @ 1..=MAX_WAIT_MS => Duration::from_millis(ms),
        ms => {
            return Err(AppError::Invalid {
                field: "timeout_ms".into(),
                message: format!("timeout_ms {ms} is out of range: from 1 to {MAX_WAIT_MS}"),
            });
        }
    };
    if !state.connections.contains(&connection) {
        return Err(AppError::NotFound(format!(
            "there is no connection named `{}`",
            crate::broker::shorten(&connection)
        )));
    }
    let Json(body) = body?;
    let mut request = Message::from_json(&body)?;
    crate::broker::check_message(&request)?;
    if request.topic.is_empty() {
        request.topic = address.clone();
    }
    let to = Address {
        connection,
        address,
    };
    match state.rpc.call(&to, request, timeout).await {
        Ok(reply) => Ok(Json(reply.to_json())),
        Err(RpcError::Timeout { .. }) => Err(AppError::Timeout(format!(
            "no reply from {to} within {} ms",
            timeout.as_millis()
        ))),
        Err(RpcError::Broker(error)) => Err(error.into()),
        Err(RpcError::Stopping) => Err(AppError::Unavailable("the host is stopping".into())),
    }
}
