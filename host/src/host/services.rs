//! What the host gives plugins (`HostServices`): kv state in the store, requests through the
//! correlation table, events, and daemons' sources (a queue, or a queue of their own on an
//! events exchange) read one delivery at a time.

use crate::broker::Connections;
use crate::runtime::{HostFuture, HostServices, Inbox, KvLimits, Settlement, Taken};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Plugins' kv state in the store, and their requests through the host's correlation table;
/// subscriptions arrive with topics.
pub(super) struct StoreServices {
    pub(super) store: Store,
    pub(super) limits: KvLimits,
    /// Set once the host is listening (the table is named after its address).
    pub(super) rpc: std::sync::OnceLock<crate::rpc::Rpc>,
    /// Where this host's events go, and its connections (to tell a Kafka topic from an
    /// exchange).
    pub(super) events: crate::config::EventsConfig,
    pub(super) connections: Connections,
}

impl HostServices for StoreServices {
    fn request<'a>(
        &'a self,
        _: &'a str,
        destination: &'a str,
        msg: crate::message::Message,
        timeout: Duration,
    ) -> HostFuture<'a, Result<crate::message::Message, String>> {
        Box::pin(async move {
            let Some(rpc) = self.rpc.get() else {
                return Err("the host is still starting; try again".into());
            };
            let to = crate::broker::Address::parse(destination).map_err(|e| e.to_string())?;
            rpc.call(&to, msg, timeout).await.map_err(|e| e.to_string())
        })
    }

    fn publish<'a>(
        &'a self,
        _: &'a str,
        destination: &'a str,
        mut msg: crate::message::Message,
    ) -> HostFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // A daemon's message gets an id and a time unless it gave its own.
            if msg.id.is_empty() {
                msg.id = uuid::Uuid::new_v4().to_string();
            }
            if msg.timestamp_ms == 0 {
                msg.timestamp_ms = crate::message::now_ms();
            }
            let to = crate::broker::Address::parse(destination).map_err(|e| e.to_string())?;
            self.connections
                .send(&to, msg)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn open_inbox<'a>(
        &'a self,
        daemon: &'a str,
        source: &'a str,
    ) -> HostFuture<'a, Result<Box<dyn Inbox>, String>> {
        Box::pin(async move {
            DaemonInbox::open(&self.connections, &self.store, &self.events, daemon, source)
                .await
                .map(|inbox| Box::new(inbox) as Box<dyn Inbox>)
                .map_err(|e| e.to_string())
        })
    }

    fn release_sources<'a>(&'a self, daemon: &'a str) -> HostFuture<'a, Result<usize, String>> {
        Box::pin(async move {
            let sources = self
                .store
                .daemon_bindings(daemon)
                .await
                .map_err(|e| e.to_string())?;
            let mut released = 0;
            let mut failed = None;
            for source in sources {
                match unbind_daemon_source(&self.connections, &self.events, daemon, &source).await {
                    Ok(()) => {
                        self.store
                            .forget_daemon_binding(daemon, &source)
                            .await
                            .map_err(|e| e.to_string())?;
                        released += 1;
                    }
                    // Kept, to unbind at the next stop.
                    Err(error) => failed = Some(format!("cannot unbind `{source}`: {error}")),
                }
            }
            match failed {
                Some(error) => Err(error),
                None => Ok(released),
            }
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

    fn kv_usage<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> HostFuture<'a, Result<(usize, usize), String>> {
        Box::pin(async move {
            self.store
                .kv_usage(plugin, key)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn kv_limits(&self) -> KvLimits {
        self.limits
    }

    fn event_key(&self, key: &str) -> String {
        self.events.key(key)
    }

    fn event_destination(&self, key: &str) -> Result<String, String> {
        crate::events::address(&self.connections, &self.events, key)
            .map(|address| address.to_string())
            .map_err(|e| e.to_string())
    }
}

/// A daemon's source: a queue, or its own queue (Kafka: consumer group) on an events
/// exchange for `connection:exchange/pattern`. A task of its own reads the consumer and hands
/// deliveries over one at a time, so a `take` that times out never cancels a read half-way
/// (a claim made and not yet handed out would be held until its lease ran out).
struct DaemonInbox {
    deliveries: tokio::sync::mpsc::Receiver<Result<crate::broker::Delivery, String>>,
    stop: tokio::sync::oneshot::Sender<()>,
    reader: tokio::task::JoinHandle<()>,
    /// The pattern to keep, where the source holds every event (a Kafka topic).
    filter: Option<String>,
    daemon: String,
}

/// Messages a daemon's consumer may hold before the daemon takes them: they go back when it
/// stops.
const DAEMON_PREFETCH: usize = 16;

/// The most events patterns one daemon may have bound at once (each is a durable queue on the
/// broker until the daemon is stopped).
const MAX_DAEMON_BINDINGS: usize = 64;

/// The queue daemon `daemon` reads events pattern `pattern` from: one per daemon and pattern,
/// shared by its runs and hosts.
fn daemon_queue(daemon: &str, pattern: &str) -> String {
    format!("daemon.{daemon}.{}", crate::check::pattern_words(pattern))
}

/// Takes daemon `daemon`'s queue for events source `source` off its exchange.
async fn unbind_daemon_source(
    connections: &Connections,
    events: &crate::config::EventsConfig,
    daemon: &str,
    source: &str,
) -> Result<(), crate::broker::BrokerError> {
    let at = crate::broker::Address::parse(source)?;
    let Some((exchange, pattern)) = at.address.split_once('/') else {
        return Ok(());
    };
    connections
        .producer(&at)?
        .transport()
        .unsubscribe(
            exchange,
            &daemon_queue(daemon, pattern),
            &bound_pattern(events, &at.connection, exchange, pattern),
        )
        .await
}

/// The pattern a daemon's events source binds: behind the host's `[events] prefix` when the
/// source is the host's events exchange.
fn bound_pattern(
    events: &crate::config::EventsConfig,
    connection: &str,
    exchange: &str,
    pattern: &str,
) -> String {
    if events.is_at(connection, exchange) {
        events.key(pattern)
    } else {
        pattern.to_owned()
    }
}

impl DaemonInbox {
    async fn open(
        connections: &Connections,
        store: &Store,
        events: &crate::config::EventsConfig,
        daemon: &str,
        source: &str,
    ) -> Result<DaemonInbox, crate::broker::BrokerError> {
        let at = crate::broker::Address::parse(source)?;
        let unit = format!("daemon.{daemon}");
        let (address, filter) = match at.address.split_once('/') {
            Some((exchange, pattern)) => {
                crate::check::check_pattern("source", pattern)
                    .map_err(|e| crate::broker::BrokerError::Broker(e.to_string()))?;
                let queue = daemon_queue(daemon, pattern);
                // Recorded before it is bound, so that stopping the daemon unbinds it even if
                // this host goes away meanwhile.
                let recorded = store
                    .record_daemon_binding(
                        daemon,
                        source,
                        MAX_DAEMON_BINDINGS,
                        crate::message::now_ms() as i64,
                    )
                    .await
                    .map_err(|e| crate::broker::BrokerError::Broker(e.to_string()))?;
                if !recorded {
                    return Err(crate::broker::BrokerError::Broker(format!(
                        "daemon `{daemon}` has {MAX_DAEMON_BINDINGS} events patterns bound already; stop it to unbind them"
                    )));
                }
                let producer = connections.producer(&at)?;
                let bound = bound_pattern(events, &at.connection, exchange, pattern);
                let subscribed = producer
                    .transport()
                    .subscribe(exchange, &queue, &bound)
                    .await?;
                let filter = subscribed.shared_log.then_some(bound);
                (at.sibling(subscribed.address), filter)
            }
            None => {
                connections.ensure(&[&at]).await?;
                (at, None)
            }
        };
        let options = crate::broker::ConsumeOptions {
            unit: Some(unit),
            // A message the daemon dead-letters carries the name it gave.
            dead_letter_copies: true,
            ..crate::broker::ConsumeOptions::new(DAEMON_PREFETCH)
        };
        let mut consumer = connections.consume_with(&address, options).await?;
        let (sender, deliveries) = tokio::sync::mpsc::channel(1);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = &mut stopped => break,
                    next = consumer.next() => next,
                };
                let failed = next.is_err();
                match sender.send(next.map_err(|e| e.to_string())).await {
                    Ok(()) if !failed => {}
                    Ok(()) => break,
                    // The daemon has stopped taking: this one goes back.
                    Err(tokio::sync::mpsc::error::SendError(Ok(delivery))) => {
                        let _ = delivery.ack.nack(crate::broker::Nack::Requeue).await;
                        break;
                    }
                    Err(_) => break,
                }
            }
            consumer.close().await;
        });
        Ok(DaemonInbox {
            deliveries,
            stop,
            reader,
            filter,
            daemon: daemon.to_owned(),
        })
    }
}

