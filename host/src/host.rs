//! The running host: everything `wharf serve` starts, and its orderly stop.
//!
//! [`start`] opens the store, loads the plugins (installing them in the registry), opens the
//! connections, declares their queues, binds the HTTP listener and starts one supervised
//! [`RouteRunner`] per route. [`RunningHost::stop`] stops taking input, lets in-flight messages
//! finish (up to the grace period) and returns when every task has ended: nothing accepted is
//! lost, because nothing is acked before its outputs are confirmed.

use crate::broker::amqp::Topology;
use crate::broker::{Address, AmqpBroker, Connections, EmbeddedBroker, EmbeddedConfig};
use crate::config::{AmqpConfig, Config, ConnectionConfig, PluginConfig};
use crate::router::{Route, RouteRunner};
use crate::runtime::{
    HostFuture, HostServices, KvLimits, Plugin, PluginKind, PluginSettings, Runtime, RuntimeConfig,
};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::store::{QueueOptions, Store};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// A started host.
pub struct RunningHost {
    /// Where the HTTP listener is bound (useful with port 0).
    pub addr: SocketAddr,
    /// The file holding the token this host keeps for the CLI on its machine.
    local_token: std::path::PathBuf,
    /// How long stopping waits for work in flight.
    grace: Duration,
    trigger: ShutdownTrigger,
    tasks: JoinSet<()>,
    store: Store,
    runtime: Runtime,
    connections: Connections,
}

impl RunningHost {
    /// Stops taking input, finishes what is in flight, and returns when everything has ended.
    /// Every task gets the grace period (and a second more for the routes to return what
    /// they held); one still running then is ended, so a stop never hangs.
    pub async fn stop(mut self) {
        self.trigger.fire();
        self.runtime.shut_down();
        let limit = self.grace + Duration::from_secs(1);
        if tokio::time::timeout(limit, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                left = self.tasks.len(),
                "tasks still running after the grace period; ending them"
            );
            self.tasks.shutdown().await;
        }
        self.connections.close().await;
        if let Err(error) = self
            .store
            .revoke_local_tokens(
                &local_token_name(self.addr),
                crate::message::now_ms() as i64,
            )
            .await
        {
            tracing::warn!(%error, "could not revoke the CLI's token");
        }
        let _ = std::fs::remove_file(&self.local_token);
        self.store.close().await;
        tracing::info!("stopped");
    }
}

/// Runs the host until `signal` completes, then stops it.
pub async fn serve(config: Config, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let host = start(config).await?;
    tracing::info!(listen = %host.addr, "wharf is running");
    signal.await;
    tracing::info!("shutting down");
    host.stop().await;
    Ok(())
}

/// Plugins' kv state in the store; requests and subscriptions arrive with RPC.
struct StoreServices {
    store: Store,
    limits: KvLimits,
}

