//! An application's outbox table (`[[sources]]`): rows a service writes in its own
//! PostgreSQL or MySQL/MariaDB database, in its own transactions, for Wharf to relay.
//!
//! The table is the application's: its DDL is [`schema`] (`wharf outbox schema`), which the
//! application runs with its own migrations. Each row names its destination, its ordering key
//! and its message in the JSON form the API takes (`payload`, `headers`, ...). The relay claims
//! rows as it claims the host's own (a claim is the relay's name and a deadline, claims are
//! made one relay at a time under a lock, and a row waits behind the earlier rows of its
//! destination and key), deletes a row once its broker confirmed it, and keeps a row it cannot
//! send for good as `dead` with the reason. A row's message is read only when it is within the
//! host's message limit; one over it, or one that does not parse, is dead at once.

use super::{Doing, StoreError};
use crate::message::Message;
pub use crate::settings::SourceDialect;
use crate::store::OutboxRow;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use std::str::FromStr;
use std::time::Duration;

/// The channel PostgreSQL notifies when rows are added to an outbox table made by [`schema`].
pub const NOTIFY_CHANNEL: &str = "wharf_outbox";

/// The DDL of an outbox table named `table` (checked by `check::is_table_name`), for the
/// application's migrations.
pub fn schema(dialect: SourceDialect, table: &str) -> String {
    let index = table.replace('.', "_");
    match dialect {
        SourceDialect::Postgres => format!(
            "-- Wharf relays the rows of this table: a service inserts them in the transaction of \
             the work\n-- that made them, and Wharf sends each to its destination once that \
             commits.\nCREATE TABLE IF NOT EXISTS {table} (\n    \
             seq BIGSERIAL PRIMARY KEY,\n    \
             destination TEXT NOT NULL,              -- connection:address, as Wharf names it\n    \
             msg_key TEXT,                           -- the message's key; rows of one destination and key go in order\n    \
             message JSONB NOT NULL,                 -- the message, as POST /api/v1/outbox takes it\n    \
             created_at TIMESTAMPTZ NOT NULL DEFAULT now(),\n    \
             state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),\n    \
             attempts INTEGER NOT NULL DEFAULT 0,\n    \
             due_ms BIGINT NOT NULL DEFAULT 0,\n    \
             claimed_by TEXT,\n    \
             claim_until_ms BIGINT NOT NULL DEFAULT 0,\n    \
             last_error TEXT\n);\n\
             CREATE INDEX IF NOT EXISTS {index}_pending ON {table} (state, seq);\n\
             CREATE INDEX IF NOT EXISTS {index}_keys ON {table} (destination, msg_key) WHERE state = 'pending';\n\
             -- Wakes the relay as soon as rows commit (it looks by itself every few seconds besides).\n\
             CREATE OR REPLACE FUNCTION {index}_notify() RETURNS trigger LANGUAGE plpgsql AS $$\n\
             BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$;\n\
             DROP TRIGGER IF EXISTS {index}_notify ON {table};\n\
             CREATE TRIGGER {index}_notify AFTER INSERT ON {table}\n    \
             FOR EACH STATEMENT EXECUTE FUNCTION {index}_notify();\n"
        ),
        SourceDialect::Mysql => format!(
            "-- Wharf relays the rows of this table: a service inserts them in the transaction of \
             the work\n-- that made them, and Wharf sends each to its destination once that \
             commits.\nCREATE TABLE IF NOT EXISTS {table} (\n    \
             seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,\n    \
             destination VARCHAR(512) NOT NULL,      -- connection:address, as Wharf names it\n    \
             msg_key VARCHAR(512) NULL,              -- the message's key; rows of one destination and key go in order\n    \
             message LONGTEXT NOT NULL,              -- the message (JSON), as POST /api/v1/outbox takes it\n    \
             created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n    \
             state VARCHAR(16) NOT NULL DEFAULT 'pending',\n    \
             attempts INT NOT NULL DEFAULT 0,\n    \
             due_ms BIGINT NOT NULL DEFAULT 0,\n    \
             claimed_by VARCHAR(255) NULL,\n    \
             claim_until_ms BIGINT NOT NULL DEFAULT 0,\n    \
             last_error TEXT NULL,\n    \
             KEY {index}_pending (state, seq),\n    \
             KEY {index}_keys (destination(191), msg_key(191))\n\
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
        ),
    }
}

#[derive(Clone)]
enum SourcePool {
    Postgres(PgPool),
    Mysql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the source's pool; the query text is the dialect's.
macro_rules! with_source {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            SourcePool::Postgres($p) => $body,
            SourcePool::Mysql($p) => $body,
        }
    };
}

