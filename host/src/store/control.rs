//! The control plane's desired state: connections and routes made through the API, and each
//! plugin's policy, as JSON documents (the shapes are the supervisor's). Every change raises
//! one revision number in the same transaction, which every host on the database watches.
//!
//! Connections and plugin policies hold secrets (passwords in URLs, secret headers, config
//! values): with a keyring, their documents are sealed before they are written and opened
//! when read (`crate::secrets`), each bound to its table and name.

use super::{Doing, Store, StoreError, with_pool};
// The dynamic SQL here is built only from the table names below.
use sqlx::AssertSqlSafe;

/// The tables of named documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Documents {
    Connections,
    Routes,
    Subscriptions,
    Daemons,
}

impl Documents {
    fn table(self) -> &'static str {
        match self {
            Documents::Connections => "connections",
            Documents::Routes | Documents::Subscriptions | Documents::Daemons => "units",
        }
    }

    /// The kind a unit's row carries (`route`, …); `None` for a connection.
    pub fn unit_kind(self) -> Option<&'static str> {
        match self {
            Documents::Connections => None,
            Documents::Routes => Some("route"),
            Documents::Subscriptions => Some("subscription"),
            Documents::Daemons => Some("daemon"),
        }
    }

    /// The condition that picks this kind's rows of its table (`AND …`).
    fn and_kind(self) -> String {
        self.unit_kind()
            .map(|kind| format!(" AND kind = '{kind}'"))
            .unwrap_or_default()
    }

    /// Whether its documents may hold secrets, and are sealed.
    fn sealed(self) -> bool {
        matches!(self, Documents::Connections)
    }
}

