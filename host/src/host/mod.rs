//! The running host: everything `wharf serve` starts, and its orderly stop.
//!
//! [`start`] opens the store, loads the plugins of this host's file, opens the file's
//! connections, declares their queues, starts the [`Supervisor`] (which runs the routes of the
//! file and of the database and keeps them as the database says) and binds the HTTP listener. [`RunningHost::stop`] stops taking input, lets in-flight messages
//! finish (up to the grace period) and returns when every task has ended: nothing accepted is
//! lost, because nothing is acked before its outputs are confirmed.

use crate::broker::Connections;
use crate::broker::registry::Opening;
use crate::config::{Config, PluginConfig};
use crate::runtime::{HostServices, KvLimits, PluginSettings, Runtime, RuntimeConfig};
use crate::shutdown::{self, ShutdownTrigger};
use crate::store::Store;
use crate::supervisor::{FileLayer, FilePlugin, Parts, Supervisor};
use anyhow::Context;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

mod services;
use services::StoreServices;
pub use services::offline_services;

/// A started host.
pub struct RunningHost {
    /// Where the HTTP listener is bound (useful with port 0).
    pub addr: SocketAddr,
    /// The one-time link that sets up the first admin, when the database had no user at
    /// start (also printed to the log).
    pub setup_link: Option<String>,
    /// This host's correlation table (its reply queue's name, calls in flight).
    pub rpc: crate::rpc::Rpc,
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
    /// The connections this host serves.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

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

/// This process, as the daemons' leases name it: the machine, the process id and a random
/// part (a restarted host is a new holder).
fn host_id() -> String {
    let machine = crate::settings::machine();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{machine}:{}:{}", std::process::id(), &random[..8])
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
        wall_limit: plugin.wall_ms.map(Duration::from_millis),
        max_output_bytes: plugin.output_mb.saturating_mul(1024 * 1024),
        max_instances: plugin.max_instances,
        reuse: plugin.reuse,
        config: plugin.config.clone(),
        grants,
        ..PluginSettings::default()
    }
}

