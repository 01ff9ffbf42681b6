//! An HTTP connection's definition and its checks.

use crate::check::{ConfigError, invalid};
use crate::redact::{HIDDEN, hidden_in, origin_of, redact, redacted_map, shows_hidden};
use crate::tls::{TlsConfig, bundle_password_kept};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// HTTP as a transport. Ingress: `POST` (and `GET`, where `ingress_methods` says) to
/// `/ingress/{connection}/{path}` on the host's listener; the message is held in the host's
/// database until the route bound to `{connection}:{path}` takes it. Egress: publishing to
/// `{connection}:{path}` sends a request to `base_url` + `path`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where publishing sends (`http://…` or `https://…`); the address is appended to it.
    /// Without it the connection only takes ingress.
    pub base_url: Option<String>,
    /// `POST` (the default), `PUT` or `GET` (which sends no body).
    pub method: String,
    /// Headers every request carries (an `Authorization` header, say).
    pub headers: BTreeMap<String, String>,
    /// The content type of a message that names none (`application/octet-stream` by default).
    pub content_type: Option<String>,
    /// How long one request may take before it counts as failed (and is retried).
    pub timeout_ms: u64,
    /// The ingress methods taken (`["POST"]` by default; add `GET` to take GET too; `[]`
    /// for no ingress).
    pub ingress_methods: Vec<String>,
    /// Ingress without a token. Off unless said: anyone who reaches the listener may send.
    pub anonymous: bool,
    /// How long ingress on a route that replies waits for the reply.
    pub reply_timeout_ms: u64,
    /// Messages one caller (a token's or user's name; an anonymous caller's address) may
    /// send through this connection's ingress a second, a second's worth at once; past it
    /// ingress answers 429 (1,000 by default).
    pub ingress_per_second: u32,
    /// Bytes of body one caller may send through this connection's ingress a second, a
    /// second's worth at once (64 MiB by default); past it ingress answers 429.
    pub ingress_bytes_per_second: u32,
    /// For `https://` endpoints: a private CA to trust (besides the system's), and a client
    /// certificate when the endpoint asks for one (PEM `cert` and `key`, or a PKCS#12 bundle).
    pub tls: Option<TlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            base_url: None,
            method: "POST".into(),
            headers: BTreeMap::new(),
            content_type: None,
            timeout_ms: 10_000,
            ingress_methods: vec!["POST".into()],
            anonymous: false,
            reply_timeout_ms: 30_000,
            ingress_per_second: 1_000,
            ingress_bytes_per_second: 64 * 1024 * 1024,
            tls: None,
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("base_url", &self.base_url.as_deref().map(redact))
            .field("method", &self.method)
            .field("headers", &redacted_map(&self.headers))
            .field("timeout_ms", &self.timeout_ms)
            .field("ingress_methods", &self.ingress_methods)
            .field("anonymous", &self.anonymous)
            .field("ingress_per_second", &self.ingress_per_second)
            .field("ingress_bytes_per_second", &self.ingress_bytes_per_second)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if let Some(url) = &self.base_url {
            match reqwest::Url::parse(url) {
                Ok(parsed) if ["http", "https"].contains(&parsed.scheme()) => {}
                Ok(parsed) => {
                    return Err(invalid(
                        format!("{key}base_url"),
                        format!("`{}` is not http:// or https://", parsed.scheme()),
                    ));
                }
                Err(problem) => {
                    return Err(invalid(
                        format!("{key}base_url"),
                        format!("`{}` is not a URL: {problem}", redact(url)),
                    ));
                }
            }
        }
        if !["GET", "POST", "PUT"].contains(&self.method.as_str()) {
            return Err(invalid(
                format!("{key}method"),
                format!("`{}` is not GET, POST or PUT", self.method),
            ));
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(
                    format!("{key}headers"),
                    format!("`{}` is not a header name", name.escape_debug()),
                ));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(invalid(
                    format!("{key}headers.{name}"),
                    "a header value is visible ASCII text",
                ));
            }
        }
        if let Some(content_type) = &self.content_type
            && reqwest::header::HeaderValue::from_str(content_type).is_err()
        {
            return Err(invalid(
                format!("{key}content_type"),
                "a content type is visible ASCII text",
            ));
        }
        for (field, value) in [
            ("timeout_ms", self.timeout_ms),
            ("reply_timeout_ms", self.reply_timeout_ms),
            ("ingress_per_second", self.ingress_per_second.into()),
            (
                "ingress_bytes_per_second",
                self.ingress_bytes_per_second.into(),
            ),
        ] {
            if value == 0 {
                return Err(invalid(format!("{key}{field}"), "must be at least 1"));
            }
        }
        for (i, method) in self.ingress_methods.iter().enumerate() {
            if method != "GET" && method != "POST" {
                return Err(invalid(
                    format!("{key}ingress_methods[{i}]"),
                    format!("`{method}` is not GET or POST"),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            crate::tls::check(tls).map_err(|problem| invalid(format!("{key}tls"), problem))?;
        }
        Ok(())
    }
}

impl HttpConfig {
    /// The same definition with the base URL's credentials and secret headers hidden.
    pub fn redacted(&self) -> HttpConfig {
        let mut http = self.clone();
        http.base_url = http.base_url.as_deref().map(redact);
        http.headers = redacted_map(&http.headers);
        if let Some(tls) = &mut http.tls
            && !tls.pkcs12_password.is_empty()
        {
            tls.pkcs12_password = HIDDEN.into();
        }
        http
    }

    /// A secret header shown hidden keeps its stored value only while `base_url` names the
    /// same host.
    pub fn keep_secrets(&mut self, old: &HttpConfig) -> Result<(), ConfigError> {
        let same_host =
            self.base_url.as_deref().map(origin_of) == old.base_url.as_deref().map(origin_of);
        if let Some(url) = &mut self.base_url {
            crate::redact::url_kept("base_url", url, &old.base_url.iter().collect::<Vec<_>>())?;
        }
        for (name, value) in self.headers.iter_mut() {
            if value != HIDDEN {
                continue;
            }
            match old.headers.get(name) {
                Some(original) if same_host => *value = original.clone(),
                Some(_) => {
                    return Err(invalid(
                        format!("headers.{name}"),
                        "is hidden (***) but base_url now names another host: a stored secret is not carried there; give it again",
                    ));
                }
                None => {
                    return Err(invalid(
                        format!("headers.{name}"),
                        "is hidden (***) but none is stored; give its value",
                    ));
                }
            }
        }
        bundle_password_kept(&mut self.tls, &old.tls)
    }

    /// The first field still holding a secret as shown hidden.
    pub fn hidden_field(&self) -> Option<String> {
        self.base_url
            .as_deref()
            .filter(|url| shows_hidden(url))
            .map(|_| "base_url".to_owned())
            .or_else(|| hidden_in("headers", &self.headers))
            .or_else(|| crate::tls::hidden_bundle(&self.tls))
    }
}
