//! The plugin registry: every uploaded version of every plugin, files kept by content hash,
//! each version enabled or not, and each name's policy (grants, limits, config).
//!
//! Rows with `source = 'file'` are records older hosts kept of plugins loaded from their files;
//! they are kept but never listed or run from here: a host's file plugins are its own.

use super::{Doing, Store, StoreError, with_pool};
use crate::contract::PluginInfo;
// The dynamic SQL here is built only from constants in this file.
use sqlx::AssertSqlSafe;

/// One uploaded version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstalledPlugin {
    /// Increases with every upload: the newest version of a name has the highest.
    pub id: i64,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub description: String,
    pub reusable: bool,
    pub wants: Vec<String>,
    pub contract: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub installed_ms: i64,
    /// Whether this version may serve routes.
    pub enabled: bool,
    /// Who uploaded it (a user or token name).
    pub uploaded_by: Option<String>,
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Upload {
    /// A new version was stored.
    New(InstalledPlugin),
    /// This very file is stored under this name already; nothing changed.
    Same(InstalledPlugin),
    /// The name and version are taken by a different file: versions are immutable.
    VersionTaken(InstalledPlugin),
}

type PluginRow = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
);

const SELECT: &str = "SELECT p.id, p.name, p.version, p.kind, p.description, p.reusable, \
    p.wants, p.contract, p.sha256, f.size_bytes, p.installed_ms, p.enabled, p.uploaded_by \
    FROM plugins p JOIN plugin_files f ON f.sha256 = p.sha256 WHERE p.source = 'api'";

fn from_row(row: PluginRow) -> InstalledPlugin {
    let (id, name, version, kind, description, reusable, wants, contract, sha256, size, at, on, by) =
        row;
    InstalledPlugin {
        id,
        name,
        version,
        kind,
        description,
        reusable: reusable != 0,
        wants: serde_json::from_str(&wants).unwrap_or_default(),
        contract,
        sha256,
        size_bytes: size,
        installed_ms: at,
        enabled: on != 0,
        uploaded_by: by,
    }
}

