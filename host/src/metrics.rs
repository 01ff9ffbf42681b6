//! What `GET /metrics` tells Prometheus, through the `metrics` facade and its Prometheus
//! recorder (installed once per process). Counters and histograms are recorded where things
//! happen (`router`); the gauges of connections and units are set from the supervisor's status
//! when scraped, so they are never stale.
//!
//! - `wharf_route_messages_in_total{route}`: deliveries a route took;
//! - `wharf_route_messages_out_total{route}`: messages it sent (outputs, publications, replies);
//! - `wharf_route_messages_failed_total{route}`: attempts that failed;
//! - `wharf_route_messages_retried_total{route}`: failed attempts re-queued to try again;
//! - `wharf_route_messages_dead_lettered_total{route}`;
//! - `wharf_plugin_call_seconds{plugin}`: each plugin call's wall time (histogram);
//! - `wharf_plugin_http_requests_total{plugin, outcome}`: plugins' outbound HTTP requests
//!   (`sent`: an answer came, whatever its status; `failed`: the network or the server
//!   failed; `denied`: no `http:` grant names the origin; `limited`: past a bound). The
//!   origin is not a label: plugins choose URLs;
//! - `wharf_connection_up{connection}`: 1 up, 0 down;
//! - `wharf_units{kind, state}`: units (`route`, `subscription`) by state;
//! - `wharf_http_ingress_requests_total{connection, status}`: ingress requests, by answer;
//! - `wharf_http_egress_requests_total{connection, status}`: egress requests, by answer;
//! - `wharf_rpc_calls_total{outcome}`: calls through the correlation table (`reply`,
//!   `timeout`, `error`), and `wharf_rpc_in_flight`, the calls waiting now;
//! - `wharf_password_hashes_total`: password hashes and checks run (each a few milliseconds
//!   of a core, on purpose);
//! - `wharf_sign_ins_total{outcome}`: sign-in attempts (`signed_in`, `wrong_password`,
//!   `unknown_name`, `throttled`, `limited`): what a flood of made-up names shows as, since
//!   the audit log names only users who exist.
//!
//! - `wharf_outbox_sent_total`, `wharf_outbox_retried_total`, `wharf_outbox_dead_total`:
//!   what this host's relay did with outbox messages;
//! - `wharf_source_messages_total{source,outcome}`, `wharf_source_pending{source}`,
//!   `wharf_source_dead{source}`: the applications' outbox tables (`[[sources]]`);
//! - `wharf_outbox_pending{connection}`, `wharf_outbox_oldest_age_seconds{connection}`,
//!   `wharf_outbox_dead{connection}`: the outbox's backlog in the database (every host's),
//!   read when scraped;
//! - `wharf_events_published_total`: model events this host published straight to its
//!   events exchange (through the API, the CLI or the Send page); durable ones count in the
//!   outbox's counters. The routing key is not a label: callers choose it;
//! - `wharf_inbox_duplicates_total{route}`: redelivered inputs a route's inbox recognised and
//!   acked without running the chain again;
//! - `wharf_leases_taken_total`: messages taken through the API under a lease;
//!   `wharf_leases_settled_total{outcome}`: how their leases ended (`ack`, `requeue`,
//!   `dead_letter`, `expired` at the deadline, `shutdown` when the host stopped); and
//!   `wharf_leases_held`, the leases this host holds now; `wharf_lease_streams`, the
//!   workers' lease streams open now. The queue is not a label: callers choose queues.
//!
//! *Invariant*: every label value names something the host knows (a route, a plugin, a
//! connection, a status code, an outcome): nothing a caller sends adds a series. Ingress to a
//! connection that does not exist is counted without a `connection` label.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub const MESSAGES_IN: &str = "wharf_route_messages_in_total";
pub const MESSAGES_OUT: &str = "wharf_route_messages_out_total";
pub const MESSAGES_FAILED: &str = "wharf_route_messages_failed_total";
pub const MESSAGES_RETRIED: &str = "wharf_route_messages_retried_total";
pub const MESSAGES_DEAD_LETTERED: &str = "wharf_route_messages_dead_lettered_total";
pub const PLUGIN_CALL_SECONDS: &str = "wharf_plugin_call_seconds";
pub const PLUGIN_HTTP_REQUESTS: &str = "wharf_plugin_http_requests_total";
pub const CONNECTION_UP: &str = "wharf_connection_up";
pub const UNITS: &str = "wharf_units";
pub const HTTP_INGRESS: &str = "wharf_http_ingress_requests_total";
pub const HTTP_EGRESS: &str = "wharf_http_egress_requests_total";
pub const RPC_CALLS: &str = "wharf_rpc_calls_total";
pub const RPC_IN_FLIGHT: &str = "wharf_rpc_in_flight";
pub const PASSWORD_HASHES: &str = "wharf_password_hashes_total";
pub const SIGN_INS: &str = "wharf_sign_ins_total";
pub const OUTBOX_SENT: &str = "wharf_outbox_sent_total";
pub const OUTBOX_RETRIED: &str = "wharf_outbox_retried_total";
pub const OUTBOX_DEAD_TOTAL: &str = "wharf_outbox_dead_total";
pub const OUTBOX_PENDING: &str = "wharf_outbox_pending";
pub const OUTBOX_OLDEST: &str = "wharf_outbox_oldest_age_seconds";
pub const OUTBOX_DEAD: &str = "wharf_outbox_dead";
pub const SOURCE_RELAYED: &str = "wharf_source_messages_total";
pub const SOURCE_PENDING: &str = "wharf_source_pending";
pub const SOURCE_DEAD: &str = "wharf_source_dead";
pub const INBOX_DUPLICATES: &str = "wharf_inbox_duplicates_total";
pub const EVENTS_PUBLISHED: &str = "wharf_events_published_total";
pub const LEASES_TAKEN: &str = "wharf_leases_taken_total";
pub const LEASES_SETTLED: &str = "wharf_leases_settled_total";
pub const LEASES_HELD: &str = "wharf_leases_held";
pub const LEASE_STREAMS: &str = "wharf_lease_streams";
pub const DAEMON_STARTS: &str = "wharf_daemon_starts_total";
pub const DAEMON_FAILURES: &str = "wharf_daemon_failures_total";
pub const DAEMON_RETURNED: &str = "wharf_daemon_returned_messages_total";

