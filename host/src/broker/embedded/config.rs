//! An embedded connection's definition: the queues it declares.

use serde::{Deserialize, Serialize};

/// The embedded broker: queues in the host's database, declared here or created on first use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConnectionConfig {
    pub queues: Vec<QueueConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: String,
    pub dead_letter: Option<String>,
    pub visibility_timeout_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
}

impl EmbeddedConnectionConfig {}
