//! The control plane's desired state: connections and routes made through the API, and each
//! plugin's policy, as JSON documents (the shapes are the supervisor's). Every change raises
//! one revision number in the same transaction, which every host on the database watches.

use super::{Doing, Store, StoreError, with_pool};
// The dynamic SQL here is built only from the table names below.
use sqlx::AssertSqlSafe;

/// The tables of named documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Documents {
    Connections,
    Routes,
}

impl Documents {
    fn table(self) -> &'static str {
        match self {
            Documents::Connections => "connections",
            Documents::Routes => "routes",
        }
    }
}

/// One stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub name: String,
    /// JSON.
    pub spec: String,
    pub updated_ms: i64,
}

fn documents(rows: Vec<(String, String, i64)>) -> Vec<Document> {
    rows.into_iter()
        .map(|(name, spec, updated_ms)| Document {
            name,
            spec,
            updated_ms,
        })
        .collect()
}

/// Hears, on PostgreSQL, every change any host makes to the desired state, as it commits.
pub struct ChangeListener(sqlx::postgres::PgListener);

impl ChangeListener {
    /// Waits for the next change. A lost connection is made again here; changes made while
    /// it was lost are not heard (the revision, polled, still finds them).
    pub async fn next(&mut self) -> Result<(), StoreError> {
        self.0.recv().await.map(drop).doing("listening for changes")
    }
}

impl Store {
    /// A listener for changes to the desired state, on PostgreSQL (`None` on SQLite, where
    /// only one machine shares the file and the revision is polled).
    pub async fn listen_changes(&self) -> Result<Option<ChangeListener>, StoreError> {
        match &self.pool {
            super::Pool::Sqlite(_) => Ok(None),
            super::Pool::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool)
                    .await
                    .doing("listening for changes")?;
                listener
                    .listen("wharf_desired_state")
                    .await
                    .doing("listening for changes")?;
                Ok(Some(ChangeListener(listener)))
            }
        }
    }

    /// The revision of the desired state: raised by every change.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT revision FROM control_revision WHERE id = 1"
        )
        .fetch_one(pool)
        .await
        .doing("reading the revision"))
    }

    /// Every document of `kind`, by name.
    pub async fn documents(&self, kind: Documents) -> Result<Vec<Document>, StoreError> {
        let sql = format!(
            "SELECT name, spec, updated_ms FROM {} ORDER BY name",
            kind.table()
        );
        let rows: Vec<(String, String, i64)> = with_pool!(&self.pool, |pool| sqlx::query_as(
            AssertSqlSafe(sql.as_str())
        )
        .fetch_all(pool)
        .await
        .doing("reading the desired state"))?;
        Ok(documents(rows))
    }

    /// Adds a document; `Ok(false)` if the name is taken.
    pub async fn create_document(
        &self,
        kind: Documents,
        name: &str,
        spec: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO {} (name, spec, created_ms, updated_ms) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO NOTHING",
            kind.table()
        );
        self.change(&sql, name, Some(spec), now_ms).await
    }

    /// Replaces a document; `Ok(false)` if there is none of that name.
    pub async fn update_document(
        &self,
        kind: Documents,
        name: &str,
        spec: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET spec = $2, updated_ms = $3 WHERE name = $1",
            kind.table()
        );
        self.change(&sql, name, Some(spec), now_ms).await
    }

    /// Removes a document; `Ok(false)` if there is none of that name.
    pub async fn delete_document(&self, kind: Documents, name: &str) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {} WHERE name = $1", kind.table());
        self.change(&sql, name, None, 0).await
    }

    /// The units an operator stopped: name, who, when.
    pub async fn stopped_units(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT name, stopped_by, stopped_ms FROM stopped_units ORDER BY name"
        )
        .fetch_all(pool)
        .await
        .doing("reading stopped units"))
    }

    /// Marks unit `name` stopped (by `who`); `Ok(false)` if it was already.
    pub async fn stop_unit(&self, name: &str, who: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.change(
            "INSERT INTO stopped_units (name, stopped_by, stopped_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
            name,
            Some(who),
            now_ms,
        )
        .await
    }

    /// Lets unit `name` run again; `Ok(false)` if it was not stopped.
    pub async fn start_unit(&self, name: &str) -> Result<bool, StoreError> {
        self.change("DELETE FROM stopped_units WHERE name = $1", name, None, 0)
            .await
    }

    /// Every plugin's policy (JSON), by name.
    pub async fn plugin_policies(&self) -> Result<Vec<Document>, StoreError> {
        let rows: Vec<(String, String, i64)> = with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT name, spec, updated_ms FROM plugin_policies ORDER BY name"
        )
        .fetch_all(pool)
        .await
        .doing("reading plugin policies"))?;
        Ok(documents(rows))
    }

    /// Sets the policy of plugin `name`.
    pub async fn set_plugin_policy(
        &self,
        name: &str,
        spec: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.change(
            "INSERT INTO plugin_policies (name, spec, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_ms = excluded.updated_ms",
            name,
            Some(spec),
            now_ms,
        )
        .await
        .map(drop)
    }

    /// Runs one change (`$1` name, `$2` spec or other text, `$3` time) and raises the revision
    /// with it;
    /// whether a row changed.
    async fn change(
        &self,
        sql: &str,
        name: &str,
        spec: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let dialect = self.dialect();
        with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting a change")?;
            let mut query = sqlx::query(AssertSqlSafe(sql.to_owned())).bind(name);
            if let Some(spec) = spec {
                query = query.bind(spec).bind(now_ms);
            }
            let done = query
                .execute(&mut *tx)
                .await
                .doing("changing the desired state")?
                .rows_affected();
            if done > 0 {
                sqlx::query(dialect.bump_revision())
                    .execute(&mut *tx)
                    .await
                    .doing("raising the revision")?;
            }
            tx.commit().await.doing("committing a change")?;
            Ok(done > 0)
        })
    }
}
