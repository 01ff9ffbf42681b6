//! The name rules and the error of a configuration: what every part of the host checks a
//! name, a pattern or a key against, with the key named in the error. A leaf: it imports
//! nothing of the host but the address rules.

use crate::address;

/// The configuration is not usable; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Checks a queue or exchange name against what brokers take (see `address::check_name`).
pub fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    address::check_name("queue or exchange", name, false).map_err(|e| invalid(key, e.problem))
}

/// Checks a routing key (which may be empty) against what brokers take.
pub fn check_routing_key(key: &str, routing_key: &str) -> Result<(), ConfigError> {
    address::check_name("routing key", routing_key, true).map_err(|e| invalid(key, e.problem))
}

/// A connection's name: not empty, no `:`, `/` or control characters, at most 64 bytes.
pub fn check_connection_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || name.contains([':', '/', '@'])
        || name.chars().any(char::is_control)
        || is_dot_segment(name)
    {
        return Err(invalid(
            key,
            "a connection name is 1 to 64 bytes without `:`, `/`, `@` or control characters, and not `.` or `..`",
        ));
    }
    Ok(())
}

/// A route's or plugin's name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_item_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && !is_dot_segment(name)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "`{}` is not a name: use 1 to 64 letters, digits, `.`, `_` or `-` (not `.` or `..` alone)",
                name.escape_debug()
            ),
        ))
    }
}

/// Whether `name` is `.` or `..`: in a URL's path either one moves a link elsewhere however
/// it is encoded, so no name or version the host puts in a URL may be one.
pub fn is_dot_segment(name: &str) -> bool {
    name == "." || name == ".."
}

/// A plugin as a route names it: `name` (its newest enabled version) or `name@version`.
pub fn plugin_ref(text: &str) -> (&str, Option<&str>) {
    match text.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (text, None),
    }
}

/// A pattern as words a queue name can hold: `*` as `any`, `#` as `all`
/// (`Booking.*` is `Booking.any`).
pub fn pattern_words(pattern: &str) -> String {
    pattern
        .split('.')
        .map(|word| match word {
            "*" => "any",
            "#" => "all",
            word => word,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A binding pattern: words separated by `.`, each `*`, `#` or letters, digits, `_` and `-`.
pub fn check_pattern(key: &str, pattern: &str) -> Result<(), ConfigError> {
    if pattern.is_empty() || pattern.len() > 200 {
        return Err(invalid(key, "must be 1 to 200 bytes"));
    }
    for word in pattern.split('.') {
        let fine = word == "*"
            || word == "#"
            || (!word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')));
        if !fine {
            return Err(invalid(
                key,
                format!(
                    "`{}` is not a pattern: words separated by `.`, each `*` (one word), `#` (any number) or letters, digits, `_` and `-`",
                    pattern.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `table` may name a table of an application's database: `name` or `schema.name`, each a letter or `_`
/// then letters, digits and `_`, at most 63 bytes (it is written into SQL as it is).
pub fn is_table_name(table: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match table.split_once('.') {
        Some((schema, name)) => part(schema) && part(name),
        None => part(table),
    }
}

#[cfg(test)]
mod table_name_tests {
    use super::is_table_name as valid_table;

    #[test]
    fn only_plain_table_names_are_written_into_sql() {
        for good in ["wharf_outbox", "app.wharf_outbox", "_t1"] {
            assert!(valid_table(good), "{good}");
        }
        for bad in [
            "",
            "1t",
            "t; DROP TABLE users",
            "a.b.c",
            "t-1",
            "\"t\"",
            &"t".repeat(64),
        ] {
            assert!(!valid_table(bad), "{bad}");
        }
    }
}

/// Whether `pattern` (an `allowed_hosts` entry) is well formed: `[*.]name[:port|:*]`, the
/// name's labels of lower-case letters, digits and `-`.
pub fn valid_host_pattern(pattern: &str) -> bool {
    let (name, port) = match pattern.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (pattern, None),
    };
    let port_ok = match port {
        None | Some("*") => true,
        Some(port) => port.parse::<u16>().is_ok_and(|p| p > 0),
    };
    let name = name.strip_prefix("*.").unwrap_or(name);
    port_ok
        && !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// Whether `host:port` of a URL is one `pattern` allows (`default_port` is its scheme's).
pub fn host_allowed(pattern: &str, host: &str, port: u16, default_port: u16) -> bool {
    let (name, wanted) = match pattern.rsplit_once(':') {
        Some((name, "*")) => (name, None),
        Some((name, port)) => (name, port.parse::<u16>().ok()),
        None => (pattern, Some(default_port)),
    };
    if wanted.is_some_and(|wanted| wanted != port) {
        return false;
    }
    let host = host.to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(parent) => host.len() > parent.len() + 1 && host.ends_with(&format!(".{parent}")),
        None => host == name,
    }
}

#[cfg(test)]
mod host_pattern_tests {
    use super::*;

    #[test]
    fn host_patterns_allow_what_they_name() {
        assert!(host_allowed("api.example.com", "api.example.com", 443, 443));
        assert!(host_allowed("api.example.com", "API.example.com", 443, 443));
        assert!(!host_allowed(
            "api.example.com",
            "api.example.com",
            8443,
            443
        ));
        assert!(host_allowed(
            "api.example.com:8443",
            "api.example.com",
            8443,
            443
        ));
        assert!(host_allowed("api.example.com:*", "api.example.com", 1, 443));
        assert!(host_allowed("*.example.com", "a.b.example.com", 80, 80));
        assert!(!host_allowed("*.example.com", "example.com", 80, 80));
        assert!(!host_allowed("*.example.com", "evilexample.com", 80, 80));
        assert!(!host_allowed("example.com", "example.com.evil.net", 80, 80));
        for good in ["a.b", "*.example.com", "h:1", "h:*", "127.0.0.1:8080"] {
            assert!(valid_host_pattern(good), "{good}");
        }
        for bad in [
            "", "*", "*.", "a..b", "A.com", "a b", "h:0", "h:x", "h:99999", "a/b", "*.*.a",
        ] {
            assert!(!valid_host_pattern(bad), "{bad}");
        }
    }
}
