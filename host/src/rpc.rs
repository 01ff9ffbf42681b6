//! Request and reply: the one correlation table that pairs replies with their waiters.
//!
//! A request gets a fresh UUID as its correlation id (also in a `UUID` header, as edeposit's
//! daemons expect) and a reply-to owned by this host: the queue `wharf.reply.{host}` on the
//! request's own connection, consumed by one listener per connection, started on first use.
//! A reply is matched by its correlation id (or its `UUID` header) and handed to its waiter; a
//! waiter is removed on reply, on timeout and when its caller goes away, so the table holds
//! only what is in flight. A reply that comes after its waiter gave up is logged and dropped;
//! one with no or an unknown correlation id is logged and dead-lettered, never dropped without
//! a word.

use crate::broker::{Address, BrokerError, Connections, Nack};
use crate::message::{HeaderValue, Message};
use crate::shutdown::Shutdown;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Why a call got no reply.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no reply within {waited_ms} ms from {to}")]
    Timeout { to: String, waited_ms: u64 },
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("the host is stopping")]
    Stopping,
}

/// The correlation table and its reply listeners. Cheap to clone.
#[derive(Clone)]
pub struct Rpc {
    inner: Arc<Inner>,
}

struct Inner {
    connections: Connections,
    /// The reply queue's name on every connection: `wharf.reply.{host}`.
    reply_queue: String,
    waiters: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    /// Correlation ids whose waiter gave up lately, to tell a late reply from an unknown one.
    given_up: Mutex<(HashSet<String>, VecDeque<String>)>,
    /// Connections whose reply listener runs.
    listening: tokio::sync::Mutex<HashSet<String>>,
    shutdown: Shutdown,
}

/// How many given-up ids are remembered.
const GIVEN_UP: usize = 10_000;

/// Removes a waiter when its call ends, however it ends.
struct Waiting<'a> {
    rpc: &'a Inner,
    id: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let removed = lock(&self.rpc.waiters).remove(&self.id).is_some();
        if removed {
            let mut given_up = lock(&self.rpc.given_up);
            if given_up.1.len() >= GIVEN_UP
                && let Some(oldest) = given_up.1.pop_front()
            {
                given_up.0.remove(&oldest);
            }
            given_up.0.insert(self.id.clone());
            given_up.1.push_back(self.id.clone());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rpc {
    /// The table of host `host` (a stable name: the reply queue is the same after a restart,
    /// so replies to requests made before it still find their queue).
    pub fn new(connections: Connections, host: &str, shutdown: Shutdown) -> Rpc {
        use sha2::Digest as _;
        let digest = hex::encode(sha2::Sha256::digest(host.as_bytes()));
        let reply_queue = format!("wharf.reply.{}", &digest[..12]);
        let inner = Arc::new(Inner {
            connections: connections.clone(),
            reply_queue: reply_queue.clone(),
            waiters: Mutex::default(),
            given_up: Mutex::default(),
            listening: tokio::sync::Mutex::default(),
            shutdown,
        });
        connections.set_reply_sink(Arc::new(Sink {
            queue: reply_queue,
            inner: Arc::downgrade(&inner),
        }));
        Rpc { inner }
    }

    /// The queue replies come to on every connection.
    pub fn reply_queue(&self) -> &str {
        &self.inner.reply_queue
    }

    /// Calls waiting for their reply now.
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.waiters).len()
    }

    /// Sends `request` to `to` and waits up to `timeout` for its reply. Where the transport
    /// answers requests itself (HTTP), the reply is its answer (any status but 2xx is an
    /// error).
    pub async fn call(
        &self,
        to: &Address,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, RpcError> {
        if self.inner.connections.answers_requests(to) {
            let answer = tokio::time::timeout(timeout, self.inner.connections.request(to, request));
            let result = match answer.await {
                Ok(Ok(Some(reply))) => Ok(reply),
                Ok(Ok(None)) => Err(RpcError::Broker(BrokerError::Closed)),
                Ok(Err(e)) => Err(RpcError::from(e)),
                Err(_) => Err(RpcError::Timeout {
                    to: to.to_string(),
                    waited_ms: timeout.as_millis() as u64,
                }),
            };
            record(&result);
            return result;
        }
        let producer = self.inner.connections.producer(to)?;
        let address = to.address.clone();
        self.call_with(to, request, timeout, |request| async move {
            producer.send(&address, request).await
        })
        .await
    }

    /// Gives `request` a fresh correlation id and this host's reply-to on `to`'s connection,
    /// registers its waiter, sends it with `send` and waits for the reply. [`Rpc::call`]
    /// sends through the connection's producer; HTTP ingress holds the request for its route
    /// (keeping its id), and the reply comes back through the connection's reply queue.
    pub async fn call_with<F, Fut>(
        &self,
        to: &Address,
        mut request: Message,
        timeout: Duration,
        send: F,
    ) -> Result<Message, RpcError>
    where
        F: FnOnce(Message) -> Fut,
        Fut: Future<Output = Result<(), BrokerError>>,
    {
        if self.inner.shutdown.is_fired() {
            return Err(RpcError::Stopping);
        }
        self.listen(&to.connection).await?;
        let id = uuid::Uuid::new_v4().to_string();
        request.correlation_id = Some(id.clone());
        request.set_header("UUID", HeaderValue::Text(id.clone()));
        request.reply_to = Some(self.inner.reply_queue.clone());
        let (tx, mut rx) = oneshot::channel();
        lock(&self.inner.waiters).insert(id.clone(), tx);
        let _waiting = Waiting {
            rpc: &self.inner,
            id: id.clone(),
        };
        if let Err(error) = send(request).await {
            crate::metrics::rpc_call("error");
            return Err(error.into());
        }
        let mut shutdown = self.inner.shutdown.clone();
        let result = tokio::select! {
            reply = tokio::time::timeout(timeout, &mut rx) => match reply {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(RpcError::Stopping),
                // A reply handed over as the time ran out is still this call's.
                Err(_) => rx.try_recv().map_err(|_| RpcError::Timeout {
                    to: to.to_string(),
                    waited_ms: timeout.as_millis() as u64,
                }),
            },
            _ = shutdown.fired() => Err(RpcError::Stopping),
        };
        record(&result);
        result
    }

    /// Starts the reply listener of `connection` unless it runs.
    async fn listen(&self, connection: &str) -> Result<(), BrokerError> {
        let mut listening = self.inner.listening.lock().await;
        if listening.contains(connection) {
            return Ok(());
        }
        let queue = Address {
            connection: connection.to_owned(),
            address: self.inner.reply_queue.clone(),
        };
        let dead = queue.sibling(format!("{}.dead", queue.address));
        self.inner.connections.ensure(&[&queue, &dead]).await?;
        let consumer = self
            .inner
            .connections
            .consume_with(
                &queue,
                crate::broker::ConsumeOptions {
                    // The reply queue is this host's own: on a transport that shares work by
                    // group, its group is this host's too.
                    unit: Some(self.inner.reply_queue.clone()),
                    ..crate::broker::ConsumeOptions::new(256)
                },
            )
            .await?;
        listening.insert(connection.to_owned());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let result = deliver_replies(&inner, &queue, consumer).await;
            lock_listening_remove(&inner, &queue.connection).await;
            if let Err(error) = result {
                tracing::warn!(connection = %queue.connection, %error, "the reply listener stopped; the next call starts it again");
            }
        });
        Ok(())
    }
}

