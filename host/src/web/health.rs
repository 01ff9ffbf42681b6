//! `/healthz`, `/readyz` and `/metrics`: open to anyone, so they say only what anyone may
//! know. Each connection's state (its name and last error) is shown to a caller with a
//! viewer's token or session, never to an anonymous one.

use super::caller::{self, Allowed, Surface, Treat, Viewer};
use super::{AppError, AppState};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A viewer, if the request presents one; nobody otherwise (never a refusal).
pub struct MaybeViewer(Option<Allowed<Viewer>>);

impl FromRequestParts<AppState> for MaybeViewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(MaybeViewer(
            caller::admit(parts, state, Surface::Api, Treat::ByMethod)
                .await
                .ok(),
        ))
    }
}

/// Whether every connection is up, and (for a viewer) each one's state.
async fn connection_states(state: &AppState, viewer: &MaybeViewer) -> (bool, Option<Value>) {
    let checks = state.connections.check().await;
    let up = checks.iter().all(|(_, state)| state.is_ok());
    let shown = viewer.0.as_ref().map(|_| {
        let connections: serde_json::Map<String, Value> = checks
            .into_iter()
            .map(|(name, state)| {
                let state = match state {
                    Ok(()) => json!({ "status": "up" }),
                    Err(e) => json!({ "status": "down", "error": e }),
                };
                (name, state)
            })
            .collect();
        Value::Object(connections)
    });
    (up, shown)
}

#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, body = Object)))]
/// Liveness: the process answers (always 200). `status` is `degraded` while a connection is
/// down (the host is reconnecting it); a viewer's token or session also sees each
/// connection's state.
pub async fn healthz(State(state): State<AppState>, viewer: MaybeViewer) -> Json<Value> {
    let (up, connections) = connection_states(&state, &viewer).await;
    let mut body = json!({ "status": if up { "ok" } else { "degraded" } });
    if let Some(connections) = connections {
        body["connections"] = connections;
    }
    Json(body)
}

#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Object), (status = 503, body = Object)))]
/// Readiness: every connection is up (503 otherwise); a viewer also sees each one's state.
pub async fn readyz(State(state): State<AppState>, viewer: MaybeViewer) -> Response {
    let (ready, connections) = connection_states(&state, &viewer).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "ready": ready });
    if let Some(connections) = connections {
        body["connections"] = connections;
    }
    (status, Json(body)).into_response()
}

/// Prometheus metrics (open, like `/healthz`): per route messages in, out, failed, retried and
/// dead-lettered; plugin call durations; connections up; units by state. Every label names
/// something the host knows (a route, a connection, a status): nothing a caller sends adds a
/// series.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let status = state.supervisor.status().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&status, state.rpc.in_flight(), &state.leases),
    )
        .into_response()
}

/// Sets the outbox's gauges from `stats`, per connection (a destination's address is not a
/// label: callers choose addresses); `connections` with nothing in the outbox read 0.
fn outbox_gauges<'a>(
    stats: &'a crate::store::OutboxStats,
    connections: impl Iterator<Item = &'a str>,
) {
    let mut by_connection: std::collections::BTreeMap<&str, (u64, u64, u64)> =
        connections.map(|c| (c, (0, 0, 0))).collect();
    for backlog in &stats.destinations {
        let connection = backlog
            .destination
            .split_once(':')
            .map_or(backlog.destination.as_str(), |(c, _)| c);
        let entry = by_connection.entry(connection).or_default();
        entry.0 += backlog.pending;
        entry.1 = entry.1.max(backlog.oldest_age_ms.unwrap_or(0));
        entry.2 += backlog.dead;
    }
    for (connection, (pending, oldest_ms, dead)) in by_connection {
        let label = connection.to_owned();
        metrics::gauge!(crate::metrics::OUTBOX_PENDING, "connection" => label.clone())
            .set(pending as f64);
        metrics::gauge!(crate::metrics::OUTBOX_OLDEST, "connection" => label.clone())
            .set(oldest_ms as f64 / 1000.0);
        metrics::gauge!(crate::metrics::OUTBOX_DEAD, "connection" => label).set(dead as f64);
    }
}

/// The text a scrape gets, with the gauges set from `status` (and the RPC calls waiting and
/// leases held now) first.
fn render(
    status: &crate::supervisor::Status,
    rpc_in_flight: usize,
    leases: &crate::leases::Leases,
) -> String {
    let handle = crate::metrics::handle();
    if let Some(stats) = &status.outbox {
        outbox_gauges(stats, status.connections.iter().map(|c| c.name.as_str()));
        for source in &stats.sources {
            let label = source.source.clone();
            metrics::gauge!(crate::metrics::SOURCE_PENDING, "source" => label.clone())
                .set(source.pending as f64);
            metrics::gauge!(crate::metrics::SOURCE_DEAD, "source" => label).set(source.dead as f64);
        }
    }
    metrics::gauge!(crate::metrics::RPC_IN_FLIGHT).set(rpc_in_flight as f64);
    metrics::gauge!(crate::metrics::LEASES_HELD).set(leases.count() as f64);
    metrics::gauge!(crate::metrics::LEASE_STREAMS).set(leases.stream_count() as f64);
    for connection in &status.connections {
        metrics::gauge!(crate::metrics::CONNECTION_UP, "connection" => connection.name.clone())
            .set(if connection.state == "up" { 1.0 } else { 0.0 });
    }
    let states = [
        "starting",
        "running",
        "backing_off",
        "failed",
        "standby",
        "stopped",
    ];
    for kind in [
        crate::supervisor::UnitKind::Route,
        crate::supervisor::UnitKind::Subscription,
        crate::supervisor::UnitKind::Daemon,
    ] {
        for state in states {
            let count = status
                .units
                .iter()
                .filter(|u| {
                    u.kind == kind
                        && serde_json::to_value(u.state)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .as_deref()
                            == Some(state)
                })
                .count();
            metrics::gauge!(crate::metrics::UNITS, "kind" => kind.as_str(), "state" => state)
                .set(count as f64);
        }
    }
    handle.render()
}

pub async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint; the API is under /api/v1".into())
}