impl Inbox for DaemonInbox {
    fn next(&mut self, timeout: Duration) -> HostFuture<'_, Result<Option<Taken>, String>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let delivery = match tokio::time::timeout_at(deadline, self.deliveries.recv()).await
                {
                    Err(_) => return Ok(None),
                    Ok(None) => return Err("the source's consumer has stopped".into()),
                    Ok(Some(delivery)) => delivery?,
                };
                if let Some(pattern) = &self.filter
                    && !crate::topic::matches(pattern, &delivery.message.topic)
                {
                    delivery.ack.ack().await.map_err(|e| e.to_string())?;
                    continue;
                }
                return Ok(Some(Taken {
                    message: delivery.message,
                    settle: Box::new(DaemonSettlement {
                        ack: delivery.ack,
                        daemon: self.daemon.clone(),
                    }),
                }));
            }
        })
    }

    fn close(self: Box<Self>) -> HostFuture<'static, ()> {
        Box::pin(async move {
            let DaemonInbox {
                mut deliveries,
                stop,
                reader,
                ..
            } = *self;
            // No more is handed over (the reader gives back what it was handing); what was
            // handed over and not taken goes back; then the reader stops, and closing its
            // consumer returns what the broker had handed it.
            deliveries.close();
            while let Ok(delivery) = deliveries.try_recv() {
                if let Ok(delivery) = delivery {
                    let _ = delivery.ack.nack(crate::broker::Nack::Requeue).await;
                }
            }
            let _ = stop.send(());
            let _ = reader.await;
        })
    }
}

