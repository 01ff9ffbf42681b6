//! Queues on every transport: stats, peek (the messages stay), publish, take (taken and
//! acked), purge (the ready messages) and replaying dead letters.

use super::{AppError, AppState, audit};
use crate::broker::{Address, Consumer};
use crate::message::{HeaderValue, Message};
use crate::web::MAX_COUNT;
use crate::web::caller::{Allowed, Operator, Viewer};
use crate::web::error::invalid;
use serde_json::{Value, json};
use std::time::Duration;

/// The address of a queue on a connection that exists (404 otherwise).
pub fn known(state: &AppState, connection: &str, queue: &str) -> Result<Address, AppError> {
    if !state.connections.contains(connection) {
        return Err(AppError::NotFound(format!(
            "there is no connection named `{}`",
            crate::broker::shorten(connection)
        )));
    }
    Ok(Address {
        connection: connection.to_owned(),
        address: queue.to_owned(),
    })
}

/// `connection:queue` as typed in a form, on a connection that exists.
pub fn parse(state: &AppState, text: &str) -> Result<Address, AppError> {
    match text.trim().split_once(':') {
        Some((c, q)) if !c.is_empty() && !q.is_empty() => known(state, c, q),
        _ => Err(invalid(
            "address",
            format!(
                "`{}` is not connection:queue, e.g. local:demo.in",
                crate::broker::shorten(text)
            ),
        )),
    }
}

/// How full a queue is, as far as its transport tells (the embedded broker: ready, in
/// flight, delayed and the oldest's age; RabbitMQ: ready and consumers).
pub async fn stats(
    state: &AppState,
    _: &Allowed<Viewer>,
    address: &Address,
) -> Result<Value, AppError> {
    let depth = state.connections.depth(address).await?;
    Ok(serde_json::to_value(depth).expect("a depth serialises"))
}

/// Publishes `message` (the JSON form of `Message`); returns its id once committed.
pub async fn publish(
    state: &AppState,
    _: &Allowed<Operator>,
    address: &Address,
    message: &Value,
) -> Result<String, AppError> {
    let mut msg = Message::from_json(message)?;
    crate::broker::check_message(&msg)?;
    check_size(state, &msg)?;
    if msg.topic.is_empty() {
        msg.topic = address.address.clone();
    }
    let id = msg.id.clone();
    state
        .connections
        .producer(address)?
        .send(&address.address, msg)
        .await?;
    Ok(id)
}

/// Refuses a message over `server.max_message_bytes`, counted whole as on a route: a byte of
/// payload with megabytes of headers would be stored, and read back by every peek.
pub fn check_size(state: &AppState, msg: &Message) -> Result<(), AppError> {
    if msg.size_bytes() > state.max_message_bytes {
        return Err(AppError::PayloadTooLarge(format!(
            "the message is {} bytes (payload, key and headers), over the host's limit of {} (server.max_message_bytes)",
            msg.size_bytes(),
            state.max_message_bytes
        )));
    }
    Ok(())
}

/// `count` (1 to [`MAX_COUNT`]) or `default`.
pub fn count(count: Option<usize>, default: usize) -> Result<usize, AppError> {
    match count.unwrap_or(default) {
        count @ 1..=MAX_COUNT => Ok(count),
        count => Err(invalid(
            "count",
            format!("count {count} is out of range: from 1 to {MAX_COUNT}"),
        )),
    }
}

/// Up to `count` ready messages, left in the queue: reading changes nothing. At most
/// `max_response_bytes` of messages, headers and keys counted (but always one message).
pub async fn peek(
    state: &AppState,
    _: &Allowed<Viewer>,
    address: &Address,
    count: usize,
) -> Result<Vec<Message>, AppError> {
    Ok(state
        .connections
        .peek(address, count, state.max_response_bytes)
        .await?)
}

/// The most deliveries a take holds at once: each is acked as it arrives, so a large count
/// does not mean as many messages in memory.
const TAKE_PREFETCH: usize = 32;

/// The deliveries of one take through the API: up to `count`, waiting until `deadline`, and
/// no more payload than one answer carries. A shutdown ends the wait with what has arrived.
pub(super) struct Taking {
    pub(super) consumer: Consumer,
    count: usize,
    pub(super) deadline: tokio::time::Instant,
    shutdown: crate::shutdown::Shutdown,
    max_bytes: usize,
    /// Messages handed over so far, and their payload bytes.
    taken: usize,
    bytes: usize,
}

