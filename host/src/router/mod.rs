//! Routes: consume from one address, run the plugin chain, send the outputs, settle the input.
//!
//! Delivery guarantee: at-least-once. An input is acked only after every output (transformer
//! outputs, a handler's reply and what it published) has been confirmed by its broker. If the
//! host dies before that, the input is delivered again and produces outputs with the same ids
//! (derived from the input's id, the route and the output's position), so consumers can
//! deduplicate. A failed attempt is not held unacked while it waits: a copy carrying
//! `x-wharf-attempts` is re-queued with a delay (capped exponential backoff) and the original
//! acked once that copy is confirmed. Past the retry budget, or at once for `reject`, a copy
//! with the `exception` headers goes to the route's dead letters. Backpressure comes from the
//! consumer's prefetch: at most `concurrency` inputs are in flight, so a slow output slows the
//! intake instead of filling memory.
//!
//! Limits that keep one bad message from costing more than its own place:
//! - a delivery past `max_deliveries` (counted by the broker, or by the host for AMQP queues
//!   that do not count) is dead-lettered as `MaxDeliveries` before its chain runs;
//! - a chain that makes more than `max_outputs` messages from one input stops at once and the
//!   input is dead-lettered as `TooManyOutputs`;
//! - a reply goes to the input's own connection; another connection only where the route's
//!   `reply_to_allow` matches, else the input is dead-lettered as `ReplyRefused`;
//! - a panic while a delivery is handled is caught and handled like any other failure, so the
//!   delivery is still settled.

mod failure;
use failure::*;
use std::borrow::Cow;

use crate::broker::{Address, BrokerError, Connections, ConsumeOptions, Delivery, Nack};
use crate::config::RetryConfig;
use crate::grant::{Access, Grants};
use crate::message::{HeaderValue, Message};
use crate::metrics::RouteMetrics;
use crate::outbox::Outbox;
use crate::runtime::{KvWrite, Plugin, PluginError};
use crate::shutdown::Shutdown;
use crate::store::{Committed, OutboxEntry, UnitOfWork};
use futures::FutureExt as _;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// The header naming who sent a message into the host (set by HTTP ingress from the caller
/// it admitted, whatever the caller sent): a route's inbox keys ids by it.
pub const SOURCE_HEADER: &str = "x-wharf-source";

/// What a route's inbox remembers an input by: its id, under its source when it has one, so
/// one sender cannot choose an id that makes another sender's message a duplicate.
pub fn inbox_key(input: &Message) -> std::borrow::Cow<'_, str> {
    match input.header(SOURCE_HEADER) {
        Some(crate::message::HeaderValue::Text(source)) => {
            std::borrow::Cow::Owned(format!("{source}/{}", input.id))
        }
        _ => std::borrow::Cow::Borrowed(input.id.as_str()),
    }
}

/// Namespace of output ids: v5(namespace, "{input id}/{route}/{position}").
const OUTPUT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6d2c_94e1_5b0a_4f7e_9c3d_1a2b_3c4d_5e6f);

/// One route, resolved: its plugins loaded and its addresses parsed.
#[derive(Clone)]
pub struct Route {
    pub name: String,
    pub from: Address,
    /// Transformers in order.
    pub transformers: Vec<Plugin>,
    /// The handler that ends the chain, if any.
    pub handler: Option<Plugin>,
    pub to: Option<Address>,
    pub concurrency: usize,
    pub retry: RetryConfig,
    pub dead_letter: Address,
    pub max_message_bytes: usize,
    /// The most messages (outputs, publications and replies) one input may make.
    pub max_outputs: usize,
    /// Dead-letter an input delivered more often than this without being settled.
    pub max_deliveries: u32,
    /// Where replies may go besides the input's own connection, as `publish:` grants
    /// (`publish:rabbit:replies.*`); nothing by default.
    pub reply_to_allow: Grants,
    /// Where a reply goes when the request names no reply-to.
    pub reply_to: Option<Address>,
    /// Outputs and kv writes go to the outbox, in one transaction with the input's inbox
    /// record, before the input is acked.
    pub durable: bool,
    /// The route's inbox remembers handled inputs (always so when durable).
    pub inbox: bool,
    /// The subscription this route runs, if it is one: `from` is then its queue, bound to
    /// the events exchange when the route starts.
    pub subscription: Option<Subscription>,
    /// Only inputs whose topic matches this pattern run the chain; the others are acked
    /// (a subscription reading a Kafka topic that holds every event).
    pub filter: Option<String>,
    /// A failed input waits out its retry where it is (its delivery count is its attempt),
    /// instead of a copy going back to `from` (a shared log, where every subscriber would
    /// see the copy).
    pub retry_in_place: bool,
}

