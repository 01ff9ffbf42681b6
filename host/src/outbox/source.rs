//! Sources: outbox tables in the applications' own databases (`[[sources]]`).
//!
//! A service that must send messages only if its own transaction commits (PDC's "send a
//! request's messages only if the request succeeded") writes them as rows of a `wharf_outbox`
//! table in its own PostgreSQL or MySQL/MariaDB database, in that transaction; no two-phase
//! commit. Each source runs this host's [`relay`](super::run) over that table
//! ([`store::SourceTable`](crate::store::SourceTable)), woken by PostgreSQL's `NOTIFY` as rows
//! commit, and polling every `poll_ms` besides (the only way on MySQL). Several hosts may relay
//! one table: their claims keep each row to one of them and each key in order.

use super::Table;
use crate::broker::Connections;
use crate::settings::{OutboxConfig, SourceConfig, SourceDialect};
use crate::shutdown::Shutdown;
use crate::store::{OutboxRow, SourceTable, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// A source's table, as its relay uses it.
#[derive(Clone)]
pub struct Source {
    pub config: SourceConfig,
    pub table: SourceTable,
    label: String,
    /// Wakes its relay: rows committed (PostgreSQL's notifications), or a dead row retried.
    wake: Arc<Notify>,
}

impl Source {
    /// Tells its relay there is work (a dead row made pending again).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Table for Source {
    fn label(&self) -> &str {
        &self.label
    }
    async fn release_all(&self, relay: &str) -> Result<(), StoreError> {
        self.table.release_all(relay).await
    }
    async fn claim(
        &self,
        relay: &str,
        max: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let (rows, dead) = self.table.claim(relay, max, now_ms, until_ms).await?;
        if dead > 0 {
            self.count("dead", dead);
        }
        Ok(rows)
    }
    async fn sent(&self, relay: &str, seqs: &[i64], _now_ms: i64) -> Result<(), StoreError> {
        self.table.sent(relay, seqs).await
    }
    async fn retry(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        due_ms: i64,
        behind: &[i64],
    ) -> Result<(), StoreError> {
        self.table.retry(relay, seq, error, due_ms, behind).await
    }
    async fn dead(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.table.dead(relay, seq, error, now_ms).await
    }
    fn count(&self, outcome: &'static str, n: usize) {
        crate::metrics::source_relayed(&self.config.name, outcome, n);
    }
}

/// The sources this host relays, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Sources(Arc<Vec<Source>>);

impl Sources {
    /// Opens each source's database (lazily: one that is down is reached when it is up).
    pub async fn open(
        configs: &[SourceConfig],
        max_message_bytes: usize,
    ) -> Result<Sources, StoreError> {
        let mut sources = Vec::with_capacity(configs.len());
        for config in configs {
            let table =
                SourceTable::open(&config.name, &config.url, &config.table, max_message_bytes)
                    .await?;
            sources.push(Source {
                label: format!("source:{}", config.name),
                config: config.clone(),
                table,
                wake: Arc::new(Notify::new()),
            });
        }
        Ok(Sources(Arc::new(sources)))
    }

    pub fn all(&self) -> &[Source] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&Source> {
        self.0.iter().find(|s| s.config.name == name)
    }

    /// Runs a relay for each source, as relay `name`, until `shutdown`.
    pub fn spawn(
        &self,
        config: &OutboxConfig,
        connections: &Connections,
        name: &str,
        shutdown: &Shutdown,
        tasks: &mut JoinSet<()>,
    ) {
        for source in self.0.iter() {
            let wake = source.wake.clone();
            let poll = Duration::from_millis(source.config.poll_ms.unwrap_or(1_000));
            if source.table.dialect() == SourceDialect::Postgres {
                tasks.spawn(listen(source.clone(), wake.clone(), shutdown.clone()));
            }
            tasks.spawn(super::run(
                source.clone(),
                wake,
                poll,
                Arc::new(config.clone()),
                connections.clone(),
                name.to_owned(),
                shutdown.clone(),
            ));
        }
    }

    /// Each source's backlog; one whose table cannot be read within 2 s says why.
    pub async fn stats(&self) -> Vec<crate::store::SourceStats> {
        let reads = self.0.iter().map(|source| async move {
            let read = tokio::time::timeout(Duration::from_secs(2), source.table.stats()).await;
            match read {
                Ok(Ok(stats)) => stats,
                Ok(Err(error)) => unreadable(source, error.to_string()),
                Err(_) => unreadable(source, "no answer within 2 s".into()),
            }
        });
        futures::future::join_all(reads).await
    }

    pub async fn close(&self) {
        for source in self.0.iter() {
            source.table.close().await;
        }
    }
}

/// Wakes `source`'s relay at each notification of new rows (PostgreSQL), listening again
/// when the connection is lost; returns at once on MySQL, which the relay polls.
async fn listen(source: Source, wake: Arc<Notify>, mut shutdown: Shutdown) {
    loop {
        let mut listener = match source.table.listen().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(source = %source.config.name, %error, "cannot listen for new outbox rows; polling meanwhile");
                tokio::select! {
                    _ = shutdown.fired() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.fired() => return,
                got = listener.recv() => {
                    wake.notify_one();
                    if let Err(error) = got {
                        tracing::warn!(source = %source.config.name, %error, "lost the notifications of new outbox rows; listening again");
                        break;
                    }
                }
            }
        }
    }
}

fn unreadable(source: &Source, why: String) -> crate::store::SourceStats {
    crate::store::SourceStats {
        source: source.config.name.clone(),
        unreadable: Some(why),
        ..Default::default()
    }
}
