//! What the supervisor tells of what runs: each unit's and connection's state and last error.

use super::*;

/// What a unit is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    Starting,
    Running,
    /// Stopped by an error; tried again after a wait.
    BackingOff,
    /// Cannot be built as defined (a plugin or connection missing), tried again after a wait
    /// and whenever the desired state changes; or a daemon that failed too often, stopped
    /// until someone restarts it.
    Failed,
    /// A daemon that runs on one host at a time, waiting while another host runs it.
    Standby,
    Stopped,
}

/// One unit, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnitStatus {
    pub name: String,
    /// `route`, `subscription` or `daemon`.
    pub kind: UnitKind,
    pub source: Source,
    pub state: UnitState,
    /// The last error, kept while the unit runs again, until it changes.
    pub error: Option<String>,
    /// When the state last changed (ms since the epoch).
    pub since_ms: u64,
    /// Times it was started again after an error.
    pub restarts: u32,
    /// The plugins it runs, as `name@version`.
    pub plugins: Vec<String>,
    /// Who stopped it, while an operator holds it stopped.
    pub stopped_by: Option<String>,
    /// What else there is to know of its state: which host runs a daemon in standby here.
    pub note: Option<String>,
}

impl UnitStatus {
    pub(super) fn new(name: &str, kind: UnitKind, source: Source, state: UnitState) -> Self {
        UnitStatus {
            name: name.to_owned(),
            kind,
            source,
            state,
            error: None,
            since_ms: crate::message::now_ms(),
            restarts: 0,
            plugins: Vec::new(),
            stopped_by: None,
            note: None,
        }
    }

    pub(super) fn set(&mut self, state: UnitState) {
        if self.state != state {
            self.state = state;
            self.since_ms = crate::message::now_ms();
        }
    }
}

pub(super) type SharedStatus = Arc<Mutex<UnitStatus>>;

pub(super) fn lock(status: &SharedStatus) -> std::sync::MutexGuard<'_, UnitStatus> {
    status.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectionStatus {
    pub name: String,
    pub kind: &'static str,
    pub source: Source,
    /// `up` or `down`.
    pub state: &'static str,
    pub error: Option<String>,
}

/// The whole host, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// The revision of the desired state this host has applied.
    pub revision: i64,
    pub connections: Vec<ConnectionStatus>,
    pub units: Vec<UnitStatus>,
    /// Consumer-group members on this host (routes reading Kafka): partitions held, lag.
    pub consumers: Vec<crate::broker::ConsumerState>,
    /// Items of the database this host does not run, and why.
    pub refused: Vec<Refused>,
    /// The outbox's backlog (shared by every host on the database); absent if it could not
    /// be read.
    pub outbox: Option<crate::store::OutboxStats>,
}

/// A database item this host does not run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Refused {
    pub kind: &'static str,
    pub name: String,
    pub problem: String,
}
