//! The units a host runs, as its file and the API define them: routes, subscriptions (and the
//! events place they read), daemons.

use crate::check::{
    ConfigError, check_item_name, check_name, check_pattern, check_routing_key, invalid,
    is_dot_segment, pattern_words, plugin_ref,
};
use serde::{Deserialize, Serialize};

/// Deliveries of one message without a settlement before it is dead-lettered, unless a
/// route or queue says otherwise.
pub const DEFAULT_MAX_DELIVERIES: u32 = 10;

/// Declares a unit that runs a chain of plugins (a route, a subscription): the struct as
/// given, with the fields every chain has between its own and those of its `after` block,
/// declared once here so that the two cannot drift apart in the file, the API or the
/// OpenAPI document.
macro_rules! chain_unit {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }
     $(after { $($(#[$after_meta:meta])* pub $after:ident: $after_ty:ty,)* })?) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            /// Plugins in order: transformers, optionally ending in one handler.
            #[serde(default)]
            pub through: Vec<String>,
            /// `connection:address` for the outputs; may be left out when the chain ends in a
            /// handler whose replies go to each request's reply-to.
            pub to: Option<String>,
            /// Inputs handled at once.
            #[serde(default = "default_concurrency")]
            pub concurrency: usize,
            #[serde(default)]
            pub retry: RetryConfig,
            /// Where dead letters go; by default `{address}.dead` beside the input (a
            /// subscription's input is its queue on the events connection).
            pub dead_letter: Option<String>,
            /// Outputs, publications, replies and kv writes go to the outbox in one transaction
            /// with the input's record in the unit's inbox, before the input is acked; the
            /// relay sends them. Survives a broker that is down; a redelivered input is not
            /// handled twice.
            #[serde(default)]
            pub durable: bool,
            /// Remember the ids of the inputs handled, and ack a redelivered one without
            /// running the chain again (always so when durable).
            #[serde(default)]
            pub inbox: bool,
            /// The most messages one input may make (default: `server.max_outputs`).
            pub max_outputs: Option<usize>,
            /// Dead-letter an input delivered more often than this without being settled.
            #[serde(default = "default_max_deliveries")]
            pub max_deliveries: u32,
            $($($(#[$after_meta])* pub $after: $after_ty,)*)?
        }
    };
}

/// `$into` (a struct literal of another chain unit, its own fields given) with the chain
/// fields of `$from`.
macro_rules! copy_chain {
    ($from:expr, $into:ident { $($field:ident: $value:expr),* $(,)? }) => {
        $into {
            $($field: $value,)*
            through: $from.through.clone(),
            to: $from.to.clone(),
            concurrency: $from.concurrency,
            retry: $from.retry.clone(),
            dead_letter: $from.dead_letter.clone(),
            durable: $from.durable,
            inbox: $from.inbox,
            max_outputs: $from.max_outputs,
            max_deliveries: $from.max_deliveries,
        }
    };
}

/// A daemon: a daemon plugin the host runs for as long as it is wanted, restarting it when it
/// fails and marking it failed when it keeps failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    pub name: String,
    /// The daemon plugin to run: `name`, or `name@version` to pin a version.
    pub plugin: String,
    /// Run on every host of a shared database. By default a daemon runs on one host at a
    /// time, which holds its lease in the database; another takes over when that host dies.
    #[serde(default)]
    pub each_host: bool,
    /// Failures (an error returned, a trap, a spin past its CPU budget) within
    /// `failure_window_secs` that mark it failed; it then stays stopped until restarted.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_failure_window_secs")]
    pub failure_window_secs: u64,
}

pub fn default_max_failures() -> u32 {
    5
}

pub fn default_failure_window_secs() -> u64 {
    300
}

impl DaemonConfig {
    /// Checks one daemon on its own. `prefix` goes before each key named in an error.
    pub fn check(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{prefix}{field}");
        check_item_name(&key("name"), &self.name)?;
        let (plugin, version) = plugin_ref(&self.plugin);
        check_item_name(&key("plugin"), plugin)?;
        if version.is_some_and(|v| v.is_empty() || v.len() > 64 || is_dot_segment(v)) {
            return Err(invalid(
                key("plugin"),
                "write it as `name` or `name@version`",
            ));
        }
        if self.max_failures == 0 || self.max_failures > 1000 {
            return Err(invalid(key("max_failures"), "must be 1 to 1000"));
        }
        if self.failure_window_secs == 0 || self.failure_window_secs > 7 * 24 * 3600 {
            return Err(invalid(
                key("failure_window_secs"),
                "must be 1 second to 7 days (604800)",
            ));
        }
        Ok(())
    }
}

/// Where model events go: a topic exchange (AMQP, or the embedded broker's) or a Kafka topic,
/// on one connection. Each host has its own; hosts that share events name the same place.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The connection carrying events (`embedded`, `amqp`, `kafka`, or `http`: webhooks).
    pub connection: String,
    /// The topic exchange (AMQP, embedded) or topic (Kafka) events are published to.
    pub exchange: String,
    /// Words put before every event's routing key (PDC's `pdc.prod`): `Booking.created` goes
    /// out as `pdc.prod.Booking.created`, and a subscription's or daemon's pattern
    /// (`Booking.*`) takes only the events under it, so environments sharing a broker keep
    /// apart. Grants and patterns are written without it.
    pub prefix: Option<String>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            connection: "local".into(),
            exchange: "events".into(),
            prefix: None,
        }
    }
}

