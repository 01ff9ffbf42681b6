//! The embedded broker's topic exchanges and their bindings. Names are stored as
//! `connection:name`, as queues are, so two embedded connections on one database never share
//! an exchange.

use super::{Doing, Store, StoreError, with_pool};

impl Store {
    /// Declares exchange `name` (nothing if it exists).
    pub async fn declare_exchange(&self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        let sql = "INSERT INTO embedded_exchanges (name, created_ms) VALUES ($1, $2) \
                   ON CONFLICT (name) DO NOTHING";
        with_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(name)
            .bind(now_ms)
            .execute(pool)
            .await
            .map(drop)
            .doing("declaring an exchange"))
    }

    /// Whether exchange `name` was declared.
    pub async fn exchange_exists(&self, name: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM embedded_exchanges WHERE name = $1";
        let count: i64 = with_pool!(&self.pool, |pool| sqlx::query_scalar(sql)
            .bind(name)
            .fetch_one(pool)
            .await
            .doing("reading an exchange"))?;
        Ok(count > 0)
    }

    /// Binds `queue` to `exchange` with `pattern` (nothing if it is bound so already).
    pub async fn bind_queue(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO embedded_bindings (exchange, queue, pattern, created_ms) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT (exchange, queue, pattern) DO NOTHING";
        with_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(exchange)
            .bind(queue)
            .bind(pattern)
            .bind(now_ms)
            .execute(pool)
            .await
            .map(drop)
            .doing("binding a queue"))
    }

    /// Removes the binding of `queue` to `exchange` with `pattern` (its subscription was
    /// deleted); how many went.
    pub async fn unbind_queue(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<u64, StoreError> {
        let sql =
            "DELETE FROM embedded_bindings WHERE exchange = $1 AND queue = $2 AND pattern = $3";
        with_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(exchange)
            .bind(queue)
            .bind(pattern)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .doing("unbinding a queue"))
    }

    /// The bindings of `exchange`, as `(queue, pattern)`.
    pub async fn bindings(&self, exchange: &str) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT queue, pattern FROM embedded_bindings WHERE exchange = $1 \
                   ORDER BY queue, pattern";
        with_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(exchange)
            .fetch_all(pool)
            .await
            .doing("reading an exchange's bindings"))
    }
}
