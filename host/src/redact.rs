//! Secrets as they are shown: hidden (`***`) in URLs, headers and settings, and recognised by
//! name. A leaf: nothing in it knows the host but the error a configuration gives.

use crate::check::{ConfigError, invalid};
use std::collections::BTreeMap;

/// What a secret is shown as.
pub const HIDDEN: &str = "***";

/// Whether a header, a URL's query parameter or a plugin's config value holds a secret
/// (`Authorization`, `password`, `token`, `api_key`, …), by its name.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "password",
        "passwd",
        "token",
        "secret",
        "key",
        "credential",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// `url` with its secrets hidden, for messages, logs and answers: the password in the
/// authority (`amqp://user:***@host`), an http(s) URL's user name too (a token:
/// `https://***@host`, `https://***:***@host`), another scheme's user name when it stands
/// alone with no password anywhere, and query parameters with secret names (`?token=***`,
/// PostgreSQL's `password=`). Parsed with the `url` crate; what it cannot parse is hidden by its shape.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.cannot_be_a_base() => {
            let secret_query = parsed.query_pairs().any(|(name, _)| is_secret_name(&name));
            // On the web a URL's user name is a credential more often than not
            // (`https://TOKEN@host`, `https://TOKEN:x-oauth-basic@host`); elsewhere a user
            // name alone is hidden unless the password is plainly in the query (PostgreSQL's
            // `postgres://user@host/db?password=…`).
            let web = matches!(parsed.scheme(), "http" | "https" | "ws" | "wss");
            let password_in_query = parsed.query_pairs().any(|(name, _)| {
                let name = name.to_ascii_lowercase();
                name.contains("password") || name.contains("passwd")
            });
            let has_password = parsed.password().is_some();
            if has_password {
                let _ = parsed.set_password(Some(HIDDEN));
            }
            if !parsed.username().is_empty() && (web || (!has_password && !password_in_query)) {
                let _ = parsed.set_username(HIDDEN);
            }
            if secret_query {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(name, value)| {
                        let value = if is_secret_name(&name) {
                            HIDDEN.to_owned()
                        } else {
                            value.into_owned()
                        };
                        (name.into_owned(), value)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        _ => redact_by_shape(url),
    }
}

/// [`redact`] for what is not a URL the parser takes: whatever stands between `://` and the
/// last `@` is hidden but a user name before a `:`, and secret query values.
fn redact_by_shape(url: &str) -> String {
    let mut shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:{HIDDEN}{}", &url[..scheme + 3], &url[at..]),
                None => format!("{}{HIDDEN}{}", &url[..scheme + 3], &url[at..]),
            }
        }
        _ => url.to_owned(),
    };
    if let Some(query) = shown.find('?') {
        let (base, params) = shown.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if is_secret_name(name) => format!("{name}={HIDDEN}"),
                _ => param.to_owned(),
            })
            .collect();
        shown = format!("{base}{}", params.join("&"));
    }
    shown
}

/// Whether `url` holds a secret as shown hidden (`***` as its password, its user name or a
/// secret query value) rather than the secret itself.
pub fn shows_hidden(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(parsed) => {
            parsed.password() == Some(HIDDEN)
                || parsed.username() == HIDDEN
                || parsed
                    .query_pairs()
                    .any(|(name, value)| is_secret_name(&name) && value == HIDDEN)
        }
        Err(_) => url.contains(HIDDEN),
    }
}

/// The scheme, host and port a URL sends to (what a stored secret is bound to).
pub fn origin_of(url: &str) -> Option<(String, String, Option<u16>)> {
    let parsed = url::Url::parse(url).ok()?;
    Some((
        parsed.scheme().to_owned(),
        parsed.host_str()?.to_ascii_lowercase(),
        parsed.port_or_known_default(),
    ))
}

/// A map of settings or headers with the values of secret names hidden.
pub fn redacted_map(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(name, value)| {
            let shown = if is_secret_name(name) {
                HIDDEN.to_owned()
            } else {
                value.clone()
            };
            (name.clone(), shown)
        })
        .collect()
}

/// `part.NAME` of the first value of `map` still shown hidden, if any.
pub fn hidden_in(part: &str, map: &BTreeMap<String, String>) -> Option<String> {
    map.iter()
        .find(|(_, value)| *value == HIDDEN)
        .map(|(name, _)| format!("{part}.{name}"))
}

/// `url` with its hidden password restored from the stored URL it was shown as; a URL that
/// still shows a hidden secret but was not shown from a stored one is an error naming `key`.
pub fn url_kept(key: &str, url: &mut String, stored: &[&String]) -> Result<(), ConfigError> {
    if let Some(original) = stored.iter().find(|o| redact(o) == *url) {
        *url = (*original).clone();
        return Ok(());
    }
    if shows_hidden(url) {
        return Err(invalid(
            key,
            "holds a hidden secret (***), but not as it was stored: a stored password is kept only for the same URL; give it again",
        ));
    }
    Ok(())
}
