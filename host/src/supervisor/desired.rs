//! The desired state: what should run. Two layers: this host's file (read once, read-only,
//! its own) and the database (made through the API, shared by every host on it). A name in
//! both is an error at start-up; one that appears in the database later (made through another
//! host) is not run here, and says so.

use crate::config::{
    ConnectionConfig, DaemonConfig, EventsConfig, PluginConfig, RouteConfig, SubscriptionConfig,
};
use crate::runtime::{Plugin, PluginSettings};
use crate::store::{Documents, InstalledPlugin, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where an item is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// This host's configuration file: read-only through the API.
    File,
    /// The database, through the API: shared by every host on it.
    Api,
}

/// What an admin gives one plugin (every version of it) through the API: the grants in
/// force, limits and config. Nothing is granted until an admin grants it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PluginPolicy {
    /// Grants in force, as `kind:connection:address` globs (`publish:rabbit:orders.*`), and
    /// origins for outbound HTTP (`http:https://api.example.com`).
    pub grants: Vec<String>,
    pub memory_mb: usize,
    /// CPU time one call may use.
    pub timeout_ms: u64,
    /// Wall-clock time one call may take, waits in host calls included; none: ten times
    /// `timeout_ms`.
    pub wall_ms: Option<u64>,
    /// The most one call may hand the host: results, publications, requests and kv writes,
    /// each message counted whole.
    pub output_mb: usize,
    pub max_instances: u32,
    /// Reuse instances when the plugin declares itself reusable.
    pub reuse: bool,
    pub config: BTreeMap<String, String>,
}

/// A config value as the API shows it.
fn shown_value(name: &str, value: &str) -> String {
    if crate::redact::is_secret_name(name) {
        crate::redact::HIDDEN.to_owned()
    } else if value.contains("://") {
        crate::redact::redact(value)
    } else {
        value.to_owned()
    }
}

impl Default for PluginPolicy {
    fn default() -> Self {
        let file = PluginConfig::default();
        PluginPolicy {
            grants: Vec::new(),
            memory_mb: file.memory_mb,
            timeout_ms: file.timeout_ms,
            wall_ms: file.wall_ms,
            output_mb: file.output_mb,
            max_instances: file.max_instances,
            reuse: file.reuse,
            config: BTreeMap::new(),
        }
    }
}

impl PluginPolicy {
    /// The policy with its config's secrets hidden: a value whose name looks secret
    /// (`api_key`, `token`, …) as `***`, and a URL's password, token or secret query values
    /// (`dsn = "postgres://u:***@h/db"`) as `config::redact` hides them.
    pub fn redacted(&self) -> PluginPolicy {
        let mut shown = self.clone();
        for (name, value) in shown.config.iter_mut() {
            *value = shown_value(name, value);
        }
        shown
    }