/// Replies made on this host to its own requests, handed over without a broker (the
/// connections hold it; weakly, so the table does not keep itself alive).
struct Sink {
    queue: String,
    inner: std::sync::Weak<Inner>,
}

impl crate::broker::ReplySink for Sink {
    fn queue(&self) -> &str {
        &self.queue
    }

    fn deliver(&self, reply: Message) -> Result<(), Box<Message>> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(Box::new(reply));
        };
        let Some(id) = correlation_of(&reply) else {
            return Err(Box::new(reply));
        };
        let Some(waiter) = lock(&inner.waiters).remove(&id) else {
            return Err(Box::new(reply));
        };
        // Its caller gave up between the lookup and now: a late reply, dropped with a word.
        if waiter.send(reply).is_err() {
            tracing::warn!(correlation_id = %id, "a reply came after its caller gave up; dropped");
        }
        Ok(())
    }
}

/// The id a reply is paired by: its correlation id, else its `UUID` header.
fn correlation_of(reply: &Message) -> Option<String> {
    reply
        .correlation_id
        .clone()
        .or_else(|| match reply.header("UUID") {
            Some(HeaderValue::Text(id)) => Some(id.clone()),
            _ => None,
        })
}

/// Counts a call's outcome for `/metrics`.
fn record(result: &Result<Message, RpcError>) {
    crate::metrics::rpc_call(match result {
        Ok(_) => "reply",
        Err(RpcError::Timeout { .. }) => "timeout",
        Err(_) => "error",
    });
}

async fn lock_listening_remove(inner: &Inner, connection: &str) {
    inner.listening.lock().await.remove(connection);
}

/// Hands each reply to its waiter until the host stops.
async fn deliver_replies(
    inner: &Inner,
    queue: &Address,
    mut consumer: crate::broker::Consumer,
) -> Result<(), BrokerError> {
    let dead = queue.sibling(format!("{}.dead", queue.address));
    let mut shutdown = inner.shutdown.clone();
    loop {
        let delivery = tokio::select! {
            _ = shutdown.fired() => {
                consumer.close().await;
                return Ok(());
            }
            delivery = consumer.next() => delivery?,
        };
        let reply = delivery.message;
        let id = correlation_of(&reply);
        let waiter = id.as_ref().and_then(|id| lock(&inner.waiters).remove(id));
        match (id, waiter) {
            (id, Some(waiter)) => {
                // A waiter gone between the lookup and now is a late reply too.
                if waiter.send(reply).is_err() {
                    tracing::warn!(correlation_id = ?id, "a reply came after its caller gave up; dropped");
                }
                delivery.ack.ack().await?;
            }
            (Some(id), None) if lock(&inner.given_up).0.contains(&id) => {
                tracing::warn!(correlation_id = %id, "a reply came after its caller gave up; dropped");
                delivery.ack.ack().await?;
            }
            (id, None) => {
                let problem = match &id {
                    Some(id) => format!(
                        "no request of this host is waiting for correlation id `{}`",
                        crate::broker::shorten(id)
                    ),
                    None => "the reply carries no correlation id (nor a UUID header)".to_owned(),
                };
                tracing::warn!(%problem, to = %dead, "a reply nobody waits for; dead-lettering it");
                // Sent to the dead letters by the host (an AMQP queue without a dead-letter
                // exchange would return a nacked message to itself), then acked.
                let mut copy = reply.clone();
                for (name, value) in [
                    ("exception", problem),
                    ("exception_name", "UnknownCorrelation".to_owned()),
                    ("exception_type", "host".to_owned()),
                ] {
                    copy.set_header(name, HeaderValue::Text(value));
                }
                match inner
                    .connections
                    .producer(&dead)?
                    .send(&dead.address, copy)
                    .await
                {
                    Ok(()) => delivery.ack.ack().await?,
                    Err(error) => {
                        tracing::error!(%error, "cannot dead-letter a reply; returning it");
                        delivery
                            .ack
                            .nack(Nack::RequeueAfter(Duration::from_secs(1)))
                            .await?;
                    }
                }
            }
        }
    }
}