/// A subscription's place on the events exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub exchange: String,
    pub pattern: String,
    pub queue: String,
}

impl Route {
    fn keeps_inbox(&self) -> bool {
        self.durable || self.inbox
    }

    /// A subscription with no plugins and no `to`: its queue is bound and kept for clients
    /// to read (a service's worker leasing from it), and nothing of the host consumes it.
    pub fn read_by_clients(&self) -> bool {
        self.subscription.is_some()
            && self.transformers.is_empty()
            && self.handler.is_none()
            && self.to.is_none()
    }
}

/// What a chain made of one input: messages to send, and its plugins' kv writes.
#[derive(Default)]
struct Effects {
    sends: Vec<(Address, Message)>,
    kv: Vec<KvWrite>,
}

/// Why an attempt failed, with what a dead letter says of it.
#[derive(Debug)]
struct Failure {
    exception: String,
    /// The kind of failure, or the plugin's own name for it (`KeyError`).
    name: Cow<'static, str>,
    /// `plugin`, `host` or `broker`, or the plugin's own type for its error.
    source: Cow<'static, str>,
    plugin: Option<String>,
    retryable: bool,
}

impl From<PluginError> for Failure {
    fn from(e: PluginError) -> Self {
        let (name, source) = match e.exception() {
            Some(own) => (Cow::Owned(own.name.clone()), Cow::Owned(own.kind.clone())),
            None => (Cow::Borrowed(e.kind_name()), Cow::Borrowed("plugin")),
        };
        Failure {
            name,
            source,
            plugin: Some(e.plugin().to_owned()),
            retryable: e.is_retryable(),
            exception: e.to_string(),
        }
    }
}

impl Failure {
    fn host(name: &'static str, exception: String) -> Self {
        Failure {
            exception,
            name: Cow::Borrowed(name),
            source: Cow::Borrowed("host"),
            plugin: None,
            retryable: false,
        }
    }

    fn broker(error: BrokerError) -> Self {
        Failure {
            exception: error.to_string(),
            name: Cow::Borrowed(error.exception_name()),
            source: Cow::Borrowed("broker"),
            plugin: None,
            retryable: error.is_retryable(),
        }
    }
}

/// Runs one route until shutdown.
pub struct RouteRunner {
    route: Arc<Route>,
    connections: Connections,
    outbox: Outbox,
    on_started: Option<Box<dyn FnOnce() + Send>>,
    on_closed: Option<Box<dyn FnOnce() + Send>>,
}

impl RouteRunner {
    pub fn new(route: Arc<Route>, connections: Connections, outbox: Outbox) -> Self {
        RouteRunner {
            route,
            connections,
            outbox,
            on_started: None,
            on_closed: None,
        }
    }

    /// Calls `f` once the route's consumer is closed (it reads no more; what it holds is
    /// still being finished).
    pub fn on_closed(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_closed = Some(Box::new(f));
        self
    }

    /// Calls `f` once the route's consumer is open (the route is serving).
    pub fn on_started(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_started = Some(Box::new(f));
        self
    }