impl HostServices for StoreServices {
    fn request<'a>(
        &'a self,
        _: &'a str,
        destination: &'a str,
        _: crate::message::Message,
        _: Duration,
    ) -> HostFuture<'a, Result<crate::message::Message, String>> {
        Box::pin(async move {
            Err(format!(
                "requests are not available on this host yet (to `{destination}`)"
            ))
        })
    }

    fn receive<'a>(
        &'a self,
        _: &'a str,
        source: &'a str,
        _: Duration,
    ) -> HostFuture<'a, Result<Option<crate::message::Message>, String>> {
        Box::pin(async move {
            Err(format!(
                "subscriptions are not available on this host yet (`{source}`)"
            ))
        })
    }

    fn kv_get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> HostFuture<'a, Result<Option<Vec<u8>>, String>> {
        Box::pin(async move {
            self.store
                .kv_get(plugin, key)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn kv_set<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> HostFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let now = crate::message::now_ms() as i64;
            match self
                .store
                .kv_set(plugin, key, &value, &self.limits, now)
                .await
            {
                Ok(result) => result,
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

fn settings(name: &str, plugin: &PluginConfig) -> PluginSettings {
    let grants = [
        ("publish", &plugin.publish),
        ("request", &plugin.request),
        ("receive", &plugin.receive),
    ]
    .into_iter()
    .flat_map(|(kind, globs)| globs.iter().map(move |g| format!("{kind}:{g}")))
    .collect();
    PluginSettings {
        name: Some(name.to_owned()),
        memory_bytes: plugin.memory_mb * 1024 * 1024,
        cpu_limit: Duration::from_millis(plugin.timeout_ms),
        max_instances: plugin.max_instances,
        reuse: plugin.reuse,
        config: plugin.config.clone(),
        grants,
        ..PluginSettings::default()
    }
}

/// Starts the host described by `config` and returns once it is serving.
pub async fn start(config: Config) -> anyhow::Result<RunningHost> {
    let store = Store::open(&config.server.database).await?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let services: Arc<dyn HostServices> = Arc::new(StoreServices {
        store: store.clone(),
        limits: KvLimits::default(),
    });

    let mut plugins: BTreeMap<String, Plugin> = BTreeMap::new();
    for (name, plugin_config) in config.plugin_sources()? {
        let path = &plugin_config.path;
        let bytes = std::fs::read(path)
            .with_context(|| format!("plugins.{name}: cannot read {}", path.display()))?;
        let plugin = runtime
            .load(&bytes, settings(&name, &plugin_config), services.clone())
            .await
            .with_context(|| format!("plugins.{name}: {} is not a valid plugin", path.display()))?;
        let (installed, new) = store
            .install_plugin(plugin.info(), &bytes, crate::message::now_ms() as i64)
            .await?;
        if new {
            tracing::info!(plugin = %name, version = %installed.version, "installed plugin");
        }
        plugins.insert(name, plugin);
    }

    let mut connections = Connections::default();
    for (name, connection) in &config.connections {
        match connection {
            ConnectionConfig::Embedded(embedded) => {
                // The broker's own limit stays above the routes' (server.max_message_bytes), so a
                // message a route refuses as too large can still be dead-lettered.
                let broker = EmbeddedBroker::new(
                    store.clone(),
                    EmbeddedConfig {
                        connection: name.clone(),
                        ..EmbeddedConfig::default()
                    },
                );
                for queue in &embedded.queues {
                    let defaults = QueueOptions::default();
                    let options = QueueOptions {
                        dead_letter: queue.dead_letter.clone(),
                        visibility_timeout: queue
                            .visibility_timeout_ms
                            .map_or(defaults.visibility_timeout, Duration::from_millis),
                        max_deliveries: queue
                            .max_deliveries
                            .unwrap_or(crate::store::DEFAULT_MAX_DELIVERIES),
                    };
                    broker
                        .declare(&queue.name, options)
                        .await
                        .with_context(|| {
                            format!("connections.{name}: declaring queue `{}`", queue.name)
                        })?;
                }
                connections.add_embedded(name, broker);
            }
            ConnectionConfig::Amqp(amqp) => {
                let broker =
                    AmqpBroker::start(name, (**amqp).clone(), topology_of(&config, name, amqp))?;
                broker
                    .wait_first_attempt()
                    .await
                    .with_context(|| format!("connections.{name}"))?;
                if let Err(problem) = broker.check() {
                    tracing::warn!(connection = %name, %problem, "starting without this connection; its routes wait for it");
                }
                connections.add_amqp(name, broker);
            }
        }
    }

    warn_of_unserved_queues(&store, &config).await;

    let mut routes = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        let key = format!("routes[{i}] (`{}`)", route.name);
        let mut transformers = Vec::new();
        let mut handler = None;
        for (position, name) in route.through.iter().enumerate() {
            let plugin = plugins
                .get(name)
                .with_context(|| format!("{key}: no plugin `{name}` was loaded"))?
                .clone();
            match plugin.info().kind {
                PluginKind::Transformer if handler.is_none() => transformers.push(plugin),
                PluginKind::Handler if position + 1 == route.through.len() => {
                    handler = Some(plugin)
                }
                kind => bail!(
                    "{key}: `{name}` is a {}; a chain is transformers, optionally ending in one handler",
                    kind.as_str()
                ),
            }
        }
        if handler.is_none() && route.to.is_none() {
            bail!("{key}: `to` is required unless the chain ends in a handler");
        }
        let from = Address::parse(&route.from)?;
        let route_from = from.clone();
        let dead_letter = match &route.dead_letter {
            Some(address) => Address::parse(address)?,
            None => from.sibling(format!("{}.dead", from.address)),
        };
        routes.push(Route {
            name: route.name.clone(),
            to: route.to.as_deref().map(Address::parse).transpose()?,
            from,
            transformers,
            handler,
            concurrency: route.concurrency,
            retry: route.retry.clone(),
            dead_letter,
            max_message_bytes: config.server.max_message_bytes,
            max_outputs: route.max_outputs.unwrap_or(config.server.max_outputs),
            // A limit declared on an embedded input queue holds for its route too.
            max_deliveries: match config.connections.get(&route_from.connection) {
                Some(ConnectionConfig::Embedded(embedded)) => embedded
                    .queues
                    .iter()
                    .find(|q| q.name == route_from.address)
                    .and_then(|q| q.max_deliveries)
                    .map_or(route.max_deliveries, |q| q.min(route.max_deliveries)),
                _ => route.max_deliveries,
            },
            reply_to_allow: route
                .reply_grants()
                .with_context(|| format!("{key}.reply_to_allow"))?,
        });
    }

    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = JoinSet::new();
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let local_token = keep_local_token(&store, addr).await?;
    let app = crate::web::router(crate::web::AppState {
        connections: connections.clone(),
        store: store.clone(),
        shutdown: shutdown.clone(),
        max_request_bytes: config.server.max_request_bytes,
        max_response_bytes: config.server.max_response_bytes,
        throttle: Default::default(),
    });
    let mut http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_shutdown.fired().await });
        if let Err(error) = server.await {
            tracing::error!(%error, "the HTTP listener failed");
        }
    });
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    for route in routes {
        tasks.spawn(supervise(
            Arc::new(route),
            connections.clone(),
            shutdown.clone(),
            grace,
        ));
    }
    Ok(RunningHost {
        addr,
        local_token,
        grace,
        trigger,
        tasks,
        store,
        runtime,
        connections,
    })
}

