//! The host's own configuration: `wharf.toml` plus `WHARF_…` environment overrides.
//!
//! Every key has a safe default, so `wharf serve` runs with no file at all: SQLite in
//! `wharf.db`, the embedded broker as connection `local`, the listener on 127.0.0.1:8080, the
//! example plugins from `plugins/dist/` and a demo route. An environment variable overrides a
//! key by its path in capitals, sections joined by `__`: `WHARF_SERVER__LISTEN=0.0.0.0:9000`.
//! Errors name the key (`routes[0].retry.max`) and where its value came from.

pub use crate::broker::ConnectionConfig;
pub use crate::check::ConfigError;
use crate::check::{check_connection_name, invalid, plugin_ref};
pub use crate::settings::{OutboxConfig, PluginConfig, ServerConfig, ServerTlsConfig};
pub use crate::units::{DaemonConfig, EventsConfig, RetryConfig, RouteConfig, SubscriptionConfig};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The file this was read from (none: the built-in defaults).
    #[serde(skip)]
    pub file: Option<PathBuf>,
    pub server: ServerConfig,
    // A file says what runs: without `[connections]`, `[plugins]`, `[[routes]]` or
    // `[[daemons]]` it has none of the defaults' (`local` is added back by `load`), rather
    // than the demo route and the heartbeat.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// This host's outbox relay and how long sent messages and handled ids are kept.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Where this host publishes model events and where its subscriptions read them.
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
    #[serde(default)]
    pub daemons: Vec<DaemonConfig>,
    /// Outbox tables in applications' own databases, relayed as this host's outbox is.
    #[serde(default)]
    pub sources: Vec<crate::settings::SourceConfig>,
}

impl Default for Config {
    /// What `wharf serve` runs with no file: the embedded broker as `local`, the example
    /// plugins and the demo route `local:demo.in` → `uppercase` → `local:demo.out`.
    fn default() -> Self {
        Config {
            file: None,
            server: ServerConfig::default(),
            connections: BTreeMap::from([("local".to_owned(), ConnectionConfig::embedded())]),
            // The example daemon publishes the host's heartbeat as an event.
            plugins: BTreeMap::from([(
                "heartbeat".to_owned(),
                PluginConfig {
                    publish: vec!["local:events/Host.heartbeat".into()],
                    ..PluginConfig::default()
                },
            )]),
            events: EventsConfig::default(),
            subscriptions: Vec::new(),
            daemons: vec![DaemonConfig {
                name: "heartbeat".into(),
                plugin: "heartbeat".into(),
                each_host: false,
                max_failures: crate::units::default_max_failures(),
                failure_window_secs: crate::units::default_failure_window_secs(),
            }],
            routes: vec![RouteConfig {
                name: "demo".into(),
                from: "local:demo.in".into(),
                through: vec!["uppercase".into()],
                to: Some("local:demo.out".into()),
                ..RouteConfig::default()
            }],
            outbox: OutboxConfig::default(),
            sources: Vec::new(),
        }
    }
}

