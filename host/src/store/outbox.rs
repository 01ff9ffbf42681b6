//! The outbox, the inbox and units of work: what must not be lost is committed here, with the
//! work that made it, before anyone hears yes.
//!
//! A [`UnitOfWork`] is everything one piece of work changes: messages to send (outbox rows),
//! plugins' kv writes and the record that its input was handled (an inbox row). It commits
//! in one transaction or not at all. A relay (`crate::outbox`) then claims pending rows and
//! sends them; this module holds only the SQL.
//!
//! Order: rows of one destination and ordering key are claimed only behind every earlier row
//! of theirs, so they are sent in `seq` order. A claim is the relay's name and a deadline; a
//! claim past its deadline is free again. Claims never walk a cursor, so a row that commits
//! after a later-numbered one (transactions finishing out of order) is still found.

use super::codec::{MESSAGE_COLUMNS, bind_message, last_within, message_from_row};
use super::{Dialect, Doing, Store, StoreError, with_pool};
use crate::contract::{KvLimits, KvWrite};
use crate::message::Message;
use sqlx::{AssertSqlSafe, Row};
use std::collections::BTreeMap;

/// A message to send, held in the outbox until its broker confirms it.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// `connection:address`.
    pub destination: String,
    /// Who handed it over: `route:NAME`, `api`, `cli`, ...
    pub origin: String,
    pub message: Message,
}

/// Everything one piece of work changes, committed together or not at all.
#[derive(Debug, Default)]
pub struct UnitOfWork {
    pub outbox: Vec<OutboxEntry>,
    pub kv: Vec<KvWrite>,
    /// `(unit, message id)`: the input this work handled, recorded in the inbox. The work is
    /// not applied if the inbox already has it.
    pub handled: Option<(String, String)>,
}

/// How a unit of work ended.
#[derive(Debug, PartialEq)]
pub enum Committed {
    Done,
    /// The inbox already records the input: another delivery of it committed first, and this
    /// one changed nothing.
    AlreadyHandled,
    /// A kv write is over the plugin's limits (another write got there first); nothing was
    /// written.
    KvRefused(String),
}

/// A pending row claimed by a relay.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub seq: i64,
    pub destination: String,
    /// Rows with the same destination and key are sent in order; `None` keeps no order.
    pub order_key: Option<String>,
    pub attempts: i64,
    pub message: Message,
}

/// A row kept for a person to look at: one its destination refused for good.
#[derive(Debug, Clone)]
pub struct DeadOutboxRow {
    pub seq: i64,
    pub destination: String,
    pub origin: String,
    pub attempts: i64,
    pub error: String,
    pub created_ms: i64,
    pub dead_ms: i64,
    pub message: Message,
}

/// The backlog of one destination.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct DestinationBacklog {
    pub destination: String,
    /// Messages not sent yet.
    pub pending: u64,
    /// Age of the oldest of them, in milliseconds.
    pub oldest_age_ms: Option<u64>,
    /// Messages its broker refused for good, kept until someone retries or deletes them.
    pub dead: u64,
    /// The newest error of a pending message, if the last try failed.
    pub last_error: Option<String>,
}

/// The outbox's backlog.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct OutboxStats {
    pub pending: u64,
    pub oldest_age_ms: Option<u64>,
    pub dead: u64,
    pub destinations: Vec<DestinationBacklog>,
    /// The applications' outbox tables this host relays (`[[sources]]`), each on its own.
    pub sources: Vec<super::SourceStats>,
}

const INSERT: &str = "INSERT INTO outbox (destination, order_key, origin, state, due_ms, \
    created_ms, id, topic, msg_key, headers, content_type, correlation_id, reply_to, priority, \
    expiration_ms, persistent, payload, timestamp_ms) \
    VALUES ($1, $2, $3, 'pending', $4, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// The ordering key of a message: its key, in hex (`None` without one: no order is kept).
fn order_key(message: &Message) -> Option<String> {
    message.key.as_ref().map(hex::encode)
}

