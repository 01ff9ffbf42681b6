//! What a HTTP connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, tested, opened and given its topology.

use super::config::HttpConfig;
use super::{HttpBroker, test};
use crate::broker::registry::{
    Capabilities, Events, Field, Input, Kind, TLS_CA, TLS_CERT, TLS_KEY, TransportConfig,
};
use crate::broker::{ConnectionTest, Producer};
use crate::check::ConfigError;
use crate::store::Store;
use crate::units::RouteConfig;

impl TransportConfig for HttpConfig {
    const KIND: Kind = Kind {
        name: "http",
        title: "HTTP",
        address_field: Some("base_url"),
        fields: &[
            Field {
                path: "base_url",
                flag: "base-url",
                label: "Base URL",
                help: "where publishing sends, the address appended: https://example.com/hooks/ (empty: ingress only)",
                input: Input::Text,
            },
            Field {
                path: "anonymous",
                flag: "anonymous",
                label: "Ingress without a token",
                help: "anyone who reaches this host's listener may send to /ingress/NAME/…",
                input: Input::Switch,
            },
            Field {
                path: "ingress_per_second",
                flag: "ingress-per-second",
                label: "Ingress messages a second",
                help: "per caller (1000 unless set)",
                input: Input::Number,
            },
            Field {
                path: "ingress_bytes_per_second",
                flag: "ingress-bytes-per-second",
                label: "Ingress bytes a second",
                help: "per caller (64 MiB unless set)",
                input: Input::Number,
            },
            TLS_CA,
            TLS_CERT,
            TLS_KEY,
        ],
        can: Capabilities {
            events: Events::Exchange,
            subscriptions: false,
            depth: true,
            purge: true,
            peek: true,
            leases: true,
            lag: false,
            ingress: true,
        },
    };

    fn check(&self, prefix: &str) -> Result<(), ConfigError> {
        self.validate(prefix)
    }
    fn redacted(&self) -> Self {
        HttpConfig::redacted(self)
    }
    fn keep_secrets(&mut self, stored: &Self) -> Result<(), ConfigError> {
        HttpConfig::keep_secrets(self, stored)
    }
    fn hidden_field(&self) -> Option<String> {
        HttpConfig::hidden_field(self)
    }
    async fn test(&self, name: &str, _store: &Store) -> ConnectionTest {
        test(name, self).await
    }
    async fn open(
        &self,
        name: &str,
        store: &Store,
        _routes: &[RouteConfig],
    ) -> Result<Producer, String> {
        HttpBroker::new(name, self.clone(), store.clone())
            .map(Producer::new)
            .map_err(|e| e.to_string())
    }
}