    /// Consumes until `shutdown` fires, then waits up to `grace` for the messages in flight.
    /// Messages still unsettled after that are returned to the broker (for the embedded broker,
    /// they come back when their visibility timeout runs out).
    pub async fn run(self, mut shutdown: Shutdown, grace: Duration) -> Result<(), BrokerError> {
        let mut route = self.route;
        let mut group = route.name.clone();
        if let Some(subscription) = &route.subscription {
            let subscribed = self
                .connections
                .producer(&route.from)?
                .transport()
                .subscribe(
                    &subscription.exchange,
                    &subscription.queue,
                    &subscription.pattern,
                )
                .await?;
            group = subscribed.group.clone();
            if route.read_by_clients() {
                if subscribed.shared_log {
                    return Err(BrokerError::Unsupported(format!(
                        "subscription `{}` has no plugins and no `to`, so clients read its queue, but events on `{}` are one shared log, not a queue of its own: give it a chain or a `to`",
                        route.name, route.from.connection
                    )));
                }
                // Bound; clients read it. Runs until it is stopped.
                tracing::info!(route = %route.name, queue = %subscribed.address, "subscription bound for clients to read");
                if let Some(started) = self.on_started {
                    started();
                }
                shutdown.fired().await;
                if let Some(closed) = self.on_closed {
                    closed();
                }
                return Ok(());
            }
            let mut reading = (*route).clone();
            reading.from = route.from.sibling(subscribed.address);
            if subscribed.shared_log {
                reading.filter = Some(subscription.pattern.clone());
                reading.retry_in_place = true;
            }
            route = Arc::new(reading);
        }
        let mut consumer = self
            .connections
            .consume_with(
                &route.from,
                ConsumeOptions {
                    prefetch: route.concurrency,
                    // The route counts deliveries and dead-letters to its own dead letters.
                    limited: false,
                    unit: Some(group),
                    ..ConsumeOptions::new(route.concurrency)
                },
            )
            .await?;
        if consumer.retries_in_place() && !route.retry_in_place {
            let mut reading = (*route).clone();
            reading.retry_in_place = true;
            route = Arc::new(reading);
        }
        tracing::info!(route = %route.name, from = %route.from, "route started");
        let metrics = Arc::new(RouteMetrics::new(
            &route.name,
            route
                .transformers
                .iter()
                .chain(&route.handler)
                .map(Plugin::name),
        ));
        if let Some(started) = self.on_started {
            started();
        }
        let mut in_flight = JoinSet::new();
        let result = loop {
            while in_flight.try_join_next().is_some() {}
            let delivery = tokio::select! {
                biased;
                _ = shutdown.fired() => break Ok(()),
                delivery = consumer.next() => delivery,
            };
            match delivery {
                Ok(delivery) => {
                    let (route, connections, outbox, metrics) = (
                        route.clone(),
                        self.connections.clone(),
                        self.outbox.clone(),
                        metrics.clone(),
                    );
                    in_flight.spawn(async move {
                        process(&route, &connections, &outbox, &metrics, delivery).await
                    });
                }
                Err(error) => break Err(error),
            }
        };
        consumer.close().await;
        if let Some(closed) = self.on_closed {
            closed();
        }
        let pending = in_flight.len();
        if pending > 0 {
            tracing::info!(route = %route.name, pending, "route stopping: finishing messages in flight");
        }
        if tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(route = %route.name, left = in_flight.len(), "grace period over: returning unfinished messages to the broker");
            in_flight.shutdown().await;
        }
        tracing::info!(route = %route.name, "route stopped");
        result
    }
}

fn attempts_of(msg: &Message) -> u32 {
    match msg.header("x-wharf-attempts") {
        Some(HeaderValue::Int(n)) => (*n).clamp(0, u32::MAX as i64) as u32,
        _ => 0,
    }
}

fn backoff(retry: &RetryConfig, attempt: u32) -> Duration {
    crate::backoff::retry_delay(retry.backoff_ms, retry.max_backoff_ms, attempt)
}

/// What a panic carried, as text.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `work`; a panic in it becomes an error, so the delivery it belongs to is settled.
async fn unless_panic<T>(
    work: impl Future<Output = Result<T, Failure>>,
    doing: &str,
) -> Result<T, Failure> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let text = panic_text(&*panic);
            tracing::error!(panic = %text, doing, "a panic while handling a message");
            Err(Failure::host(
                "Panic",
                format!("the host failed while {doing}: {text}"),
            ))
        }
    }
}

