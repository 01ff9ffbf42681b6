//! `GET /api/v1/audit`: the audit log, newest first, for admins.

use crate::store::{AuditEntry, AuditFilter};
use crate::web::caller::{Admin, Allowed};
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;

/// Which entries to read.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Who: a user's name, or `token:NAME`.
    pub actor: Option<String>,
    /// What was done, or the start of it: `route` matches `route.create`, `route.delete`, …
    pub action: Option<String>,
    /// What it was done to: a route's, plugin's, connection's, user's or token's name.
    pub target: Option<String>,
    /// Entries older than this id (for the next page).
    pub before: Option<i64>,
    /// How many (1 to 1,000; 100 by default).
    pub limit: Option<usize>,
}

impl AuditParams {
    pub fn filter(self) -> AuditFilter {
        let given =
            |text: Option<String>| text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        AuditFilter {
            actor: given(self.actor),
            action: given(self.action),
            target: given(self.target),
            before: self.before,
            limit: self.limit.unwrap_or(100),
        }
    }
}

/// Who changed what, and when: every change through the UI, the API and the CLI, sign-ins and
/// failed sign-ins. Never a secret.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = [AuditEntry]), (status = 400)))]
pub async fn list(
    State(state): State<AppState>,
    who: Allowed<Admin>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, AppError> {
    let Query(params) = params?;
    Ok(Json(
        crate::web::ops::audit::list(&state, &who, params.filter()).await?,
    ))
}
