//! The outbox: messages committed to the host's database first, then sent.
//!
//! Whoever must not lose a message (a durable route, `POST /api/v1/outbox`, `wharf publish
//! --durable`) commits it through [`Outbox::commit`], in one transaction with the rest of its
//! work (see `store::UnitOfWork`), and only then says yes. The [`relay`] claims pending rows
//! in batches, sends them with each broker's confirm, and marks them sent:
//!
//! - *order*: rows of one destination and message key are sent one after another in the order
//!   they were committed; a row waiting out a retry holds back the rows of its key behind it.
//!   Rows without a key keep no order and go out together.
//! - *retries*: a send that may pass later (a broker down, a timeout) is tried again after a
//!   capped exponential backoff kept in the row, so it survives a restart. A destination that
//!   refuses a row for good (a field no broker takes, an address that is not valid) marks it
//!   dead with the reason; it stays until someone retries or deletes it.
//! - *several relays* (hosts on one PostgreSQL database) share the backlog: a claim is the
//!   relay's name and a deadline, claims are made one relay at a time, and a dead relay's
//!   rows come back when its claims run out. In the normal case no row is sent twice; after a
//!   crash between a broker's confirm and the row being marked sent, it is sent again with the
//!   same message id, for consumers to deduplicate.
//!
//! The same relay sends an application's own outbox table (`[[sources]]`, [`source`]): the
//! rows a service commits in its own database with its own work. [`Table`] is what a relay
//! needs of either.

use crate::broker::{Address, BrokerError, Connections};
use crate::config::OutboxConfig;
use crate::message::{Message, now_ms};
use crate::runtime::KvLimits;
use crate::shutdown::Shutdown;
use crate::store::{Committed, OutboxRow, OutboxStats, Store, StoreError, UnitOfWork};
use futures::StreamExt as _;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub mod source;

/// How often an idle relay looks for rows it was not woken for (another host's, or a retry
/// coming due).
const POLL: Duration = Duration::from_millis(500);

/// The outbox of one host. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    limits: KvLimits,
    config: Arc<OutboxConfig>,
    /// Woken when this host commits rows, so its relay sends them at once.
    wake: Arc<Notify>,
    /// The last stats read, and when: `/metrics` is open to anyone, so scrapes share one
    /// read of the table per [`STATS_FRESH`], made by one of them while the others wait.
    /// A failed read is kept as long, so a database that is down is asked once per period.
    cached: Arc<tokio::sync::Mutex<Option<StatsRead>>>,
    /// The applications' outbox tables this host relays.
    sources: source::Sources,
}

/// Stats as read at an instant, or why they could not be.
type StatsRead = (std::time::Instant, Result<OutboxStats, String>);

/// How long read stats are good for.
const STATS_FRESH: Duration = Duration::from_secs(2);

impl Outbox {
    pub fn new(store: Store, limits: KvLimits, config: OutboxConfig) -> Outbox {
        Outbox {
            store,
            limits,
            config: Arc::new(config),
            wake: Arc::new(Notify::new()),
            cached: Arc::default(),
            sources: source::Sources::default(),
        }
    }

    /// This outbox, relaying `sources` too.
    pub fn with_sources(self, sources: source::Sources) -> Outbox {
        Outbox { sources, ..self }
    }