/// Handles one delivery to the end: outputs sent and input acked, or re-queued, or dead-lettered.
async fn process(
    route: &Route,
    connections: &Connections,
    outbox: &Outbox,
    metrics: &RouteMetrics,
    delivery: Delivery,
) {
    let Delivery {
        message: input,
        ack,
        deliveries,
    } = delivery;
    // An event of another kind on a shared log: not this subscription's.
    if let Some(pattern) = &route.filter
        && !crate::topic::matches(pattern, &input.topic)
    {
        if let Err(error) = ack.ack().await {
            tracing::warn!(route = %route.name, id = %input.id, %error, "settling a message failed; it will be delivered again");
        }
        return;
    }
    metrics.messages_in.increment(1);
    // An input the inbox has seen was handled: its effects are committed (or sent), and only
    // its ack was lost.
    if route.keeps_inbox() {
        match outbox
            .store()
            .inbox_has(&route.name, &inbox_key(&input))
            .await
        {
            Ok(true) => {
                crate::metrics::inbox_duplicate(&route.name);
                tracing::info!(route = %route.name, id = %input.id, "handled before (the inbox has it); acking");
                if let Err(error) = ack.ack().await {
                    tracing::warn!(route = %route.name, id = %input.id, %error, "settling a message failed; it will be delivered again");
                }
                return;
            }
            Ok(false) => {}
            // Not known: the work is done, and a durable route's commit checks again.
            Err(error) => {
                tracing::warn!(route = %route.name, %error, "cannot read the inbox");
            }
        }
    }
    let outcome = if deliveries > route.max_deliveries {
        Err(Failure::host(
            "MaxDeliveries",
            format!(
                "delivered {deliveries} times, over the route's limit of {}, without being settled",
                route.max_deliveries
            ),
        ))
    } else {
        unless_panic(
            async {
                let effects = run_chain(route, connections, metrics, &input).await?;
                let sent = effects.sends.len() as u64;
                commit(route, connections, outbox, &input, effects)
                    .await
                    .map(|()| sent)
            },
            "running the route",
        )
        .await
    };
    let settled = match outcome {
        Ok(sent) => {
            metrics.messages_out.increment(sent);
            ack.ack().await
        }
        Err(failure) => {
            metrics.failed.increment(1);
            let attempts = if route.retry_in_place {
                deliveries.saturating_sub(1)
            } else {
                attempts_of(&input)
            };
            let retrying = failure.retryable && attempts < route.retry.max;
            if retrying && route.retry_in_place {
                metrics.retried.increment(1);
                let delay = backoff(&route.retry, attempts);
                tracing::info!(route = %route.name, id = %input.id, attempt = attempts + 1, delay_ms = delay.as_millis() as u64, error = %failure.exception, "retrying in place");
                if let Err(error) = ack.nack(Nack::RequeueAfter(delay)).await {
                    tracing::warn!(route = %route.name, id = %input.id, %error, "settling a message failed; it will be delivered again");
                }
                return;
            }
            let next = unless_panic(
                async {
                    if retrying {
                        retry(route, connections, &input, attempts, &failure).await
                    } else {
                        let dead =
                            dead_letter(route, connections, &input, attempts, &failure).await;
                        if dead.is_ok() {
                            failure_reply(route, connections, &input, &failure).await;
                        }
                        dead
                    }
                    .map_err(Failure::broker)
                },
                "re-queueing or dead-lettering a message",
            )
            .await;
            match next {
                Ok(()) => {
                    if retrying {
                        metrics.retried.increment(1);
                    } else {
                        metrics.dead_lettered.increment(1);
                    }
                    ack.ack().await
                }
                // Neither a retry nor a dead letter could be sent: leave the message with its
                // broker, to come back later, rather than lose it.
                Err(error) => {
                    tracing::error!(route = %route.name, id = %input.id, error = %error.exception, "cannot re-queue or dead-letter; returning the message");
                    ack.nack(Nack::RequeueAfter(backoff(&route.retry, attempts)))
                        .await
                }
            }
        }
    };
    if let Err(error) = settled {
        tracing::warn!(route = %route.name, id = %input.id, %error, "settling a message failed; it will be delivered again");
    }
}

