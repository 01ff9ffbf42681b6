//! Plugins' small kv state (the `kv-get` and `kv-set` imports), limited per plugin.

use super::{Dialect, Doing, Store, StoreError, with_pool};
use crate::runtime::KvLimits;

/// A plugin's kv bytes in all (`$1`), and those of key `$2`.
pub(super) const USAGE: &str = "SELECT \
    CAST(COALESCE(SUM(LENGTH(key) + LENGTH(value)), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN key = $2 THEN LENGTH(key) + LENGTH(value) ELSE 0 END), 0) AS BIGINT) \
    FROM plugin_kv WHERE plugin = $1";

impl Store {
    pub async fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2"
        )
        .bind(plugin)
        .bind(key)
        .fetch_optional(pool)
        .await
        .doing("reading kv state"))
    }

    /// The bytes `plugin`'s state holds in all, and those of `key`.
    pub async fn kv_usage(&self, plugin: &str, key: &str) -> Result<(usize, usize), StoreError> {
        let (total, of_key): (i64, i64) = with_pool!(&self.pool, |pool| sqlx::query_as(USAGE)
            .bind(plugin)
            .bind(key)
            .fetch_one(pool)
            .await
            .doing("measuring kv state"))?;
        Ok((total.max(0) as usize, of_key.max(0) as usize))
    }

    /// Sets `key` for `plugin` within `limits`. A refusal is `Ok(Err(reason))`: it is the
    /// plugin's to see, not a database failure.
    pub async fn kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        limits: &KvLimits,
        now_ms: i64,
    ) -> Result<Result<(), String>, StoreError> {
        let dialect = self.dialect();
        with_pool!(&self.pool, |pool| {
            // The quota is checked, then written: one writer per plugin at a time, or two
            // writes that each fit could together pass the limit.
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting a kv write")?;
            if dialect == Dialect::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(plugin)
                    .execute(&mut *tx)
                    .await
                    .doing("locking kv state")?;
            }
            let (total, replaced): (i64, i64) = sqlx::query_as(USAGE)
                .bind(plugin)
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .doing("measuring kv state")?;
            if let Err(refused) = limits.check(key, value, total as usize, replaced as usize) {
                return Ok(Err(refused));
            }
            sqlx::query(
                "INSERT INTO plugin_kv (plugin, key, value, updated_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, \
                 updated_ms = excluded.updated_ms",
            )
            .bind(plugin)
            .bind(key)
            .bind(value)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .doing("writing kv state")?;
            tx.commit().await.doing("committing kv state")?;
            Ok(Ok(()))
        })
    }
}
