//! The dashboard: every connection and unit with its state, and each route's messages over
//! the last minutes.

use super::{Page, Params, flash};
use crate::supervisor::UnitState;
use crate::web::AppState;
use crate::web::caller::Viewer;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde_json::{Value, json};
use std::collections::HashMap;

pub async fn page(State(state): State<AppState>, page: Page<Viewer>, params: Params) -> Response {
    let status = crate::web::ops::units::status(&state, &page.who).await;
    let up = status
        .connections
        .iter()
        .filter(|c| c.state == "up")
        .count();
    let running = status
        .units
        .iter()
        .filter(|u| u.state == UnitState::Running)
        .count();
    let totals = crate::metrics::route_totals();
    let (recent, window) = crate::metrics::recent();
    let counts: HashMap<String, Value> = status
        .units
        .iter()
        .map(|u| {
            let total = totals.get(&u.name).copied().unwrap_or_default();
            let recent = recent.get(&u.name).copied().unwrap_or_default();
            // How long it has been in its state (a daemon's uptime while it runs).
            let held = crate::time::span_text(crate::message::now_ms().saturating_sub(u.since_ms));
            (
                u.name.clone(),
                json!({ "total": total, "recent": recent, "held": held }),
            )
        })
        .collect();
    let minutes = (window.as_secs() + 30) / 60;
    page.render(
        "dashboard.html",
        "/",
        StatusCode::OK,
        context! { title => "Dashboard", status, up, running, counts, minutes, flash => flash(&params) },
    )
}