/// An application's outbox table. Cheap to clone.
#[derive(Clone)]
pub struct SourceTable {
    pool: SourcePool,
    dialect: SourceDialect,
    table: String,
    /// The source's name: a row's message without an id is `{name}.{seq}`, the same every try.
    name: String,
    /// The largest message read from a row; a larger one is dead.
    max_message_bytes: usize,
}

impl SourceTable {
    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A dead row of an application's table, for a person to look at.
#[derive(Debug, Clone)]
pub struct DeadSourceRow {
    pub seq: i64,
    pub destination: String,
    pub attempts: i64,
    pub error: String,
    /// The message as the row holds it (its JSON text, cut to 4,096 bytes).
    pub message: String,
}

/// A source's backlog.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct SourceStats {
    /// The source's name.
    pub source: String,
    /// Why its table could not be read now, if it could not (the counts are then 0).
    pub unreadable: Option<String>,
    pub pending: u64,
    pub dead: u64,
    /// Age of the oldest pending row, in milliseconds.
    pub oldest_age_ms: Option<u64>,
    /// The newest error of a pending row, if its last try failed.
    pub last_error: Option<String>,
}

/// `$n` placeholders as MySQL writes them: each `$n` in order becomes `?`, so the query's
/// parameters must be used once each, in order.
fn mysql_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// A claimed row as read: its number, destination, key, attempts and message text (`None`
/// when over the size read).
type ClaimedRow = (i64, String, Option<String>, i64, Option<String>);

