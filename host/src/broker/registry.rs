//! The kinds of connection, in one list.
//!
//! Each transport is a folder of `broker/` whose definition type implements
//! [`TransportConfig`]: its checks, how its secrets are hidden and kept, how it is tested,
//! opened and given its topology, the fields a form or a flag sets, and what it can do. The
//! [`transports!`] line below is the only place that lists them: it makes the tagged enum
//! [`ConnectionConfig`] the file, the API and the OpenAPI document read, and the dispatch of
//! every operation on it. Nothing above `broker/` names a kind; what differs between kinds is
//! asked of [`Capabilities`].

use super::{BrokerError, ConnectionTest, Producer};
use crate::check::{ConfigError, invalid};
use crate::store::Store;
use crate::units::RouteConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How a transport carries model events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Events {
    /// It carries none.
    None,
    /// A topic exchange (or subject tree): an event goes to `exchange/key`, and each
    /// subscription has a queue of its own bound to the keys it takes.
    Exchange,
    /// One log (a Kafka topic) holds every event; an event goes to the log itself, and each
    /// subscription reads all of it in a group of its own, taking the keys it wants.
    Log,
}

/// What a transport can and cannot do, known without connecting. Every surface asks this
/// rather than a connection's kind.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Capabilities {
    /// How model events travel on it.
    pub events: Events,
    /// Whether a subscription can read events from it (a webhook endpoint cannot).
    pub subscriptions: bool,
    /// Whether it can say how many messages wait at an address.
    pub depth: bool,
    /// Whether it can remove an address's ready messages.
    pub purge: bool,
    /// Whether it can show ready messages without taking them.
    pub peek: bool,
    /// Whether a caller can hold what it took unsettled across calls (a leased take).
    pub leases: bool,
    /// Whether its consumers report lag per partition.
    pub lag: bool,
    /// Whether it takes messages posted to this host at `/ingress/NAME/…`.
    pub ingress: bool,
}

/// How a [`Field`] is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Input {
    /// A line of text.
    Text,
    /// A password or token: never shown back; `-` on the command line reads standard input.
    Secret,
    /// A whole number.
    Number,
    /// On or off (a checkbox, a flag without a value).
    Switch,
    /// `NAME=VALUE` pairs into a map (a repeatable flag).
    Pairs,
}

/// One field of a definition that an admin types: a form's input and a `wharf connection
/// add` flag, declared once by its transport. The rest of a definition is JSON.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Field {
    /// Where it goes in the definition, dotted (`sasl.password`, `tls.ca`).
    pub path: &'static str,
    /// The command line's flag, without `--`.
    pub flag: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub input: Input,
}

impl Field {
    /// The JSON value of what was typed for this field (a flag's values, a form's text):
    /// the last value, a number, `true`, or `NAME=VALUE` pairs (one a line or one a value).
    pub fn value(&self, typed: &[String]) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        let last = typed.last().map(|v| v.trim()).unwrap_or_default();
        Ok(match self.input {
            Input::Switch => Value::Bool(true),
            Input::Number => last
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| format!("takes a whole number, not `{}`", last.escape_debug()))?,
            Input::Text | Input::Secret => Value::String(last.to_owned()),
            Input::Pairs => {
                let mut map = serde_json::Map::new();
                for pair in typed.iter().flat_map(|v| v.lines()) {
                    let pair = pair.trim();
                    if pair.is_empty() {
                        continue;
                    }
                    let Some((name, value)) = pair.split_once('=') else {
                        return Err(format!("takes NAME=VALUE, not `{}`", pair.escape_debug()));
                    };
                    map.insert(name.trim().into(), value.trim().into());
                }
                Value::Object(map)
            }
        })
    }
}

/// Sets the dotted `path` of a definition (`sasl.password`), making the objects on the way;
/// a map (`settings`) is merged into what is there.
pub fn set_field(
    definition: &mut serde_json::Map<String, serde_json::Value>,
    path: &str,
    value: serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value;
    let (parents, last) = match path.rsplit_once('.') {
        Some((parents, last)) => (Some(parents), last),
        None => (None, path),
    };
    let mut at = definition;
    for part in parents.into_iter().flat_map(|p| p.split('.')) {
        at = at
            .entry(part)
            .or_insert_with(|| Value::Object(serde_json::Map::new()))
            .as_object_mut()
            .ok_or_else(|| format!("`{part}` is a JSON object"))?;
    }
    match (at.get_mut(last), value) {
        (Some(Value::Object(there)), Value::Object(more)) => there.extend(more),
        (_, value) => {
            at.insert(last.into(), value);
        }
    }
    Ok(())
}

/// The TLS fields of every transport that speaks TLS: a private CA, a client certificate and
/// its key (PEM files).
pub const TLS_CA: Field = Field {
    path: "tls.ca",
    flag: "tls-ca",
    label: "CA certificate file",
    help: "a PEM file of a CA to trust besides the system's",
    input: Input::Text,
};
pub const TLS_CERT: Field = Field {
    path: "tls.cert",
    flag: "tls-cert",
    label: "Client certificate file",
    help: "a PEM client certificate the peer asks for (with the key)",
    input: Input::Text,
};
pub const TLS_KEY: Field = Field {
    path: "tls.key",
    flag: "tls-key",
    label: "Client key file",
    help: "the PEM private key of the client certificate",
    input: Input::Text,
};

