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