impl Config {
    /// Reads the defaults, then `file` (if given), then `WHARF_…` variables, and checks the
    /// result. With a file, the demo route and the local connection are not added: the file
    /// says what runs (a file without `[connections]` still gets `local`).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        match file {
            None => figment = figment.merge(Serialized::defaults(Config::default())),
            Some(path) => {
                if !path.is_file() {
                    return Err(invalid(
                        "--config",
                        format!("{} does not exist or is not a file", path.display()),
                    ));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
        }
        // Only variables with a section (`WHARF_SERVER__LISTEN`) are configuration; others
        // such as WHARF_DATABASE belong to the command line.
        figment = figment.merge(
            Env::prefixed("WHARF_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.file = file.map(Path::to_path_buf);
        config
            .connections
            .entry("local".into())
            .or_insert_with(ConnectionConfig::embedded);
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: references between sections and the shape of addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.outbox.validate()?;
        for (i, source) in self.sources.iter().enumerate() {
            source.validate(i)?;
            if self.sources[..i].iter().any(|s| s.name == source.name) {
                return Err(invalid(
                    format!("sources[{i}].name"),
                    format!("`{}` names another source already", source.name),
                ));
            }
        }
        if !(1..=100_000).contains(&self.server.instance_pool) {
            return Err(invalid("server.instance_pool", "must be 1 to 100000"));
        }
        if !(1..=100_000).contains(&self.server.max_in_flight) {
            return Err(invalid("server.max_in_flight", "must be 1 to 100000"));
        }
        if let Some(name) = &self.server.name {
            let fine = (1..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !fine {
                return Err(invalid(
                    "server.name",
                    "1 to 64 letters, digits, `-`, `_` or `.`",
                ));
            }
        }
        self.events
            .validate(&|name| self.connections.contains_key(name))?;
        let mut hooks: std::collections::HashMap<String, &str> = Default::default();
        for (name, connection) in &self.connections {
            for (path, _) in connection.hooks() {
                if let Some(first) = hooks.insert(path.clone(), name) {
                    return Err(invalid(
                        format!("connections.{name}.hooks.{path}"),
                        format!("`/hooks/{path}` is connection `{first}`'s already"),
                    ));
                }
            }
        }
        let plugins = self.plugin_sources()?;
        // Routes, subscriptions and daemons share one set of names: a clash names both.
        let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        let mut unit_name = |name: &str, at: String| match names.get(name) {
            Some(first) => Err(invalid(
                format!("{at}.name"),
                format!(
                    "`{name}` names {first} already (routes, subscriptions and daemons share one set of names)"
                ),
            )),
            None => {
                names.insert(name.to_owned(), at);
                Ok(())
            }
        };
        let mut queues = std::collections::HashMap::new();
        for (i, subscription) in self.subscriptions.iter().enumerate() {
            let key = |field: &str| format!("subscriptions[{i}].{field}");
            unit_name(&subscription.name, format!("subscriptions[{i}]"))?;
            subscription.check(&format!("subscriptions[{i}]."), &self.events, &|name| {
                self.connections.contains_key(name)
            })?;
            if let Some(other) = queues.insert(subscription.queue(), &subscription.name) {
                return Err(invalid(
                    key("service"),
                    format!(
                        "subscriptions `{other}` and `{}` would share queue `{}`: the same service, chain and pattern",
                        subscription.name,
                        subscription.queue()
                    ),
                ));
            }
            for plugin in &subscription.through {
                if !plugins.contains_key(plugin_ref(plugin).0) {
                    return Err(invalid(
                        key("through"),
                        format!(
                            "no plugin `{plugin}` is configured under [plugins] or found in the plugin_dir"
                        ),
                    ));
                }
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{i}].{field}");
            unit_name(&route.name, format!("routes[{i}]"))?;
            route.check(&format!("routes[{i}]."), &|name| {
                self.connections.contains_key(name)
            })?;
            for plugin in &route.through {
                if !plugins.contains_key(plugin) {
                    return Err(invalid(
                        key("through"),
                        format!(
                            "no plugin `{plugin}` is configured under [plugins] or found in the plugin_dir"
                        ),
                    ));
                }
            }
        }
        for (i, daemon) in self.daemons.iter().enumerate() {
            let key = |field: &str| format!("daemons[{i}].{field}");
            unit_name(&daemon.name, format!("daemons[{i}]"))?;
            daemon.check(&format!("daemons[{i}]."))?;
            if !plugins.contains_key(plugin_ref(&daemon.plugin).0) {
                return Err(invalid(
                    key("plugin"),
                    format!(
                        "no plugin `{}` is configured under [plugins] or found in the plugin_dir",
                        daemon.plugin
                    ),
                ));
            }
        }
        for (key, value) in [
            ("server.max_outputs", self.server.max_outputs),
            ("server.max_request_bytes", self.server.max_request_bytes),
            ("server.max_response_bytes", self.server.max_response_bytes),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (name, connection) in &self.connections {
            check_connection_name(&format!("connections.{}", name.escape_debug()), name)?;
            connection.check(&format!("connections.{name}."))?;
        }
        for (name, plugin) in &plugins {
            if plugin.path.as_os_str().is_empty() {
                return Err(invalid(
                    format!("plugins.{name}.path"),
                    format!("is required (there is no {name}.wasm in the plugin_dir)"),
                ));
            }
        }
        Ok(())
    }

    /// The plugins to load, by name: those under `[plugins]`, and every `.wasm` file in the
    /// plugin_dir under its file name (unless `[plugins]` has that name).
    pub fn plugin_sources(&self) -> Result<BTreeMap<String, PluginConfig>, ConfigError> {
        let mut plugins = self.plugins.clone();
        let Some(dir) = self.server.plugin_dir.as_ref().filter(|dir| dir.is_dir()) else {
            return Ok(plugins);
        };
        let unreadable = |e: std::io::Error| {
            invalid(
                "server.plugin_dir",
                format!("cannot read {}: {e}", dir.display()),
            )
        };
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            if path.extension().is_some_and(|e| e == "wasm")
                && let Some(name) = path.file_stem().and_then(|s| s.to_str())
            {
                let plugin = plugins.entry(name.to_owned()).or_default();
                // `[plugins.NAME]` without a path gives settings to the plugin_dir's file.
                if plugin.path.as_os_str().is_empty() {
                    plugin.path = path.clone();
                }
            }
        }
        Ok(plugins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::amqp::AmqpConfig;
    use crate::redact::redact;
    use crate::tls::TlsConfig;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wharf.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path))
    }

    #[test]
    fn no_file_means_the_embedded_defaults_and_the_demo_route() {
        let config = Config::default();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.database, "sqlite://wharf.db");
        assert!(matches!(
            config.connections["local"],
            ConnectionConfig::Embedded(_)
        ));
        assert_eq!(config.routes[0].from, "local:demo.in");
        assert_eq!(config.routes[0].to.as_deref(), Some("local:demo.out"));
    }

    #[test]
    fn a_file_is_read_and_local_is_always_there() {
        let config = load_text(
            r#"
            [server]
            listen = "127.0.0.1:9999"
            plugin_dir = "/nonexistent"
            [plugins.up]
            path = "up.wasm"
            timeout_ms = 50
            [[routes]]
            name = "r"
            from = "local:a"
            through = ["up"]
            to = "local:b"
            retry = { max = 2, backoff_ms = 10 }
            "#,
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.plugins["up"].timeout_ms, 50);
        assert_eq!(config.routes[0].retry.max, 2);
        assert_eq!(config.routes[0].retry.max_backoff_ms, 30_000);
        assert!(config.connections.contains_key("local"));
    }

    #[test]
    fn amqp_connections_are_checked_by_key() {
        let base =
            "[server]\nplugin_dir = \"/nonexistent\"\n[connections.rabbit]\nkind = \"amqp\"\n";
        let e = load_text(base).unwrap_err().to_string();
        assert!(e.contains("connections.rabbit.url"), "{e}");
        let e = load_text(&format!("{base}url = \"http://x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("connections.rabbit.url") && e.contains("http://x"),
            "{e}"
        );
        let e = load_text(&format!(
            "{base}url = \"amqp://u:secret@h/%2f\"\n[[connections.rabbit.queues]]\nname = \"q\"\ntype = \"stream\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("connections.rabbit.queues[0].type"), "{e}");
        let e = load_text(&format!(
            "{base}url = \"amqp://h\"\ntls = {{ cert = \"c.pem\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("connections.rabbit.tls"), "{e}");
        load_text(&format!(
            "{base}url = \"amqps://h\"\ntls = {{ pkcs12 = \"c.p12\", pkcs12_password = \"x\" }}\n"
        ))
        .expect("a PKCS#12 bundle alone is a client certificate");
        let e = load_text(&format!("{base}url = \"amqp://h\"\nurll = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("urll"), "{e}");
        let config = load_text(&format!(
            "{base}url = \"amqp://h\"\nurls = [\"amqp://h2\"]\n[[connections.rabbit.exchanges]]\nname = \"events\"\ntype = \"topic\"\n"
        ))
        .unwrap();
        let ConnectionConfig::Amqp(amqp) = &config.connections["rabbit"] else {
            panic!("an amqp connection");
        };
        assert_eq!(amqp.all_urls(), ["amqp://h", "amqp://h2"]);
        assert!(amqp.exchanges[0].durable);
        assert_eq!(redact("amqp://u:secret@h/%2f"), "amqp://u:***@h/%2f");
        assert_eq!(
            redact("https://ghp_TOKEN123@api.example.com/hooks"),
            "https://***@api.example.com/hooks"
        );
        assert_eq!(
            redact("https://h.example/x?api_key=k1&page=2"),
            "https://h.example/x?api_key=***&page=2"
        );
        assert_eq!(
            redact("https://ghp_TOKEN123:x-oauth-basic@github.com/o/r"),
            "https://***:***@github.com/o/r"
        );
        assert_eq!(
            redact("https://ghp_TOKEN123@h.example/?signature=s1"),
            "https://***@h.example/?signature=***"
        );
        assert_eq!(redact("not a url :// tok@en"), "not a url ://***@en");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=secret&sslpassword=key"),
            "postgres://u@h/db?sslmode=require&password=***&sslpassword=***"
        );
        let mut config = Config::default();
        config.server.database = "postgres://u:hunter2@h/db".into();
        config.connections.insert(
            "rabbit".into(),
            ConnectionConfig::Amqp(Box::new(AmqpConfig {
                url: Some("amqp://u:hunter2@h/%2f".into()),
                urls: vec!["amqps://u:hunter2@h2/%2f".into()],
                tls: Some(TlsConfig {
                    ca: None,
                    cert: None,
                    key: None,
                    pkcs12: Some("id.p12".into()),
                    pkcs12_password: "hunter2".into(),
                }),
                ..AmqpConfig::default()
            })),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn limits_that_would_lose_or_loop_messages_are_refused_by_key() {
        let base = "[server]\nplugin_dir = \"/nonexistent\"\n[connections.rabbit]\nkind = \"amqp\"\nurl = \"amqp://h\"\n";
        // A queue the broker would silently trim or expire.
        for limit in ["max_length = 10", "message_ttl_ms = 1000"] {
            let e = load_text(&format!(
                "{base}[[connections.rabbit.queues]]\nname = \"q\"\n{limit}\n"
            ))
            .unwrap_err()
            .to_string();
            let field = limit.split(' ').next().unwrap();
            assert!(
                e.contains(&format!("connections.rabbit.queues[0].{field}"))
                    && e.contains("dead_letter_exchange"),
                "{e}"
            );
        }
        // With a dead-letter exchange they keep what they remove.
        load_text(&format!(
            "{base}[[connections.rabbit.queues]]\nname = \"q\"\nmax_length = 10\ndead_letter_exchange = \"\"\ndead_letter_routing_key = \"q.dead\"\n"
        ))
        .unwrap();
        let long = "q".repeat(256);
        let e = load_text(&format!(
            "{base}[[connections.rabbit.queues]]\nname = \"{long}\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("connections.rabbit.queues[0].name") && e.contains("255"),
            "{e}"
        );
        let e = load_text(
            "[server]\nplugin_dir = \"/nonexistent\"\n[connections.local]\nkind = \"embedded\"\n[[connections.local.queues]]\nname = \"q\"\nmax_deliveries = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("connections.local.queues[0].max_deliveries"),
            "{e}"
        );
        let route = "[server]\nplugin_dir = \"/nonexistent\"\n[[routes]]\nname = \"r\"\nfrom = \"local:a\"\nto = \"local:b\"\n";
        for (line, key) in [
            ("max_outputs = 0", "routes[0].max_outputs"),
            ("max_deliveries = 0", "routes[0].max_deliveries"),
            ("reply_to_allow = [\"nocolon\"]", "routes[0].reply_to_allow"),
        ] {
            let e = load_text(&format!("{route}{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{line}: {e}");
        }
        let e = load_text("[server]\nplugin_dir = \"/nonexistent\"\nmax_outputs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.max_outputs"), "{e}");
    }

    #[test]
    fn a_file_without_routes_runs_none() {
        let config = load_text("[server]\nplugin_dir = \"/nonexistent\"\n").unwrap();
        assert!(config.routes.is_empty());
        assert_eq!(config.connections.len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_text("[server]\nlisten = 12\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
        let e = load_text("[server]\nlisen = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = load_text("[[routes]]\nname = \"r\"\nfrom = \"nowhere:q\"\nto = \"local:b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("routes[0].from") && e.contains("nowhere"), "{e}");
        let e = load_text("[[routes]]\nname = \"r\"\nfrom = \"local:a\"\nthrough = [\"ghost\"]\nto = \"local:b\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("routes[0].through") && e.contains("ghost"),
            "{e}"
        );
        let e = Config::load(Some(Path::new("/no/such/wharf.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
