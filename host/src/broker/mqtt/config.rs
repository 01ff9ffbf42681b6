//! An MQTT connection's definition.

use crate::redact::redact;
use crate::tls::TlsConfig;
use serde::{Deserialize, Serialize};

/// The MQTT version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Protocol {
    /// MQTT 3.1.1: the payload only (no headers, no reply address).
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5: headers as user properties, replies through the response topic.
    #[default]
    #[serde(rename = "5")]
    V5,
}

/// MQTT through `rumqttc`: a queue is a topic read through a shared subscription
/// (`$share/{share_group}/{topic}`) in a session the broker keeps for this host, events are
/// topics `{exchange}/{key}` (the key's words as levels).
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host:1883` (`mqtts://host:8883` for TLS); a user and password may stand in it.
    pub url: String,
    pub protocol: Protocol,
    /// A user name and password, instead of in the URL.
    pub user: Option<String>,
    pub password: Option<String>,
    /// TLS to the broker: a private CA, and a client certificate (PEM `cert` and `key`).
    pub tls: Option<TlsConfig>,
    /// Client ids start with this (the rest is a hash of the host, the connection and what
    /// it reads: 16 characters).
    pub client_prefix: String,
    /// The shared-subscription group every host reading a queue joins.
    pub share_group: String,
    /// How long the broker keeps a host's session while it is away (MQTT 5): what arrives
    /// meanwhile waits for it; after this it is dropped. MQTT 3.1.1 sessions are kept as long
    /// as the broker keeps them.
    pub session_expiry_s: u32,
    pub keep_alive_s: u64,
    /// How long a send waits for the broker's acknowledgement (and connecting at start).
    pub timeout_ms: u64,
    /// The largest packet sent or taken (a message with its properties).
    pub max_packet_bytes: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: String::new(),
            protocol: Protocol::V5,
            user: None,
            password: None,
            tls: None,
            client_prefix: "wharf-".into(),
            share_group: "wharf".into(),
            session_expiry_s: 7 * 24 * 3600,
            keep_alive_s: 30,
            timeout_ms: 10_000,
            max_packet_bytes: 8 * 1024 * 1024,
        }
    }
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &redact(&self.url))
            .field("protocol", &self.protocol)
            .field("user", &self.user)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl MqttConfig {
    /// The broker's host, port and whether it speaks TLS, from the URL.
    pub fn endpoint(&self) -> Result<(String, u16, bool), String> {
        let url = url::Url::parse(self.url.trim())
            .map_err(|e| format!("`{}` is not a URL: {e}", redact(&self.url)))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            _ => {
                return Err(format!(
                    "`{}` is not mqtt://host:port or mqtts://host:port",
                    redact(&self.url)
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{}` names no host", redact(&self.url)))?;
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok((host.to_owned(), port, tls))
    }

    /// The user and password: the fields', else the URL's.
    pub fn credentials(&self) -> Option<(String, String)> {
        if let Some(user) = &self.user {
            return Some((user.clone(), self.password.clone().unwrap_or_default()));
        }
        let url = url::Url::parse(self.url.trim()).ok()?;
        if url.username().is_empty() {
            return None;
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Some((
            decode(url.username()),
            decode(url.password().unwrap_or_default()),
        ))
    }
}