impl EventsConfig {
    /// `key` (a routing key or a pattern) as it goes on the wire: behind the prefix, if any.
    pub fn key(&self, key: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}.{key}"),
            None => key.to_owned(),
        }
    }

    /// Whether `connection:exchange` is where this host's events go (so the prefix applies).
    pub fn is_at(&self, connection: &str, exchange: &str) -> bool {
        self.connection == connection && self.exchange == exchange
    }

    pub fn validate(&self, has_connection: &dyn Fn(&str) -> bool) -> Result<(), ConfigError> {
        if let Some(prefix) = &self.prefix {
            let word = |w: &str| {
                !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            };
            if prefix.len() > 100 || !prefix.split('.').all(word) {
                return Err(invalid(
                    "events.prefix",
                    "must be words of letters, digits, `_` or `-` joined by `.` (`pdc.prod`), at most 100 bytes",
                ));
            }
        }
        if !has_connection(&self.connection) {
            return Err(invalid(
                "events.connection",
                format!(
                    "names connection `{}`, which is not configured",
                    self.connection
                ),
            ));
        }
        check_name("events.exchange", &self.exchange)?;
        if self.exchange.is_empty() || self.exchange.contains('/') {
            return Err(invalid(
                "events.exchange",
                "must be an exchange (or Kafka topic) name, not empty and without `/`",
            ));
        }
        Ok(())
    }
}

chain_unit! {
    /// A subscription: every event whose routing key matches `pattern` runs through `through`
    /// from a queue (or Kafka consumer group) of its own, named from the service, the chain and
    /// the pattern, so two services never share one by accident.
    #[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct SubscriptionConfig {
        pub name: String,
        /// Routing keys to take, in AMQP's topic rules: `Booking.*` (one word), `Booking.#` or
        /// `#` (any number), `Booking.updated`.
        pub pattern: String,
        /// The subscribing service: part of the queue's name.
        pub service: String,
    }
}

impl SubscriptionConfig {
    /// The queue (or Kafka consumer group) of this subscription:
    /// `{service}.{plugins joined by -}.{pattern}`, with `*` as `any` and `#` as `all`
    /// (`billing.notify.Booking.any`); `forward` for an empty chain.
    pub fn queue(&self) -> String {
        let chain = if self.through.is_empty() {
            "forward".to_owned()
        } else {
            self.through
                .iter()
                .map(|p| plugin_ref(p).0)
                .collect::<Vec<_>>()
                .join("-")
        };
        format!("{}.{chain}.{}", self.service, pattern_words(&self.pattern))
    }

    /// The route that runs it: from its queue on the events connection.
    pub fn route(&self, events: &EventsConfig) -> RouteConfig {
        copy_chain!(
            self,
            RouteConfig {
                name: self.name.clone(),
                from: format!("{}:{}", events.connection, self.queue()),
                reply_to_allow: Vec::new(),
                reply_to: None,
            }
        )
    }

    /// Checks one subscription on its own: its name, service and pattern, and the route it
    /// becomes on `events`. `prefix` goes before each key named in an error.
    pub fn check(
        &self,
        prefix: &str,
        events: &EventsConfig,
        has_connection: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{prefix}{field}");
        check_item_name(&key("name"), &self.name)?;
        check_item_name(&key("service"), &self.service)?;
        check_pattern(&key("pattern"), &self.pattern)?;
        self.route(events)
            .check(prefix, has_connection)
            .map_err(|e| match e {
                // The route's `from` is the subscription's queue, which it does not name itself.
                ConfigError::Invalid { key: k, problem } if k == key("from") => invalid(
                    key("service"),
                    format!("the queue `{}` made from it: {problem}", self.queue()),
                ),
                other => other,
            })
    }
}