/// What one kind of connection is.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Kind {
    /// As definitions name it (`kind = "amqp"`).
    pub name: &'static str,
    /// As people name it (`RabbitMQ (AMQP)`).
    pub title: &'static str,
    /// The path of the field that says where it connects (shown as its address), if any.
    pub address_field: Option<&'static str>,
    pub fields: &'static [Field],
    pub can: Capabilities,
}

/// What a connection is opened with, besides its definition.
#[derive(Clone, Copy)]
pub struct Opening<'a> {
    /// The host's database (where the embedded broker keeps its queues).
    pub store: &'a Store,
    /// Every route the host runs, for a transport that declares their queues.
    pub routes: &'a [RouteConfig],
    /// This host's stable name among the hosts sharing the broker (`[server] name`), for a
    /// transport that keeps sessions of its own on the broker.
    pub host: &'a str,
}

/// A transport's definition: the type under `[connections.NAME]` with `kind = "…"`.
#[allow(async_fn_in_trait)] // implemented and called only inside the crate, on concrete types
pub trait TransportConfig: Sized + Clone + Serialize + DeserializeOwned {
    const KIND: Kind;

    /// Checks what serde cannot; `prefix` goes before each key named in an error.
    fn check(&self, prefix: &str) -> Result<(), ConfigError>;
    /// The same definition with every secret in it hidden (`***`).
    fn redacted(&self) -> Self {
        self.clone()
    }
    /// `self` as sent back from what [`TransportConfig::redacted`] showed: a secret still
    /// shown hidden keeps its stored value, but only where it goes to the same place.
    fn keep_secrets(&mut self, _stored: &Self) -> Result<(), ConfigError> {
        Ok(())
    }
    /// The first field that still holds a secret as shown hidden, if any.
    fn hidden_field(&self) -> Option<String> {
        None
    }
    /// Connects afresh and says whether it works now.
    async fn test(&self, name: &str, store: &Store) -> ConnectionTest;
    /// Opens the connection; a broker that is down is connected to in the background.
    async fn open(&self, name: &str, at: &Opening<'_>) -> Result<Producer, String>;
    /// The delivery limit the definition declares for queue `address`, if it declares one.
    fn max_deliveries(&self, _address: &str) -> Option<u32> {
        None
    }
    /// The paths under `/hooks/` the host's listener takes as ingress to this connection,
    /// each with the address it lands on (streamtools' chosen ingress paths).
    fn hooks(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// What it declares on its broker, described without connecting; `None` for nothing.
    fn schema(&self, _name: &str, _routes: &[RouteConfig]) -> Option<Vec<String>> {
        None
    }
    /// Declares [`TransportConfig::schema`]: where (passwords left out), and each item with
    /// what happened to it.
    async fn apply_schema(
        &self,
        _name: &str,
        _routes: &[RouteConfig],
    ) -> Result<Option<Applied>, BrokerError> {
        Ok(None)
    }
}

/// Where a schema was applied, and each item with what happened to it (`created`, `exists`).
pub type Applied = (String, Vec<(String, String)>);

/// Reads a definition's fields as one type, in the caller's words for what is wrong (the
/// API names the field at fault).
pub trait ReadFields {
    type Error;
    fn read<T: DeserializeOwned>(&self, fields: serde_json::Value) -> Result<T, Self::Error>;
}

macro_rules! transports {
    ($($variant:ident($kind:literal) => $config:ty,)*) => {
        /// One broker connection, by kind; the kind's fields beside `kind`.
        /// (A variant's name in lower case is its kind: serde and the OpenAPI document both
        /// read `rename_all`.)
        #[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        pub enum ConnectionConfig {
            $($variant(Box<$config>),)*
        }

        #[cfg(test)]
        #[test]
        fn each_kind_is_written_under_its_name() {
            $(
                let written = serde_json::to_value(ConnectionConfig::$variant(Box::default())).unwrap();
                assert_eq!(written["kind"], $kind);
                assert_eq!(<$config as TransportConfig>::KIND.name, $kind);
            )*
        }

        /// Every kind of connection, in the order forms list them.
        pub const KINDS: &[Kind] = &[$(<$config as TransportConfig>::KIND,)*];

        impl ConnectionConfig {
            /// What kind of connection this is.
            pub fn info(&self) -> &'static Kind {
                match self {
                    $(ConnectionConfig::$variant(_) => &<$config as TransportConfig>::KIND,)*
                }
            }

            /// Checks one connection; `prefix` is put before each key named in an error
            /// (`connections.rabbit.`, or nothing for an API body).
            pub fn check(&self, prefix: &str) -> Result<(), ConfigError> {
                match self {
                    $(ConnectionConfig::$variant(c) => c.check(prefix),)*
                }
            }

            /// The same connection with every secret in it hidden.
            pub fn redacted(&self) -> ConnectionConfig {
                match self {
                    $(ConnectionConfig::$variant(c) => {
                        ConnectionConfig::$variant(Box::new(c.redacted()))
                    })*
                }
            }

            /// `self` as sent back from what [`ConnectionConfig::redacted`] showed: every
            /// secret still shown hidden keeps its value in `stored` where it goes to the same
            /// place; a secret hidden anywhere else (another kind, another host, a new field)
            /// is an error naming its field: never carried elsewhere, nor stored as `***`.
            pub fn keep_secrets(&mut self, stored: &ConnectionConfig) -> Result<(), ConfigError> {
                #[allow(unreachable_patterns)] // with one kind, no other pairs exist
                match (&mut *self, stored) {
                    $((ConnectionConfig::$variant(new), ConnectionConfig::$variant(old)) => {
                        new.keep_secrets(old)?
                    })*
                    _ => {}
                }
                match self.hidden_field() {
                    Some(field) => Err(invalid(
                        field,
                        "is hidden (***), and nothing stored goes there (another kind, another host or a new field): give its value",
                    )),
                    None => Ok(()),
                }
            }

            /// The first field that still holds a secret as shown hidden (`***`), if any:
            /// such a definition is refused, never stored with `***` for a secret.
            pub fn hidden_field(&self) -> Option<String> {
                match self {
                    $(ConnectionConfig::$variant(c) => c.hidden_field(),)*
                }
            }

            /// Connects afresh and says whether it works now (not only what a running host
            /// last saw), each transport in its own way.
            pub async fn test(&self, name: &str, store: &Store) -> ConnectionTest {
                match self {
                    $(ConnectionConfig::$variant(c) => c.test(name, store).await,)*
                }
            }

            /// Opens connection `name` as this defines it: the one way a connection is
            /// opened, for the host's file at start and for the desired state after.
            pub async fn open(&self, name: &str, at: &Opening<'_>) -> Result<Producer, String> {
                match self {
                    $(ConnectionConfig::$variant(c) => c.open(name, at).await,)*
                }
            }

            /// The delivery limit this definition declares for queue `address`, if any: a
            /// route reading it holds to the lower of it and its own.
            pub fn max_deliveries(&self, address: &str) -> Option<u32> {
                match self {
                    $(ConnectionConfig::$variant(c) => c.max_deliveries(address),)*
                }
            }

            /// The `/hooks/` paths this definition takes as ingress, each with its address.
            pub fn hooks(&self) -> Vec<(String, String)> {
                match self {
                    $(ConnectionConfig::$variant(c) => c.hooks(),)*
                }
            }

            /// What connection `name` declares on its broker (the queues `routes` use
            /// included), described without connecting; `None` for a transport that
            /// declares nothing.
            pub fn schema(&self, name: &str, routes: &[RouteConfig]) -> Option<Vec<String>> {
                match self {
                    $(ConnectionConfig::$variant(c) => c.schema(name, routes),)*
                }
            }

            /// Declares [`ConnectionConfig::schema`] on the broker.
            pub async fn apply_schema(
                &self,
                name: &str,
                routes: &[RouteConfig],
            ) -> Result<Option<Applied>, BrokerError> {
                match self {
                    $(ConnectionConfig::$variant(c) => c.apply_schema(name, routes).await,)*
                }
            }

            /// A definition of kind `kind` from its other fields, read by `reader`; `None`
            /// for a kind there is not.
            pub fn read<R: ReadFields>(
                kind: &str,
                fields: serde_json::Value,
                reader: &R,
            ) -> Option<Result<ConnectionConfig, R::Error>> {
                match kind {
                    $($kind => Some(
                        reader.read::<$config>(fields).map(|c| ConnectionConfig::$variant(Box::new(c))),
                    ),)*
                    _ => None,
                }
            }
        }
    };
}

