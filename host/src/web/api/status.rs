//! `/api/v1/status`: what runs on this host, in what state, with the last errors.

use super::{AppError, AppState};
use crate::supervisor::Status;
use axum::Json;
use axum::extract::State;

/// Every connection and unit on this host, with its state and last error.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = Status)))]
pub async fn get(State(state): State<AppState>) -> Result<Json<Status>, AppError> {
    Ok(Json(state.supervisor.status().await))
}
