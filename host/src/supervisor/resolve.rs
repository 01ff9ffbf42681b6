//! Resolving a unit's definition into what runs it: its plugins at their versions (loaded and
//! cached with their policies) and its addresses, or why it cannot be built.

use super::*;

impl Supervisor {
    /// Builds unit `unit`: its plugins loaded at the versions it names, its addresses parsed.
    pub(super) async fn resolve(
        &self,
        state: &State,
        unit: &UnitDef,
        desired: &Desired,
        plugins_in_use: &mut HashMap<String, Plugin>,
    ) -> Result<Resolved, Unbuildable> {
        let mut fingerprint = Vec::new();
        if let Some(generation) = desired.generations.get(unit.name()) {
            fingerprint.push(format!("generation:{generation}"));
        }
        match &unit.spec {
            UnitSpec::Route {
                route,
                subscription,
            } => {
                self.resolve_route(
                    state,
                    route,
                    subscription.as_ref(),
                    desired,
                    plugins_in_use,
                    fingerprint,
                )
                .await
            }
            UnitSpec::Daemon(spec) => {
                fingerprint.push(fingerprint_of(spec));
                let plugin = self
                    .resolve_plugin(
                        state,
                        &spec.plugin,
                        desired,
                        plugins_in_use,
                        &mut fingerprint,
                    )
                    .await?;
                if plugin.info().kind != PluginKind::Daemon {
                    return Err(format!(
                        "`{}` is a {}; a daemon runs a daemon plugin",
                        spec.plugin,
                        plugin.info().kind.as_str()
                    )
                    .into());
                }
                let label = format!("{}@{}", plugin_ref(&spec.plugin).0, plugin.info().version);
                Ok(Resolved {
                    runner: Runner::Daemon(daemon::DaemonUnit {
                        spec: spec.clone(),
                        plugin,
                    }),
                    fingerprint: fingerprint.join("\n"),
                    plugins: vec![label],
                })
            }
        }
    }

    /// Loads plugin `entry` (`name` or `name@version`): this host's file's, or the database's
    /// version under its policy (loaded once per file and policy).
    pub(super) async fn resolve_plugin(
        &self,
        state: &State,
        entry: &str,
        desired: &Desired,
        plugins_in_use: &mut HashMap<String, Plugin>,
        fingerprint: &mut Vec<String>,
    ) -> Result<Plugin, Unbuildable> {
        let parts = &self.inner.parts;
        let (name, pinned) = plugin_ref(entry);
        Ok(match parts.file.plugins.get(name) {
            Some(file) => {
                let version = &file.plugin.info().version;
                if pinned.is_some_and(|v| v != version) {
                    return Err(format!(
                        "`{entry}`: this host's file defines plugin `{name}` at version {version}"
                    )
                    .into());
                }
                fingerprint.push(format!("file:{name}"));
                file.plugin.clone()
            }
            None => {
                let version = desired.version(name, pinned)?;
                let policy = desired.policy(name);
                let key = format!("{}#{}", version.sha256, fingerprint_of(&policy));
                let plugin = match state.plugins.get(&key).or_else(|| plugins_in_use.get(&key)) {
                    Some(plugin) => plugin.clone(),
                    None => {
                        let bytes = parts
                            .store
                            .plugin_file(&version.sha256)
                            .await
                            .map_err(|e| fault(e.to_string()))?
                            .ok_or_else(|| {
                                fault(format!(
                                    "the file of `{name}@{}` is missing",
                                    version.version
                                ))
                            })?;
                        parts
                            .runtime
                            .load(&bytes, policy.settings(name), parts.services.clone())
                            .await
                            .map_err(|e| {
                                fault(format!("plugin `{name}@{}`: {e}", version.version))
                            })?
                    }
                };
                plugins_in_use.insert(key.clone(), plugin.clone());
                fingerprint.push(key);
                plugin
            }
        })
    }

    /// Builds route `spec` (which runs subscription `subscription`, if given).
    pub(super) async fn resolve_route(
        &self,
        state: &State,
        spec: &RouteConfig,
        subscription: Option<&crate::router::Subscription>,
        desired: &Desired,
        plugins_in_use: &mut HashMap<String, Plugin>,
        mut fingerprint: Vec<String>,
    ) -> Result<Resolved, Unbuildable> {
        let parts = &self.inner.parts;
        let mut transformers = Vec::new();
        let mut handler = None;
        let mut labels = Vec::new();
        fingerprint.push(fingerprint_of(spec));
        if let Some(subscription) = subscription {
            fingerprint.push(format!(
                "subscription:{}:{}:{}",
                subscription.exchange, subscription.pattern, subscription.queue
            ));
        }
        for (position, entry) in spec.through.iter().enumerate() {
            let plugin = self
                .resolve_plugin(state, entry, desired, plugins_in_use, &mut fingerprint)
                .await?;
            let name = plugin_ref(entry).0;
            labels.push(format!("{name}@{}", plugin.info().version));
            match plugin.info().kind {
                PluginKind::Transformer if handler.is_none() => transformers.push(plugin),
                PluginKind::Handler if position + 1 == spec.through.len() => handler = Some(plugin),
                kind => {
                    return Err(format!(
                        "`{entry}` is a {}; a chain is transformers, optionally ending in one handler",
                        kind.as_str()
                    )
                    .into());
                }
            }
        }
        // A subscription with no plugins and no `to` is read by clients (`read_by_clients`).
        let for_clients = subscription.is_some() && spec.through.is_empty();
        if handler.is_none() && spec.to.is_none() && !for_clients {
            return Err(String::from(
                "`to` is required unless the chain ends in a handler (or, for a subscription left to clients to read, there are no plugins)",
            )
            .into());
        }
        let parse = |text: &str| Address::parse(text).map_err(|e| e.to_string());
        let from = parse(&spec.from)?;
        let to = spec.to.as_deref().map(parse).transpose()?;
        let reply_to = spec.reply_to.as_deref().map(parse).transpose()?;
        let dead_letter = match &spec.dead_letter {
            Some(address) => parse(address)?,
            None => from.sibling(format!("{}.dead", from.address)),
        };
        for address in [
            Some(&from),
            to.as_ref(),
            Some(&dead_letter),
            reply_to.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            match desired.connections.get(&address.connection) {
                Some(connection) => fingerprint.push(format!(
                    "{}={}",
                    address.connection,
                    fingerprint_of(&connection.spec)
                )),
                None => {
                    return Err(format!(
                        "`{address}` names connection `{}`, which does not exist",
                        address.connection
                    )
                    .into());
                }
            }
        }
        // A limit declared on an embedded input queue holds for its route too.
        let max_deliveries = desired
            .connections
            .get(&from.connection)
            .and_then(|c| c.spec.max_deliveries(&from.address))
            .map_or(spec.max_deliveries, |q| q.min(spec.max_deliveries));
        let route = Route {
            name: spec.name.clone(),
            from,
            to,
            transformers,
            handler,
            concurrency: spec.concurrency,
            retry: spec.retry.clone(),
            dead_letter,
            max_message_bytes: parts.max_message_bytes,
            max_outputs: spec.max_outputs.unwrap_or(parts.max_outputs),
            max_deliveries,
            reply_to_allow: spec.reply_grants().map_err(|e| e.to_string())?,
            reply_to: reply_to.clone(),
            durable: spec.durable,
            inbox: spec.inbox,
            subscription: subscription.cloned(),
            filter: None,
            retry_in_place: false,
        };
        Ok(Resolved {
            runner: Runner::Route(Box::new(route)),
            fingerprint: fingerprint.join("\n"),
            plugins: labels,
        })
    }
}
