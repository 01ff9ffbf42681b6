//! `POST /api/v1/rpc/{connection}/{address}`: a service's request through Wharf. The body is
//! the request (the JSON form of a message), the answer its reply, paired by the host's
//! correlation table; a timeout is 504 saying how long it waited. Operator role.

use crate::web::caller::{Allowed, Operator};
use crate::web::json::JsonBody;
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde_json::Value;

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
    who: Allowed<Operator>,
    Path((connection, address)): Path<(String, String)>,
    params: Result<Query<RpcParams>, QueryRejection>,
    body: JsonBody<Value>,
) -> Result<Json<Value>, AppError> {
    let Query(params) = params?;
    let JsonBody(body) = body;
    let reply = crate::web::ops::rpc::call(
        &state,
        &who,
        &connection,
        &address,
        params.timeout_ms,
        &body,
    )
    .await?;
    Ok(Json(reply.to_json()))
}
