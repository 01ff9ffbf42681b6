//! What a embedded connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, tested, opened and given its topology.

use super::config::EmbeddedConnectionConfig;
use super::{open, test};
use crate::broker::registry::{Capabilities, Events, Kind, TransportConfig};
use crate::broker::{ConnectionTest, Producer};
use crate::check::ConfigError;
use crate::store::Store;
use crate::units::RouteConfig;

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

    fn check(&self, prefix: &str) -> Result<(), ConfigError> {
        self.validate(prefix)
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
    async fn open(
        &self,
        name: &str,
        store: &Store,
        _routes: &[RouteConfig],
    ) -> Result<Producer, String> {
        open(name, self, store).await.map(Producer::new)
    }
}