impl Store {
    /// Stores an uploaded version, enabled or not. `info` is what the runtime learnt when it
    /// checked `content`, so only files that passed every check are stored.
    pub async fn upload_plugin(
        &self,
        info: &PluginInfo,
        content: &[u8],
        enabled: bool,
        uploaded_by: &str,
        now_ms: i64,
    ) -> Result<Upload, StoreError> {
        let wants = serde_json::to_string(&info.wants).expect("a list of strings serialises");
        let dialect = self.dialect();
        let taken: Option<String> = with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting an upload")?;
            let taken: Option<String> = sqlx::query_scalar(
                "SELECT sha256 FROM plugins WHERE name = $1 AND version = $2 AND source = 'api'",
            )
            .bind(&info.name)
            .bind(&info.version)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a plugin version")?;
            if taken.is_none() {
                sqlx::query(
                    "INSERT INTO plugin_files (sha256, size_bytes, content, created_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(&info.sha256)
                .bind(content.len() as i64)
                .bind(content)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .doing("storing a plugin file")?;
                // An old host's record of the same file loaded from its plugin_dir gives way.
                sqlx::query(
                    "DELETE FROM plugins WHERE name = $1 AND sha256 = $2 AND source = 'file'",
                )
                .bind(&info.name)
                .bind(&info.sha256)
                .execute(&mut *tx)
                .await
                .doing("replacing a file record")?;
                sqlx::query(
                    "INSERT INTO plugins (name, version, kind, description, reusable, wants, \
                     contract, sha256, installed_ms, enabled, source, uploaded_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'api', $11)",
                )
                .bind(&info.name)
                .bind(&info.version)
                .bind(info.kind.as_str())
                .bind(&info.description)
                .bind(i64::from(info.reusable))
                .bind(&wants)
                .bind(&info.contract)
                .bind(&info.sha256)
                .bind(now_ms)
                .bind(i64::from(enabled))
                .bind(uploaded_by)
                .execute(&mut *tx)
                .await
                .doing("recording a plugin version")?;
                sqlx::query(dialect.bump_revision())
                    .execute(&mut *tx)
                    .await
                    .doing("raising the revision")?;
            }
            tx.commit().await.doing("committing an upload")?;
            taken
        });
        let stored = self
            .plugin_version(&info.name, &info.version)
            .await?
            .ok_or_else(|| StoreError::Invalid("an uploaded version vanished".into()))?;
        Ok(match taken {
            None => Upload::New(stored),
            Some(sha) if sha == info.sha256 => Upload::Same(stored),
            Some(_) => Upload::VersionTaken(stored),
        })
    }

    /// One version of `name`.
    pub async fn plugin_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<InstalledPlugin>, StoreError> {
        let sql = format!("{SELECT} AND p.name = $1 AND p.version = $2");
        let row: Option<PluginRow> = with_pool!(&self.pool, |pool| sqlx::query_as(AssertSqlSafe(
            sql.as_str()
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(pool)
        .await
        .doing("reading a plugin version"))?;
        Ok(row.map(from_row))
    }

    /// Every uploaded version of every plugin, by name, oldest first.
    pub async fn all_plugin_versions(&self) -> Result<Vec<InstalledPlugin>, StoreError> {
        let sql = format!("{SELECT} ORDER BY p.name, p.id");
        let rows: Vec<PluginRow> = with_pool!(&self.pool, |pool| sqlx::query_as(AssertSqlSafe(
            sql.as_str()
        ))
        .fetch_all(pool)
        .await
        .doing("listing plugins"))?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Every version of `name`, oldest first.
    pub async fn plugin_versions(&self, name: &str) -> Result<Vec<InstalledPlugin>, StoreError> {
        let sql = format!("{SELECT} AND p.name = $1 ORDER BY p.id");
        let rows: Vec<PluginRow> = with_pool!(&self.pool, |pool| sqlx::query_as(AssertSqlSafe(
            sql.as_str()
        ))
        .bind(name)
        .fetch_all(pool)
        .await
        .doing("listing plugin versions"))?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Enables or disables versions of `name`, in one transaction: `changes` pairs a version
    /// with its new state. `Ok(false)` if one of them does not exist (nothing changes then).
    pub async fn set_plugin_enabled(
        &self,
        name: &str,
        changes: &[(&str, bool)],
    ) -> Result<bool, StoreError> {
        let dialect = self.dialect();
        with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting a plugin change")?;
            for (version, enabled) in changes {
                let done = sqlx::query(
                    "UPDATE plugins SET enabled = $1 \
                     WHERE name = $2 AND version = $3 AND source = 'api'",
                )
                .bind(i64::from(*enabled))
                .bind(name)
                .bind(*version)
                .execute(&mut *tx)
                .await
                .doing("enabling a plugin version")?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
            }
            sqlx::query(dialect.bump_revision())
                .execute(&mut *tx)
                .await
                .doing("raising the revision")?;
            tx.commit().await.doing("committing a plugin change")?;
            Ok(true)
        })
    }

    /// Removes one version of `name` (its file too, once nothing else names it).
    /// `Ok(false)` if there is no such version.
    pub async fn delete_plugin_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<bool, StoreError> {
        let dialect = self.dialect();
        with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting a plugin removal")?;
            let sha: Option<String> = sqlx::query_scalar(
                "DELETE FROM plugins WHERE name = $1 AND version = $2 AND source = 'api' \
                 RETURNING sha256",
            )
            .bind(name)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .doing("removing a plugin version")?;
            let Some(sha) = sha else {
                return Ok(false);
            };
            sqlx::query(
                "DELETE FROM plugin_files WHERE sha256 = $1 \
                 AND NOT EXISTS (SELECT 1 FROM plugins WHERE sha256 = $1)",
            )
            .bind(&sha)
            .execute(&mut *tx)
            .await
            .doing("removing a plugin file")?;
            sqlx::query(dialect.bump_revision())
                .execute(&mut *tx)
                .await
                .doing("raising the revision")?;
            tx.commit().await.doing("committing a plugin removal")?;
            Ok(true)
        })
    }

    /// The file with this content hash.
    pub async fn plugin_file(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT content FROM plugin_files WHERE sha256 = $1"
        )
        .bind(sha256)
        .fetch_optional(pool)
        .await
        .doing("reading a plugin file"))
    }
}
