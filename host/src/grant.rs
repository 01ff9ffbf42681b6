//! Grants: what a plugin may reach, as globs over `kind:connection:address`.
//!
//! Nothing is granted by default. A grant's words are separated by `.` and `/`, as an
//! address's are: `*` matches exactly one word (one or more characters, none of them `.`, `/`
//! or `#`), `**` any run of characters (separators included, or none), `?` one character that
//! is not a separator. So `publish:rabbit:orders.*` lets a plugin publish to `orders.eu` but
//! not to `orders.eu.archive`, and `receive:local:events/Booking.*` lets a daemon take the
//! events pattern `Booking.*` but not `Booking.#` or `#`, which would hold more than the grant.
//! `publish:local:**` grants every address of `local`. The host checks a grant before anything
//! reaches a broker.
//!
//! `http:` grants name the hosts a plugin may call over outbound HTTP (`wasi:http`), as
//! `http:SCHEME://HOST`: `http:https://api.example.com` (that host on the scheme's own port),
//! `http:https://*.example.com` (its subdomains), `http:http://127.0.0.1:8080` (one port) or
//! `:*` (any port). No path: a grant is for a whole origin.

use regex::RegexSet;
use std::fmt;

/// What a grant lets a plugin do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Publish,
    Request,
    Receive,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Publish => "publish",
            Access::Request => "request",
            Access::Receive => "receive",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A grant pattern that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("grant `{pattern}`: {problem}")]
pub struct GrantError {
    pub pattern: String,
    pub problem: String,
}

/// The longest grant accepted, in bytes.
const MAX_GRANT_BYTES: usize = 512;

/// The compiled grants of one plugin.
#[derive(Clone, Default)]
pub struct Grants {
    patterns: Vec<String>,
    set: RegexSet,
    /// The `http:` grants: scheme and host pattern.
    origins: Vec<(String, String)>,
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Grants").field(&self.patterns).finish()
    }
}

impl Grants {
    /// Compiles `patterns`, each `kind:connection:address` with kind publish, request or receive.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Grants, GrantError> {
        let mut expressions = Vec::with_capacity(patterns.len());
        let mut origins = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let error = |problem: &str| GrantError {
                pattern: pattern.to_owned(),
                problem: problem.to_owned(),
            };
            if pattern.len() > MAX_GRANT_BYTES {
                return Err(error(&format!("is longer than {MAX_GRANT_BYTES} bytes")));
            }
            if let Some(origin) = pattern.strip_prefix("http:") {
                origins.push(origin_grant(origin).map_err(|problem| error(&problem))?);
                continue;
            }
            let mut parts = pattern.splitn(3, ':');
            let kind = parts.next().unwrap_or_default();
            if !matches!(kind, "publish" | "request" | "receive") {
                return Err(error(
                    "must start with publish:, request:, receive: or http:",
                ));
            }
            if parts.next().is_none_or(str::is_empty) || parts.next().is_none_or(str::is_empty) {
                return Err(error("must be kind:connection:address"));
            }
            if pattern.contains("***") {
                return Err(error("`***` means nothing: `*` is one word, `**` any run"));
            }
            expressions.push(expression(pattern));
        }
        let set = RegexSet::new(&expressions).map_err(|e| GrantError {
            pattern: patterns
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join(", "),
            problem: e.to_string(),
        })?;
        Ok(Grants {
            patterns: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            set,
            origins,
        })
    }

    /// Whether outbound HTTP to `scheme://host:port` is granted.
    pub fn allows_http(&self, scheme: &str, host: &str, port: u16) -> bool {
        let default_port = if scheme == "https" { 443 } else { 80 };
        self.origins.iter().any(|(granted, pattern)| {
            granted == scheme && crate::check::host_allowed(pattern, host, port, default_port)
        })
    }

    /// Whether `access` to `destination` (`connection:address`) is granted.
    pub fn allows(&self, access: Access, destination: &str) -> bool {
        self.set.is_match(&format!("{access}:{destination}"))
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// The scheme and host pattern of an `http:` grant's `SCHEME://HOST`.
fn origin_grant(origin: &str) -> Result<(String, String), String> {
    let Some((scheme, host)) = origin.split_once("://") else {
        return Err("must be http:https://HOST or http:http://HOST".into());
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "`{scheme}` is not a scheme a plugin may call: http or https"
        ));
    }
    let host = host.strip_suffix('/').unwrap_or(host);
    if !crate::check::valid_host_pattern(host) {
        return Err(format!(
            "`{host}` is not a host: name (lower case), *.name for its subdomains, \
             :PORT for one port or :* for any, and no path"
        ));
    }
    Ok((scheme.to_owned(), host.to_owned()))
}