struct DaemonSettlement {
    ack: crate::broker::AckHandle,
    daemon: String,
}

impl Settlement for DaemonSettlement {
    fn ack(self: Box<Self>) -> HostFuture<'static, Result<(), String>> {
        Box::pin(async move { self.ack.ack().await.map_err(|e| e.to_string()) })
    }

    fn nack(
        self: Box<Self>,
        requeue: bool,
        exception: Option<crate::runtime::Exception>,
    ) -> HostFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let nack = if requeue {
                crate::broker::Nack::Requeue
            } else {
                let (name, kind) = match &exception {
                    Some(e) => (e.name.as_str(), e.kind.as_str()),
                    None => ("Rejected", "plugin"),
                };
                crate::broker::Nack::DeadLetter(crate::broker::DeadLetter::new(
                    format!("daemon `{}` refused the message", self.daemon),
                    name,
                    kind,
                ))
            };
            self.ack.nack(nack).await.map_err(|e| e.to_string())
        })
    }
}

/// The host's services over `store` and `connections` with no listening host behind them (no
/// correlation table, so `request` answers that it cannot): what `wharf plugin run` gives a
/// daemon.
pub fn offline_services(
    store: Store,
    connections: Connections,
    events: crate::config::EventsConfig,
) -> Arc<dyn HostServices> {
    Arc::new(StoreServices {
        store,
        limits: KvLimits::default(),
        rpc: std::sync::OnceLock::new(),
        events,
        connections,
    })
}
