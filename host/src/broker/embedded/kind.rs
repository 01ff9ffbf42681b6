//! What an embedded connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, tested, opened and given its topology.

use super::config::EmbeddedConnectionConfig;
use super::{open, test};
use crate::broker::registry::{Capabilities, Events, Kind, Opening, TransportConfig};
use crate::broker::{ConnectionTest, Producer};
use crate::check::{ConfigError, check_name, invalid};
use crate::store::Store;

impl TransportConfig for EmbeddedConnectionConfig {
    const KIND: Kind = Kind {
        name: "embedded",
        title: "Embedded broker",
        address_field: None,
        fields: &[],
        can: Capabilities {
            events: Events::Exchange,
            subscriptions: true,
            depth: true,
            purge: true,
            peek: true,
            leases: true,
            lag: false,
            ingress: false,
        },
    };

    /// Checks the declared queues.
    fn check(&self, prefix: &str) -> Result<(), ConfigError> {
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
    fn max_deliveries(&self, address: &str) -> Option<u32> {
        self.queues
            .iter()
            .find(|q| q.name == address)
            .and_then(|q| q.max_deliveries)
    }
    async fn test(&self, _name: &str, store: &Store) -> ConnectionTest {
        test(store).await
    }
    async fn open(&self, name: &str, at: &Opening<'_>) -> Result<Producer, String> {
        open(name, self, at.store).await.map(Producer::new)
    }
}
