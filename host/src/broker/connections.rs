//! The host's live connections by name: every operation dispatched to its transport, replies
//! to this host's own requests handed over in-process, and one health check a second.

use super::*;

/// The host's broker connections, by name: each is the handle its producers share, and
/// every other operation dispatches on it. Shared by every clone: the supervisor adds,
/// replaces and removes connections while the host runs, and routes see the change at their
/// next send.
#[derive(Clone, Default)]
pub struct Connections {
    brokers: std::sync::Arc<std::sync::RwLock<std::collections::BTreeMap<String, Producer>>>,
    /// This host's own reply queue, where replies to its requests are handed straight to
    /// their callers.
    replies: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<dyn ReplySink>>>,
    /// The last health check and when it was made: anyone may ask `/healthz`, `/readyz` or
    /// `/metrics`, so the brokers are asked at most once per [`HEALTH_TTL`], by one caller
    /// at a time (the others wait for its answer). A change of connections forgets it.
    health: std::sync::Arc<tokio::sync::Mutex<Option<(std::time::Instant, HealthStates)>>>,
}

/// Each connection's name and whether it can serve (the problem, if not).
pub type HealthStates = Vec<(String, Result<(), String>)>;

/// How long a health check is reused.
pub(super) const HEALTH_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Takes replies addressed to this host's reply queue straight to their waiting callers: a
/// reply made on this host for a request made on this host need not cross a broker (nor the
/// database) to reach a caller in the same process.
pub trait ReplySink: Send + Sync {
    /// The reply queue's name (the same on every connection).
    fn queue(&self) -> &str;
    /// Hands `reply` to its caller, or gives it back when none of this process waits for it
    /// (a late or unknown reply goes the broker's way, to be logged or dead-lettered there).
    fn deliver(&self, reply: Message) -> Result<(), Box<Message>>;
}

