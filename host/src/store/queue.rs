//! The embedded broker's tables: queues and their messages.
//!
//! The broker (`crate::broker::embedded`) batches its writes and hands them here as a list of
//! [`QueueOp`]s applied in one transaction: publishes are committed before their senders hear
//! yes, and a batch costs one commit however many messages it holds.

use super::codec::{MESSAGE_COLUMNS, bind_message, last_within, message_from_row};
use super::{Dialect, Doing, Store, StoreError, with_pool};
use crate::message::{HeaderValue, Message};
// The claim's SQL is built only from constants in this file.
use sqlx::{AssertSqlSafe, Row};
use std::time::Duration;

/// How a queue behaves; declared in the config or defaulted on first use.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueOptions {
    /// Where messages go when they are dead-lettered; `None` means `{queue}.dead`.
    pub dead_letter: Option<String>,
    /// How long a claimed message stays invisible before it is delivered again.
    pub visibility_timeout: Duration,
    /// Dead-letter a message instead of delivering it for the (n+1)th time. Every queue has
    /// a limit ([`DEFAULT_MAX_DELIVERIES`] unless declared), so a message that keeps failing
    /// before anyone acks it cannot come back forever.
    pub max_deliveries: u32,
}

/// The delivery limit of a queue declared without one.
pub use crate::units::DEFAULT_MAX_DELIVERIES;

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            dead_letter: None,
            visibility_timeout: Duration::from_secs(30),
            max_deliveries: DEFAULT_MAX_DELIVERIES,
        }
    }
}

impl QueueOptions {
    /// The queue that takes this queue's dead letters.
    pub fn dead_letter_queue(&self, queue: &str) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| format!("{queue}.dead"))
    }
}

/// What a queue holds right now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// Messages that a consumer could claim now.
    pub ready: u64,
    /// Messages claimed by a consumer and not yet acked or timed out.
    pub in_flight: u64,
    /// Messages waiting out a delay (retries) before they become ready.
    pub delayed: u64,
    /// Age of the oldest message in the queue, in milliseconds.
    pub oldest_age_ms: Option<u64>,
}

impl QueueStats {
    /// Every message in the queue, whatever its state.
    pub fn depth(&self) -> u64 {
        self.ready + self.in_flight + self.delayed
    }
}

/// A message claimed by a consumer.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub seq: i64,
    /// Claims so far, this one included; also the lease token for ack and nack.
    pub deliveries: i64,
    pub enqueued_ms: i64,
    pub message: Message,
}

/// One write of the broker, applied with others in one transaction.
pub(crate) enum QueueOp {
    Publish {
        queue: String,
        message: Message,
        visible_at_ms: i64,
        now_ms: i64,
    },
    Claim {
        queue: String,
        max: i64,
        now_ms: i64,
        lease_until_ms: i64,
    },
    /// Removes a delivered message, if it is still leased under `deliveries`.
    Ack { seq: i64, deliveries: i64 },
    /// Keeps a delivered message leased until `visible_at_ms`, if it still is under
    /// `deliveries`.
    Extend {
        seq: i64,
        deliveries: i64,
        visible_at_ms: i64,
    },
    /// Makes a delivered message ready again at `visible_at_ms`.
    Release {
        seq: i64,
        deliveries: i64,
        visible_at_ms: i64,
    },
    /// Moves a delivered message to another queue (a dead letter), adding `headers`.
    Move {
        seq: i64,
        deliveries: i64,
        to_queue: String,
        headers: Vec<(String, HeaderValue)>,
        now_ms: i64,
    },
}

pub(crate) enum OpOutcome {
    /// Whether the op found its message (false: the lease was lost to a redelivery).
    Done(bool),
    Claimed(Vec<Claimed>),
}

const INSERT: &str = "INSERT INTO queue_messages (queue, visible_at_ms, leased, deliveries, \
    enqueued_ms, id, topic, msg_key, headers, content_type, correlation_id, reply_to, priority, \
    expiration_ms, persistent, payload, timestamp_ms) \
    VALUES ($1, $2, 0, 0, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// Removes a leased message and hands back its columns.
static TAKE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "DELETE FROM queue_messages WHERE seq = $1 AND deliveries = $2 RETURNING {MESSAGE_COLUMNS}"
    )
});

