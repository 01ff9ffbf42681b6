//! The plugin registry: every installed version of every plugin, files kept by content hash.

use super::{Doing, Store, StoreError, with_pool};
use crate::runtime::PluginInfo;
// The dynamic SQL here is built only from constants in this file.
use sqlx::AssertSqlSafe;

/// One installed version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstalledPlugin {
    /// Increases with every install: the newest version of a name has the highest.
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
);

const SELECT: &str = "SELECT p.id, p.name, p.version, p.kind, p.description, p.reusable, \
    p.wants, p.contract, p.sha256, f.size_bytes, p.installed_ms \
    FROM plugins p JOIN plugin_files f ON f.sha256 = p.sha256";

fn from_row(row: PluginRow) -> InstalledPlugin {
    let (id, name, version, kind, description, reusable, wants, contract, sha256, size, at) = row;
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
    }
}

impl Store {
    /// Records an install. Returns the version and whether it is new: installing the same file
    /// under the same name again changes nothing.
    /// `info` is what the runtime learnt when it checked `content`, so only files that passed
    /// every check are recorded.
    pub async fn install_plugin(
        &self,
        info: &PluginInfo,
        content: &[u8],
        now_ms: i64,
    ) -> Result<(InstalledPlugin, bool), StoreError> {
        let wants = serde_json::to_string(&info.wants).expect("a list of strings serialises");
        let inserted = with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await.doing("starting an install")?;
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
            let done = sqlx::query(
                "INSERT INTO plugins (name, version, kind, description, reusable, wants, \
                 contract, sha256, installed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (name, sha256) DO NOTHING",
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
            .execute(&mut *tx)
            .await
            .doing("recording a plugin version")?;
            tx.commit().await.doing("committing an install")?;
            done.rows_affected() == 1
        });
        let sql = format!("{SELECT} WHERE p.name = $1 AND p.sha256 = $2");
        let row: PluginRow = with_pool!(&self.pool, |pool| sqlx::query_as(AssertSqlSafe(
            sql.as_str()
        ))
        .bind(&info.name)
        .bind(&info.sha256)
        .fetch_one(pool)
        .await
        .doing("reading an installed plugin"))?;
        Ok((from_row(row), inserted))
    }

    /// The newest version of every plugin, by name.
    pub async fn latest_plugins(&self) -> Result<Vec<InstalledPlugin>, StoreError> {
        let sql = format!(
            "{SELECT} WHERE p.id IN (SELECT MAX(id) FROM plugins GROUP BY name) ORDER BY p.name"
        );
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
        let sql = format!("{SELECT} WHERE p.name = $1 ORDER BY p.id");
        let rows: Vec<PluginRow> = with_pool!(&self.pool, |pool| sqlx::query_as(AssertSqlSafe(
            sql.as_str()
        ))
        .bind(name)
        .fetch_all(pool)
        .await
        .doing("listing plugin versions"))?;
        Ok(rows.into_iter().map(from_row).collect())
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