/// The anchored regular expression of grant `pattern`.
fn expression(pattern: &str) -> String {
    let mut out = String::from("^");
    let mut rest = pattern;
    while let Some(at) = rest.find(['*', '?']) {
        out.push_str(&regex::escape(&rest[..at]));
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("**") {
            out.push_str(".*");
            rest = after;
        } else if let Some(after) = rest.strip_prefix('*') {
            out.push_str("[^./#]+");
            rest = after;
        } else {
            out.push_str("[^./]");
            rest = &rest[1..];
        }
    }
    out.push_str(&regex::escape(rest));
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_granted_by_default() {
        let grants = Grants::default();
        assert!(!grants.allows(Access::Publish, "rabbit:orders"));
    }

    #[test]
    fn globs_match_kind_connection_and_address() {
        let grants = Grants::new(&["publish:rabbit:orders.*", "request:local:rpc.?"]).unwrap();
        assert!(grants.allows(Access::Publish, "rabbit:orders.eu"));
        assert!(!grants.allows(Access::Publish, "rabbit:orders.eu/created"));
        assert!(!grants.allows(Access::Publish, "rabbit:orders."));
        assert!(!grants.allows(Access::Publish, "kafka:orders.eu"));
        assert!(!grants.allows(Access::Request, "rabbit:orders.eu"));
        assert!(grants.allows(Access::Request, "local:rpc.a"));
        assert!(!grants.allows(Access::Request, "local:rpc.ab"));
    }

    #[test]
    fn http_grants_name_origins_by_scheme_host_and_port() {
        let grants = Grants::new(&[
            "http:https://api.example.com",
            "http:https://*.cdn.example.com",
            "http:http://127.0.0.1:*",
        ])
        .unwrap();
        assert!(grants.allows_http("https", "api.example.com", 443));
        assert!(!grants.allows_http("http", "api.example.com", 80));
        assert!(!grants.allows_http("https", "api.example.com", 8443));
        assert!(!grants.allows_http("https", "api.example.com.evil.net", 443));
        assert!(grants.allows_http("https", "img.cdn.example.com", 443));
        assert!(!grants.allows_http("https", "cdn.example.com", 443));
        assert!(grants.allows_http("http", "127.0.0.1", 9000));
        // An http grant grants nothing else, and a message grant no HTTP.
        assert!(!grants.allows(Access::Publish, "https://api.example.com"));
        let publish = Grants::new(&["publish:local:**"]).unwrap();
        assert!(!publish.allows_http("https", "api.example.com", 443));
        for bad in [
            "http:api.example.com",
            "http:ftp://api.example.com",
            "http:https://api.example.com/v1",
            "http:https://*",
            "http:https://API.example.com",
            "http:https://a.com:0",
        ] {
            assert!(Grants::new(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_grants_are_refused() {
        assert!(Grants::new(&["send:rabbit:x"]).is_err());
        assert!(Grants::new(&["publish:rabbit"]).is_err());
        assert!(Grants::new(&["publish::x"]).is_err());
        assert!(Grants::new(&["publish:rabbit:x.***"]).is_err());
        assert!(Grants::new(&[format!("publish:rabbit:{}", "x".repeat(600))]).is_err());
    }

    #[test]
    fn a_star_is_one_word_and_two_are_any_run() {
        let grants = Grants::new(&[
            "receive:local:events/Booking.*",
            "publish:local:**",
            "request:rabbit:rpc.**",
        ])
        .unwrap();
        // A daemon granted `Booking.*` may take that pattern and one word of it, no wider.
        assert!(grants.allows(Access::Receive, "local:events/Booking.*"));
        assert!(grants.allows(Access::Receive, "local:events/Booking.created"));
        assert!(!grants.allows(Access::Receive, "local:events/Booking.#"));
        assert!(!grants.allows(Access::Receive, "local:events/#"));
        assert!(!grants.allows(Access::Receive, "local:events/*"));
        assert!(!grants.allows(Access::Receive, "local:events/Booking.a.b"));
        assert!(!grants.allows(Access::Receive, "local:events/Booking.x/y"));
        // `**` is any run, none included.
        assert!(grants.allows(Access::Publish, "local:a.b/c.d"));
        assert!(grants.allows(Access::Request, "rabbit:rpc.a.b"));
        assert!(grants.allows(Access::Request, "rabbit:rpc."));
        assert!(!grants.allows(Access::Request, "rabbit:rpcx"));
        // Everything else is literal, regular-expression characters included.
        let literal = Grants::new(&["publish:local:a+b.(c)"]).unwrap();
        assert!(literal.allows(Access::Publish, "local:a+b.(c)"));
        assert!(!literal.allows(Access::Publish, "local:aab.c"));
    }
}