/// Plugin calls take from microseconds to seconds.
const CALL_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. If another recorder was installed first
/// (an embedding program's), Wharf's metrics go there and this handle renders only its own.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(PLUGIN_CALL_SECONDS.into()),
                &CALL_BUCKETS,
            )
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows only Wharf's own view"
            );
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(MESSAGES_IN, "Deliveries a route took");
    metrics::describe_counter!(
        MESSAGES_OUT,
        "Messages a route sent: outputs, publications, replies"
    );
    metrics::describe_counter!(MESSAGES_FAILED, "Attempts that failed");
    metrics::describe_counter!(MESSAGES_RETRIED, "Failed attempts re-queued to try again");
    metrics::describe_counter!(MESSAGES_DEAD_LETTERED, "Messages a route dead-lettered");
    metrics::describe_histogram!(
        PLUGIN_CALL_SECONDS,
        metrics::Unit::Seconds,
        "Wall time of each plugin call"
    );
    metrics::describe_gauge!(CONNECTION_UP, "1 while the connection is up");
    metrics::describe_gauge!(UNITS, "Units by kind and state");
    metrics::describe_counter!(DAEMON_STARTS, "Runs of each daemon started on this host");
    metrics::describe_counter!(
        DAEMON_FAILURES,
        "Runs of each daemon that ended in an error, a trap or a spin past its CPU budget"
    );
    metrics::describe_counter!(
        DAEMON_RETURNED,
        "Messages a daemon took and had not settled when its run ended, given back to their source"
    );
    metrics::describe_counter!(HTTP_INGRESS, "HTTP ingress requests, by status answered");
    metrics::describe_counter!(HTTP_EGRESS, "HTTP egress requests, by status answered");
    metrics::describe_counter!(RPC_CALLS, "RPC calls, by outcome");
    metrics::describe_gauge!(RPC_IN_FLIGHT, "RPC calls waiting for their reply");
    metrics::describe_counter!(PASSWORD_HASHES, "Password hashes and checks run");
    metrics::describe_counter!(SIGN_INS, "Sign-in attempts, by outcome");
    metrics::describe_counter!(OUTBOX_SENT, "Outbox messages this host's relay sent");
    metrics::describe_counter!(
        OUTBOX_RETRIED,
        "Outbox sends that failed and wait to be tried again"
    );
    metrics::describe_counter!(
        OUTBOX_DEAD_TOTAL,
        "Outbox messages their destination refused for good"
    );
    metrics::describe_gauge!(OUTBOX_PENDING, "Outbox messages not sent yet");
    metrics::describe_gauge!(
        OUTBOX_OLDEST,
        metrics::Unit::Seconds,
        "Age of the oldest outbox message not sent yet"
    );
    metrics::describe_gauge!(OUTBOX_DEAD, "Outbox messages kept as dead");
    metrics::describe_counter!(
        SOURCE_RELAYED,
        "Rows of applications' outbox tables this host's relay sent, retried or kept as dead"
    );
    metrics::describe_gauge!(
        SOURCE_PENDING,
        "Rows of an application's outbox table not sent yet"
    );
    metrics::describe_gauge!(
        SOURCE_DEAD,
        "Rows of an application's outbox table kept as dead"
    );
    metrics::describe_counter!(
        EVENTS_PUBLISHED,
        "Model events published to the events exchange"
    );
    metrics::describe_counter!(
        PLUGIN_HTTP_REQUESTS,
        "Plugins' outbound HTTP requests, by outcome (sent, failed, denied, limited)"
    );
    metrics::describe_counter!(LEASES_TAKEN, "Messages taken through the API under a lease");
    metrics::describe_counter!(LEASES_SETTLED, "Leases ended, by how");
    metrics::describe_gauge!(LEASES_HELD, "Leases this host holds now");
    metrics::describe_gauge!(
        LEASE_STREAMS,
        "Lease streams (workers' standing consumers) open now"
    );
    metrics::describe_counter!(
        INBOX_DUPLICATES,
        "Redelivered inputs a route's inbox acked without running the chain"
    );
}

