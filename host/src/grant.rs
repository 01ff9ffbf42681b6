//! Grants: what a plugin may reach, as globs over `kind:connection:address`.
//!
//! Nothing is granted by default. `publish:rabbit:orders.*` lets a plugin publish to any
//! address of connection `rabbit` that starts with `orders.`; `*` matches any run of characters
//! (dots and slashes included), `?` one character. The host checks a grant before anything
//! reaches a broker.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
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

/// The compiled grants of one plugin.
#[derive(Clone, Default)]
pub struct Grants {
    patterns: Vec<String>,
    set: GlobSet,
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Grants").field(&self.patterns).finish()
    }
}

impl Grants {
    /// Compiles `patterns`, each `kind:connection:address` with kind publish, request or receive.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Grants, GrantError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let error = |problem: &str| GrantError {
                pattern: pattern.to_owned(),
                problem: problem.to_owned(),
            };
            let mut parts = pattern.splitn(3, ':');
            let kind = parts.next().unwrap_or_default();
            if !matches!(kind, "publish" | "request" | "receive") {
                return Err(error("must start with publish:, request: or receive:"));
            }
            if parts.next().is_none_or(str::is_empty) || parts.next().is_none_or(str::is_empty) {
                return Err(error("must be kind:connection:address"));
            }
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .map_err(|e| error(&e.kind().to_string()))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| GrantError {
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
        })
    }

    /// Whether `access` to `destination` (`connection:address`) is granted.
    pub fn allows(&self, access: Access, destination: &str) -> bool {
        self.set.is_match(format!("{access}:{destination}"))
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
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
        assert!(grants.allows(Access::Publish, "rabbit:orders.eu/created"));
        assert!(!grants.allows(Access::Publish, "kafka:orders.eu"));
        assert!(!grants.allows(Access::Request, "rabbit:orders.eu"));
        assert!(grants.allows(Access::Request, "local:rpc.a"));
        assert!(!grants.allows(Access::Request, "local:rpc.ab"));
    }

    #[test]
    fn malformed_grants_are_refused() {
        assert!(Grants::new(&["send:rabbit:x"]).is_err());
        assert!(Grants::new(&["publish:rabbit"]).is_err());
        assert!(Grants::new(&["publish::x"]).is_err());
        assert!(Grants::new(&["publish:rabbit:[x"]).is_err());
    }
}
