//! The Audit log page: who changed what and when, newest first, filtered by who and what.

use super::{Page, Params};
use crate::web::AppState;
use crate::web::api::audit::AuditParams;
use crate::web::caller::Admin;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

/// How many entries a page shows.
const PAGE_SIZE: usize = 100;

pub async fn page(State(state): State<AppState>, page: Page<Admin>, params: Params) -> Response {
    let given = |key: &str| params.get(key).cloned().filter(|v| !v.trim().is_empty());
    let filter = AuditParams {
        actor: given("actor"),
        action: given("action"),
        target: given("target"),
        before: given("before").and_then(|b| b.parse().ok()),
        limit: Some(PAGE_SIZE),
    }
    .filter();
    let shown = context! {
        actor => filter.actor.clone().unwrap_or_default(),
        action => filter.action.clone().unwrap_or_default(),
        target => filter.target.clone().unwrap_or_default(),
    };
    match crate::web::ops::audit::list(&state, &page.who, filter).await {
        Ok(entries) => {
            let older = (entries.len() == PAGE_SIZE)
                .then(|| entries.last().map(|e| e.id))
                .flatten();
            // Each entry with its details as one line of JSON, and whether it tells of a
            // refusal.
            let entries: Vec<minijinja::Value> = entries
                .into_iter()
                .map(|e| {
                    let detail = match &e.detail {
                        serde_json::Value::Object(map) if map.is_empty() => String::new(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    let refused = e.action.ends_with("failed") || e.action.ends_with("throttled");
                    context! { detail, refused, ..minijinja::Value::from_serialize(&e) }
                })
                .collect();
            page.render(
                "audit.html",
                "/audit",
                StatusCode::OK,
                context! { title => "Audit log", entries, filter => shown, older },
            )
        }
        Err(error) => page.error(error),
    }
}