/// Fails once a chain has made more messages than the route allows from one input.
fn within_outputs(route: &Route, made: usize) -> Result<(), Failure> {
    if made > route.max_outputs {
        return Err(Failure::host(
            "TooManyOutputs",
            format!(
                "the chain made more than {} messages from one input (the route's max_outputs)",
                route.max_outputs
            ),
        ));
    }
    Ok(())
}

/// Where a reply to `request` goes: the route's `to`, else the request's reply-to on the
/// input's own connection (`queue`, or `connection:queue` naming it) or another connection
/// the route's `reply_to_allow` grants, else (no reply-to) the route's `reply_to`. Anything
/// else is refused, not sent.
fn reply_address(
    route: &Route,
    connections: &Connections,
    request: &Message,
) -> Result<Address, Failure> {
    if let Some(to) = &route.to {
        return Ok(to.clone());
    }
    let Some(reply_to) = &request.reply_to else {
        if let Some(fixed) = &route.reply_to {
            return Ok(fixed.clone());
        }
        return Err(Failure::host(
            "NoReplyTo",
            "the handler replied, but the request has no reply-to and the route no `to`".into(),
        ));
    };
    let address = match Address::parse(reply_to) {
        Ok(address) if connections.contains(&address.connection) => address,
        // Not `connection:address` of a known connection: an address on the input's own.
        _ => route.from.sibling(reply_to.clone()),
    };
    if address.connection != route.from.connection
        && !route
            .reply_to_allow
            .allows(Access::Publish, &address.to_string())
    {
        return Err(Failure::host(
            "ReplyRefused",
            format!(
                "the request's reply-to `{}` is on connection `{}`, but replies go to the input's own connection `{}` unless the route's reply_to_allow grants more",
                crate::broker::shorten(reply_to),
                address.connection,
                route.from.connection
            ),
        ));
    }
    Ok(address)
}

/// Makes a chain's effects happen. On a durable route: the outputs and kv writes into the
/// outbox with the inbox record, in one transaction. Otherwise: the kv writes committed, then
/// the outputs sent and confirmed, then (with an inbox) the input recorded as handled.
async fn commit(
    route: &Route,
    connections: &Connections,
    outbox: &Outbox,
    input: &Message,
    effects: Effects,
) -> Result<(), Failure> {
    let Effects { sends, kv } = effects;
    let store_failed = |e: crate::store::StoreError| Failure {
        exception: e.to_string(),
        name: Cow::Borrowed("Store"),
        source: Cow::Borrowed("host"),
        plugin: None,
        retryable: true,
    };
    let kv_refused = |reason: String| Failure::host("KvLimit", reason);
    if route.durable {
        let origin = format!("route:{}", route.name);
        let work = UnitOfWork {
            outbox: sends
                .into_iter()
                .map(|(to, message)| OutboxEntry {
                    destination: to.to_string(),
                    origin: origin.clone(),
                    message,
                })
                .collect(),
            kv,
            handled: Some((route.name.clone(), inbox_key(input).into_owned())),
        };
        return match outbox.commit(&work).await.map_err(store_failed)? {
            Committed::Done => Ok(()),
            Committed::AlreadyHandled => {
                crate::metrics::inbox_duplicate(&route.name);
                Ok(())
            }
            Committed::KvRefused(reason) => Err(kv_refused(reason)),
        };
    }
    if !kv.is_empty() {
        let work = UnitOfWork {
            kv,
            ..UnitOfWork::default()
        };
        if let Committed::KvRefused(reason) = outbox.commit(&work).await.map_err(store_failed)? {
            return Err(kv_refused(reason));
        }
    }
    send_all(connections, sends).await?;
    if route.inbox
        && let Err(error) = outbox
            .store()
            .inbox_record(
                &route.name,
                &inbox_key(input),
                crate::message::now_ms() as i64,
            )
            .await
    {
        // The outputs are out: a redelivery would send them again, with the same ids.
        tracing::warn!(route = %route.name, id = %input.id, %error, "cannot record the input in the inbox");
    }
    Ok(())
}