/// What a relay did with the rows of an application's outbox table (`outcome`: `sent`,
/// `retried`, `dead`).
pub fn source_relayed(source: &str, outcome: &'static str, n: usize) {
    metrics::counter!(SOURCE_RELAYED, "source" => source.to_owned(), "outcome" => outcome)
        .increment(n as u64);
}

pub fn outbox_sent(n: usize) {
    metrics::counter!(OUTBOX_SENT).increment(n as u64);
}

pub fn outbox_retried() {
    metrics::counter!(OUTBOX_RETRIED).increment(1);
}

pub fn outbox_dead() {
    metrics::counter!(OUTBOX_DEAD_TOTAL).increment(1);
}

pub fn daemon_started(daemon: &str) {
    metrics::counter!(DAEMON_STARTS, "daemon" => daemon.to_owned()).increment(1);
}

pub fn daemon_failed(daemon: &str) {
    metrics::counter!(DAEMON_FAILURES, "daemon" => daemon.to_owned()).increment(1);
}

pub fn daemon_returned(daemon: &str, messages: usize) {
    metrics::counter!(DAEMON_RETURNED, "daemon" => daemon.to_owned()).increment(messages as u64);
}

pub fn event_published() {
    metrics::counter!(EVENTS_PUBLISHED).increment(1);
}

pub fn leases_taken(n: usize) {
    metrics::counter!(LEASES_TAKEN).increment(n as u64);
}

/// A lease ended: `ack`, `requeue`, `retry` (back after a delay), `dead_letter`, `expired` or
/// `shutdown`.
pub fn lease_settled(outcome: &'static str) {
    metrics::counter!(LEASES_SETTLED, "outcome" => outcome).increment(1);
}

pub fn inbox_duplicate(route: &str) {
    metrics::counter!(INBOX_DUPLICATES, "route" => route.to_owned()).increment(1);
}

/// An HTTP ingress request answered with `status`, to `connection` if it exists (`None`:
/// a name nobody configured, counted without it).
pub fn http_ingress(connection: Option<&str>, status: u16) {
    match connection {
        Some(connection) => metrics::counter!(HTTP_INGRESS, "connection" => connection.to_owned(), "status" => status.to_string())
            .increment(1),
        None => metrics::counter!(HTTP_INGRESS, "status" => status.to_string()).increment(1),
    }
}

/// Partitions assigned to this host's consumer of Kafka group `group`.
pub fn kafka_assigned(group: &str, partitions: usize) {
    metrics::gauge!("wharf_kafka_assigned_partitions", "group" => group.to_owned())
        .set(partitions as f64);
}

/// Records of one partition not yet read by group `group`'s consumer on this host (the end of
/// the partition minus the next offset to hand out).
pub fn kafka_lag(group: &str, topic: &str, partition: i32, lag: i64) {
    metrics::gauge!("wharf_kafka_consumer_lag", "group" => group.to_owned(), "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag.max(0) as f64);
}

/// An HTTP egress request answered with `status`.
pub fn http_egress(connection: &str, status: u16) {
    metrics::counter!(HTTP_EGRESS, "connection" => connection.to_owned(), "status" => status.to_string())
        .increment(1);
}

/// A sign-in attempt ended: `signed_in`, `wrong_password`, `unknown_name` (a name nobody
/// has), `throttled` (past the name's limit) or `limited` (past the address's).
pub fn sign_in(outcome: &'static str) {
    metrics::counter!(SIGN_INS, "outcome" => outcome).increment(1);
}

/// An RPC call ended: `reply`, `timeout` or `error`.
pub fn rpc_call(outcome: &'static str) {
    metrics::counter!(RPC_CALLS, "outcome" => outcome).increment(1);
}

/// One route's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RouteCounts {
    pub r#in: f64,
    pub out: f64,
    pub failed: f64,
    pub retried: f64,
    pub dead_lettered: f64,
}