transports! {
    Embedded("embedded") => super::embedded::config::EmbeddedConnectionConfig,
    Amqp("amqp") => super::amqp::config::AmqpConfig,
    Kafka("kafka") => super::kafka::config::KafkaConfig,
    Http("http") => super::http::config::HttpConfig,
    Nats("nats") => super::nats::config::NatsConfig,
    Mqtt("mqtt") => super::mqtt::config::MqttConfig,
    Log("log") => super::log::config::LogConfig,
}

impl ConnectionConfig {
    /// `amqp`, `kafka`, …: as definitions name it.
    pub fn kind(&self) -> &'static str {
        self.info().name
    }

    /// The embedded broker with no declared queues (the `local` connection every host has).
    pub fn embedded() -> ConnectionConfig {
        ConnectionConfig::Embedded(Box::default())
    }
}

impl Capabilities {
    /// What an unknown kind can do: nothing.
    pub const NONE: Capabilities = Capabilities {
        events: Events::None,
        subscriptions: false,
        depth: false,
        purge: false,
        peek: false,
        leases: false,
        lag: false,
        ingress: false,
    };
}

/// The kind named `name`, if there is one.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kinds' names as a sentence's list: `` `embedded`, `amqp`, … or `http` ``.
pub fn kind_list() -> String {
    let names: Vec<String> = KINDS.iter().map(|k| format!("`{}`", k.name)).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}