chain_unit! {
    /// A route: every message of `from` runs through `through`, its outputs going to `to`.
    #[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RouteConfig {
        pub name: String,
        /// `connection:address` to consume.
        pub from: String,
    }
    after {
        /// Connections and addresses (`connection:address` globs) a reply may go to besides the
        /// input's own connection; none by default.
        #[serde(default)]
        pub reply_to_allow: Vec<String>,
        /// Where a handler's reply goes when the request names no reply-to (edeposit's clients
        /// send only a `UUID` header and read replies from a fixed address).
        #[serde(default)]
        pub reply_to: Option<String>,
    }
}

fn default_max_deliveries() -> u32 {
    DEFAULT_MAX_DELIVERIES
}

impl Default for RouteConfig {
    /// A route with every optional key at its default; `name` and `from` are to be set.
    fn default() -> Self {
        RouteConfig {
            name: String::new(),
            from: String::new(),
            reply_to_allow: Vec::new(),
            reply_to: None,
            through: Vec::new(),
            to: None,
            concurrency: default_concurrency(),
            retry: RetryConfig::default(),
            dead_letter: None,
            durable: false,
            inbox: false,
            max_outputs: None,
            max_deliveries: default_max_deliveries(),
        }
    }
}

fn default_concurrency() -> usize {
    16
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts after the first before a message is dead-lettered.
    pub max: u32,
    /// The first retry's delay; each further one doubles it, up to `max_backoff_ms`.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max: 5,
            backoff_ms: 100,
            max_backoff_ms: 30_000,
        }
    }
}

impl RouteConfig {
    /// Checks one route on its own (what serde cannot): its name, the shape of its
    /// addresses, that their connections exist, and its limits. `prefix` is put before each
    /// key named in an error (`routes[0].`, or nothing for an API body).
    pub fn check(
        &self,
        prefix: &str,
        has_connection: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{prefix}{field}");
        check_item_name(&key("name"), &self.name)?;
        check_address(&key("from"), &self.from, has_connection)?;
        if let Some(to) = &self.to {
            check_address(&key("to"), to, has_connection)?;
        }
        if let Some(reply_to) = &self.reply_to {
            check_address(&key("reply_to"), reply_to, has_connection)?;
        }
        match &self.dead_letter {
            Some(dead) => check_address(&key("dead_letter"), dead, has_connection)?,
            // The default, `{from}.dead`, must be a name too.
            None => check_address(&key("from"), &format!("{}.dead", self.from), has_connection)
                .map_err(|e| match e {
                    ConfigError::Invalid { key, problem } => ConfigError::Invalid {
                        key,
                        problem: format!("{problem} (with `.dead` added, the default dead_letter; set `dead_letter` or use a shorter name)"),
                    },
                    other => other,
                })?,
        }
        if self.concurrency == 0 {
            return Err(invalid(key("concurrency"), "must be at least 1"));
        }
        if self.max_outputs == Some(0) {
            return Err(invalid(key("max_outputs"), "must be at least 1"));
        }
        if self.max_deliveries == 0 {
            return Err(invalid(key("max_deliveries"), "must be at least 1"));
        }
        self.reply_grants()
            .map_err(|e| invalid(key("reply_to_allow"), e.to_string()))?;
        for (i, plugin) in self.through.iter().enumerate() {
            let (name, version) = plugin_ref(plugin);
            check_item_name(&key(&format!("through[{i}]")), name)?;
            if version == Some("") {
                return Err(invalid(
                    key(&format!("through[{i}]")),
                    format!("`{plugin}` has no version after `@`"),
                ));
            }
        }
        Ok(())
    }
    /// The route's `reply_to_allow`, as `publish:` grants.
    pub fn reply_grants(&self) -> Result<crate::grant::Grants, crate::grant::GrantError> {
        let patterns: Vec<String> = self
            .reply_to_allow
            .iter()
            .map(|p| format!("publish:{p}"))
            .collect();
        crate::grant::Grants::new(&patterns)
    }
}

fn check_address(
    key: &str,
    address: &str,
    has_connection: &dyn Fn(&str) -> bool,
) -> Result<(), ConfigError> {
    let Some((connection, rest)) = address.split_once(':') else {
        return Err(invalid(
            key,
            format!("`{address}` is not connection:address"),
        ));
    };
    if rest.is_empty() {
        return Err(invalid(
            key,
            format!("`{address}` has no address after the colon"),
        ));
    }
    if !has_connection(connection) {
        return Err(invalid(
            key,
            format!("`{address}` names connection `{connection}`, which is not configured"),
        ));
    }
    // A queue, or an exchange and a routing key: each within what brokers take.
    let (name, routing_key) = rest.split_once('/').unwrap_or((rest, ""));
    check_name(key, name)?;
    check_routing_key(key, routing_key)
}