fn claim_sql(dialect: Dialect) -> String {
    // PostgreSQL may run several hosts' claims at once: SKIP LOCKED lets each take different
    // rows. SQLite has one writer at a time, so its claims never overlap.
    let lock = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
    };
    format!(
        "UPDATE queue_messages SET leased = 1, deliveries = deliveries + 1, visible_at_ms = $1 \
         WHERE seq IN (SELECT seq FROM queue_messages WHERE queue = $2 AND visible_at_ms <= $3 \
         ORDER BY seq LIMIT $4 {lock}) \
         RETURNING seq, deliveries, enqueued_ms, {MESSAGE_COLUMNS}"
    )
}

/// Inserts a message into `queue` with the first three parameters of [`INSERT`].
macro_rules! insert_message {
    ($conn:expr, $queue:expr, $visible_at:expr, $now:expr, $m:expr) => {{
        bind_message!(
            sqlx::query(INSERT)
                .bind($queue)
                .bind($visible_at)
                .bind($now),
            $m
        )
        .execute($conn)
        .await
    }};
}

impl Store {
    /// Applies `ops` in one transaction: all of them or none.
    pub(crate) async fn apply_queue_ops(
        &self,
        ops: &[QueueOp],
    ) -> Result<Vec<OpOutcome>, StoreError> {
        let dialect = self.dialect();
        let claim = claim_sql(dialect);
        with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting a queue transaction")?;
            let mut outcomes = Vec::with_capacity(ops.len());
            for op in ops {
                let outcome = match op {
                    QueueOp::Publish {
                        queue,
                        message,
                        visible_at_ms,
                        now_ms,
                    } => {
                        insert_message!(&mut *tx, queue, *visible_at_ms, *now_ms, message)
                            .doing("publishing")?;
                        OpOutcome::Done(true)
                    }
                    QueueOp::Claim {
                        queue,
                        max,
                        now_ms,
                        lease_until_ms,
                    } => {
                        let rows = sqlx::query(AssertSqlSafe(claim.as_str()))
                            .bind(*lease_until_ms)
                            .bind(queue)
                            .bind(*now_ms)
                            .bind(*max)
                            .fetch_all(&mut *tx)
                            .await
                            .doing("claiming messages")?;
                        let mut claimed = rows
                            .iter()
                            .map(|row| {
                                Ok(Claimed {
                                    seq: row.try_get("seq")?,
                                    deliveries: row.try_get("deliveries")?,
                                    enqueued_ms: row.try_get("enqueued_ms")?,
                                    message: message_from_row(row)?,
                                })
                            })
                            .collect::<Result<Vec<_>, sqlx::Error>>()
                            .doing("reading claimed messages")?;
                        // RETURNING promises no order; the queue is FIFO.
                        claimed.sort_by_key(|c| c.seq);
                        OpOutcome::Claimed(claimed)
                    }
                    QueueOp::Ack { seq, deliveries } => {
                        let done = sqlx::query(
                            "DELETE FROM queue_messages WHERE seq = $1 AND deliveries = $2",
                        )
                        .bind(*seq)
                        .bind(*deliveries)
                        .execute(&mut *tx)
                        .await
                        .doing("acking")?;
                        OpOutcome::Done(done.rows_affected() == 1)
                    }
                    QueueOp::Extend {
                        seq,
                        deliveries,
                        visible_at_ms,
                    } => {
                        let done = sqlx::query(
                            "UPDATE queue_messages SET visible_at_ms = $1 \
                             WHERE seq = $2 AND deliveries = $3 AND leased = 1",
                        )
                        .bind(*visible_at_ms)
                        .bind(*seq)
                        .bind(*deliveries)
                        .execute(&mut *tx)
                        .await
                        .doing("extending a lease")?;
                        OpOutcome::Done(done.rows_affected() == 1)
                    }
                    QueueOp::Release {
                        seq,
                        deliveries,
                        visible_at_ms,
                    } => {
                        let done = sqlx::query(
                            "UPDATE queue_messages SET leased = 0, visible_at_ms = $1 \
                             WHERE seq = $2 AND deliveries = $3",
                        )
                        .bind(*visible_at_ms)
                        .bind(*seq)
                        .bind(*deliveries)
                        .execute(&mut *tx)
                        .await
                        .doing("returning a message")?;
                        OpOutcome::Done(done.rows_affected() == 1)
                    }
                    QueueOp::Move {
                        seq,
                        deliveries,
                        to_queue,
                        headers,
                        now_ms,
                    } => {
                        let row = sqlx::query(AssertSqlSafe(TAKE.as_str()))
                            .bind(*seq)
                            .bind(*deliveries)
                            .fetch_optional(&mut *tx)
                            .await
                            .doing("dead-lettering")?;
                        match row {
                            Some(row) => {
                                let mut message =
                                    message_from_row(&row).doing("reading a dead letter")?;
                                message.headers.extend(headers.iter().cloned());
                                // A dead letter is kept until someone looks at it, as
                                // RabbitMQ does: its expiration would dead-letter it again.
                                message.expiration_ms = None;
                                insert_message!(&mut *tx, to_queue, *now_ms, *now_ms, &message)
                                    .doing("dead-lettering")?;
                                OpOutcome::Done(true)
                            }
                            None => OpOutcome::Done(false),
                        }
                    }
                };
                outcomes.push(outcome);
            }
            tx.commit().await.doing("committing queue writes")?;
            Ok(outcomes)
        })
    }

    /// Creates `queue` with `options`, or updates its options if it exists.
    pub async fn declare_queue(
        &self,
        queue: &str,
        options: &QueueOptions,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO queues (name, dead_letter, visibility_timeout_ms, max_deliveries, \
                   created_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET \
                   dead_letter = excluded.dead_letter, \
                   visibility_timeout_ms = excluded.visibility_timeout_ms, \
                   max_deliveries = excluded.max_deliveries";
        with_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(queue)
            .bind(&options.dead_letter)
            .bind(options.visibility_timeout.as_millis().min(i64::MAX as u128) as i64)
            .bind(i64::from(options.max_deliveries))
            .bind(now_ms)
            .execute(pool)
            .await
            .map(|_| ())
            .doing("declaring a queue"))?;
        Ok(())
    }

    /// Creates `queue` with default options unless it exists; returns its options.
    pub async fn ensure_queue(&self, queue: &str, now_ms: i64) -> Result<QueueOptions, StoreError> {
        let defaults = QueueOptions::default();
        let sql = "INSERT INTO queues (name, dead_letter, visibility_timeout_ms, max_deliveries, \
                   created_ms) VALUES ($1, NULL, $2, NULL, $3) ON CONFLICT (name) DO NOTHING";
        with_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(queue)
            .bind(defaults.visibility_timeout.as_millis() as i64)
            .bind(now_ms)
            .execute(pool)
            .await
            .map(|_| ())
            .doing("creating a queue"))?;
        self.queue_options(queue)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("queue `{queue}` vanished as it was made")))
    }

    pub async fn queue_options(&self, queue: &str) -> Result<Option<QueueOptions>, StoreError> {
        let sql = "SELECT dead_letter, visibility_timeout_ms, max_deliveries FROM queues \
                   WHERE name = $1";
        let row: Option<(Option<String>, i64, Option<i64>)> =
            with_pool!(&self.pool, |pool| sqlx::query_as(sql)
                .bind(queue)
                .fetch_optional(pool)
                .await
                .doing("reading a queue"))?;
        Ok(row.map(|(dead_letter, visibility, max)| QueueOptions {
            dead_letter,
            visibility_timeout: Duration::from_millis(visibility.max(0) as u64),
            // Queues made before every queue had a limit have none stored: they get the default.
            max_deliveries: max.map_or(DEFAULT_MAX_DELIVERIES, |m| {
                m.clamp(1, u32::MAX as i64) as u32
            }),
        }))
    }

    /// Whether a queue of that name exists.
    pub async fn queue_exists(&self, queue: &str) -> Result<bool, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM queues WHERE name = $1"
        )
        .bind(queue)
        .fetch_one(pool)
        .await
        .map(|n| n > 0)
        .doing("looking a queue up"))
    }

    /// Every queue's name, sorted.
    pub async fn queue_names(&self) -> Result<Vec<String>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT name FROM queues ORDER BY name"
        )
        .fetch_all(pool)
        .await
        .doing("listing queues"))
    }

    pub async fn queue_stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats, StoreError> {
        let sql = "SELECT \
            CAST(COALESCE(SUM(CASE WHEN visible_at_ms <= $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
            CAST(COALESCE(SUM(CASE WHEN visible_at_ms > $2 AND leased = 1 THEN 1 ELSE 0 END), 0) AS BIGINT), \
            CAST(COALESCE(SUM(CASE WHEN visible_at_ms > $2 AND leased = 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
            MIN(enqueued_ms) \
            FROM queue_messages WHERE queue = $1";
        let (ready, in_flight, delayed, oldest): (i64, i64, i64, Option<i64>) =
            with_pool!(&self.pool, |pool| sqlx::query_as(sql)
                .bind(queue)
                .bind(now_ms)
                .fetch_one(pool)
                .await
                .doing("counting a queue"))?;
        Ok(QueueStats {
            queue: queue.to_owned(),
            ready: ready as u64,
            in_flight: in_flight as u64,
            delayed: delayed as u64,
            oldest_age_ms: oldest.map(|t| (now_ms - t).max(0) as u64),
        })
    }

    /// Removes the ready messages of `queue` (visible now: not claimed, not waiting out a
    /// delay); returns how many.
    pub async fn purge_queue(&self, queue: &str, now_ms: i64) -> Result<u64, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM queue_messages WHERE queue = $1 AND visible_at_ms <= $2"
        )
        .bind(queue)
        .bind(now_ms)
        .execute(pool)
        .await
        .doing("purging a queue")
        .map(|r| r.rows_affected()))?;
        Ok(done)
    }

    /// Up to `count` ready messages of `queue`, in order, without claiming them, and no more
    /// than `max_bytes` of them, headers and keys counted (but always the first): sizes are
    /// read first, so a large queue is never loaded whole.
    pub async fn peek_queue(
        &self,
        queue: &str,
        count: i64,
        max_bytes: usize,
        now_ms: i64,
    ) -> Result<Vec<Message>, StoreError> {
        // The whole message counts toward the budget, its headers and key too.
        let sizes: Vec<(i64, i64)> = with_pool!(&self.pool, |pool| {
            sqlx::query_as(
            "SELECT seq, CAST(LENGTH(payload) + COALESCE(LENGTH(headers), 0) \
             + COALESCE(LENGTH(msg_key), 0) + LENGTH(id) + LENGTH(topic) AS BIGINT) FROM queue_messages \
             WHERE queue = $1 AND visible_at_ms <= $2 ORDER BY seq LIMIT $3"
        )
        .bind(queue)
        .bind(now_ms)
        .bind(count)
        .fetch_all(pool)
        .await
        .doing("reading a queue")
        })?;
        let Some(last) = last_within(&sizes, max_bytes) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM queue_messages WHERE queue = $1 AND visible_at_ms <= $2 \
             AND seq <= $3 ORDER BY seq LIMIT $4"
        );
        with_pool!(&self.pool, |pool| {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(queue)
                .bind(now_ms)
                .bind(last)
                .bind(count)
                .fetch_all(pool)
                .await
                .doing("reading a queue")?;
            rows.iter()
                .map(message_from_row)
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .doing("reading a queue")
        })
    }

    /// The oldest ready, unclaimed message of `queue` with this id, left where it is, with its
    /// place (`seq`) to remove it by.
    pub async fn find_ready(
        &self,
        queue: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<(i64, Message)>, StoreError> {
        let sql = format!(
            "SELECT seq, {MESSAGE_COLUMNS} FROM queue_messages WHERE queue = $1 AND id = $2 \
             AND visible_at_ms <= $3 AND leased = 0 ORDER BY seq LIMIT 1"
        );
        with_pool!(&self.pool, |pool| {
            let row = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(queue)
                .bind(id)
                .bind(now_ms)
                .fetch_optional(pool)
                .await
                .doing("finding a message")?;
            row.map(|row| {
                let seq: i64 = row.try_get("seq")?;
                Ok((seq, message_from_row(&row)?))
            })
            .transpose()
            .doing("finding a message")
        })
    }

    /// Removes the message at `seq` of `queue` if it is still ready and unclaimed; whether it
    /// was.
    pub async fn remove_ready(&self, queue: &str, seq: i64) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM queue_messages WHERE queue = $1 AND seq = $2 AND leased = 0"
        )
        .bind(queue)
        .bind(seq)
        .execute(pool)
        .await
        .doing("removing a message")
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// The ids of every message in `queue`, in order: for tests and inspection.
    pub async fn queue_message_ids(&self, queue: &str) -> Result<Vec<String>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT id FROM queue_messages WHERE queue = $1 ORDER BY seq"
        )
        .bind(queue)
        .fetch_all(pool)
        .await
        .doing("listing a queue's messages"))
    }
}
