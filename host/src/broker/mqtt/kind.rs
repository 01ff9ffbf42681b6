//! What an MQTT connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, its secrets hidden and kept, and how it is tested and
//! opened.

use super::config::MqttConfig;
use super::{MqttBroker, test};
use crate::broker::registry::{
    Capabilities, Events, Field, Input, Kind, Opening, TLS_CA, TLS_CERT, TLS_KEY, TransportConfig,
};
use crate::broker::{ConnectionTest, Producer};
use crate::check::{ConfigError, invalid};
use crate::redact::{HIDDEN, redact, shows_hidden};
use crate::store::Store;

impl TransportConfig for MqttConfig {
    const KIND: Kind = Kind {
        name: "mqtt",
        title: "MQTT (3.1.1 and 5)",
        address_field: Some("url"),
        fields: &[
            Field {
                path: "url",
                flag: "broker-url",
                label: "URL",
                help: "mqtt://host:1883 (mqtts:// for TLS); a password in it is never shown back",
                input: Input::Text,
            },
            Field {
                path: "protocol",
                flag: "protocol",
                label: "Protocol",
                help: "5 (headers, replies) or 3.1.1 (the payload only)",
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
            TLS_CA,
            TLS_CERT,
            TLS_KEY,
        ],
        can: Capabilities {
            events: Events::Exchange,
            subscriptions: true,
            // The broker keeps messages per session, where no client can count or remove
            // them.
            depth: false,
            purge: false,
            // A topic's retained message.
            peek: true,
            leases: true,
            lag: false,
            ingress: false,
        },
    };

    fn check(&self, key: &str) -> Result<(), ConfigError> {
        self.endpoint()
            .map_err(|problem| invalid(format!("{key}url"), problem))?;
        if self.password.is_some() && self.user.is_none() {
            return Err(invalid(format!("{key}password"), "a password needs a user"));
        }
        if let Some(tls) = &self.tls {
            if tls.pkcs12.is_some() {
                return Err(invalid(
                    format!("{key}tls.pkcs12"),
                    "MQTT takes a PEM `cert` and `key`, not a PKCS#12 bundle",
                ));
            }
            crate::tls::check(tls).map_err(|problem| invalid(format!("{key}tls"), problem))?;
        }
        let word = |text: &str, most: usize| {
            !text.is_empty()
                && text.len() <= most
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        // Client ids of 23 characters at most are what every MQTT 3.1.1 broker takes.
        if !word(&self.client_prefix, 7) {
            return Err(invalid(
                format!("{key}client_prefix"),
                "1 to 7 letters, digits, `_` or `-`",
            ));
        }
        if !word(&self.share_group, 64) {
            return Err(invalid(
                format!("{key}share_group"),
                "1 to 64 letters, digits, `_` or `-`",
            ));
        }
        for (field, value, least) in [
            ("keep_alive_s", self.keep_alive_s, 5),
            ("timeout_ms", self.timeout_ms, 1),
            ("session_expiry_s", u64::from(self.session_expiry_s), 1),
            ("max_packet_bytes", self.max_packet_bytes as u64, 1024),
        ] {
            if value < least {
                return Err(invalid(
                    format!("{key}{field}"),
                    format!("must be at least {least}"),
                ));
            }
        }
        if self.max_packet_bytes > 256 * 1024 * 1024 {
            return Err(invalid(
                format!("{key}max_packet_bytes"),
                "MQTT packets are at most 256 MiB",
            ));
        }
        Ok(())
    }

    fn redacted(&self) -> Self {
        let mut mqtt = self.clone();
        mqtt.url = redact(&mqtt.url);
        if mqtt.password.is_some() {
            mqtt.password = Some(HIDDEN.into());
        }
        mqtt
    }

    /// A password shown hidden keeps the stored one, for the same broker only.
    fn keep_secrets(&mut self, stored: &Self) -> Result<(), ConfigError> {
        crate::redact::url_kept("url", &mut self.url, &[&stored.url])?;
        if self.password.as_deref() == Some(HIDDEN) && self.url == stored.url {
            self.password = stored.password.clone();
        }
        Ok(())
    }

    fn hidden_field(&self) -> Option<String> {
        if shows_hidden(&self.url) {
            return Some("url".into());
        }
        (self.password.as_deref() == Some(HIDDEN)).then(|| "password".into())
    }

    async fn test(&self, name: &str, _store: &Store) -> ConnectionTest {
        test(name, self).await
    }

    async fn open(&self, name: &str, at: &Opening<'_>) -> Result<Producer, String> {
        MqttBroker::start(name, self.clone(), at.host)
            .map(Producer::new)
            .map_err(|e| e.to_string())
    }
}
