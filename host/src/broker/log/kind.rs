//! What a log connection is to the rest of the host: its kind, fields and capabilities.

use super::LogBroker;
use super::config::LogConfig;
use crate::broker::registry::{Capabilities, Events, Field, Input, Kind, Opening, TransportConfig};
use crate::broker::{ConnectionTest, Producer};
use crate::check::ConfigError;
use crate::store::Store;

impl TransportConfig for LogConfig {
    const KIND: Kind = Kind {
        name: "log",
        title: "The host's log",
        address_field: None,
        fields: &[
            Field {
                path: "level",
                flag: "level",
                label: "Level",
                help: "debug, info (the default) or warn",
                input: Input::Text,
            },
            Field {
                path: "payload",
                flag: "payload",
                label: "Show payloads",
                help: "each line shows the payload, up to 1 KiB (off: payloads may hold what a log should not)",
                input: Input::Switch,
            },
        ],
        can: Capabilities {
            events: Events::Exchange,
            subscriptions: false,
            depth: false,
            purge: false,
            peek: false,
            leases: false,
            lag: false,
            ingress: false,
        },
    };

    fn check(&self, _prefix: &str) -> Result<(), ConfigError> {
        // serde has checked the level and the switch: nothing else can be wrong.
        Ok(())
    }

    async fn test(&self, _name: &str, _store: &Store) -> ConnectionTest {
        ConnectionTest::new(true, "writes to the host's log")
    }

    async fn open(&self, name: &str, _at: &Opening<'_>) -> Result<Producer, String> {
        Ok(Producer::new(LogBroker::new(name, self.clone())))
    }
}