/// The table of plugin policies (sealed: their config may hold API keys).
const POLICIES: &str = "plugin_policies";

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
    /// `spec` as it is kept in `table` under `name`: sealed when the store has a keyring.
    fn seal(&self, table: &str, name: &str, spec: &str) -> String {
        match &self.keyring {
            Some(keyring) => keyring.seal(&format!("{table}/{name}"), spec),
            None => spec.to_owned(),
        }
    }

    /// What `stored` (from `table`, under `name`) holds, opened if sealed.
    fn unseal(&self, table: &str, name: &str, stored: String) -> Result<String, StoreError> {
        let place = format!("{table}/{name}");
        match &self.keyring {
            Some(keyring) => Ok(keyring.open(&place, &stored)?),
            None if crate::secrets::is_sealed(&stored) => {
                Err(crate::secrets::SecretError::UnknownKey {
                    what: place,
                    key_id: "(none given to this tool)".into(),
                }
                .into())
            }
            None => Ok(stored),
        }
    }

    fn unseal_all(&self, table: &str, rows: Vec<Document>) -> Result<Vec<Document>, StoreError> {
        rows.into_iter()
            .map(|mut doc| {
                doc.spec = self.unseal(table, &doc.name, doc.spec)?;
                Ok(doc)
            })
            .collect()
    }

    /// Seals again, with the current key, every secret-holding document that is kept in clear
    /// (written before sealing existed) or sealed with an older key; how many. The documents
    /// say the same after, so the revision is not raised.
    pub async fn reseal_secrets(&self) -> Result<usize, StoreError> {
        let Some(keyring) = self.keyring.clone() else {
            return Ok(0);
        };
        let mut resealed = 0;
        for table in [Documents::Connections.table(), POLICIES] {
            let sql = format!("SELECT name, spec, updated_ms FROM {table}");
            let rows: Vec<(String, String, i64)> = with_pool!(&self.pool, |pool| sqlx::query_as(
                AssertSqlSafe(sql.as_str())
            )
            .fetch_all(pool)
            .await
            .doing("reading secrets to seal"))?;
            for (name, stored, _) in rows {
                if keyring.is_current(&stored) {
                    continue;
                }
                let spec = self.unseal(table, &name, stored.clone())?;
                let sealed = self.seal(table, &name, &spec);
                let sql = format!("UPDATE {table} SET spec = $1 WHERE name = $2 AND spec = $3");
                with_pool!(&self.pool, |pool| sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(&sealed)
                    .bind(&name)
                    .bind(&stored)
                    .execute(pool)
                    .await
                    .map(drop)
                    .doing("sealing a secret"))?;
                resealed += 1;
            }
        }
        Ok(resealed)
    }

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
            "SELECT name, spec, updated_ms FROM {} WHERE TRUE{} ORDER BY name",
            kind.table(),
            kind.and_kind()
        );
        let rows: Vec<(String, String, i64)> = with_pool!(&self.pool, |pool| sqlx::query_as(
            AssertSqlSafe(sql.as_str())
        )
        .fetch_all(pool)
        .await
        .doing("reading the desired state"))?;
        let rows = documents(rows);
        if kind.sealed() {
            return self.unseal_all(kind.table(), rows);
        }
        Ok(rows)
    }

    /// Adds a document; `Ok(false)` if the name is taken (for a unit: by a unit of any kind).
    pub async fn create_document(
        &self,
        kind: Documents,
        name: &str,
        spec: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = match kind.unit_kind() {
            Some(unit) => format!(
                "INSERT INTO units (name, kind, spec, created_ms, updated_ms) \
                 VALUES ($1, '{unit}', $2, $3, $3) ON CONFLICT (name) DO NOTHING"
            ),
            None => format!(
                "INSERT INTO {} (name, spec, created_ms, updated_ms) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (name) DO NOTHING",
                kind.table()
            ),
        };
        let spec = self.kept(kind, name, spec);
        self.change(&sql, name, Some(&spec), now_ms).await
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
            "UPDATE {} SET spec = $2, updated_ms = $3 WHERE name = $1{}",
            kind.table(),
            kind.and_kind()
        );
        let spec = self.kept(kind, name, spec);
        self.change(&sql, name, Some(&spec), now_ms).await
    }

    /// A document as it is kept: sealed if its kind holds secrets.
    fn kept(&self, kind: Documents, name: &str, spec: &str) -> String {
        if kind.sealed() {
            self.seal(kind.table(), name, spec)
        } else {
            spec.to_owned()
        }
    }

    /// Removes a document; `Ok(false)` if there is none of that name.
    pub async fn delete_document(&self, kind: Documents, name: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE name = $1{}",
            kind.table(),
            kind.and_kind()
        );
        self.change(&sql, name, None, 0).await
    }

    /// The kind of the unit named `name` in the database (`route`, …), if there is one.
    pub async fn unit_kind(&self, name: &str) -> Result<Option<String>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT kind FROM units WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(pool)
        .await
        .doing("reading a unit's kind"))
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

    /// Each unit an operator restarted, with its generation (how many times).
    pub async fn unit_generations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT name, generation FROM unit_restarts ORDER BY name"
        )
        .fetch_all(pool)
        .await
        .doing("reading unit restarts"))
    }

    /// Asks every host to start unit `name` anew (by `who`): its generation rises.
    pub async fn restart_unit(&self, name: &str, who: &str, now_ms: i64) -> Result<(), StoreError> {
        self.change(
            "INSERT INTO unit_restarts (name, generation, restarted_by, restarted_ms) \
             VALUES ($1, 1, $2, $3) ON CONFLICT (name) DO UPDATE SET \
             generation = unit_restarts.generation + 1, restarted_by = excluded.restarted_by, \
             restarted_ms = excluded.restarted_ms",
            name,
            Some(who),
            now_ms,
        )
        .await
        .map(drop)
    }

    /// Takes or renews the lease of daemon `name` for `holder` until `expires_ms`: whether
    /// `holder` has it (it held it already, or the last holder's has expired).
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO daemon_leases (name, holder, expires_ms) VALUES ($1, $2, $3) \
                   ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                   expires_ms = excluded.expires_ms \
                   WHERE daemon_leases.holder = excluded.holder OR daemon_leases.expires_ms < $4";
        with_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(name)
            .bind(holder)
            .bind(expires_ms)
            .bind(now_ms)
            .execute(pool)
            .await
            .doing("taking a daemon's lease")
            .map(|done| done.rows_affected() == 1))
    }

    /// Gives up `holder`'s lease of daemon `name`, so another host may take it at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM daemon_leases WHERE name = $1 AND holder = $2"
        )
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await
        .doing("releasing a daemon's lease")
        .map(drop))
    }

    /// Who holds each daemon's lease, and until when (ms since the epoch).
    pub async fn leases(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT name, holder, expires_ms FROM daemon_leases ORDER BY name"
        )
        .fetch_all(pool)
        .await
        .doing("reading daemon leases"))
    }

    /// Records that daemon `daemon` takes from events source `source`, unless it has `max`
    /// recorded already: whether it is recorded (it was, or is now).
    pub async fn record_daemon_binding(
        &self,
        daemon: &str,
        source: &str,
        max: usize,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO daemon_bindings (daemon, source, bound_ms) SELECT $1, $2, $3 \
                   WHERE (SELECT COUNT(*) FROM daemon_bindings WHERE daemon = $1) < $4 \
                   ON CONFLICT (daemon, source) DO NOTHING";
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        with_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(daemon)
            .bind(source)
            .bind(now_ms)
            .bind(max)
            .execute(pool)
            .await
            .doing("recording a daemon's binding")
            .map(drop))?;
        Ok(self
            .daemon_bindings(daemon)
            .await?
            .iter()
            .any(|s| s == source))
    }

    /// The events sources daemon `daemon` has bound, oldest first.
    pub async fn daemon_bindings(&self, daemon: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT source FROM daemon_bindings WHERE daemon = $1 ORDER BY bound_ms, source"
        )
        .bind(daemon)
        .fetch_all(pool)
        .await
        .doing("reading a daemon's bindings"))?;
        Ok(rows.into_iter().map(|(source,)| source).collect())
    }

    /// Forgets daemon `daemon`'s binding of `source` (it has been unbound).
    pub async fn forget_daemon_binding(
        &self,
        daemon: &str,
        source: &str,
    ) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM daemon_bindings WHERE daemon = $1 AND source = $2"
        )
        .bind(daemon)
        .bind(source)
        .execute(pool)
        .await
        .doing("forgetting a daemon's binding")
        .map(drop))
    }

    /// Every plugin's policy (JSON), by name.
    pub async fn plugin_policies(&self) -> Result<Vec<Document>, StoreError> {
        let rows: Vec<(String, String, i64)> = with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT name, spec, updated_ms FROM plugin_policies ORDER BY name"
        )
        .fetch_all(pool)
        .await
        .doing("reading plugin policies"))?;
        self.unseal_all(POLICIES, documents(rows))
    }

    /// Sets the policy of plugin `name`.
    pub async fn set_plugin_policy(
        &self,
        name: &str,
        spec: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let spec = self.seal(POLICIES, name, spec);
        self.change(
            "INSERT INTO plugin_policies (name, spec, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_ms = excluded.updated_ms",
            name,
            Some(&spec),
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