fn seq_list(seqs: &[i64]) -> String {
    seqs.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl SourceTable {
    /// Connects to the application's database at `url` (not migrated: the table is the
    /// application's). `name` is the source's.
    pub async fn open(
        name: &str,
        url: &str,
        table: &str,
        max_message_bytes: usize,
    ) -> Result<SourceTable, StoreError> {
        let shown = crate::redact::redact(url);
        let bad = |problem: String| StoreError::Url {
            url: shown.clone(),
            problem: problem.replace(url, &shown),
        };
        if !crate::check::is_table_name(table) {
            return Err(bad(format!("`{table}` is not a table name")));
        }
        let dialect = SourceDialect::of_url(url)
            .ok_or_else(|| bad("expected postgres://… or mysql://…".into()))?;
        // Lazy: a database that is down now is reached when it is up; the relay says so
        // meanwhile.
        let pool = match dialect {
            SourceDialect::Postgres => SourcePool::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_lazy_with(
                        PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?,
                    ),
            ),
            SourceDialect::Mysql => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                SourcePool::Mysql(
                    MySqlPoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_lazy_with(
                            MySqlConnectOptions::from_str(&url).map_err(|e| bad(e.to_string()))?,
                        ),
                )
            }
        };
        Ok(SourceTable {
            pool,
            dialect,
            table: table.to_owned(),
            name: name.to_owned(),
            max_message_bytes,
        })
    }

    pub fn dialect(&self) -> SourceDialect {
        self.dialect
    }

    /// The query text for this source's dialect.
    fn sql(&self, sql: &str) -> String {
        let sql = sql.replace("{t}", &self.table);
        match self.dialect {
            SourceDialect::Postgres => sql,
            SourceDialect::Mysql => mysql_text(&sql),
        }
    }

    /// Listens for the notifications of new rows (PostgreSQL only; `None` on MySQL, which
    /// the relay polls).
    pub async fn listen(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match &self.pool {
            SourcePool::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool)
                    .await
                    .doing("listening for outbox rows")?;
                listener
                    .listen(NOTIFY_CHANNEL)
                    .await
                    .doing("listening for outbox rows")?;
                Ok(Some(listener))
            }
            SourcePool::Mysql(_) => Ok(None),
        }
    }

    /// Claims up to `max` pending rows for `relay` until `until_ms`, in `seq` order. Rows
    /// whose message is too large or does not parse are made dead here, with the reason;
    /// answers the rows claimed and how many were made dead.
    pub async fn claim(
        &self,
        relay: &str,
        max: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<(Vec<OutboxRow>, usize), StoreError> {
        // A row is free when it is pending, due and unclaimed (or its claim ran out), and no
        // earlier pending row of its destination and key is waiting out a retry or held by a
        // live claim. Claims are made one at a time (a transaction lock on PostgreSQL, a named
        // lock on MySQL), so two relays never split one key between them.
        let candidates = self.sql(
            "SELECT o.seq FROM {t} o WHERE o.state = 'pending' AND o.due_ms <= $1 \
             AND o.claim_until_ms < $2 AND NOT EXISTS (SELECT 1 FROM {t} b \
               WHERE b.state = 'pending' AND b.msg_key IS NOT NULL AND b.msg_key = o.msg_key \
               AND b.destination = o.destination AND b.seq < o.seq \
               AND (b.claim_until_ms >= $3 OR b.due_ms > $4)) \
             ORDER BY o.seq LIMIT $5",
        );
        let size = match self.dialect {
            SourceDialect::Postgres => "octet_length(message::text)",
            SourceDialect::Mysql => "LENGTH(message)",
        };
        let text = match self.dialect {
            SourceDialect::Postgres => "message::text",
            SourceDialect::Mysql => "message",
        };
        let lock_key = format!("wharf_outbox:{}", self.table);
        // The steps of a claim in the transaction `$tx`, the same text for both dialects.
        macro_rules! claim_rows {
            ($tx:ident) => {
                async {
                        let seqs: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(candidates))
                            .bind(now_ms)
                            .bind(now_ms)
                            .bind(now_ms)
                            .bind(now_ms)
                            .bind(max)
                            .fetch_all(&mut *$tx)
                            .await
                            .doing("finding outbox rows to claim")?;
                        let mut rows = Vec::new();
                        if seqs.is_empty() {
                            return Ok(rows);
                        }
                        let list = seq_list(&seqs);
                        sqlx::query(AssertSqlSafe(self.sql(&format!(
                            "UPDATE {{t}} SET claimed_by = $1, claim_until_ms = $2 WHERE seq IN ({list})"
                        ))))
                        .bind(relay)
                        .bind(until_ms)
                        .execute(&mut *$tx)
                        .await
                        .doing("claiming outbox rows")?;
                        let read = sqlx::query(AssertSqlSafe(self.sql(&format!(
                            "SELECT seq, destination, msg_key, attempts, \
                                 CASE WHEN {size} > $1 THEN NULL ELSE {text} END AS message \
                                 FROM {{t}} WHERE seq IN ({list}) ORDER BY seq"
                        ))))
                        .bind(self.max_message_bytes as i64 * 2 + 4096)
                        .fetch_all(&mut *$tx)
                        .await
                        .doing("reading claimed outbox rows")?;
                        for row in read {
                            let attempts: i32 = row.try_get(3).doing("reading claimed outbox rows")?;
                            rows.push((
                                row.try_get(0).doing("reading claimed outbox rows")?,
                                row.try_get(1).doing("reading claimed outbox rows")?,
                                row.try_get(2).doing("reading claimed outbox rows")?,
                                i64::from(attempts),
                                row.try_get(4).doing("reading claimed outbox rows")?,
                            ));
                        }
                        Ok::<_, StoreError>(rows)
                }
            };
        }
        let rows: Vec<ClaimedRow> = match &self.pool {
            SourcePool::Postgres(pool) => {
                let mut tx = pool.begin().await.doing("starting an outbox claim")?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(&lock_key)
                    .execute(&mut *tx)
                    .await
                    .doing("locking the outbox's claims")?;
                let rows = claim_rows!(tx).await?;
                tx.commit().await.doing("committing an outbox claim")?;
                rows
            }
            SourcePool::Mysql(pool) => {
                // The named lock is the connection's: taken before the transaction begins, so
                // the transaction's snapshot sees the claims the last holder committed, and let
                // go after it ends, whatever happened (a connection that cannot let it go is
                // closed, not put back in the pool holding it).
                let mut conn = pool.acquire().await.doing("starting an outbox claim")?;
                let got: Option<i64> = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, 10) AS SIGNED)")
                    .bind(&lock_key)
                    .fetch_one(&mut *conn)
                    .await
                    .doing("locking the outbox's claims")?;
                if got != Some(1) {
                    return Err(StoreError::Invalid(
                        "another relay held the outbox's claim lock for 10 s".into(),
                    ));
                }
                let claimed = async {
                    let mut tx = sqlx::Connection::begin(&mut *conn)
                        .await
                        .doing("starting an outbox claim")?;
                    let rows = claim_rows!(tx).await?;
                    tx.commit().await.doing("committing an outbox claim")?;
                    Ok::<_, StoreError>(rows)
                }
                .await;
                let released = sqlx::query("DO RELEASE_LOCK(?)")
                    .bind(&lock_key)
                    .execute(&mut *conn)
                    .await;
                if released.is_err() {
                    drop(conn.detach());
                }
                claimed?
            }
        };
        let mut claimed = Vec::with_capacity(rows.len());
        let mut dead = 0;
        for (seq, destination, key, attempts, message) in rows {
            match self.message(seq, key.as_deref(), message.as_deref()) {
                Ok(message) => claimed.push(OutboxRow {
                    seq,
                    destination,
                    order_key: key,
                    attempts,
                    message,
                }),
                Err(reason) => {
                    tracing::warn!(source = %self.name, seq, %reason, "an outbox row cannot be sent; it is kept as dead");
                    self.dead(relay, seq, &reason, now_ms).await?;
                    dead += 1;
                }
            }
        }
        Ok((claimed, dead))
    }

    /// The message row `seq` holds, checked as the API checks one (or why it cannot be sent).
    fn message(&self, seq: i64, key: Option<&str>, text: Option<&str>) -> Result<Message, String> {
        let text = text.ok_or_else(|| {
            format!(
                "its message is larger than this host's limit of {} bytes",
                self.max_message_bytes
            )
        })?;
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("its message is not JSON: {e}"))?;
        let mut message = Message::from_json(&doc).map_err(|e| format!("message.{}", e))?;
        message.check_text().map_err(|e| format!("message.{}", e))?;
        if message.size_bytes() > self.max_message_bytes {
            return Err(format!(
                "its message is {} bytes, over this host's limit of {}",
                message.size_bytes(),
                self.max_message_bytes
            ));
        }
        if doc.get("id").is_none() {
            message.id = format!("{}.{seq}", self.name);
        }
        if message.key.is_none() {
            message.key = key.map(|k| k.as_bytes().to_vec());
        }
        Ok(message)
    }

    /// Deletes rows `seqs`, sent, if `relay` still holds them.
    pub async fn sent(&self, relay: &str, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let sql = self.sql(&format!(
            "DELETE FROM {{t}} WHERE claimed_by = $1 AND seq IN ({})",
            seq_list(seqs)
        ));
        with_source!(&self.pool, |pool| sqlx::query(AssertSqlSafe(sql))
            .bind(relay)
            .execute(pool)
            .await
            .map(drop)
            .doing("deleting sent outbox rows"))
    }

    /// Row `seq` goes again from `due_ms`; rows `release` are let go unsent.
    pub async fn retry(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        due_ms: i64,
        release: &[i64],
    ) -> Result<(), StoreError> {
        let again = self.sql(
            "UPDATE {t} SET attempts = attempts + 1, due_ms = $1, last_error = $2, \
             claimed_by = NULL, claim_until_ms = 0 WHERE seq = $3 AND claimed_by = $4",
        );
        let released = self.sql(&format!(
            "UPDATE {{t}} SET claimed_by = NULL, claim_until_ms = 0 WHERE claimed_by = $1 \
             AND seq IN ({})",
            seq_list(release)
        ));
        with_source!(&self.pool, |pool| {
            let mut tx = pool.begin().await.doing("starting an outbox retry")?;
            sqlx::query(AssertSqlSafe(again))
                .bind(due_ms)
                .bind(error)
                .bind(seq)
                .bind(relay)
                .execute(&mut *tx)
                .await
                .doing("putting an outbox row back")?;
            if !release.is_empty() {
                sqlx::query(AssertSqlSafe(released))
                    .bind(relay)
                    .execute(&mut *tx)
                    .await
                    .doing("letting outbox rows go")?;
            }
            tx.commit().await.doing("committing an outbox retry")
        })
    }

    /// Row `seq` is refused for good: kept as dead with `error`.
    pub async fn dead(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "UPDATE {t} SET state = 'dead', attempts = attempts + 1, last_error = $1, \
             claimed_by = NULL, claim_until_ms = 0 WHERE seq = $2 AND claimed_by = $3",
        );
        with_source!(&self.pool, |pool| sqlx::query(AssertSqlSafe(sql))
            .bind(error)
            .bind(seq)
            .bind(relay)
            .execute(pool)
            .await
            .map(drop)
            .doing("keeping an outbox row as dead"))
    }

    /// Lets go every row `relay` holds.
    pub async fn release_all(&self, relay: &str) -> Result<(), StoreError> {
        let sql =
            self.sql("UPDATE {t} SET claimed_by = NULL, claim_until_ms = 0 WHERE claimed_by = $1");
        with_source!(&self.pool, |pool| sqlx::query(AssertSqlSafe(sql))
            .bind(relay)
            .execute(pool)
            .await
            .map(drop)
            .doing("taking back outbox claims"))
    }

    /// The backlog: pending and dead rows, the oldest pending row's age, the newest error.
    pub async fn stats(&self) -> Result<SourceStats, StoreError> {
        let age = match self.dialect {
            SourceDialect::Postgres => {
                "CAST(EXTRACT(EPOCH FROM (now() - MIN(CASE WHEN state = 'pending' THEN created_at END))) * 1000 AS BIGINT)"
            }
            SourceDialect::Mysql => {
                "CAST(TIMESTAMPDIFF(MICROSECOND, MIN(CASE WHEN state = 'pending' THEN created_at END), CURRENT_TIMESTAMP(3)) / 1000 AS SIGNED)"
            }
        };
        let counts = self.sql(&format!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS BIGINT), {age} FROM {{t}}"
        ));
        let counts = match self.dialect {
            SourceDialect::Postgres => counts,
            // MySQL casts to SIGNED, not BIGINT.
            SourceDialect::Mysql => counts.replace("AS BIGINT)", "AS SIGNED)"),
        };
        let error = self.sql(
            "SELECT last_error FROM {t} WHERE state = 'pending' AND last_error IS NOT NULL \
             ORDER BY seq DESC LIMIT 1",
        );
        with_source!(&self.pool, |pool| {
            let (pending, dead, oldest): (i64, i64, Option<i64>) =
                sqlx::query_as(AssertSqlSafe(counts))
                    .fetch_one(pool)
                    .await
                    .doing("counting outbox rows")?;
            let last_error: Option<String> = sqlx::query_scalar(AssertSqlSafe(error))
                .fetch_optional(pool)
                .await
                .doing("reading an outbox row's error")?;
            Ok(SourceStats {
                source: self.name.clone(),
                unreadable: None,
                pending: pending.max(0) as u64,
                dead: dead.max(0) as u64,
                oldest_age_ms: oldest.map(|ms| ms.max(0) as u64),
                last_error,
            })
        })
    }

    /// Up to `count` dead rows, newest first.
    pub async fn dead_rows(&self, count: i64) -> Result<Vec<DeadSourceRow>, StoreError> {
        let text = match self.dialect {
            SourceDialect::Postgres => "LEFT(message::text, 4096)",
            SourceDialect::Mysql => "LEFT(message, 4096)",
        };
        let sql = self.sql(&format!(
            "SELECT seq, destination, CAST(attempts AS BIGINT), COALESCE(last_error, ''), {text} \
             FROM {{t}} WHERE state = 'dead' ORDER BY seq DESC LIMIT $1"
        ));
        let sql = match self.dialect {
            SourceDialect::Postgres => sql,
            SourceDialect::Mysql => sql.replace("AS BIGINT)", "AS SIGNED)"),
        };
        with_source!(&self.pool, |pool| {
            let rows: Vec<(i64, String, i64, String, String)> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(count)
                .fetch_all(pool)
                .await
                .doing("reading dead outbox rows")?;
            Ok(rows
                .into_iter()
                .map(
                    |(seq, destination, attempts, error, message)| DeadSourceRow {
                        seq,
                        destination,
                        attempts,
                        error,
                        message,
                    },
                )
                .collect())
        })
    }

    /// Makes dead row `seq` pending again (tried at once, its attempts counted afresh);
    /// answers whether there was one.
    pub async fn revive(&self, seq: i64) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE {t} SET state = 'pending', attempts = 0, due_ms = 0, last_error = NULL \
             WHERE seq = $1 AND state = 'dead'",
        );
        with_source!(&self.pool, |pool| sqlx::query(AssertSqlSafe(sql))
            .bind(seq)
            .execute(pool)
            .await
            .map(|done| done.rows_affected() > 0)
            .doing("retrying a dead outbox row"))
    }

    /// Deletes dead row `seq`; answers whether there was one.
    pub async fn forget(&self, seq: i64) -> Result<bool, StoreError> {
        let sql = self.sql("DELETE FROM {t} WHERE seq = $1 AND state = 'dead'");
        with_source!(&self.pool, |pool| sqlx::query(AssertSqlSafe(sql))
            .bind(seq)
            .execute(pool)
            .await
            .map(|done| done.rows_affected() > 0)
            .doing("deleting a dead outbox row"))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        with_source!(&self.pool, |pool| pool.close().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_question_marks_for_mysql() {
        assert_eq!(
            mysql_text("UPDATE t SET a = $1, b = $12 WHERE c = '$x' AND d = $3"),
            "UPDATE t SET a = ?, b = ? WHERE c = '$x' AND d = ?"
        );
    }
}
