//! What an HTTP connection is to the rest of the host: its kind, fields and capabilities,
//! and how its definition is checked, redacted, tested, opened and given its topology.

use super::config::HttpConfig;
use super::{HttpBroker, test};
use crate::broker::registry::{
    Capabilities, Events, Field, Input, Kind, Opening, TLS_CA, TLS_CERT, TLS_KEY, TransportConfig,
};
use crate::broker::{ConnectionTest, Producer};
use crate::check::{ConfigError, invalid};
use crate::redact::{HIDDEN, hidden_in, origin_of, redact, redacted_map, shows_hidden};
use crate::store::Store;
use crate::tls::bundle_password_kept;

/// Whether `path` may follow `/hooks/`: at most 200 bytes of words (letters, digits, `.`, `_`,
/// `-`, not `.` or `..`) between single `/`s.
pub fn valid_hook_path(path: &str) -> bool {
    path.len() <= 200
        && path.split('/').all(|word| {
            !word.is_empty()
                && word != "."
                && word != ".."
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
}

/// The most `/hooks/` paths one connection takes.
const MAX_HOOKS: usize = 256;

#[cfg(test)]
#[test]
fn hook_paths_are_plain_words() {
    for good in ["orders", "shop/orders", "v1.2/in_x-y"] {
        assert!(valid_hook_path(good), "{good}");
    }
    for bad in [
        "", "/orders", "orders/", "a//b", "../etc", "a/./b", "a b", "a?b", "ö",
    ] {
        assert!(!valid_hook_path(bad), "{bad}");
    }
}

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
            Field {
                path: "hooks",
                flag: "hook",
                label: "Hooks",
                help: "PATH=ADDRESS, one a line: POST /hooks/PATH is ingress to ADDRESS (orders=orders.in)",
                input: Input::Pairs,
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

    fn check(&self, key: &str) -> Result<(), ConfigError> {
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
        if self.hooks.len() > MAX_HOOKS {
            return Err(invalid(
                format!("{key}hooks"),
                format!("at most {MAX_HOOKS} hooks a connection"),
            ));
        }
        for (path, address) in &self.hooks {
            if !valid_hook_path(path) {
                return Err(invalid(
                    format!("{key}hooks"),
                    format!(
                        "`{}` is not a hook path: words of letters, digits, `.`, `_` or `-` between `/`, no `/` first or last (`orders`, `shop/orders`)",
                        path.escape_debug()
                    ),
                ));
            }
            let address_ok = crate::broker::check_name("hook", address, false).is_ok()
                && !super::HttpBroker::is_held(address);
            if !address_ok {
                return Err(invalid(
                    format!("{key}hooks.{path}"),
                    format!(
                        "`{}` is not an address this connection's ingress takes",
                        address.escape_debug()
                    ),
                ));
            }
        }
        for (i, pattern) in self.allowed_hosts.iter().enumerate() {
            if !crate::check::valid_host_pattern(pattern) {
                return Err(invalid(
                    format!("{key}allowed_hosts[{i}]"),
                    format!(
                        "`{}` is not a host: `api.example.com`, `*.example.com`, with `:PORT` or `:*` if need be",
                        pattern.escape_debug()
                    ),
                ));
            }
        }
        Ok(())
    }
    /// The same definition with the base URL's credentials and secret headers hidden.
    fn redacted(&self) -> Self {
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
    fn keep_secrets(&mut self, old: &Self) -> Result<(), ConfigError> {
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
    fn hidden_field(&self) -> Option<String> {
        self.base_url
            .as_deref()
            .filter(|url| shows_hidden(url))
            .map(|_| "base_url".to_owned())
            .or_else(|| hidden_in("headers", &self.headers))
            .or_else(|| crate::tls::hidden_bundle(&self.tls))
    }
    fn hooks(&self) -> Vec<(String, String)> {
        self.hooks
            .iter()
            .map(|(path, address)| (path.clone(), address.clone()))
            .collect()
    }
    async fn test(&self, name: &str, _store: &Store) -> ConnectionTest {
        test(name, self).await
    }
    async fn open(&self, name: &str, at: &Opening<'_>) -> Result<Producer, String> {
        HttpBroker::new(name, self.clone(), at.store.clone())
            .map(Producer::new)
            .map_err(|e| e.to_string())
    }
}