/// Runs the chain on `input`; returns every message to send and where, and the kv writes.
async fn run_chain(
    route: &Route,
    connections: &Connections,
    metrics: &RouteMetrics,
    input: &Message,
) -> Result<Effects, Failure> {
    // The whole message counts: a payload of one byte with megabytes of headers is large.
    let size = input.size_bytes();
    if size > route.max_message_bytes {
        return Err(Failure::host(
            "TooLarge",
            format!(
                "the message is {size} bytes (payload, key and headers), over the route's limit of {} bytes",
                route.max_message_bytes
            ),
        ));
    }
    // The input is read in place by the first stage; it is copied only when no transformer
    // makes new messages from it.
    let mut stage: Option<Vec<Message>> = None;
    let mut kv = Vec::new();
    for plugin in &route.transformers {
        let inputs = stage.as_deref().unwrap_or(std::slice::from_ref(input));
        let mut next = Vec::with_capacity(inputs.len());
        for msg in inputs {
            let report = plugin.transform(msg).await;
            metrics.plugin_call(plugin.name(), report.cost.wall);
            next.extend(report.result?);
            kv.extend(report.kv_writes);
            within_outputs(route, next.len())?;
        }
        stage = Some(next);
    }
    let current = stage.unwrap_or_else(|| vec![input.clone()]);
    let mut sends = Vec::new();
    match &route.handler {
        None => {
            let to = route
                .to
                .as_ref()
                .expect("a route without a handler has `to` (checked at start)");
            sends.extend(current.into_iter().map(|msg| (to.clone(), msg)));
        }
        Some(handler) => {
            for request in current {
                let report = handler.handle(&request).await;
                metrics.plugin_call(handler.name(), report.cost.wall);
                let reply = report.result?;
                kv.extend(report.kv_writes);
                for publication in report.published {
                    let to = Address::parse(&publication.destination)
                        .map_err(|e| Failure::broker(e.into()))?;
                    sends.push((to, publication.message));
                }
                if let Some(mut reply) = reply {
                    let to = reply_address(route, connections, &request)?;
                    if reply.correlation_id.is_none() {
                        reply.correlation_id = request
                            .correlation_id
                            .clone()
                            .or_else(|| Some(request.id.clone()));
                    }
                    // edeposit's callers pair replies by the `UUID` header.
                    if reply.header("UUID").is_none()
                        && let Some(uuid) = request.header("UUID")
                    {
                        reply.set_header("UUID", uuid.clone());
                    }
                    sends.push((to, reply));
                }
                within_outputs(route, sends.len())?;
            }
        }
    }
    for (position, (_, msg)) in sends.iter_mut().enumerate() {
        let name = format!("{}/{}/{position}", input.id, route.name);
        msg.id = uuid::Uuid::new_v5(&OUTPUT_ID_NAMESPACE, name.as_bytes()).to_string();
        if msg.timestamp_ms == 0 {
            msg.timestamp_ms = crate::message::now_ms();
        }
    }
    Ok(Effects { sends, kv })
}

/// Sends every output and waits for every confirm. The sends run together on this task: they
/// wait on their brokers, not on the CPU.
async fn send_all(
    connections: &Connections,
    sends: Vec<(Address, Message)>,
) -> Result<(), Failure> {
    futures::future::try_join_all(
        sends
            .into_iter()
            .map(|(to, msg)| async move { connections.send(&to, msg).await }),
    )
    .await
    .map(drop)
    .map_err(Failure::broker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_a_failure_that_can_be_settled() {
        let failed = unless_panic(
            async {
                if true {
                    panic!("a name of 300 bytes");
                }
                Ok(())
            },
            "running the route",
        )
        .await
        .unwrap_err();
        assert_eq!(failed.name, "Panic");
        assert!(!failed.retryable);
        assert!(
            failed.exception.contains("a name of 300 bytes"),
            "{}",
            failed.exception
        );
    }
}
