//! What a NATS connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, redacted, tested and opened.

use super::config::NatsConfig;
use super::{NatsBroker, test};
use crate::broker::registry::{
    Capabilities, Events, Field, Input, Kind, Opening, TLS_CA, TLS_CERT, TLS_KEY, TransportConfig,
};
use crate::broker::{ConnectionTest, Producer};
use crate::check::{ConfigError, invalid};
use crate::redact::{HIDDEN, redact, shows_hidden};
use crate::store::Store;

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

    fn check(&self, key: &str) -> Result<(), ConfigError> {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(invalid(
                format!("{key}url"),
                "a nats connection needs `url` (nats://host:4222)",
            ));
        }
        for server in &servers {
            match url::Url::parse(server) {
                Ok(parsed) if ["nats", "tls"].contains(&parsed.scheme()) => {}
                _ => {
                    return Err(invalid(
                        format!("{key}url"),
                        format!(
                            "`{}` is not nats://host:port or tls://host:port",
                            redact(server)
                        ),
                    ));
                }
            }
        }
        let ways = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey.is_some(),
            self.creds_file.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(invalid(
                key.trim_end_matches('.'),
                "give one way to sign in: user and password, a token, an nkey or a creds_file",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(invalid(
                format!("{key}password"),
                "a user needs a password, and a password a user",
            ));
        }
        if let Some(seed) = &self.nkey
            && seed != HIDDEN
            && !seed.starts_with("SU")
        {
            return Err(invalid(
                format!("{key}nkey"),
                "an NKey seed for a user starts with `SU`",
            ));
        }
        if let Some(tls) = &self.tls {
            if tls.pkcs12.is_some() {
                return Err(invalid(
                    format!("{key}tls.pkcs12"),
                    "NATS takes a PEM `cert` and `key`, not a PKCS#12 bundle",
                ));
            }
            crate::tls::check(tls).map_err(|problem| invalid(format!("{key}tls"), problem))?;
        }
        let prefix_ok = !self.stream_prefix.is_empty()
            && self.stream_prefix.len() <= 32
            && self
                .stream_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !prefix_ok {
            return Err(invalid(
                format!("{key}stream_prefix"),
                "1 to 32 letters, digits, `_` or `-`",
            ));
        }
        for (field, value) in [
            ("ack_wait_ms", self.ack_wait_ms),
            ("timeout_ms", self.timeout_ms),
            ("replicas", self.replicas as u64),
        ] {
            if value == 0 {
                return Err(invalid(format!("{key}{field}"), "must be at least 1"));
            }
        }
        Ok(())
    }
    /// The same definition with its secrets hidden.
    fn redacted(&self) -> Self {
        let mut nats = self.clone();
        nats.url = nats
            .servers()
            .iter()
            .map(|u| redact(u))
            .collect::<Vec<_>>()
            .join(",");
        for secret in [&mut nats.password, &mut nats.token, &mut nats.nkey] {
            if secret.is_some() {
                *secret = Some(HIDDEN.into());
            }
        }
        nats
    }
    /// Secrets shown hidden keep the stored ones, for the same servers only.
    fn keep_secrets(&mut self, old: &Self) -> Result<(), ConfigError> {
        let old_urls: Vec<String> = old.servers();
        let old_refs: Vec<&String> = old_urls.iter().collect();
        let mut urls = self.servers();
        for (i, url) in urls.iter_mut().enumerate() {
            crate::redact::url_kept(&format!("url[{i}]"), url, &old_refs)?;
        }
        self.url = urls.join(",");
        if self.servers() != old.servers() {
            return Ok(());
        }
        for (new, stored) in [
            (&mut self.password, &old.password),
            (&mut self.token, &old.token),
            (&mut self.nkey, &old.nkey),
        ] {
            if new.as_deref() == Some(HIDDEN) {
                *new = stored.clone();
            }
        }
        Ok(())
    }
    /// The first field still holding a secret as shown hidden.
    fn hidden_field(&self) -> Option<String> {
        if self.servers().iter().any(|u| shows_hidden(u)) {
            return Some("url".into());
        }
        [
            ("password", &self.password),
            ("token", &self.token),
            ("nkey", &self.nkey),
        ]
        .into_iter()
        .find(|(_, value)| value.as_deref() == Some(HIDDEN))
        .map(|(field, _)| field.to_owned())
    }
    async fn test(&self, name: &str, _store: &Store) -> ConnectionTest {
        test(name, self).await
    }
    async fn open(&self, name: &str, _at: &Opening<'_>) -> Result<Producer, String> {
        NatsBroker::start(name, self.clone())
            .await
            .map(Producer::new)
            .map_err(|e| e.to_string())
    }
}
