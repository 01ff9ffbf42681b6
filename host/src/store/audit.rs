//! The audit log's table: who changed what, and when (see `web/ops/audit.rs` for what is
//! written, and why never a secret).

use super::{Doing, Store, StoreError, with_pool};

/// One entry, as read.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    /// A user's name, or `token:NAME`.
    pub actor: String,
    /// `ui`, `api` or `cli`.
    pub via: String,
    /// The address the request came from.
    pub peer: Option<String>,
    /// What was done: `route.create`, `session.sign_in_failed`, …
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// What else there is to say (JSON), never a secret.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// An entry to write.
pub struct NewAudit<'a> {
    pub at_ms: i64,
    pub actor: String,
    pub via: &'a str,
    pub peer: Option<String>,
    pub action: &'a str,
    pub target: String,
    pub detail: String,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// An action, or the start of one (`route` matches `route.create`).
    pub action: Option<String>,
    pub target: Option<String>,
    /// Only entries older than this id.
    pub before: Option<i64>,
    pub limit: usize,
}

type Row = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
);

impl Store {
    pub async fn add_audit(&self, entry: &NewAudit<'_>) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO audit_log (at_ms, actor, via, peer, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(entry.at_ms)
        .bind(&entry.actor)
        .bind(entry.via)
        .bind(&entry.peer)
        .bind(entry.action)
        .bind(&entry.target)
        .bind(&entry.detail)
        .execute(pool)
        .await
        .map(drop)
        .doing("writing the audit log"))
    }

    /// Entries, newest first, as `filter` narrows them.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        // Every filter is a bound parameter; an absent one matches everything.
        let action_prefix = filter.action.as_ref().map(|a| {
            let escaped = a
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("{escaped}%")
        });
        let rows: Vec<Row> = with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT id, at_ms, actor, via, peer, action, target, detail FROM audit_log \
             WHERE ($1 IS NULL OR actor = $1) \
               AND ($2 IS NULL OR action LIKE $2 ESCAPE '\\') \
               AND ($3 IS NULL OR target = $3) \
               AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5"
        )
        .bind(&filter.actor)
        .bind(&action_prefix)
        .bind(&filter.target)
        .bind(filter.before)
        .bind(filter.limit as i64)
        .fetch_all(pool)
        .await
        .doing("reading the audit log"))?;
        Ok(rows
            .into_iter()
            .map(
                |(id, at_ms, actor, via, peer, action, target, detail)| AuditEntry {
                    id,
                    at_ms,
                    actor,
                    via,
                    peer,
                    action,
                    target,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                },
            )
            .collect())
    }

    /// Removes the entries written before `before_ms`; how many.
    pub async fn prune_audit(&self, before_ms: i64) -> Result<u64, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM audit_log WHERE at_ms < $1"
        )
        .bind(before_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .doing("pruning the audit log"))
    }
}