impl Connections {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, std::collections::BTreeMap<String, Producer>> {
        self.brokers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds connection `name`, or replaces it; returns the one it replaced.
    pub fn insert(&self, name: &str, producer: Producer) -> Option<Producer> {
        self.forget_health();
        self.brokers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), producer)
    }

    fn forget_health(&self) {
        if let Ok(mut health) = self.health.try_lock() {
            *health = None;
        }
    }

    /// Sets where replies to this host's requests go without a broker (once).
    pub fn set_reply_sink(&self, sink: std::sync::Arc<dyn ReplySink>) {
        let _ = self.replies.set(sink);
    }

    /// Sends `msg` to `to` and waits for the confirm; a reply to one of this host's own
    /// requests, whose caller waits here, is handed to it at once.
    pub async fn send(&self, to: &Address, msg: Message) -> Result<(), BrokerError> {
        let msg = match self.replies.get() {
            Some(sink) if to.address == sink.queue() => match sink.deliver(msg) {
                Ok(()) => return Ok(()),
                Err(msg) => *msg,
            },
            _ => msg,
        };
        self.producer(to)?.send(&to.address, msg).await
    }

    /// Sends `msgs` to `to` in order (see [`Transport::send_ordered`]); fewer results than
    /// messages when it stopped early.
    pub async fn send_ordered(
        &self,
        to: &Address,
        msgs: Vec<Message>,
    ) -> Vec<Result<(), BrokerError>> {
        let to_reply_sink = self
            .replies
            .get()
            .is_some_and(|sink| to.address == sink.queue());
        if to_reply_sink {
            return one_by_one(msgs, |msg| self.send(to, msg)).await;
        }
        match self.producer(to) {
            Ok(producer) => producer.0.send_ordered(&to.address, msgs).await,
            Err(error) => vec![Err(error)],
        }
    }

    /// Removes connection `name`; returns it, to be closed.
    pub fn remove(&self, name: &str) -> Option<Producer> {
        self.forget_health();
        self.brokers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// Whether a connection of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Whether connection `name` keeps its queues in the host's database (an embedded
    /// broker, or an HTTP connection's ingress).
    pub fn is_embedded(&self, name: &str) -> bool {
        self.embedded(name).is_some()
    }

    /// The names of every connection.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The connections taking `/hooks/{path}`, each with the address it lands on (one, unless
    /// connections added at once claim the same path; the caller refuses then).
    pub fn hook(&self, path: &str) -> Vec<(String, String)> {
        self.read()
            .iter()
            .filter_map(|(name, producer)| {
                let http =
                    <dyn Transport as AsAny>::as_any(&*producer.0).downcast_ref::<HttpBroker>()?;
                let address = http.config().hooks.get(path)?;
                Some((name.clone(), address.clone()))
            })
            .collect()
    }

    /// HTTP connection `name`, for its ingress (the web server's door into it).
    pub fn http(&self, name: &str) -> Option<HttpBroker> {
        self.read().get(name).and_then(|p| {
            <dyn Transport as AsAny>::as_any(&*p.0)
                .downcast_ref::<HttpBroker>()
                .cloned()
        })
    }

    pub fn producer(&self, address: &Address) -> Result<Producer, BrokerError> {
        self.read()
            .get(&address.connection)
            .cloned()
            .ok_or_else(|| BrokerError::InvalidAddress {
                address: address.to_string(),
                problem: format!("there is no connection named `{}`", address.connection),
            })
    }

    pub async fn consume(
        &self,
        address: &Address,
        prefetch: usize,
    ) -> Result<Consumer, BrokerError> {
        self.consume_with(address, ConsumeOptions::new(prefetch))
            .await
    }

    /// Consumes from `address` as `options` say.
    pub async fn consume_with(
        &self,
        address: &Address,
        options: ConsumeOptions,
    ) -> Result<Consumer, BrokerError> {
        let producer = self.producer(address)?;
        producer.0.consume(&address.address, options).await
    }

    /// Makes sure the addresses exist, each on its connection (where its transport needs
    /// them declared).
    pub async fn ensure(&self, addresses: &[&Address]) -> Result<(), BrokerError> {
        let mut by_connection: std::collections::BTreeMap<&str, Vec<String>> =
            std::collections::BTreeMap::new();
        for address in addresses {
            by_connection
                .entry(&address.connection)
                .or_default()
                .push(address.address.clone());
        }
        for (connection, names) in by_connection {
            let producer = self.read().get(connection).cloned();
            if let Some(producer) = producer {
                producer.0.ensure(&names).await?;
            }
        }
        Ok(())
    }

    /// How many messages wait at `address`.
    pub async fn depth(&self, address: &Address) -> Result<Depth, BrokerError> {
        let mut depth = self.producer(address)?.0.depth(&address.address).await?;
        depth.connection = address.connection.clone();
        Ok(depth)
    }

    /// Up to `count` ready messages of the queue at `address`, left in the queue; no more
    /// than `max_bytes` of whole messages (payload, key and headers), but always the first.
    pub async fn peek(
        &self,
        address: &Address,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        self.producer(address)?
            .0
            .peek(&address.address, count, max_bytes)
            .await
    }

    /// The answer to a request sent to `to`, where its transport answers requests itself
    /// (HTTP); `None` where replies come through a reply queue.
    pub async fn request(
        &self,
        to: &Address,
        msg: Message,
    ) -> Result<Option<Message>, BrokerError> {
        match self.producer(to)?.0.request(&to.address, msg).await {
            Some(answer) => answer.map(Some),
            None => Ok(None),
        }
    }

    /// Whether requests to `to` are answered by its transport (see [`Transport::request`]).
    pub fn answers_requests(&self, to: &Address) -> bool {
        self.read()
            .get(&to.connection)
            .is_some_and(|p| p.0.answers(&to.address))
    }

    /// The embedded broker holding connection `name`'s queues: an embedded connection's
    /// own, or an HTTP connection's (its ingress queues and dead letters).
    pub fn embedded(&self, name: &str) -> Option<EmbeddedBroker> {
        self.read().get(name).and_then(|p| p.0.held().cloned())
    }

    /// Removes the ready messages of the queue at `address`; returns how many.
    pub async fn purge(&self, address: &Address) -> Result<u64, BrokerError> {
        self.producer(address)?.0.purge(&address.address).await
    }

    /// Every consumer-group member on this host, on every connection.
    pub fn consumers(&self) -> Vec<ConsumerState> {
        let brokers = self.read().clone();
        let mut all = Vec::new();
        for (name, broker) in &brokers {
            for mut state in broker.0.consumers() {
                state.connection = name.clone();
                all.push(state);
            }
        }
        all
    }

    /// Whether every connection can serve, as of at most [`HEALTH_TTL`] ago; the problem of
    /// each that cannot.
    pub async fn check(&self) -> HealthStates {
        let mut health = self.health.lock().await;
        if let Some((at, states)) = health.as_ref()
            && at.elapsed() < HEALTH_TTL
        {
            return states.clone();
        }
        let states = self.check_now().await;
        *health = Some((std::time::Instant::now(), states.clone()));
        states
    }

    /// Whether every connection can serve right now, asking each.
    pub async fn check_now(&self) -> HealthStates {
        let brokers = self.read().clone();
        let mut states = Vec::new();
        for (name, broker) in &brokers {
            states.push((name.clone(), broker.0.check().await));
        }
        states
    }

    /// Closes the broker connections (the embedded broker lives in the store).
    pub async fn close(&self) {
        let brokers = self.read().clone();
        for broker in brokers.values() {
            broker.close().await;
        }
    }
}
