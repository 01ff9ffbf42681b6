//! The database: the only module that runs SQL.
//!
//! SQLite by default (`sqlite://wharf.db`, WAL), PostgreSQL by URL (`postgres://…`). The
//! schema is the same on both, in numbered migrations per dialect (`host/migrations/`), run at
//! start-up and never edited once landed. Queries are written once with `$n` placeholders, which
//! both dialects accept, and run on either pool through [`with_pool!`]; where the dialects differ
//! (PostgreSQL's `FOR UPDATE SKIP LOCKED`) the text is chosen by [`Dialect`].

mod audit;
mod auth;
mod codec;
mod control;
mod kv;
mod outbox;
mod plugins;
pub(crate) mod queue;
mod source;
mod topics;

pub use audit::{AuditEntry, AuditFilter, NewAudit};
pub use auth::{ApiToken, User};
pub use control::{ChangeListener, Document, Documents};
pub use outbox::{
    Committed, DeadOutboxRow, DestinationBacklog, OutboxEntry, OutboxRow, OutboxStats, UnitOfWork,
};
pub use plugins::{InstalledPlugin, Upload};
pub use queue::{DEFAULT_MAX_DELIVERIES, QueueOptions, QueueStats};
pub use source::{
    DeadSourceRow, NOTIFY_CHANNEL, SourceStats, SourceTable, schema as source_schema,
};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

/// What went wrong in the store, by step.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL `{url}` is not usable: {problem}")]
    Url { url: String, problem: String },
    #[error("cannot open the database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot migrate the database {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error while {doing}: {source}")]
    Query {
        doing: &'static str,
        source: sqlx::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sealed(#[from] crate::secrets::SecretError),
}

impl StoreError {
    /// Whether the database refused what was written (a value it cannot hold, a constraint),
    /// rather than failing to run it at all (connection lost, pool or lock timeout): only such
    /// a write fails the same way when tried alone.
    pub fn is_refused_data(&self) -> bool {
        match self {
            StoreError::Query {
                source: sqlx::Error::Database(e),
                ..
            } => {
                let code = e.code().unwrap_or_default();
                // PostgreSQL: SQLSTATE classes 22 (data exception) and 23 (integrity
                // constraint). SQLite: TOOBIG (18), CONSTRAINT (19), MISMATCH (20), RANGE (25).
                code.starts_with("22")
                    || code.starts_with("23")
                    || matches!(code.as_ref(), "18" | "19" | "20" | "25")
            }
            StoreError::Query {
                source: sqlx::Error::Encode(_),
                ..
            } => true,
            _ => false,
        }
    }
}

/// Adds what the store was doing to a sqlx error.
pub(crate) trait Doing<T> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError>;
}

impl<T> Doing<T> for Result<T, sqlx::Error> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { doing, source })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store has. The body is compiled once
/// per dialect, so the same query text and binds serve both.
macro_rules! with_pool {
    ($store_pool:expr, |$pool:ident| $body:expr) => {
        match $store_pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Dialect {
    /// How a transaction that writes begins. SQLite's default (deferred) `BEGIN` takes the
    /// write lock only at the first write, and a transaction that read first then fails with
    /// BUSY instead of waiting; `BEGIN IMMEDIATE` waits for the lock up front.
    /// Raises the desired state's revision; on PostgreSQL also notifies every host listening
    /// (delivered when the transaction commits).
    pub(crate) fn bump_revision(self) -> &'static str {
        match self {
            Dialect::Sqlite => "UPDATE control_revision SET revision = revision + 1 WHERE id = 1",
            Dialect::Postgres => {
                "WITH raised AS (UPDATE control_revision SET revision = revision + 1 WHERE id = 1 \
                 RETURNING revision) SELECT pg_notify('wharf_desired_state', revision::text) FROM raised"
            }
        }
    }

    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }
}

/// A handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    /// The database URL without its password.
    url: String,
    /// Seals what the desired state holds of secrets (connections, plugin policies) before it
    /// is written, and opens it when read. Without one (tools, tests), documents are written
    /// as they are, and sealed ones cannot be read.
    keyring: Option<std::sync::Arc<crate::secrets::Keyring>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`:
    /// `sqlite://PATH` (relative to the working directory), `sqlite::memory:`, or
    /// `postgres://USER@HOST:PORT/DB`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        // Errors and `Debug` show the URL without its password.
        let shown = crate::redact::redact(url);
        let bad = |problem: String| StoreError::Url {
            url: shown.clone(),
            problem: problem.replace(url, &shown),
        };
        let connect = |source| StoreError::Connect {
            url: shown.clone(),
            source,
        };
        let migrate = |source| StoreError::Migrate {
            url: shown.clone(),
            source,
        };
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad(e.to_string()))?
                .create_if_missing(true)
                // WAL lets readers run beside the one writer. FULL makes every commit reach
                // the disk before a publisher hears yes; commits are batched, so it is cheap.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let in_memory = url.contains(":memory:");
            let pool = SqlitePoolOptions::new()
                // An in-memory database exists once per connection: keep exactly one.
                .max_connections(if in_memory { 1 } else { 8 })
                .min_connections(if in_memory { 1 } else { 0 })
                .idle_timeout(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(1800))
                })
                .connect_with(options)
                .await
                .map_err(connect)?;
            sqlx::migrate!("./migrations/sqlite")
                .run(&pool)
                .await
                .map_err(migrate)?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(connect)?;
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(migrate)?;
            Pool::Postgres(pool)
        } else {
            return Err(bad(
                "expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE".into(),
            ));
        };
        Ok(Store {
            pool,
            url: shown,
            keyring: None,
        })
    }

    /// The same store, sealing secrets with `keyring`.
    pub fn with_keyring(mut self, keyring: std::sync::Arc<crate::secrets::Keyring>) -> Store {
        self.keyring = Some(keyring);
        self
    }

    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ())
            .doing("checking the database"))
    }

    /// Closes every connection; pending writes finish first.
    pub async fn close(&self) {
        with_pool!(&self.pool, |pool| pool.close().await)
    }
}