impl Taking {
    /// A take of up to `count` from `address`; a leased one (`shared`) consumes on the
    /// channel its queue's other leased takes share, where the transport has one.
    pub(super) async fn open(
        state: &AppState,
        address: &Address,
        count: usize,
        timeout: Duration,
        shared: bool,
    ) -> Result<Taking, AppError> {
        let options = crate::broker::ConsumeOptions {
            shared,
            // A leased message's dead letter carries its taker's error.
            dead_letter_copies: shared,
            ..crate::broker::ConsumeOptions::new(count.min(TAKE_PREFETCH))
        };
        Ok(Taking {
            consumer: state.connections.consume_with(address, options).await?,
            count,
            deadline: tokio::time::Instant::now() + timeout,
            shutdown: state.shutdown.clone(),
            max_bytes: state.max_response_bytes,
            taken: 0,
            bytes: 0,
        })
    }

    /// The next delivery, or `None` once the take is over. A message that would take the
    /// answer past its size goes back to the queue and ends the take. An error of the consumer
    /// is the take's error only while nothing was handed over (else the take ends with what
    /// it has).
    pub(super) async fn next(&mut self) -> Result<Option<crate::broker::Delivery>, AppError> {
        if self.taken >= self.count {
            return Ok(None);
        }
        let delivery = tokio::select! {
            delivery = tokio::time::timeout_at(self.deadline, self.consumer.next()) => delivery,
            _ = self.shutdown.fired() => return Ok(None),
        };
        let delivery = match delivery {
            Err(_) => return Ok(None),
            Ok(Ok(delivery)) => delivery,
            Ok(Err(error)) if self.taken == 0 => return Err(error.into()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "a take ended early");
                return Ok(None);
            }
        };
        let size = delivery.message.payload.len();
        if self.taken > 0 && self.bytes.saturating_add(size) > self.max_bytes {
            if let Err(error) = delivery.ack.nack(crate::broker::Nack::Requeue).await {
                tracing::warn!(%error, "could not return a message past the answer's size; it comes back by itself");
            }
            return Ok(None);
        }
        Ok(Some(delivery))
    }

    /// Counts a message handed over.
    pub(super) fn handed_over(&mut self, message: &Message) {
        self.taken += 1;
        self.bytes = self.bytes.saturating_add(message.payload.len());
    }
}

/// Takes up to `count` messages, waiting up to `timeout` for them, acking each as it
/// arrives: for people and tests, not for services that need at-least-once (they use a broker
/// of their own, or a leased take). A message that would take the answer past
/// `max_response_bytes` is returned to the queue and ends the take; a shutdown ends the wait
/// with what has arrived.
pub async fn take(
    state: &AppState,
    who: &Allowed<Operator>,
    address: &Address,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Message>, AppError> {
    let mut taking = Taking::open(state, address, count, timeout, false).await?;
    let mut messages = Vec::new();
    loop {
        let delivery = match taking.next().await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => break,
            Err(error) => {
                taking.consumer.close().await;
                return Err(error);
            }
        };
        match delivery.ack.ack().await {
            Ok(()) => {
                taking.handed_over(&delivery.message);
                messages.push(delivery.message);
            }
            // Not acked (its lease ran out): it stays in the queue and is not answered.
            Err(error) => tracing::warn!(%error, "a taken message could not be acked"),
        }
    }
    taking.consumer.close().await;
    // Taking removes messages: who took how many is in the audit log.
    if !messages.is_empty() {
        audit::record(
            state,
            who,
            "queue.take",
            &address.to_string(),
            json!({ "taken": messages.len(), "ids": ids_of(&messages) }),
        )
        .await;
    }
    Ok(messages)
}

/// The first ids of `messages`, for an audit entry (a few, so an entry stays small).
fn ids_of(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .take(20)
        .map(|m| crate::broker::shorten(&m.id))
        .collect()
}

/// A consumer of one message at a time, for the UI's live consume (each message acked once
/// it is shown).
pub async fn consume_live(
    state: &AppState,
    who: &Allowed<Operator>,
    address: &Address,
) -> Result<Consumer, AppError> {
    let consumer = state.connections.consume(address, 1).await?;
    // Each message shown is acked, so removed: who watched which queue is in the audit log.
    audit::record(state, who, "queue.consume", &address.to_string(), json!({})).await;
    Ok(consumer)
}

/// Removes the ready messages of a queue (not those a consumer holds, nor those waiting out
/// a retry's delay); says how many.
pub async fn purge(
    state: &AppState,
    who: &Allowed<Operator>,
    address: &Address,
) -> Result<u64, AppError> {
    let purged = state.connections.purge(address).await?;
    audit::record(
        state,
        who,
        "queue.purge",
        &address.to_string(),
        json!({ "purged": purged }),
    )
    .await;
    Ok(purged)
}

/// The headers a dead letter gained, removed when it is replayed.
const DEAD_LETTER_HEADERS: [&str; 6] = [
    "exception",
    "exception_name",
    "exception_type",
    "x-wharf-plugin",
    "x-wharf-route",
    "x-wharf-attempts",
];