    /// The applications' outbox tables this host relays.
    pub fn sources(&self) -> &source::Sources {
        &self.sources
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Commits `work` in one transaction; its messages are then this host's relay's to send.
    pub async fn commit(&self, work: &UnitOfWork) -> Result<Committed, StoreError> {
        let committed = self
            .store
            .commit_work(work, &self.limits, now_ms() as i64)
            .await?;
        if committed == Committed::Done && !work.outbox.is_empty() {
            self.wake.notify_one();
        }
        Ok(committed)
    }

    /// Tells this host's relay there is work (a dead message made pending again).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Drops the stats last read: someone changed a row by hand (retried or deleted a dead
    /// one) and the next read shows it.
    pub async fn stats_changed(&self) {
        *self.cached.lock().await = None;
    }

    /// The backlog, read at most [`STATS_FRESH`] ago.
    pub async fn stats(&self) -> Result<OutboxStats, StoreError> {
        let mut cached = self.cached.lock().await;
        let read = match &*cached {
            Some((at, read)) if at.elapsed() < STATS_FRESH => read.clone(),
            _ => {
                let mut read = self
                    .store
                    .outbox_stats(now_ms() as i64)
                    .await
                    .map_err(|e| e.to_string());
                if let Ok(stats) = &mut read {
                    stats.sources = self.sources.stats().await;
                }
                *cached = Some((std::time::Instant::now(), read.clone()));
                read
            }
        };
        read.map_err(StoreError::Invalid)
    }

    /// Prunes sent rows and old inbox records now and then, until `shutdown`.
    pub async fn prune(self, mut shutdown: Shutdown) {
        let every = Duration::from_secs(60);
        loop {
            let now = now_ms() as i64;
            let keep_sent = self.config.keep_sent_secs.saturating_mul(1000) as i64;
            let keep_handled = self.config.keep_handled_secs.saturating_mul(1000) as i64;
            match self
                .store
                .outbox_prune(now - keep_sent, now - keep_handled)
                .await
            {
                Ok((sent, handled)) if sent + handled > 0 => {
                    tracing::debug!(sent, handled, "pruned the outbox and the inbox")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "pruning the outbox failed"),
            }
            tokio::select! {
                _ = shutdown.fired() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// The delay before try `attempts + 1` of a row: doubling from `backoff_ms`, capped, with up
/// to 10% jitter so that rows failing together do not all come back together.
fn retry_delay(config: &OutboxConfig, attempts: i64) -> Duration {
    let attempts = u32::try_from(attempts.clamp(0, 30)).unwrap_or(30);
    crate::backoff::retry_delay(config.backoff_ms, config.max_backoff_ms, attempts)
}

/// A table of messages a relay sends: this host's outbox, or an application's. Each call is
/// one of the relay's steps; the rules (claims, order per key, retries, dead rows) are the
/// relay's and the same for every table.
pub trait Table: Send + Sync + 'static {
    /// How the relay's logs and counters name it: `outbox`, or `source:NAME`.
    fn label(&self) -> &str;
    /// Lets go every row `relay` holds (a relay starting again after its host died).
    fn release_all(&self, relay: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Claims up to `max` pending rows for `relay` until `until_ms`, in `seq` order.
    fn claim(
        &self,
        relay: &str,
        max: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = Result<Vec<OutboxRow>, StoreError>> + Send;
    /// Rows `seqs` were confirmed by their brokers.
    fn sent(
        &self,
        relay: &str,
        seqs: &[i64],
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Row `seq` goes again from `due_ms`; rows `behind` (its key's, in the claim) are let go.
    fn retry(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        due_ms: i64,
        behind: &[i64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Row `seq` is refused for good: kept dead with `error`.
    fn dead(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Counts what the relay did, for `/metrics`: `sent`, `retried` or `dead`.
    fn count(&self, outcome: &'static str, n: usize);
}

/// This host's own outbox, in its database.
impl Table for Store {
    fn label(&self) -> &str {
        "outbox"
    }
    async fn release_all(&self, relay: &str) -> Result<(), StoreError> {
        self.outbox_release_all(relay).await
    }
    async fn claim(
        &self,
        relay: &str,
        max: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox_claim(relay, max, now_ms, until_ms).await
    }
    async fn sent(&self, relay: &str, seqs: &[i64], now_ms: i64) -> Result<(), StoreError> {
        self.outbox_sent(relay, seqs, now_ms).await
    }
    async fn retry(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        due_ms: i64,
        behind: &[i64],
    ) -> Result<(), StoreError> {
        self.outbox_retry(relay, seq, error, due_ms, behind).await
    }
    async fn dead(
        &self,
        relay: &str,
        seq: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.outbox_dead(relay, seq, error, now_ms).await
    }
    fn count(&self, outcome: &'static str, n: usize) {
        match outcome {
            "sent" => crate::metrics::outbox_sent(n),
            "retried" => crate::metrics::outbox_retried(),
            _ => crate::metrics::outbox_dead(),
        }
    }
}

/// Sends the outbox's pending rows until `shutdown`, as relay `name` (unique per host).
pub async fn relay(outbox: Outbox, connections: Connections, name: String, shutdown: Shutdown) {
    run(
        outbox.store.clone(),
        outbox.wake.clone(),
        POLL,
        outbox.config.clone(),
        connections,
        name,
        shutdown,
    )
    .await
}

/// Sends `table`'s pending rows until `shutdown`, as relay `name` (unique per host), woken by
/// `wake` when rows come and looking by itself every `poll` besides.
pub async fn run<T: Table>(
    table: T,
    wake: Arc<Notify>,
    poll: Duration,
    config: Arc<OutboxConfig>,
    connections: Connections,
    name: String,
    mut shutdown: Shutdown,
) {
    let label = table.label().to_owned();
    tracing::info!(relay = %name, table = %label, "outbox relay started");
    // Claims under this name are an earlier run's (the name is this machine's and address's,
    // and only one process listens there): take them back now rather than when they run out.
    if let Err(error) = table.release_all(&name).await {
        tracing::warn!(table = %label, %error, "cannot take back an earlier run's outbox claims; they come back when they run out");
    }
    let mut failures = 0u32;
    loop {
        if shutdown.is_fired() {
            break;
        }
        let now = now_ms() as i64;
        let claimed = table
            .claim(
                &name,
                config.batch as i64,
                now,
                now + config.claim_ms as i64,
            )
            .await;
        let rows = match claimed {
            Ok(rows) => {
                failures = 0;
                rows
            }
            Err(error) => {
                failures += 1;
                let wait = retry_delay(&config, i64::from(failures));
                tracing::warn!(table = %label, %error, retry_in_ms = wait.as_millis() as u64, "the outbox relay cannot read its table; trying again");
                tokio::select! {
                    _ = shutdown.fired() => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if rows.is_empty() {
            tokio::select! {
                _ = shutdown.fired() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        send_batch(&table, &config, &connections, &name, rows).await;
    }
    tracing::info!(relay = %name, table = %label, "outbox relay stopped");
}

/// What became of one row.
enum Outcome {
    Sent(i64),
    /// To try again later, with the error; the rows behind it of its key are let go.
    Again {
        seq: i64,
        attempts: i64,
        error: String,
        behind: Vec<i64>,
    },
    Dead(i64, String),
}

/// Sends one claimed batch: each key's rows in order, keys and unkeyed rows together.
async fn send_batch<T: Table>(
    table: &T,
    config: &OutboxConfig,
    connections: &Connections,
    name: &str,
    rows: Vec<OutboxRow>,
) {
    // Chains of rows that must go in order; an unkeyed row is a chain of its own.
    let mut chains: Vec<Vec<OutboxRow>> = Vec::new();
    let mut by_key: BTreeMap<(String, String), usize> = BTreeMap::new();
    for row in rows {
        match &row.order_key {
            Some(key) => {
                let at = *by_key
                    .entry((row.destination.clone(), key.clone()))
                    .or_insert_with(|| {
                        chains.push(Vec::new());
                        chains.len() - 1
                    });
                chains[at].push(row);
            }
            None => chains.push(vec![row]),
        }
    }
    // A connection found down in this batch is not tried again for the rest of it.
    let down: Arc<Mutex<HashSet<String>>> = Arc::default();
    // A send that outlives half the claim is given up, so the claim never runs out under it.
    let limit = Duration::from_millis(config.claim_ms / 2);
    let outcomes: Vec<Outcome> = futures::stream::iter(chains)
        .map(|chain| {
            let down = down.clone();
            async move { send_chain(connections, chain, &down, limit).await }
        })
        .buffer_unordered(config.batch.max(1))
        .flat_map(futures::stream::iter)
        .collect()
        .await;

    let now = now_ms() as i64;
    let mut sent = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Sent(seq) => sent.push(seq),
            Outcome::Again {
                seq,
                attempts,
                error,
                behind,
            } => {
                let due = now + retry_delay(config, attempts).as_millis() as i64;
                table.count("retried", 1);
                if let Err(e) = table.retry(name, seq, &error, due, &behind).await {
                    tracing::warn!(error = %e, "cannot put an outbox row back; its claim runs out and it is sent then");
                }
            }
            Outcome::Dead(seq, error) => {
                tracing::warn!(table = table.label(), seq, %error, "the destination refuses an outbox message for good; it is kept as dead");
                table.count("dead", 1);
                if let Err(e) = table.dead(name, seq, &error, now).await {
                    tracing::warn!(error = %e, "cannot mark an outbox row dead; it is tried again");
                }
            }
        }
    }
    if !sent.is_empty() {
        table.count("sent", sent.len());
        // Until this is written the rows are claimed: if it fails, they are sent again when
        // the claim runs out (the same ids: consumers can deduplicate).
        if let Err(error) = table.sent(name, &sent, now).await {
            tracing::warn!(%error, rows = sent.len(), "cannot mark outbox rows sent; they will be sent again");
        }
    }
}

/// Sends `chain`'s rows (one destination and key) in order, all in flight at once where the
/// transport keeps their order, and stops at the first that must wait: it and the rows
/// behind it are tried again later, in order.
async fn send_chain(
    connections: &Connections,
    chain: Vec<OutboxRow>,
    down: &Mutex<HashSet<String>>,
    limit: Duration,
) -> Vec<Outcome> {
    let Some(destination) = chain.first().map(|row| row.destination.clone()) else {
        return Vec::new();
    };
    let seqs: Vec<(i64, i64)> = chain.iter().map(|row| (row.seq, row.attempts)).collect();
    let messages: Vec<Message> = chain.into_iter().map(|row| row.message).collect();
    let results: Vec<Result<(), BrokerError>> = match Address::parse(&destination) {
        Err(e) => vec![Err(BrokerError::from(e))],
        Ok(to) if !connections.contains(&to.connection) => vec![Err(BrokerError::Unavailable {
            connection: to.connection.clone(),
            detail: "this host has no such connection".into(),
        })],
        Ok(to)
            if down
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&to.connection) =>
        {
            vec![Err(BrokerError::Unavailable {
                connection: to.connection.clone(),
                detail: "down".into(),
            })]
        }
        Ok(to) => {
            match tokio::time::timeout(limit, connections.send_ordered(&to, messages)).await {
                Ok(results) => {
                    if results
                        .iter()
                        .any(|r| matches!(r, Err(BrokerError::Unavailable { .. })))
                    {
                        down.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(to.connection.clone());
                    }
                    results
                }
                Err(_) => vec![Err(BrokerError::Unavailable {
                    connection: to.connection.clone(),
                    detail: format!("no confirm within {} ms", limit.as_millis()),
                })],
            }
        }
    };
    let mut outcomes = Vec::with_capacity(seqs.len());
    let mut results = results.into_iter();
    let mut rows = seqs.into_iter();
    while let Some((seq, attempts)) = rows.next() {
        // A row with no result was not sent: the chain stopped before it.
        let result = results.next().unwrap_or_else(|| {
            Err(BrokerError::Broker(
                "not sent: an earlier message of its key must go first".into(),
            ))
        });
        match result {
            Ok(()) => outcomes.push(Outcome::Sent(seq)),
            Err(e) if e.is_retryable() => {
                outcomes.push(Outcome::Again {
                    seq,
                    attempts,
                    error: e.to_string(),
                    behind: rows.map(|(seq, _)| seq).collect(),
                });
                break;
            }
            Err(e) => outcomes.push(Outcome::Dead(seq, e.to_string())),
        }
    }
    outcomes
}
