//! What a NATS connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, tested and opened.

use super::config::NatsConfig;
use super::{NatsBroker, test};
use crate::broker::registry::{
    Capabilities, Events, Field, Input, Kind, TLS_CA, TLS_CERT, TLS_KEY, TransportConfig,
};
use crate::broker::{ConnectionTest, Producer};
use crate::check::ConfigError;
use crate::store::Store;
use crate::units::RouteConfig;

impl TransportConfig for NatsConfig {
    const KIND: Kind = Kind {
        name: "nats",
        title: "NATS (JetStream)",
        address_field: Some("url"),
        fields: &[
            Field {
                path: "url",
                flag: "broker-url",
                label: "URL",
                help: "nats://host:4222 (tls:// for TLS), more servers comma-separated; a password in it is never shown back",
                input: Input::Text,
            },
            Field {
                path: "user",
                flag: "broker-user",
                label: "User",
                help: "with the password",
                input: Input::Text,
            },
            Field {
                path: "password",
                flag: "broker-password",
                label: "Password",
                help: "never shown back",
                input: Input::Secret,
            },
            Field {
                path: "token",
                flag: "broker-token",
                label: "Token",
                help: "for a server that signs in by token; never shown back",
                input: Input::Secret,
            },
            Field {
                path: "nkey",
                flag: "nkey",
                label: "NKey seed",
                help: "SU…, for a server that signs in by NKey; never shown back",
                input: Input::Secret,
            },
            Field {
                path: "creds_file",
                flag: "creds-file",
                label: "Credentials file",
                help: "a .creds file (user JWT and seed)",
                input: Input::Text,
            },
            TLS_CA,
            TLS_CERT,
            TLS_KEY,
        ],
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
    fn redacted(&self) -> Self {
        NatsConfig::redacted(self)
    }
    fn keep_secrets(&mut self, stored: &Self) -> Result<(), ConfigError> {
        NatsConfig::keep_secrets(self, stored)
    }
    fn hidden_field(&self) -> Option<String> {
        NatsConfig::hidden_field(self)
    }
    async fn test(&self, name: &str, _store: &Store) -> ConnectionTest {
        test(name, self).await
    }
    async fn open(
        &self,
        name: &str,
        _store: &Store,
        _routes: &[RouteConfig],
    ) -> Result<Producer, String> {
        NatsBroker::start(name, self.clone())
            .await
            .map(Producer::new)
            .map_err(|e| e.to_string())
    }
}