/// What to replay, and where.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReplayParams {
    /// How many to replay, oldest first (1 to 1,000; all up to 1,000 by default).
    pub count: Option<usize>,
    /// Where to send them (`connection:address`); by default the input of the route each
    /// names in its `x-wharf-route` header.
    pub to: Option<String>,
    /// Replay only the message with this id (embedded broker queues: a RabbitMQ queue cannot
    /// be read by id).
    pub id: Option<String>,
}

/// What a replay did.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub replayed: usize,
    /// Where they went, by address.
    pub to: std::collections::BTreeMap<String, usize>,
    /// Messages left in the queue because no destination was known (no `to`, and no route of
    /// the name their `x-wharf-route` header gives).
    pub left: usize,
}

/// Replays dead letters: each taken message, without its dead-letter headers, is published
/// to `to` or to its route's input, and removed from this queue only once that publish is
/// confirmed.
pub async fn replay(
    state: &AppState,
    who: &Allowed<Operator>,
    address: &Address,
    params: ReplayParams,
) -> Result<Replayed, AppError> {
    let count = count(params.count, MAX_COUNT)?;
    let to = params
        .to
        .as_deref()
        .map(|to| Address::parse(to).map_err(|e| invalid("to", e.to_string())))
        .transpose()?;
    if let Some(to) = &to
        && !state.connections.contains(&to.connection)
    {
        return Err(invalid(
            "to",
            format!("there is no connection named `{}`", to.connection),
        ));
    }
    let routes = crate::supervisor::Desired::load(&state.store, state.supervisor.file())
        .await?
        .routes;
    // Where a dead letter goes: `to`, else its route's input.
    let target_of = |message: &Message| {
        to.clone()
            .or_else(|| match message.header("x-wharf-route") {
                Some(HeaderValue::Text(route)) => routes
                    .get(route)
                    .and_then(|r| Address::parse(&r.spec.from).ok()),
                _ => None,
            })
    };
    let cleaned = |message: &Message| {
        let mut message = message.clone();
        message
            .headers
            .retain(|(name, _)| !DEAD_LETTER_HEADERS.contains(&name.as_str()));
        message
    };
    let done = match &params.id {
        Some(id) => {
            let Some(broker) = state.connections.embedded(&address.connection) else {
                return Err(invalid(
                    "id",
                    "a RabbitMQ queue cannot be read by id; replay the oldest or all",
                ));
            };
            let mut went = None;
            let moved = broker
                .move_by_id(&address.address, id, |message| {
                    let target = target_of(&message);
                    went = target.clone();
                    let connections = state.connections.clone();
                    let message = cleaned(&message);
                    async move {
                        let Some(target) = target else {
                            return Err(crate::broker::BrokerError::InvalidAddress {
                                address: String::new(),
                                problem: "no route input is known for this message; give `to`"
                                    .into(),
                            });
                        };
                        connections
                            .producer(&target)?
                            .send(&target.address, message)
                            .await
                    }
                })
                .await?;
            if !moved {
                return Err(AppError::NotFound(format!(
                    "no ready message with id `{}` in {address}",
                    crate::broker::shorten(id)
                )));
            }
            let to = went.map(|t| t.to_string()).unwrap_or_default();
            Replayed {
                replayed: 1,
                to: [(to, 1)].into(),
                left: 0,
            }
        }
        None => {
            let mut consumer = state
                .connections
                .consume(address, count.min(TAKE_PREFETCH))
                .await?;
            let mut done = Replayed {
                replayed: 0,
                to: Default::default(),
                left: 0,
            };
            let mut kept = Vec::new();
            let result = async {
                while done.replayed + kept.len() < count {
                    let delivery =
                        match tokio::time::timeout(Duration::from_millis(200), consumer.next())
                            .await
                        {
                            Err(_) => break,
                            Ok(delivery) => delivery?,
                        };
                    let Some(target) = target_of(&delivery.message) else {
                        kept.push(delivery);
                        continue;
                    };
                    let message = cleaned(&delivery.message);
                    state
                        .connections
                        .producer(&target)?
                        .send(&target.address, message)
                        .await?;
                    delivery.ack.ack().await?;
                    done.replayed += 1;
                    *done.to.entry(target.to_string()).or_default() += 1;
                }
                Ok::<(), crate::broker::BrokerError>(())
            }
            .await;
            done.left = kept.len();
            for delivery in kept {
                if let Err(error) = delivery.ack.nack(crate::broker::Nack::Requeue).await {
                    tracing::warn!(%error, "a dead letter with nowhere to go could not be returned; it comes back by itself");
                }
            }
            consumer.close().await;
            result?;
            done
        }
    };
    audit::record(
        state,
        who,
        "queue.replay",
        &address.to_string(),
        json!({ "replayed": done.replayed, "to": done.to, "left": done.left }),
    )
    .await;
    Ok(done)
}
