//! Every queue the host uses, on every connection: what reads it, what writes to it, how full
//! it is, how fast its reader goes and how many dead letters wait beside it (as RabbitMQ's
//! management UI lists queues).

use super::{AppError, AppState};
use crate::broker::{Address, Depth};
use crate::supervisor::{Desired, UnitKind};
use crate::web::caller::{Allowed, Viewer};
use futures::StreamExt as _;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The most queues listed: past it the list says it was cut.
pub const MAX_QUEUES: usize = 500;
/// Depths read at once, and how long one may take.
const AT_ONCE: usize = 8;
const DEPTH_WAIT: Duration = Duration::from_secs(3);

/// What one unit does with a queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueUse {
    pub unit: String,
    pub kind: UnitKind,
    /// `reads`, `writes`, `dead letters` or `replies`.
    pub role: &'static str,
}

/// One queue (or Kafka topic) as the Queues page lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueRow {
    /// `connection:queue`.
    pub address: String,
    pub connection: String,
    pub queue: String,
    /// The connection's kind.
    pub transport: &'static str,
    pub used_by: Vec<QueueUse>,
    /// How full it is, as far as its transport tells (absent: it could not be read).
    pub depth: Option<Depth>,
    /// Why its depth could not be read.
    pub error: Option<String>,
    /// Messages its readers on this host took per minute, over the last minutes.
    pub taken_per_minute: Option<f64>,
    /// Messages waiting in the dead letters of the units reading it.
    pub dead_letters: Option<u64>,
    /// The dead letters' address.
    pub dead_letter_address: Option<String>,
}

/// The list, filtered, with whether it was cut at [`MAX_QUEUES`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueRow>,
    pub truncated: bool,
}

/// Every queue the host's units use and every queue its embedded connections hold, whose
/// address or unit contains `filter` (any case).
pub async fn list(
    state: &AppState,
    _: &Allowed<Viewer>,
    filter: &str,
) -> Result<QueueList, AppError> {
    let connections = state.supervisor.connections();
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let events = &state.supervisor.file().events;
    let mut uses: BTreeMap<String, Vec<QueueUse>> = BTreeMap::new();
    // The dead letters of each input, by the input's address.
    let mut dead_of: BTreeMap<String, String> = BTreeMap::new();
    for (name, unit) in desired.units(events) {
        let crate::supervisor::UnitSpec::Route {
            route,
            subscription,
        } = &unit.spec
        else {
            continue;
        };
        let mut from = route.from.clone();
        // A Kafka subscription reads the events topic itself, in a group of its own.
        if subscription.is_some()
            && let Ok(at) = Address::parse(&from)
            && let Ok(producer) = connections.producer(&at)
            && producer.capabilities().events == crate::broker::Events::Log
        {
            from = format!("{}:{}", at.connection, events.exchange);
        }
        let dead = route
            .dead_letter
            .clone()
            .unwrap_or_else(|| format!("{}.dead", route.from));
        dead_of.insert(from.clone(), dead.clone());
        for (address, role) in [
            (Some(from), "reads"),
            (route.to.clone(), "writes"),
            (Some(dead), "dead letters"),
            (route.reply_to.clone(), "replies"),
        ] {
            // An exchange and routing key is not a queue to count.
            if let Some(address) = address.filter(|a| {
                a.split_once(':')
                    .is_some_and(|(_, queue)| !queue.contains('/'))
            }) {
                uses.entry(address).or_default().push(QueueUse {
                    unit: name.clone(),
                    kind: unit.kind,
                    role,
                });
            }
        }
    }
    for name in connections.names() {
        if let Some(embedded) = connections.embedded(&name)
            && let Ok(queues) = embedded.queues().await
        {
            for queue in queues {
                uses.entry(format!("{name}:{queue}")).or_default();
            }
        }
    }
    let needle = filter.trim().to_lowercase();
    let matching: Vec<(String, Vec<QueueUse>)> = uses
        .into_iter()
        .filter(|(address, used)| {
            needle.is_empty()
                || address.to_lowercase().contains(&needle)
                || used.iter().any(|u| u.unit.to_lowercase().contains(&needle))
        })
        .collect();
    let truncated = matching.len() > MAX_QUEUES;
    let (recent, window) = crate::metrics::recent();
    let minutes = window.as_secs_f64() / 60.0;
    let rows: Vec<QueueRow> = futures::stream::iter(matching.into_iter().take(MAX_QUEUES))
        .map(|(address, used_by)| async move {
            let at = Address::parse(&address).ok();
            let transport = at
                .as_ref()
                .and_then(|at| connections.producer(at).ok())
                .map_or("unknown", |p| p.transport().kind());
            let (depth, error) = match &at {
                Some(at) => match tokio::time::timeout(DEPTH_WAIT, connections.depth(at)).await {
                    Ok(Ok(depth)) => (Some(depth), None),
                    Ok(Err(error)) => (None, Some(error.to_string())),
                    Err(_) => (None, Some("the broker did not answer within 3 s".into())),
                },
                None => (None, Some("not a connection:queue address".into())),
            };
            let (connection, queue) = address
                .split_once(':')
                .map(|(c, q)| (c.to_owned(), q.to_owned()))
                .unwrap_or_default();
            QueueRow {
                address,
                connection,
                queue,
                transport,
                used_by,
                depth,
                error,
                taken_per_minute: None,
                dead_letters: None,
                dead_letter_address: None,
            }
        })
        .buffered(AT_ONCE)
        .collect()
        .await;
    let held: BTreeMap<String, u64> = rows
        .iter()
        .filter_map(|row| {
            let depth = row.depth.as_ref()?;
            Some((row.address.clone(), depth.depth.or(depth.ready)?))
        })
        .collect();
    let rows = rows
        .into_iter()
        .map(|mut row| {
            let readers: Vec<&str> = row
                .used_by
                .iter()
                .filter(|u| u.role == "reads")
                .map(|u| u.unit.as_str())
                .collect();
            if !readers.is_empty() && minutes > 0.0 {
                let taken: f64 = readers
                    .iter()
                    .filter_map(|unit| recent.get(*unit))
                    .map(|c| c.r#in)
                    .sum();
                row.taken_per_minute = Some(taken / minutes);
            }
            if let Some(dead) = dead_of.get(&row.address) {
                row.dead_letters = held.get(dead).copied();
                row.dead_letter_address = Some(dead.clone());
            }
            row
        })
        .collect();
    Ok(QueueList {
        queues: rows,
        truncated,
    })
}
