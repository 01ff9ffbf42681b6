//! The audit log: who changed what, and when, whichever surface they used (the UI, the API,
//! the CLI); sign-ins and failed sign-ins too. Kept in the database and read by admins.
//!
//! *Invariant*: no secret is ever written here. A detail carries names, roles, grants,
//! versions and digests; connection definitions only as [`ConnectionConfig::redacted`]
//! shows them, plugin config only with its secret-looking values hidden; never a password, a
//! token or a session.
//!
//! A record is written after its change is committed; if the database refuses it then, the
//! change stands and the failure is logged (at error level) with what it would have said.
//!
//! [`ConnectionConfig::redacted`]: crate::config::ConnectionConfig::redacted

use super::{AppError, AppState, now_ms};
use crate::store::{AuditEntry, AuditFilter, NewAudit};
use crate::web::caller::{Admin, Allowed, Via};
use serde_json::Value;
use std::net::IpAddr;

/// The most entries one read returns.
pub const MAX_ENTRIES: usize = 1_000;

/// Records that `who` did `action` to `target`.
pub async fn record<R>(
    state: &AppState,
    who: &Allowed<R>,
    action: &str,
    target: &str,
    detail: Value,
) {
    write(
        state,
        &who.caller.actor(),
        who.via,
        who.peer,
        action,
        target,
        detail,
    )
    .await;
}

/// Records what someone not signed in did (a sign-in, a failed one, a registration).
pub async fn record_anonymous(
    state: &AppState,
    actor: &str,
    via: Via,
    peer: Option<IpAddr>,
    action: &str,
    detail: Value,
) {
    write(state, actor, via, peer, action, actor, detail).await;
}

async fn write(
    state: &AppState,
    actor: &str,
    via: Via,
    peer: Option<IpAddr>,
    action: &str,
    target: &str,
    detail: Value,
) {
    let entry = NewAudit {
        at_ms: now_ms(),
        actor: clip(actor),
        via: via.as_str(),
        peer: peer.map(|p| p.to_string()),
        action,
        target: clip(target),
        detail: detail.to_string(),
    };
    if let Err(error) = state.store.add_audit(&entry).await {
        tracing::error!(%error, actor = entry.actor, action, target = entry.target, "could not write the audit log");
    }
}

/// At most 200 bytes of `text` (a name a caller made up may be long).
fn clip(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Entries, newest first, as `filter` narrows them.
pub async fn list(
    state: &AppState,
    _who: &Allowed<Admin>,
    filter: AuditFilter,
) -> Result<Vec<AuditEntry>, AppError> {
    if filter.limit == 0 || filter.limit > MAX_ENTRIES {
        return Err(crate::web::error::invalid(
            "limit",
            format!("from 1 to {MAX_ENTRIES}"),
        ));
    }
    Ok(state.store.audit(&filter).await?)
}
