//! Plugins' small kv state (the `kv-get` and `kv-set` imports), limited per plugin.

use super::{Doing, Store, StoreError, with_pool};
use crate::contract::{KvLimits, KvWrite};

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

    /// Sets `key` for `plugin` within `limits` (a unit of work of one write). A refusal is
    /// `Ok(Err(reason))`: it is the plugin's to see, not a database failure.
    pub async fn kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        limits: &KvLimits,
        now_ms: i64,
    ) -> Result<Result<(), String>, StoreError> {
        let work = super::UnitOfWork {
            kv: vec![KvWrite {
                plugin: plugin.to_owned(),
                key: key.to_owned(),
                value: value.to_vec(),
            }],
            ..super::UnitOfWork::default()
        };
        Ok(match self.commit_work(&work, limits, now_ms).await? {
            super::Committed::KvRefused(reason) => Err(reason),
            _ => Ok(()),
        })
    }
}