fn claim_sql(dialect: Dialect) -> String {
    // A row is free when it is pending, due and unclaimed (or its claim ran out), and no
    // earlier pending row of its destination and key is waiting out a retry or held by a
    // live claim: those go first. The rows that hold a key back are few (a claim's batch, the
    // retries) and found through partial indexes, so a claim does not grow with the backlog.
    // Claims are serialized (one writer on SQLite, a lock on PostgreSQL), so two relays never
    // split one key between them.
    let lock = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
    };
    format!(
        "WITH blockers AS (SELECT destination, order_key, MIN(seq) AS first FROM outbox \
           WHERE state = 'pending' AND order_key IS NOT NULL \
           AND (claim_until_ms >= $3 OR due_ms > $3) GROUP BY destination, order_key) \
         UPDATE outbox SET claimed_by = $1, claim_until_ms = $2 \
         WHERE seq IN (SELECT o.seq FROM outbox o \
           WHERE o.state = 'pending' AND o.due_ms <= $3 AND o.claim_until_ms < $3 \
           AND NOT EXISTS (SELECT 1 FROM blockers b WHERE b.destination = o.destination \
             AND b.order_key = o.order_key AND b.first < o.seq) \
           ORDER BY o.seq LIMIT $4 {lock}) \
         RETURNING seq, destination, order_key, attempts, {MESSAGE_COLUMNS}"
    )
}

/// Serializes claims between hosts on PostgreSQL (an arbitrary constant: "wharf outbox").
const CLAIM_LOCK: i64 = 0x7768_6172_666f_7574;

