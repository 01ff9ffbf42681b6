//! Addresses (`connection:address`) and the rules every name in one keeps, whichever
//! transport it goes to: what configuration, routes, the API and every transport check before
//! anything reaches a broker.

/// A name or address no broker would take, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{address}` is not a valid address: {problem}")]
pub struct InvalidAddress {
    pub address: String,
    pub problem: String,
}

/// A `connection:address` pair, as routes and the CLI name where messages come from and go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub connection: String,
    pub address: String,
}

impl Address {
    pub fn parse(text: &str) -> Result<Address, InvalidAddress> {
        match text.split_once(':') {
            Some((connection, address)) if !connection.is_empty() && !address.is_empty() => {
                Ok(Address {
                    connection: connection.to_owned(),
                    address: address.to_owned(),
                })
            }
            _ => Err(InvalidAddress {
                address: text.to_owned(),
                problem: "write it as connection:address, e.g. local:orders.in".into(),
            }),
        }
    }

    /// The same connection, another address.
    pub fn sibling(&self, address: impl Into<String>) -> Address {
        Address {
            connection: self.connection.clone(),
            address: address.into(),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.connection, self.address)
    }
}

/// The longest name a broker takes: AMQP's short strings (queue, exchange, routing key, header
/// name) hold 255 bytes, and the embedded broker keeps the same rule so that an address works
/// on either.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks a name before it reaches a broker: `what` says what it names (`queue`, `exchange`,
/// `routing key`) for the error. Empty names are refused unless `may_be_empty` (the default
/// exchange, an empty routing key); so are names over [`MAX_NAME_BYTES`] and names holding
/// control characters.
pub fn check_name(what: &str, name: &str, may_be_empty: bool) -> Result<(), InvalidAddress> {
    let problem = if name.is_empty() && !may_be_empty {
        format!("a {what} name cannot be empty")
    } else if name.len() > MAX_NAME_BYTES {
        format!(
            "a {what} name is at most {MAX_NAME_BYTES} bytes; this one is {}",
            name.len()
        )
    } else if name.chars().any(char::is_control) {
        format!("a {what} name cannot hold control characters")
    } else {
        return Ok(());
    };
    Err(InvalidAddress {
        address: shorten(name),
        problem,
    })
}

/// The start of a long value, for an error message.
pub fn shorten(value: &str) -> String {
    if value.len() <= 80 {
        return value.escape_debug().to_string();
    }
    let mut end = 60;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", value[..end].escape_debug())
}

/// What a URL's path segment or query value keeps as it is: letters, digits and `-._~`
/// (RFC 3986's unreserved characters).
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` percent-encoded for a URL's path segment or query value (a queue's name in
/// `/api/v1/queues/local/{queue}`, for the UI's links and the CLI's calls alike).
pub fn escape(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}