/// The name of the token the host on `addr` keeps for its CLI: the machine and the address,
/// so hosts on other machines sharing the database keep their own.
fn local_token_name(addr: SocketAddr) -> String {
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("cli@{machine}/{addr}")
}

/// Makes a fresh admin token for the CLI on this machine (revoking the one an earlier run
/// left) and writes it where `wharf` finds it by the host's address, readable by this user
/// only. The README's first run needs no other step.
async fn keep_local_token(store: &Store, addr: SocketAddr) -> anyhow::Result<std::path::PathBuf> {
    let name = local_token_name(addr);
    let now = crate::message::now_ms() as i64;
    store.revoke_local_tokens(&name, now).await?;
    let (token, digest) = crate::auth::new_token();
    store
        .add_token(&name, crate::auth::Role::Admin, &digest, true, now)
        .await?;
    let path = crate::auth::local_token_path(addr);
    crate::auth::write_local_token(&path, &token)
        .with_context(|| format!("writing the CLI's token to {}", path.display()))?;
    Ok(path)
}

/// Says which embedded queues in the database belong to no configured connection (an
/// embedded connection renamed or removed; before each connection had its own queues, every
/// queue was `local`'s): their messages are kept, but nothing serves them.
async fn warn_of_unserved_queues(store: &Store, config: &Config) {
    let Ok(names) = store.queue_names().await else {
        return;
    };
    let served = |connection: &str| {
        matches!(
            config.connections.get(connection),
            Some(ConnectionConfig::Embedded(_))
        )
    };
    let mut unserved: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in &names {
        if let Some((connection, queue)) = name.split_once(':')
            && !served(connection)
        {
            unserved.entry(connection).or_default().push(queue);
        }
    }
    for (connection, queues) in unserved {
        tracing::warn!(
            connection,
            queues = %queues.iter().take(5).copied().collect::<Vec<_>>().join(", "),
            count = queues.len(),
            "the database holds queues of an embedded connection that is not configured; configure it (kind = \"embedded\") to serve them"
        );
    }
}

/// What AMQP connection `name` declares: its configured topology, plus the queues routes use
/// on it (inputs, plain-queue outputs, dead-letter queues), ensured to exist.
pub fn topology_of(config: &Config, name: &str, amqp: &AmqpConfig) -> Topology {
    let mut ensured: Vec<String> = Vec::new();
    let mut ensure = |address: &str| {
        if let Ok(address) = Address::parse(address)
            && address.connection == name
            && !address.address.contains('/')
            && !amqp.queues.iter().any(|q| q.name == address.address)
            && !ensured.contains(&address.address)
        {
            ensured.push(address.address);
        }
    };
    for route in &config.routes {
        ensure(&route.from);
        if let Some(to) = &route.to {
            ensure(to);
        }
        match &route.dead_letter {
            Some(dead) => ensure(dead),
            None => ensure(&format!("{}.dead", route.from)),
        }
    }
    Topology {
        exchanges: amqp.exchanges.clone(),
        queues: amqp.queues.clone(),
        bindings: amqp.bindings.clone(),
        ensured,
    }
}

/// Keeps a route running: if its consumer fails, it is started again with capped backoff.
async fn supervise(
    route: Arc<Route>,
    connections: Connections,
    mut shutdown: Shutdown,
    grace: Duration,
) {
    let initial = Duration::from_millis(100);
    let mut delay = initial;
    loop {
        let runner = RouteRunner::new(route.clone(), connections.clone());
        let started = tokio::time::Instant::now();
        let error = match runner.run(shutdown.clone(), grace).await {
            Ok(()) => return,
            Err(error) => error,
        };
        // A route that ran a while before failing (a dropped connection) starts over from
        // the shortest delay; one that keeps failing at once backs off.
        if started.elapsed() > Duration::from_secs(10) {
            delay = initial;
        }
        let wait =
            delay + Duration::from_millis(rand::random_range(0..=delay.as_millis() as u64 / 5));
        tracing::error!(route = %route.name, %error, retry_in_ms = wait.as_millis() as u64, "route stopped by an error; restarting");
        tokio::select! {
            _ = shutdown.fired() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
