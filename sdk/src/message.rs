//! Conveniences on the generated types, so a plugin reads as what it does.

use crate::{Failure, Info, Kind, Message, Value};

impl Message {
    /// A message with `topic` and `payload` and every other field empty.
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Message {
            id: String::new(),
            topic: topic.into(),
            key: None,
            headers: Vec::new(),
            content_type: None,
            correlation_id: None,
            reply_to: None,
            priority: None,
            expiration_ms: None,
            persistent: true,
            payload: payload.into(),
            timestamp_ms: 0,
        }
    }

    /// The payload as UTF-8 text.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.payload)
    }

    /// The same message with another payload; everything else is kept.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&Value> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The first header named `name` if it is text.
    pub fn header_text(&self, name: &str) -> Option<&str> {
        match self.header(name)? {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Sets header `name`, replacing any header of that name.
    pub fn set_header(&mut self, name: impl Into<String>, value: Value) {
        let name = name.into();
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
        self.headers.push((name, value));
    }

    /// A reply to this message: addressed to its reply-to, with its correlation id.
    pub fn reply(&self, payload: impl Into<Vec<u8>>) -> Message {
        let mut reply = Message::new(self.reply_to.clone().unwrap_or_default(), payload);
        reply.correlation_id = self
            .correlation_id
            .clone()
            .or_else(|| Some(self.id.clone()));
        reply.content_type = self.content_type.clone();
        reply
    }
}

impl Info {
    fn new(kind: Kind, name: &str, version: &str) -> Self {
        Info {
            name: name.to_owned(),
            version: version.to_owned(),
            kind,
            description: String::new(),
            reusable: false,
            wants: Vec::new(),
        }
    }

    /// What a transformer says of itself.
    pub fn transformer(name: &str, version: &str) -> Self {
        Self::new(Kind::Transformer, name, version)
    }

    /// What a handler says of itself.
    pub fn handler(name: &str, version: &str) -> Self {
        Self::new(Kind::Handler, name, version)
    }

    /// What a daemon says of itself.
    pub fn daemon(name: &str, version: &str) -> Self {
        Self::new(Kind::Daemon, name, version)
    }

    /// One line for people: what the plugin does.
    pub fn with_description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Declares that an instance may be reused across calls: the plugin keeps no state
    /// between calls that changes its results.
    pub fn reusable(mut self) -> Self {
        self.reusable = true;
        self
    }

    /// Asks for a grant such as `publish:rabbit:orders.*`.
    pub fn wants(mut self, grant: &str) -> Self {
        self.wants.push(grant.to_owned());
        self
    }
}

impl Failure {
    /// Names this failure in the dead letter's (or error reply's) `exception_name` and
    /// `exception_type` headers, in place of the host's `Retry`/`Rejected` and `plugin`:
    /// `Failure::Reject(e.to_string()).named("NotFound", "lookup::NotFound")`.
    pub fn named(self, name: &str, kind: &str) -> Failure {
        crate::transformer::wharf::plugin::exception::name_failure(name, kind);
        self
    }
}