    /// `self` as sent back from what [`PluginPolicy::redacted`] showed: a config value still
    /// shown as it was hidden keeps its stored value; one hidden with nothing stored for it
    /// is an error naming its key (it is never stored as `***`).
    pub fn keep_secrets(&mut self, stored: &PluginPolicy) -> Result<(), (String, String)> {
        for (name, value) in self.config.iter_mut() {
            match stored.config.get(name) {
                Some(original) if *value == shown_value(name, original) => {
                    *value = original.clone();
                }
                _ if value.contains(crate::redact::HIDDEN) => {
                    return Err((
                        format!("config.{name}"),
                        "is hidden (***) but nothing is stored for it as shown; give its value"
                            .into(),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The runtime's settings for plugin `name` under this policy.
    pub fn settings(&self, name: &str) -> PluginSettings {
        PluginSettings {
            name: Some(name.to_owned()),
            memory_bytes: self.memory_mb.saturating_mul(1024 * 1024),
            cpu_limit: Duration::from_millis(self.timeout_ms),
            wall_limit: self.wall_ms.map(Duration::from_millis),
            max_output_bytes: self.output_mb.saturating_mul(1024 * 1024),
            max_instances: self.max_instances,
            reuse: self.reuse,
            config: self.config.clone(),
            grants: self.grants.clone(),
            ..PluginSettings::default()
        }
    }
}

/// A plugin of this host's file, loaded at start.
#[derive(Clone)]
pub struct FilePlugin {
    pub plugin: Plugin,
    pub config: PluginConfig,
}

/// This host's own layer: what its file defines.
#[derive(Clone, Default)]
pub struct FileLayer {
    /// The file's path (none: the built-in defaults).
    pub path: Option<std::path::PathBuf>,
    pub connections: BTreeMap<String, ConnectionConfig>,
    pub plugins: BTreeMap<String, FilePlugin>,
    pub routes: Vec<RouteConfig>,
    pub subscriptions: Vec<SubscriptionConfig>,
    pub daemons: Vec<DaemonConfig>,
    /// Where this host's events go and its subscriptions read them.
    pub events: EventsConfig,
}

impl FileLayer {
    /// The kind of the file's unit named `name` (`route`, `subscription` or `daemon`).
    pub fn unit_kind(&self, name: &str) -> Option<&'static str> {
        if self.routes.iter().any(|r| r.name == name) {
            Some("route")
        } else if self.subscriptions.iter().any(|s| s.name == name) {
            Some("subscription")
        } else if self.daemons.iter().any(|d| d.name == name) {
            Some("daemon")
        } else {
            None
        }
    }
}

/// One item of the desired state and where it is defined.
#[derive(Debug, Clone)]
pub struct Item<T> {
    pub spec: T,
    pub source: Source,
}

/// What should run, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub revision: i64,
    pub connections: BTreeMap<String, Item<ConnectionConfig>>,
    pub routes: BTreeMap<String, Item<RouteConfig>>,
    pub subscriptions: BTreeMap<String, Item<SubscriptionConfig>>,
    pub daemons: BTreeMap<String, Item<DaemonConfig>>,
    /// How many times an operator restarted each unit (a restart starts it anew on every
    /// host).
    pub generations: BTreeMap<String, i64>,
    /// Every uploaded version of every plugin, by name then upload order.
    pub plugins: BTreeMap<String, Vec<InstalledPlugin>>,
    pub policies: BTreeMap<String, PluginPolicy>,
    /// Units an operator stopped, with who did it.
    pub stopped: BTreeMap<String, String>,
    /// Database items not run here, with the reason, as `(what, name, problem)`: a name this
    /// host's file defines too, or a document this host cannot read.
    pub refused: Vec<(&'static str, String, String)>,
}

impl Desired {
    /// Reads the database's layer and lays it over `file`.
    pub async fn load(store: &Store, file: &FileLayer) -> Result<Desired, StoreError> {
        let revision = store.revision().await?;
        let mut desired = Desired {
            revision,
            ..Desired::default()
        };
        for (name, spec) in &file.connections {
            desired.connections.insert(
                name.clone(),
                Item {
                    spec: spec.clone(),
                    source: Source::File,
                },
            );
        }
        for route in &file.routes {
            desired.routes.insert(
                route.name.clone(),
                Item {
                    spec: route.clone(),
                    source: Source::File,
                },
            );
        }
        for subscription in &file.subscriptions {
            desired.subscriptions.insert(
                subscription.name.clone(),
                Item {
                    spec: subscription.clone(),
                    source: Source::File,
                },
            );
        }
        for daemon in &file.daemons {
            desired.daemons.insert(
                daemon.name.clone(),
                Item {
                    spec: daemon.clone(),
                    source: Source::File,
                },
            );
        }
        let file_connections: BTreeMap<String, &'static str> = file
            .connections
            .keys()
            .map(|name| (name.clone(), "connection"))
            .collect();
        let file_units: BTreeMap<String, &'static str> = file
            .routes
            .iter()
            .map(|r| (r.name.clone(), "route"))
            .chain(
                file.subscriptions
                    .iter()
                    .map(|s| (s.name.clone(), "subscription")),
            )
            .chain(file.daemons.iter().map(|d| (d.name.clone(), "daemon")))
            .collect();
        let refused = &mut desired.refused;
        let docs = store.documents(Documents::Connections).await?;
        load_layer(
            docs,
            "connection",
            &file_connections,
            &mut desired.connections,
            refused,
        );
        let docs = store.documents(Documents::Routes).await?;
        load_layer(docs, "route", &file_units, &mut desired.routes, refused);
        let docs = store.documents(Documents::Subscriptions).await?;
        load_layer(
            docs,
            "subscription",
            &file_units,
            &mut desired.subscriptions,
            refused,
        );
        let docs = store.documents(Documents::Daemons).await?;
        load_layer(docs, "daemon", &file_units, &mut desired.daemons, refused);
        for (name, generation) in store.unit_generations().await? {
            desired.generations.insert(name, generation);
        }
        for version in store.all_plugin_versions().await? {
            if file.plugins.contains_key(&version.name) {
                if !desired
                    .refused
                    .iter()
                    .any(|(what, name, _)| *what == "plugin" && *name == version.name)
                {
                    desired.refused.push((
                        "plugin",
                        version.name.clone(),
                        both("plugin", &version.name),
                    ));
                }
                continue;
            }
            desired
                .plugins
                .entry(version.name.clone())
                .or_default()
                .push(version);
        }
        for (name, by, _) in store.stopped_units().await? {
            desired.stopped.insert(name, by);
        }
        for doc in store.plugin_policies().await? {
            match serde_json::from_str::<PluginPolicy>(&doc.spec) {
                Ok(policy) => {
                    desired.policies.insert(doc.name, policy);
                }
                Err(e) => desired.refused.push((
                    "plugin",
                    doc.name,
                    format!("this host cannot read its policy: {e}"),
                )),
            }
        }
        Ok(desired)
    }

    /// The kind of the unit named `name` (`route`, `subscription` or `daemon`) and where it
    /// is defined, if there is one.
    pub fn unit_named(&self, name: &str) -> Option<(&'static str, Source)> {
        if let Some(item) = self.routes.get(name) {
            return Some(("route", item.source));
        }
        if let Some(item) = self.subscriptions.get(name) {
            return Some(("subscription", item.source));
        }
        self.daemons.get(name).map(|item| ("daemon", item.source))
    }

    /// Every unit to run, by name: routes, subscriptions (each as the route that runs it,
    /// reading its queue on `events`) and daemons.
    pub fn units(&self, events: &EventsConfig) -> BTreeMap<String, UnitDef> {
        let mut units = BTreeMap::new();
        for (name, item) in &self.routes {
            units.insert(
                name.clone(),
                UnitDef {
                    kind: UnitKind::Route,
                    source: item.source,
                    spec: UnitSpec::Route {
                        route: Box::new(item.spec.clone()),
                        subscription: None,
                    },
                },
            );
        }
        for (name, item) in &self.subscriptions {
            units.entry(name.clone()).or_insert_with(|| UnitDef {
                kind: UnitKind::Subscription,
                source: item.source,
                spec: UnitSpec::Route {
                    route: Box::new(item.spec.route(events)),
                    subscription: Some(crate::router::Subscription {
                        exchange: events.exchange.clone(),
                        pattern: events.key(&item.spec.pattern),
                        queue: item.spec.queue(),
                    }),
                },
            });
        }
        for (name, item) in &self.daemons {
            units.entry(name.clone()).or_insert_with(|| UnitDef {
                kind: UnitKind::Daemon,
                source: item.source,
                spec: UnitSpec::Daemon(item.spec.clone()),
            });
        }
        units
    }

    /// The policy of plugin `name` (the defaults until an admin sets one).
    pub fn policy(&self, name: &str) -> PluginPolicy {
        self.policies.get(name).cloned().unwrap_or_default()
    }

    /// The version of `name` a route naming it serves with: the pinned one, else the newest
    /// enabled one. The reason when there is none.
    pub fn version(&self, name: &str, pinned: Option<&str>) -> Result<&InstalledPlugin, String> {
        let versions = self
            .plugins
            .get(name)
            .ok_or_else(|| format!("no plugin `{name}` is installed"))?;
        match pinned {
            Some(version) => {
                let found = versions
                    .iter()
                    .find(|v| v.version == version)
                    .ok_or_else(|| format!("plugin `{name}` has no version {version}"))?;
                if found.enabled {
                    Ok(found)
                } else {
                    Err(format!("version {version} of plugin `{name}` is disabled"))
                }
            }
            None => versions
                .iter()
                .rev()
                .find(|v| v.enabled)
                .ok_or_else(|| format!("plugin `{name}` has no enabled version")),
        }
    }
}

/// What kind of unit a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    Route,
    Subscription,
    Daemon,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Route => "route",
            UnitKind::Subscription => "subscription",
            UnitKind::Daemon => "daemon",
        }
    }
}

/// One unit of the desired state.
#[derive(Debug, Clone)]
pub struct UnitDef {
    pub kind: UnitKind,
    pub source: Source,
    pub spec: UnitSpec,
}

/// What runs a unit: a route (a subscription is the route that reads its queue), or a daemon.
#[derive(Debug, Clone)]
pub enum UnitSpec {
    Route {
        route: Box<RouteConfig>,
        subscription: Option<crate::router::Subscription>,
    },
    Daemon(DaemonConfig),
}

impl UnitDef {
    pub fn name(&self) -> &str {
        match &self.spec {
            UnitSpec::Route { route, .. } => &route.name,
            UnitSpec::Daemon(daemon) => &daemon.name,
        }
    }

    /// The route that runs it, unless it is a daemon.
    pub fn route(&self) -> Option<&RouteConfig> {
        match &self.spec {
            UnitSpec::Route { route, .. } => Some(route),
            UnitSpec::Daemon(_) => None,
        }
    }
}

/// Adds the database's documents of one kind (`what`) to `into`, beside the file's: one whose
/// name the file gives to something of the same family (`file`: a name and its kind; routes,
/// subscriptions and daemons share one set of names) is refused, naming both; one this host
/// cannot read is refused with the reason.
fn load_layer<T: serde::de::DeserializeOwned>(
    docs: Vec<crate::store::Document>,
    what: &'static str,
    file: &BTreeMap<String, &'static str>,
    into: &mut BTreeMap<String, Item<T>>,
    refused: &mut Vec<(&'static str, String, String)>,
) {
    for doc in docs {
        if let Some(kind) = file.get(&doc.name) {
            let problem = if *kind == what {
                both(what, &doc.name)
            } else {
                clash(what, kind, &doc.name)
            };
            refused.push((what, doc.name, problem));
            continue;
        }
        match serde_json::from_str::<T>(&doc.spec) {
            Ok(spec) => {
                into.insert(
                    doc.name,
                    Item {
                        spec,
                        source: Source::Api,
                    },
                );
            }
            Err(e) => refused.push((
                what,
                doc.name,
                format!("this host cannot read its definition: {e}"),
            )),
        }
    }
}

/// The problem of a unit in the database named as a unit of another kind in the file.
pub fn clash(what: &str, file_kind: &str, name: &str) -> String {
    format!(
        "{what} `{name}` in the database and {file_kind} `{name}` in this host's configuration file share a name \
         (routes, subscriptions and daemons share one set of names); this host runs its file's (rename one)"
    )
}

/// The problem of a name defined in both layers.
pub fn both(what: &str, name: &str) -> String {
    format!(
        "{what} `{name}` is defined both in this host's configuration file and in the database; \
         this host runs its file's (rename or delete one of them)"
    )
}