/// Starts the host described by `config` and returns once it is serving.
pub async fn start(config: Config) -> anyhow::Result<RunningHost> {
    // The decoy hash a sign-in for an unknown name is checked against is made now, off the
    // async workers, rather than by the first such sign-in.
    let decoy = tokio::task::spawn_blocking(|| {
        std::sync::LazyLock::force(&crate::auth::DECOY_HASH);
    });
    let keyring = crate::secrets::Keyring::load(&config.server.key_sources())
        .context("server.secret_key_file")?;
    let store = Store::open(&config.server.database)
        .await?
        .with_keyring(Arc::new(keyring));
    // Secrets kept in clear by an older version, or sealed with a key since rotated, are
    // sealed with the current key. A database sealed with a key this host was not given
    // stops start-up: the host would run without those connections, and what it sealed
    // the other hosts could not open.
    match store.reseal_secrets().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(documents = n, "sealed secrets with the current key"),
        Err(error @ crate::store::StoreError::Sealed(_)) => {
            return Err(anyhow::anyhow!(error).context(
                "server.secret_key_file: this host does not have the key the database's secrets are sealed with",
            ));
        }
        Err(error) => tracing::warn!(%error, "could not seal the stored secrets again"),
    }
    crate::metrics::handle();
    // Bound first: the address names this host (its stable name, its reply queue).
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let host_name = config
        .server
        .name
        .clone()
        .unwrap_or_else(|| format!("{}/{addr}", crate::settings::machine()));
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: config.server.compile_cache.clone(),
        max_instances: config.server.instance_pool,
        outbound_ca: config.server.outbound_ca.clone(),
        ..RuntimeConfig::default()
    })?;
    let connections = Connections::default();
    let store_services = Arc::new(StoreServices {
        store: store.clone(),
        limits: KvLimits::default(),
        rpc: std::sync::OnceLock::new(),
        events: config.events.clone(),
        connections: connections.clone(),
    });
    let services: Arc<dyn HostServices> = store_services.clone();

    // This host's own layer: the plugins and connections its file defines, loaded here so
    // that a problem stops start-up naming its key.
    let mut file = FileLayer {
        path: config.file.clone(),
        connections: config.connections.clone(),
        routes: config.routes.clone(),
        subscriptions: config.subscriptions.clone(),
        daemons: config.daemons.clone(),
        events: config.events.clone(),
        ..FileLayer::default()
    };
    for (name, plugin_config) in config.plugin_sources()? {
        let path = &plugin_config.path;
        let bytes = std::fs::read(path)
            .with_context(|| format!("plugins.{name}: cannot read {}", path.display()))?;
        let plugin = runtime
            .load(&bytes, settings(&name, &plugin_config), services.clone())
            .await
            .with_context(|| format!("plugins.{name}: {} is not a valid plugin", path.display()))?;
        file.plugins.insert(
            name,
            FilePlugin {
                plugin,
                config: plugin_config,
            },
        );
    }

    for (name, connection) in &config.connections {
        let producer = connection
            .open(
                name,
                &Opening {
                    store: &store,
                    routes: &config.routes,
                    host: &host_name,
                },
            )
            .await
            .map_err(|problem| anyhow::anyhow!("connections.{name}: {problem}"))?;
        let transport = producer.transport();
        transport
            .started()
            .await
            .with_context(|| format!("connections.{name}"))?;
        if let Err(problem) = transport.check().await {
            tracing::warn!(connection = %name, %problem, "starting without this connection; its routes wait for it");
        }
        connections.insert(name, producer);
    }

    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = JoinSet::new();
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let sources =
        crate::outbox::source::Sources::open(&config.sources, config.server.max_message_bytes)
            .await
            .context("sources")?;
    let outbox =
        crate::outbox::Outbox::new(store.clone(), store_services.limits, config.outbox.clone())
            .with_sources(sources);
    let supervisor = Supervisor::start(
        Parts {
            store: store.clone(),
            runtime: runtime.clone(),
            services,
            connections: connections.clone(),
            outbox: outbox.clone(),
            file,
            max_message_bytes: config.server.max_message_bytes,
            max_outputs: config.server.max_outputs,
            grace,
            host_id: host_id(),
            host_name: host_name.clone(),
        },
        shutdown.clone(),
        &mut tasks,
    )
    .await;
    let supervisor = match supervisor {
        Ok(supervisor) => supervisor,
        Err(error) => {
            trigger.fire();
            while tasks.join_next().await.is_some() {}
            connections.close().await;
            return Err(error);
        }
    };
    warn_of_unserved_queues(&store, &connections).await;

    decoy.await?;
    let tls = match &config.server.tls {
        Some(tls) => Some(Arc::new(
            crate::tls::server_config(&tls.cert, &tls.key).context("server.tls")?,
        )),
        None => None,
    };
    let setup = Arc::new(crate::auth::SetupLink::default());
    let setup_link = if store.users().await?.is_empty() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Listening on every address: the link names this machine's own.
        let mut shown = addr;
        if shown.ip().is_unspecified() {
            shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let link = format!("{scheme}://{shown}/setup?token={}", setup.issue());
        tracing::warn!(
            "no admin yet: open {link} to make the first one (the link works until an admin exists), or run `wharf user add NAME --role admin` on this machine"
        );
        Some(link)
    } else {
        None
    };
    let local_token = keep_local_token(&store, addr).await?;
    let rpc = crate::rpc::Rpc::new(
        connections.clone(),
        &local_token_name(addr),
        shutdown.clone(),
    );
    let _ = store_services.rpc.set(rpc.clone());
    let rpc_handle = rpc.clone();
    if config.outbox.relay {
        // Named after this host: the same after a restart, so the claims a killed run left
        // are taken back at once.
        tasks.spawn(crate::outbox::relay(
            outbox.clone(),
            connections.clone(),
            host_name.clone(),
            shutdown.clone(),
        ));
        // The applications' outbox tables, each by a relay of its own under the same name.
        outbox.sources().spawn(
            &config.outbox,
            &connections,
            &host_name,
            &shutdown,
            &mut tasks,
        );
    }
    tasks.spawn(outbox.clone().prune(shutdown.clone()));
    let leases = crate::leases::Leases::default();
    tasks.spawn(leases.clone().reap(shutdown.clone()));
    let limits = Arc::new(crate::web::limits::PeerLimits::with_in_flight(
        config.server.max_in_flight,
    ));
    let app = crate::web::router(crate::web::AppState {
        connections: connections.clone(),
        store: store.clone(),
        supervisor,
        outbox,
        rpc,
        leases,
        shutdown: shutdown.clone(),
        max_request_bytes: config.server.max_request_bytes,
        max_response_bytes: config.server.max_response_bytes,
        max_message_bytes: config.server.max_message_bytes,
        tls: tls.is_some(),
        hashing: Arc::new(crate::auth::Hashing::default()),
        limits: limits.clone(),
        setup,
        draining: Arc::default(),
    });
    // Samples of the route counters, for the dashboard's last minutes; every minute, the
    // credential limits forget quiet peers; every hour, old audit entries, expired sessions
    // and reset links go.
    let mut sampling = shutdown.clone();
    let retention = Duration::from_secs(u64::from(config.server.audit_retention_days) * 86_400);
    let pruned = store.clone();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = sampling.fired() => return,
                _ = every.tick() => {}
            }
            crate::metrics::sample();
            ticks += 1;
            if ticks.is_multiple_of(6) {
                limits.prune();
            }
            if ticks % 360 == 1 {
                let now = crate::message::now_ms() as i64;
                if let Err(error) = pruned.prune_audit(now - retention.as_millis() as i64).await {
                    tracing::warn!(%error, "could not prune the audit log");
                }
                if let Err(error) = pruned.prune_sessions(now).await {
                    tracing::warn!(%error, "could not remove expired sessions");
                }
            }
        }
    });
    tasks.spawn(crate::web::listener::serve(
        listener,
        app,
        tls,
        shutdown.clone(),
    ));
    Ok(RunningHost {
        addr,
        setup_link,
        rpc: rpc_handle,
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
    format!("cli@{}/{addr}", crate::settings::machine())
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
    let path = crate::auth::local_token_path(addr).context("the CLI's token")?;
    crate::auth::write_local_token(&path, &token)
        .with_context(|| format!("writing the CLI's token to {}", path.display()))?;
    Ok(path)
}

/// Says which embedded queues in the database belong to no embedded connection (one renamed
/// or removed; before each connection had its own queues, every queue was `local`'s): their
/// messages are kept, but nothing serves them.
async fn warn_of_unserved_queues(store: &Store, connections: &Connections) {
    let Ok(names) = store.queue_names().await else {
        return;
    };
    let mut unserved: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in &names {
        if let Some((connection, queue)) = name.split_once(':')
            && !connections.contains(connection)
        {
            unserved.entry(connection).or_default().push(queue);
        }
    }
    for (connection, queues) in unserved {
        tracing::warn!(
            connection,
            queues = %queues.iter().take(5).copied().collect::<Vec<_>>().join(", "),
            count = queues.len(),
            "the database holds queues of an embedded connection that does not exist; add it (kind = \"embedded\") to serve them"
        );
    }
}
