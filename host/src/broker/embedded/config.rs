//! An embedded connection's definition: the queues it declares.

use crate::check::{ConfigError, check_name, invalid};
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

impl EmbeddedConnectionConfig {
    /// Checks the declared queues.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        for (i, queue) in self.queues.iter().enumerate() {
            let key = format!("{prefix}queues[{i}]");
            check_name(&format!("{key}.name"), &queue.name)?;
            if let Some(dead) = &queue.dead_letter {
                check_name(&format!("{key}.dead_letter"), dead)?;
            }
            if queue.max_deliveries == Some(0) {
                return Err(invalid(
                    format!("{key}.max_deliveries"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}