impl RouteCounts {
    fn minus(self, earlier: RouteCounts) -> RouteCounts {
        RouteCounts {
            r#in: self.r#in - earlier.r#in,
            out: self.out - earlier.out,
            failed: self.failed - earlier.failed,
            retried: self.retried - earlier.retried,
            dead_lettered: self.dead_lettered - earlier.dead_lettered,
        }
    }
}

/// Every route's counters, as the dashboard reads them: the same counts `/metrics` renders,
/// kept beside the recorder so reading them needs no rendering and parsing of the whole text.
/// One entry per route name the host has run.
static TOTALS: std::sync::Mutex<std::collections::BTreeMap<String, Arc<Totals>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// One route's running totals.
#[derive(Default)]
struct Totals {
    r#in: AtomicU64,
    out: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

/// Every route's counters now.
pub fn route_totals() -> std::collections::BTreeMap<String, RouteCounts> {
    let totals = TOTALS.lock().unwrap_or_else(|p| p.into_inner());
    totals
        .iter()
        .map(|(route, t)| {
            let read = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64;
            let counts = RouteCounts {
                r#in: read(&t.r#in),
                out: read(&t.out),
                failed: read(&t.failed),
                retried: read(&t.retried),
                dead_lettered: read(&t.dead_lettered),
            };
            (route.clone(), counts)
        })
        .collect()
}

/// How far back the dashboard's recent counts look.
pub const RECENT: std::time::Duration = std::time::Duration::from_secs(300);

type Sample = (
    std::time::Instant,
    std::collections::BTreeMap<String, RouteCounts>,
);

static SAMPLES: std::sync::Mutex<std::collections::VecDeque<Sample>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Keeps a sample of every route's counters (called every few seconds by the host), so the
/// dashboard can tell what happened over the last minutes.
pub fn sample() {
    let now = std::time::Instant::now();
    let mut samples = SAMPLES.lock().unwrap_or_else(|p| p.into_inner());
    while samples
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > RECENT)
    {
        samples.pop_front();
    }
    samples.push_back((now, route_totals()));
}

/// Each route's counts over the last minutes (since the oldest sample kept, at most
/// [`RECENT`]), and how long that is.
pub fn recent() -> (
    std::collections::BTreeMap<String, RouteCounts>,
    std::time::Duration,
) {
    let now_totals = route_totals();
    let samples = SAMPLES.lock().unwrap_or_else(|p| p.into_inner());
    let Some((since, earlier)) = samples.front() else {
        return (now_totals, std::time::Duration::ZERO);
    };
    let recent = now_totals
        .iter()
        .map(|(route, now)| {
            let before = earlier.get(route).copied().unwrap_or_default();
            (route.clone(), now.minus(before))
        })
        .collect();
    (recent, since.elapsed())
}

/// One of a route's counters: Prometheus's, and the running total the dashboard reads.
pub struct Count {
    counter: metrics::Counter,
    total: Arc<Totals>,
    field: fn(&Totals) -> &AtomicU64,
}

impl Count {
    pub fn increment(&self, n: u64) {
        self.counter.increment(n);
        (self.field)(&self.total).fetch_add(n, Ordering::Relaxed);
    }
}

/// One route's counters and its plugins' call histograms, looked up once when the route starts
/// rather than by name and labels for every message.
pub struct RouteMetrics {
    pub messages_in: Count,
    pub messages_out: Count,
    pub failed: Count,
    pub retried: Count,
    pub dead_lettered: Count,
    calls: std::collections::HashMap<String, metrics::Histogram>,
}

impl RouteMetrics {
    pub fn new<'a>(route: &str, plugins: impl IntoIterator<Item = &'a str>) -> RouteMetrics {
        let total = TOTALS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(route.to_owned())
            .or_default()
            .clone();
        let count = |name: &'static str, field: fn(&Totals) -> &AtomicU64| Count {
            counter: metrics::counter!(name, "route" => route.to_owned()),
            total: total.clone(),
            field,
        };
        RouteMetrics {
            messages_in: count(MESSAGES_IN, |t| &t.r#in),
            messages_out: count(MESSAGES_OUT, |t| &t.out),
            failed: count(MESSAGES_FAILED, |t| &t.failed),
            retried: count(MESSAGES_RETRIED, |t| &t.retried),
            dead_lettered: count(MESSAGES_DEAD_LETTERED, |t| &t.dead_lettered),
            calls: plugins
                .into_iter()
                .map(|plugin| {
                    let histogram =
                        metrics::histogram!(PLUGIN_CALL_SECONDS, "plugin" => plugin.to_owned());
                    (plugin.to_owned(), histogram)
                })
                .collect(),
        }
    }

    /// Records one call of `plugin` (one of the route's) that took `wall`.
    pub fn plugin_call(&self, plugin: &str, wall: std::time::Duration) {
        if let Some(histogram) = self.calls.get(plugin) {
            histogram.record(wall.as_secs_f64());
        }
    }
}
