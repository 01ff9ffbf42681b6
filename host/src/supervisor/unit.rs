//! The kinds of unit, as every surface sees them: what differs between a route, a
//! subscription and a daemon. Everything else (storing one in the database, listing, the one
//! set of names, create, update, delete, stop, start and restart) is written once over this
//! trait, in `web::ops::units`, the API, the CLI and the UI. A new kind of unit is one
//! implementation here, its config type, and its fields on each surface.

use super::desired::{Desired, FileLayer, Item, UnitKind};
use crate::check::{ConfigError, plugin_ref};
use crate::config::{DaemonConfig, RouteConfig, SubscriptionConfig};
use crate::store::Documents;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Why a unit cannot be stored as given.
#[derive(Debug)]
pub enum Refusal {
    /// A field is wrong: its key and what is wrong with it.
    Invalid { field: String, problem: String },
    /// It would take something another unit holds.
    Conflict(String),
}

impl From<ConfigError> for Refusal {
    fn from(error: ConfigError) -> Self {
        match error {
            ConfigError::Invalid { key, problem } => Refusal::Invalid {
                field: key,
                problem,
            },
            ConfigError::Load(error) => Refusal::Invalid {
                field: String::new(),
                problem: error.to_string(),
            },
        }
    }
}

fn invalid(field: &str, problem: impl Into<String>) -> Refusal {
    Refusal::Invalid {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// One kind of unit's definition.
pub trait Unit: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: UnitKind;
    /// Where the database keeps definitions of this kind.
    const DOCUMENTS: Documents;
    fn name(&self) -> &str;
    /// The units of this kind in the desired state, by name.
    fn of(desired: &Desired) -> &BTreeMap<String, Item<Self>>;
    /// Checks a definition for the database against what the desired state holds: its shape,
    /// the connections and plugins it names, and anything it may not share with another unit.
    fn check(&self, file: &FileLayer, desired: &Desired) -> Result<(), Refusal>;
}

impl Unit for RouteConfig {
    const KIND: UnitKind = UnitKind::Route;
    const DOCUMENTS: Documents = Documents::Routes;

    fn name(&self) -> &str {
        &self.name
    }

    fn of(desired: &Desired) -> &BTreeMap<String, Item<Self>> {
        &desired.routes
    }

    fn check(&self, file: &FileLayer, desired: &Desired) -> Result<(), Refusal> {
        self.check("", &|name| desired.connections.contains_key(name))?;
        for (i, entry) in self.through.iter().enumerate() {
            let (name, pinned) = plugin_ref(entry);
            let problem = match file.plugins.get(name) {
                Some(file) if pinned.is_none_or(|v| v == file.plugin.info().version) => None,
                Some(_) => Some(format!(
                    "this host's file defines `{name}` at another version"
                )),
                None => desired.version(name, pinned).err(),
            };
            if let Some(problem) = problem {
                return Err(invalid(&format!("through[{i}]"), problem));
            }
        }
        Ok(())
    }
}

impl Unit for SubscriptionConfig {
    const KIND: UnitKind = UnitKind::Subscription;
    const DOCUMENTS: Documents = Documents::Subscriptions;

    fn name(&self) -> &str {
        &self.name
    }

    fn of(desired: &Desired) -> &BTreeMap<String, Item<Self>> {
        &desired.subscriptions
    }

    /// Also: no other subscription reads its queue.
    fn check(&self, file: &FileLayer, desired: &Desired) -> Result<(), Refusal> {
        let events = &file.events;
        self.check("", events, &|name| desired.connections.contains_key(name))?;
        Unit::check(&self.route(events), file, desired)?;
        let queue = self.queue();
        if let Some((other, _)) = desired
            .subscriptions
            .iter()
            .find(|(other, item)| **other != self.name && item.spec.queue() == queue)
        {
            return Err(Refusal::Conflict(format!(
                "subscription `{other}` reads queue `{queue}` already: the same service, chain and pattern"
            )));
        }
        Ok(())
    }
}

impl Unit for DaemonConfig {
    const KIND: UnitKind = UnitKind::Daemon;
    const DOCUMENTS: Documents = Documents::Daemons;

    fn name(&self) -> &str {
        &self.name
    }

    fn of(desired: &Desired) -> &BTreeMap<String, Item<Self>> {
        &desired.daemons
    }

    /// Also: its plugin is a daemon this host has.
    fn check(&self, file: &FileLayer, desired: &Desired) -> Result<(), Refusal> {
        self.check("")?;
        let (name, pinned) = plugin_ref(&self.plugin);
        let kind = match file.plugins.get(name) {
            Some(file) => {
                let version = &file.plugin.info().version;
                if pinned.is_some_and(|pinned| pinned != version) {
                    return Err(invalid(
                        "plugin",
                        format!("this host's file defines plugin `{name}` at version {version}"),
                    ));
                }
                file.plugin.info().kind.as_str().to_owned()
            }
            None => desired
                .version(name, pinned)
                .map_err(|problem| invalid("plugin", problem))?
                .kind
                .clone(),
        };
        if kind != "daemon" {
            return Err(invalid(
                "plugin",
                format!(
                    "`{}` is a {kind}; a daemon runs a daemon plugin",
                    self.plugin
                ),
            ));
        }
        Ok(())
    }
}