impl Store {
    /// Commits `work`: its kv writes (within `limits`), its outbox rows and its inbox record,
    /// in one transaction.
    pub async fn commit_work(
        &self,
        work: &UnitOfWork,
        limits: &KvLimits,
        now_ms: i64,
    ) -> Result<Committed, StoreError> {
        let dialect = self.dialect();
        with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting a unit of work")?;
            if let Some((unit, id)) = &work.handled {
                let recorded = sqlx::query(
                    "INSERT INTO inbox (unit, message_id, handled_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (unit, message_id) DO NOTHING",
                )
                .bind(unit)
                .bind(id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .doing("recording a handled message")?;
                if recorded.rows_affected() == 0 {
                    return Ok(Committed::AlreadyHandled);
                }
            }
            // Each plugin's writes: its quota is measured, then written, one unit per plugin
            // at a time (a lock on PostgreSQL; SQLite has one writer), or two units that each
            // fit could together pass the limit.
            let mut by_plugin: BTreeMap<&str, Vec<&KvWrite>> = BTreeMap::new();
            for write in &work.kv {
                by_plugin.entry(&write.plugin).or_default().push(write);
            }
            for (plugin, writes) in by_plugin {
                if dialect == Dialect::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                        .bind(plugin)
                        .execute(&mut *tx)
                        .await
                        .doing("locking kv state")?;
                }
                for write in writes {
                    let (total, replaced): (i64, i64) = sqlx::query_as(super::kv::USAGE)
                        .bind(plugin)
                        .bind(&write.key)
                        .fetch_one(&mut *tx)
                        .await
                        .doing("measuring kv state")?;
                    if let Err(refused) =
                        limits.check(&write.key, &write.value, total as usize, replaced as usize)
                    {
                        return Ok(Committed::KvRefused(refused));
                    }
                    sqlx::query(
                        "INSERT INTO plugin_kv (plugin, key, value, updated_ms) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (plugin, key) DO UPDATE SET \
                         value = excluded.value, updated_ms = excluded.updated_ms",
                    )
                    .bind(plugin)
                    .bind(&write.key)
                    .bind(&write.value)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await
                    .doing("writing kv state")?;
                }
            }
            for entry in &work.outbox {
                bind_message!(
                    sqlx::query(INSERT)
                        .bind(&entry.destination)
                        .bind(order_key(&entry.message))
                        .bind(&entry.origin)
                        .bind(now_ms),
                    &entry.message
                )
                .execute(&mut *tx)
                .await
                .doing("writing to the outbox")?;
            }
            tx.commit().await.doing("committing a unit of work")?;
            Ok(Committed::Done)
        })
    }

    /// Claims up to `max` pending rows for `relay` until `claim_until_ms`, in `seq` order.
    pub async fn outbox_claim(
        &self,
        relay: &str,
        max: i64,
        now_ms: i64,
        claim_until_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let dialect = self.dialect();
        let sql = claim_sql(dialect);
        with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting an outbox claim")?;
            if dialect == Dialect::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CLAIM_LOCK)
                    .execute(&mut *tx)
                    .await
                    .doing("locking the outbox's claims")?;
            }
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(relay)
                .bind(claim_until_ms)
                .bind(now_ms)
                .bind(max)
                .fetch_all(&mut *tx)
                .await
                .doing("claiming outbox rows")?;
            let mut claimed = rows
                .iter()
                .map(|row| {
                    Ok(OutboxRow {
                        seq: row.try_get("seq")?,
                        destination: row.try_get("destination")?,
                        order_key: row.try_get("order_key")?,
                        attempts: row.try_get("attempts")?,
                        message: message_from_row(row)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .doing("reading claimed outbox rows")?;
            tx.commit().await.doing("committing an outbox claim")?;
            // RETURNING promises no order.
            claimed.sort_by_key(|r| r.seq);
            Ok(claimed)
        })
    }

    /// Marks rows `seqs` sent, if `relay` still holds them (a sent row keeps the name of the
    /// relay that sent it).
    pub async fn outbox_sent(
        &self,
        relay: &str,
        seqs: &[i64],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let list = seq_list(seqs);
        let sql = format!(
            "UPDATE outbox SET state = 'sent', done_ms = $1, claim_until_ms = 0, \
             last_error = NULL WHERE claimed_by = $2 AND seq IN ({list})"
        );
        with_pool!(&self.pool, |pool| sqlx::query(AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(relay)
            .execute(pool)
            .await
            .map(drop)
            .doing("marking outbox rows sent"))
    }

    /// Row `seq` could not be sent now: it is tried again from `due_ms`, and rows `release`
    /// (the later rows of its key in the same claim) are let go unsent.
    pub async fn outbox_retry(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        due_ms: i64,
        release: &[i64],
    ) -> Result<(), StoreError> {
        let dialect = self.dialect();
        let released = format!(
            "UPDATE outbox SET claimed_by = NULL, claim_until_ms = 0 WHERE claimed_by = $1 \
             AND seq IN ({})",
            seq_list(release)
        );
        with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting an outbox retry")?;
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, due_ms = $1, last_error = $2, \
                 claimed_by = NULL, claim_until_ms = 0 WHERE seq = $3 AND claimed_by = $4",
            )
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

    /// Row `seq` is refused for good by its destination: it is kept as dead, with the reason.
    pub async fn outbox_dead(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = $1, \
             done_ms = $2, claimed_by = NULL, claim_until_ms = 0 \
             WHERE seq = $3 AND claimed_by = $4"
        )
        .bind(error)
        .bind(now_ms)
        .bind(seq)
        .bind(relay)
        .execute(pool)
        .await
        .map(drop)
        .doing("dead-lettering an outbox row"))
    }

    /// Lets go every row `relay` holds (a relay starting again after its host died).
    pub async fn outbox_release_all(&self, relay: &str) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "UPDATE outbox SET claimed_by = NULL, claim_until_ms = 0 WHERE claimed_by = $1"
        )
        .bind(relay)
        .execute(pool)
        .await
        .map(drop)
        .doing("taking back outbox claims"))
    }

    /// The backlog, per destination.
    pub async fn outbox_stats(&self, now_ms: i64) -> Result<OutboxStats, StoreError> {
        let rows: Vec<(String, String, i64, Option<i64>)> =
            with_pool!(&self.pool, |pool| sqlx::query_as(
                "SELECT destination, state, CAST(COUNT(*) AS BIGINT), MIN(created_ms) \
                 FROM outbox WHERE state IN ('pending', 'dead') GROUP BY destination, state"
            )
            .fetch_all(pool)
            .await
            .doing("counting the outbox"))?;
        let errors: Vec<(String, String)> = with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT o.destination, o.last_error FROM outbox o WHERE o.state = 'pending' \
             AND o.last_error IS NOT NULL AND o.seq = (SELECT MAX(e.seq) FROM outbox e \
             WHERE e.destination = o.destination AND e.state = 'pending' \
             AND e.last_error IS NOT NULL)"
        )
        .fetch_all(pool)
        .await
        .doing("reading the outbox's errors"))?;
        let mut stats = OutboxStats::default();
        let mut by_destination: BTreeMap<String, DestinationBacklog> = BTreeMap::new();
        for (destination, state, count, oldest) in rows {
            let count = count.max(0) as u64;
            let backlog = by_destination
                .entry(destination.clone())
                .or_insert_with(|| DestinationBacklog {
                    destination,
                    ..DestinationBacklog::default()
                });
            match state.as_str() {
                "pending" => {
                    backlog.pending = count;
                    backlog.oldest_age_ms = oldest.map(|t| (now_ms - t).max(0) as u64);
                }
                _ => backlog.dead = count,
            }
        }
        for (destination, error) in errors {
            if let Some(backlog) = by_destination.get_mut(&destination) {
                backlog.last_error = Some(error);
            }
        }
        for backlog in by_destination.into_values() {
            stats.pending += backlog.pending;
            stats.dead += backlog.dead;
            stats.oldest_age_ms = match (stats.oldest_age_ms, backlog.oldest_age_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            stats.destinations.push(backlog);
        }
        Ok(stats)
    }

    /// Dead rows, newest first, up to `limit` and no more than `max_bytes` of messages,
    /// headers and keys counted (but always the first): sizes are read first, so a backlog of
    /// large dead messages is never loaded whole.
    pub async fn outbox_dead_rows(
        &self,
        limit: i64,
        max_bytes: usize,
    ) -> Result<Vec<DeadOutboxRow>, StoreError> {
        let sizes: Vec<(i64, i64)> = with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT seq, CAST(LENGTH(payload) + COALESCE(LENGTH(headers), 0) \
             + COALESCE(LENGTH(msg_key), 0) + COALESCE(LENGTH(last_error), 0) AS BIGINT) \
             FROM outbox WHERE state = 'dead' ORDER BY seq DESC LIMIT $1"
        )
        .bind(limit)
        .fetch_all(pool)
        .await
        .doing("sizing dead outbox rows"))?;
        let Some(last) = last_within(&sizes, max_bytes) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT seq, destination, origin, attempts, last_error, created_ms, done_ms, \
             {MESSAGE_COLUMNS} FROM outbox WHERE state = 'dead' AND seq >= $2 \
             ORDER BY seq DESC LIMIT $1"
        );
        with_pool!(&self.pool, |pool| {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(limit)
                .bind(last)
                .fetch_all(pool)
                .await
                .doing("listing dead outbox rows")?;
            rows.iter()
                .map(|row| {
                    Ok(DeadOutboxRow {
                        seq: row.try_get("seq")?,
                        destination: row.try_get("destination")?,
                        origin: row.try_get("origin")?,
                        attempts: row.try_get("attempts")?,
                        error: row
                            .try_get::<Option<String>, _>("last_error")?
                            .unwrap_or_default(),
                        created_ms: row.try_get("created_ms")?,
                        dead_ms: row.try_get::<Option<i64>, _>("done_ms")?.unwrap_or(0),
                        message: message_from_row(row)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .doing("listing dead outbox rows")
        })
    }

    /// Makes dead row `seq` pending again (sent at once, behind nothing); whether it was dead.
    pub async fn outbox_revive(&self, seq: i64, now_ms: i64) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "UPDATE outbox SET state = 'pending', due_ms = $1, attempts = 0, done_ms = NULL \
             WHERE seq = $2 AND state = 'dead'"
        )
        .bind(now_ms)
        .bind(seq)
        .execute(pool)
        .await
        .doing("reviving an outbox row")
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Deletes dead row `seq`; whether it was dead.
    pub async fn outbox_forget(&self, seq: i64) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM outbox WHERE seq = $1 AND state = 'dead'"
        )
        .bind(seq)
        .execute(pool)
        .await
        .doing("deleting an outbox row")
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Removes sent outbox rows done before `sent_before_ms` and inbox records older than
    /// `handled_before_ms`; how many of each.
    pub async fn outbox_prune(
        &self,
        sent_before_ms: i64,
        handled_before_ms: i64,
    ) -> Result<(u64, u64), StoreError> {
        let sent = with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM outbox WHERE state = 'sent' AND done_ms < $1"
        )
        .bind(sent_before_ms)
        .execute(pool)
        .await
        .doing("pruning the outbox")
        .map(|r| r.rows_affected()))?;
        let handled = with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM inbox WHERE handled_ms < $1"
        )
        .bind(handled_before_ms)
        .execute(pool)
        .await
        .doing("pruning the inbox")
        .map(|r| r.rows_affected()))?;
        Ok((sent, handled))
    }

    /// Whether `unit`'s inbox records message `id` as handled.
    pub async fn inbox_has(&self, unit: &str, id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT handled_ms FROM inbox WHERE unit = $1 AND message_id = $2"
        )
        .bind(unit)
        .bind(id)
        .fetch_optional(pool)
        .await
        .doing("reading the inbox"))?;
        Ok(found.is_some())
    }

    /// Records message `id` as handled by `unit` (a route whose outputs went straight to their
    /// brokers); whether it was new.
    pub async fn inbox_record(
        &self,
        unit: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO inbox (unit, message_id, handled_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (unit, message_id) DO NOTHING"
        )
        .bind(unit)
        .bind(id)
        .bind(now_ms)
        .execute(pool)
        .await
        .doing("recording a handled message")
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }
}

/// `seqs` as a SQL list of integers (numbers only, so safe to format into the text).
fn seq_list(seqs: &[i64]) -> String {
    seqs.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
