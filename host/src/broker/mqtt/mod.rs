//! MQTT as a transport, through `rumqttc` (MQTT 3.1.1 and 5, QoS 1 throughout).
//!
//! **Sends** go out on one clean session per connection; a send completes when the broker
//! acknowledges it (its PUBACK). Queue `orders` is topic `orders`; `exchange/key` is topic
//! `exchange/` and the key's words as levels (`events/Booking.created` is published at
//! `events/Booking/created`), so a plain MQTT client subscribed to `events/Booking/+` gets them.
//!
//! **Reading** an address is done through a session the broker keeps for this host: its
//! client id is a hash of the host's stable name, the connection and the filter, and it
//! subscribes once with `$share/{share_group}/{topic}`. Hosts reading one queue therefore share
//! its messages, and what arrives while a host is away waits in its session for it to come
//! back (for `session_expiry_s`, and up to the broker's own bound on queued messages). Every
//! reader of an address on one host takes from the same session. A message is acked (its
//! PUBACK sent) when its outputs are confirmed; until then the broker holds it for this
//! session and sends it again after a reconnect (a resend of what the host still holds is
//! recognised and dropped). A retry stays with the reader: the message is held for the delay
//! and handed out again, its delivery counted here, since MQTT has no negative
//! acknowledgement and 3.1.1 no headers to count in. A dead letter is a copy sent to
//! `{queue}.dead` with the `exception` headers (MQTT 5), then the original is acked.
//!
//! **Events and subscriptions**: a subscription is a session of its own on
//! `$share/{queue}/{exchange}/{pattern}` (`*` is `+`, a last `#` is `#`), so each subscription
//! gets every matching event once, shared between the hosts running it.
//!
//! **What MQTT cannot do**: a broker keeps messages per session where no client can count or
//! remove them, so depth and purge are refused, saying so; peek shows a topic's retained
//! message. A delayed send (MQTT 5) carries `x-wharf-not-before` and is held by the reader
//! until then.

pub mod config;
mod kind;
mod map;
mod read;
mod wire;

use super::{
    BrokerError, ConsumeOptions, Consumer, DeadLetter, Depth, Subscribed, Transport, check_message,
};
use crate::message::{Message, now_ms};
pub use config::MqttConfig;
use config::Protocol;
use read::{Held, MqttSource, Reader, ReaderState};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use wire::{Event, PublishProperties};

/// How many deliveries a reader with a limit allows before it dead-letters a message.
const MAX_DELIVERIES: u32 = crate::units::DEFAULT_MAX_DELIVERIES;
/// Messages a reader's session holds for its readers, at most (the broker's receive limit
/// keeps it far below this).
const MAX_HELD: usize = 4096;
/// How long a peek waits for more retained messages after the last.
const PEEK_QUIET: Duration = Duration::from_millis(300);

/// An MQTT connection. Cheap to clone.
#[derive(Clone)]
pub struct MqttBroker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: MqttConfig,
    /// This host's stable name: its reading sessions' client ids derive from it.
    host: String,
    publisher: Publisher,
    /// Reading sessions, by topic filter.
    readers: tokio::sync::Mutex<HashMap<String, Arc<Reader>>>,
    /// Subscriptions' filters, by the queue name a route reads them at.
    subscriptions: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for MqttBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttBroker")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// The session sends go out on, and the sends waiting for their acknowledgement: queued in
/// the order they were handed to the client (which is the order their packet ids are given
/// in), then by packet id.
struct Publisher {
    session: wire::Session,
    order: tokio::sync::Mutex<()>,
    waiting: Arc<Mutex<Waiting>>,
    /// Why the session is not connected; `None` while it is.
    down: watch::Receiver<Option<String>>,
}

type Answer = oneshot::Sender<Option<String>>;

#[derive(Default)]
struct Waiting {
    queued: VecDeque<Answer>,
    sent: HashMap<u16, Answer>,
}

fn failed(connection: &str, doing: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable {
        connection: connection.to_owned(),
        detail: format!("{doing}: {e}"),
    }
}

fn hash16(parts: &[&str]) -> String {
    use sha2::Digest as _;
    let mut digest = sha2::Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    hex::encode(&digest.finalize()[..8])
}

/// Whether MQTT takes `topic` to publish to.
fn check_topic(address: &str, topic: &str) -> Result<(), BrokerError> {
    let problem = if topic.is_empty() || topic.len() > 65_535 {
        Some("an MQTT topic is 1 to 65535 bytes")
    } else if topic.contains(['+', '#', '\0']) {
        Some("an MQTT topic to send to holds no `+`, `#` or NUL")
    } else if topic.starts_with('$') {
        Some("topics starting with `$` are the broker's own")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(BrokerError::InvalidAddress {
            address: address.to_owned(),
            problem: problem.into(),
        }),
        None => Ok(()),
    }
}

/// The topic `address` is published at: a queue's name, or `exchange/` and the key's words
/// as levels.
fn topic_of(address: &str) -> Result<String, BrokerError> {
    let topic = match address.split_once('/') {
        Some((exchange, key)) => format!("{exchange}/{}", key.replace('.', "/")),
        None => address.to_owned(),
    };
    check_topic(address, &topic)?;
    Ok(topic)
}

/// A binding pattern as an MQTT filter under `exchange`: `*` is `+`, a last `#` is `#`.
fn filter_of(exchange: &str, pattern: &str) -> Result<String, BrokerError> {
    let words: Vec<&str> = pattern.split('.').collect();
    let mut levels = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let level = match *word {
            "#" if i + 1 == words.len() => "#",
            "*" => "+",
            word if word.is_empty() || word.contains(['/', '+', '#', '\0']) => {
                return Err(BrokerError::Broker(format!(
                    "MQTT takes `#` only as the pattern's last word, and no empty word or `/`, `+`, `#` within one, not `{pattern}`"
                )));
            }
            word => word,
        };
        levels.push(level);
    }
    Ok(format!("{exchange}/{}", levels.join("/")))
}

/// The shared subscription of subscription `queue`: a group of its own, so that it gets
/// every matching event once, shared by the hosts running it.
fn subscription_filter(exchange: &str, queue: &str, pattern: &str) -> Result<String, BrokerError> {
    let readable: String = queue
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    Ok(format!(
        "$share/{readable}-{}/{}",
        &hash16(&[queue])[..8],
        filter_of(exchange, pattern)?
    ))
}

impl MqttBroker {
    /// Starts the connection's sending session; it connects in the background (again after
    /// each failure), and sends fail as unavailable meanwhile.
    pub fn start(name: &str, config: MqttConfig, host: &str) -> Result<MqttBroker, BrokerError> {
        let client_id = format!(
            "{}p{}",
            config.client_prefix,
            &uuid::Uuid::new_v4().simple().to_string()[..15]
        );
        let (session, mut events) = wire::start(wire::Dial {
            config: &config,
            client_id,
            clean: true,
            receive: 64,
            backlog: 1024,
        })
        .map_err(|e| BrokerError::Broker(format!("connection `{name}`: {e}")))?;
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let (down_tx, down) = watch::channel(Some("connecting".to_owned()));
        let answers = waiting.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::Connected { .. } => {
                        let _ = down_tx.send(None);
                    }
                    Event::Down(why) => {
                        let _ = down_tx.send(Some(why));
                    }
                    Event::Sent(pkid) => {
                        let mut waiting = answers.lock().unwrap();
                        // A packet id already waiting is a resend after a reconnect.
                        if !waiting.sent.contains_key(&pkid)
                            && let Some(answer) = waiting.queued.pop_front()
                        {
                            waiting.sent.insert(pkid, answer);
                        }
                    }
                    Event::Acked { pkid, refused } => {
                        if let Some(answer) = answers.lock().unwrap().sent.remove(&pkid) {
                            let _ = answer.send(refused);
                        }
                    }
                    Event::Message(_) | Event::Subscribed(_) => {}
                }
            }
        });
        Ok(MqttBroker {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                config,
                host: host.to_owned(),
                publisher: Publisher {
                    session,
                    order: tokio::sync::Mutex::new(()),
                    waiting,
                    down,
                },
                readers: tokio::sync::Mutex::new(HashMap::new()),
                subscriptions: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn unavailable(&self, doing: &str, e: impl std::fmt::Display) -> BrokerError {
        failed(&self.inner.name, doing, e)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.inner.config.timeout_ms)
    }

    /// Publishes `msg` at `address`'s topic and waits for the broker's acknowledgement.
    async fn publish(
        &self,
        address: &str,
        msg: &Message,
        not_before: Option<u64>,
    ) -> Result<(), BrokerError> {
        check_message(msg)?;
        let topic = topic_of(address)?;
        let properties = match self.inner.config.protocol {
            Protocol::V5 => map::to_properties(msg, &topic, not_before)?,
            Protocol::V311 => {
                map::check_v311(msg)?;
                PublishProperties::default()
            }
        };
        let publisher = &self.inner.publisher;
        if let Some(why) = publisher.down.borrow().clone() {
            return Err(self.unavailable(&format!("sending to `{address}`"), why));
        }
        let (answer, answered) = oneshot::channel();
        {
            let _turn = publisher.order.lock().await;
            publisher.waiting.lock().unwrap().queued.push_back(answer);
            let sent = publisher
                .session
                .client
                .publish(topic, msg.payload.clone(), properties, false)
                .await;
            if let Err(e) = sent {
                publisher.waiting.lock().unwrap().queued.pop_back();
                return Err(self.unavailable(&format!("sending to `{address}`"), e));
            }
        }
        match tokio::time::timeout(self.timeout(), answered).await {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(refused))) => Err(BrokerError::Broker(format!(
                "the broker refused a message to `{address}`: {refused}"
            ))),
            Ok(Err(_)) => Err(BrokerError::Closed),
            Err(_) => Err(self.unavailable(
                &format!("sending to `{address}`"),
                format!(
                    "no acknowledgement within {} ms",
                    self.inner.config.timeout_ms
                ),
            )),
        }
    }

    /// The filter `address` is read through: a subscription's, or the queue's topic shared
    /// by every host.
    fn filter(&self, address: &str) -> Result<String, BrokerError> {
        if let Some(filter) = self.inner.subscriptions.lock().unwrap().get(address) {
            return Ok(filter.clone());
        }
        Ok(format!(
            "$share/{}/{}",
            self.inner.config.share_group,
            topic_of(address)?
        ))
    }

    /// This host's reading session on `filter`, started (and subscribed) when missing.
    async fn reader(&self, filter: &str, prefetch: usize) -> Result<Arc<Reader>, BrokerError> {
        let mut readers = self.inner.readers.lock().await;
        if let Some(reader) = readers.get(filter) {
            return Ok(reader.clone());
        }
        let reader = self.open_reader(filter, prefetch).await?;
        readers.insert(filter.to_owned(), reader.clone());
        Ok(reader)
    }

    /// Starts this host's session on `filter` and waits (up to the timeout) for its
    /// subscription.
    async fn open_reader(&self, filter: &str, prefetch: usize) -> Result<Arc<Reader>, BrokerError> {
        let config = &self.inner.config;
        let client_id = format!(
            "{}{}",
            config.client_prefix,
            hash16(&[&self.inner.host, &self.inner.name, filter])
        );
        let (session, events) = wire::start(wire::Dial {
            config,
            client_id,
            clean: false,
            receive: u16::try_from(prefetch.max(64)).unwrap_or(u16::MAX),
            backlog: 256,
        })
        .map_err(|e| self.unavailable(&format!("reading `{filter}`"), e))?;
        let (held_tx, held_rx) = mpsc::channel(MAX_HELD);
        let (ready_tx, mut ready) = watch::channel(None);
        let reader = Arc::new(Reader {
            filter: filter.to_owned(),
            session,
            requeue: held_tx.clone(),
            held: tokio::sync::Mutex::new(held_rx),
            state: Arc::new(Mutex::new(ReaderState::default())),
            open: std::sync::atomic::AtomicUsize::new(0),
            for_unit: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(read::read(
            reader.session.client.clone(),
            filter.to_owned(),
            events,
            held_tx,
            reader.state.clone(),
            ready_tx,
        ));
        // Wait for the subscription (or a session that has it): a broker that refuses it is
        // an error now; one that is down is waited for in the background.
        let answer = tokio::time::timeout(self.timeout(), ready.wait_for(Option::is_some)).await;
        if let Ok(Ok(answer)) = answer
            && let Some(Err(why)) = answer.clone()
        {
            return Err(BrokerError::Broker(format!("reading `{filter}`: {why}")));
        }
        Ok(reader)
    }

    /// Lets go of this host's session on `filter`: unsubscribed, so the broker keeps nothing
    /// more for it, what it holds not yet handed out sent back to the topic (a copy, then the
    /// original acked), and closed once what is in hand is settled.
    async fn let_go(&self, filter: &str) -> Result<(), BrokerError> {
        let reader = match self.inner.readers.lock().await.remove(filter) {
            Some(reader) => reader,
            // A session an earlier run of this host left: opened to be let go of.
            None => self.open_reader(filter, 1).await?,
        };
        reader
            .session
            .client
            .unsubscribe(filter)
            .await
            .map_err(|e| self.unavailable(&format!("unsubscribing `{filter}`"), e))?;
        let topic = filter.splitn(3, '/').nth(2).unwrap_or(filter).to_owned();
        let mut held = reader.held.lock().await;
        while let Ok(one) = held.try_recv() {
            if !topic.contains(['+', '#']) {
                self.publish(&topic, &one.message, None).await?;
            }
            self.ack_held(&reader, &one).await?;
        }
        drop(held);
        reader.session.close().await;
        Ok(())
    }

    /// Settles `held` for good: its PUBACK, unless the broker has since lost the session it
    /// came in (then it has nothing to ack).
    async fn ack_held(&self, reader: &Reader, held: &Held) -> Result<(), BrokerError> {
        {
            let mut state = reader.state.lock().unwrap();
            if state.epoch != held.epoch {
                return Ok(());
            }
            state.outstanding.remove(&held.publish.pkid());
        }
        reader
            .session
            .client
            .ack(&held.publish)
            .await
            .map_err(|e| self.unavailable("acking", e))
    }

    /// Sends `msg` to the dead letters of `address` with the dead letter's headers.
    async fn dead_letter(
        &self,
        address: &str,
        mut msg: Message,
        dead: DeadLetter,
    ) -> Result<(), BrokerError> {
        msg.headers.extend(dead.headers);
        if self.inner.config.protocol == Protocol::V311 {
            msg.reply_to = None;
            msg.correlation_id = None;
        }
        self.publish(&format!("{address}.dead"), &msg, None).await
    }
}

#[async_trait::async_trait]
impl Transport for MqttBroker {
    async fn send(&self, address: &str, msg: Message) -> Result<(), BrokerError> {
        self.publish(address, &msg, None).await
    }

    /// Held by the reader until due (MQTT 5); MQTT 3.1.1 has nowhere to say when.
    async fn send_delayed(
        &self,
        address: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        if self.inner.config.protocol == Protocol::V311 {
            return Err(BrokerError::Mapping {
                field: "delay".into(),
                problem: "MQTT 3.1.1 carries the payload only, so a delayed send has nowhere to say when it is due: use `protocol = \"5\"`".into(),
            });
        }
        let at = now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self.publish(address, &msg, Some(at)).await
    }

    async fn consume(
        &self,
        address: &str,
        options: ConsumeOptions,
    ) -> Result<Consumer, BrokerError> {
        let filter = self.filter(address)?;
        let prefetch = options.prefetch.max(1);
        let reader = self.reader(&filter, prefetch).await?;
        if options.unit.is_some() {
            reader.for_unit.store(true, Ordering::Relaxed);
        }
        reader.open.fetch_add(1, Ordering::Relaxed);
        Ok(Consumer::new(MqttSource {
            broker: self.clone(),
            reader,
            address: address.to_owned(),
            slots: Arc::new(Semaphore::new(prefetch)),
            limited: options.limited,
        }))
    }

    async fn depth(&self, address: &str) -> Result<Depth, BrokerError> {
        Err(BrokerError::Unsupported(format!(
            "MQTT cannot tell how many messages wait at `{address}`: the broker keeps them in each reader's session, where no client can count them"
        )))
    }

    /// The topic's retained message, if it has one.
    async fn peek(
        &self,
        address: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        if self
            .inner
            .subscriptions
            .lock()
            .unwrap()
            .contains_key(address)
        {
            return Err(BrokerError::Unsupported(format!(
                "`{address}` is a subscription: MQTT keeps no events to show but a topic's retained message; peek the topic"
            )));
        }
        let topic = topic_of(address)?;
        let config = &self.inner.config;
        let (session, mut events) = wire::start(wire::Dial {
            config,
            client_id: format!(
                "{}k{}",
                config.client_prefix,
                &uuid::Uuid::new_v4().simple().to_string()[..15]
            ),
            clean: true,
            receive: 16,
            backlog: 64,
        })
        .map_err(|e| self.unavailable(&format!("peeking `{address}`"), e))?;
        let deadline = tokio::time::Instant::now() + self.timeout();
        let mut subscribed = false;
        let mut found: Vec<Message> = Vec::new();
        let mut bytes = 0usize;
        let mut last_trouble = String::from("no answer");
        while found.len() < count {
            let wait = if subscribed {
                PEEK_QUIET
            } else {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            };
            match tokio::time::timeout(wait, events.recv()).await {
                Ok(Some(Event::Connected { .. })) => {
                    if let Err(e) = session.client.subscribe(&topic).await {
                        last_trouble = e;
                    }
                }
                Ok(Some(Event::Subscribed(None))) => subscribed = true,
                Ok(Some(Event::Subscribed(Some(why)))) => {
                    session.close().await;
                    return Err(BrokerError::Broker(format!("peeking `{address}`: {why}")));
                }
                Ok(Some(Event::Message(publish))) => {
                    let _ = session.client.ack(&publish).await;
                    if publish.retain() {
                        let msg = map::from_publish(&publish);
                        let size = msg.size_bytes();
                        if !found.is_empty() && bytes + size > max_bytes {
                            break;
                        }
                        bytes += size;
                        found.push(msg);
                    }
                }
                Ok(Some(Event::Down(why))) => last_trouble = why,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) if subscribed => break,
                Err(_) => {
                    return Err(self.unavailable(&format!("peeking `{address}`"), last_trouble));
                }
            }
        }
        session.close().await;
        Ok(found)
    }

    async fn purge(&self, address: &str) -> Result<u64, BrokerError> {
        Err(BrokerError::Unsupported(format!(
            "MQTT cannot purge `{address}`: the broker keeps its messages in each reader's session, where no client can remove them"
        )))
    }

    async fn check(&self) -> Result<(), String> {
        match self.inner.publisher.down.borrow().clone() {
            None => Ok(()),
            Some(why) => Err(format!("the MQTT broker is not connected ({why})")),
        }
    }

    async fn started(&self) -> Result<(), BrokerError> {
        let mut down = self.inner.publisher.down.clone();
        let _ = tokio::time::timeout(self.timeout(), down.wait_for(Option::is_none)).await;
        Ok(())
    }

    /// Disconnects every session; the reading ones stay with the broker, holding what
    /// arrives for this host until it is back.
    async fn close(&self) {
        let readers: Vec<Arc<Reader>> = self
            .inner
            .readers
            .lock()
            .await
            .drain()
            .map(|(_, r)| r)
            .collect();
        for reader in readers {
            reader.session.close().await;
        }
        self.inner.publisher.session.close().await;
    }

    /// Events need nothing declared: the exchange is the topics' first level.
    async fn declare_events(&self, exchange: &str) -> Result<(), BrokerError> {
        if exchange.contains('/') {
            return Err(BrokerError::InvalidAddress {
                address: exchange.to_owned(),
                problem: "an MQTT events exchange is one topic level, without `/`".into(),
            });
        }
        check_topic(exchange, exchange)
    }

    async fn subscribe(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<Subscribed, BrokerError> {
        self.declare_events(exchange).await?;
        let filter = subscription_filter(exchange, queue, pattern)?;
        self.inner
            .subscriptions
            .lock()
            .unwrap()
            .insert(queue.to_owned(), filter.clone());
        // The session starts now, so the broker keeps the events from here on.
        self.reader(&filter, 64).await?;
        Ok(Subscribed::queue(queue))
    }

    /// Takes the subscription off the broker: its session unsubscribes and goes.
    async fn unsubscribe(
        &self,
        exchange: &str,
        queue: &str,
        pattern: &str,
    ) -> Result<(), BrokerError> {
        self.inner.subscriptions.lock().unwrap().remove(queue);
        let filter = subscription_filter(exchange, queue, pattern)?;
        let reader = self.reader(&filter, 1).await?;
        self.inner.readers.lock().await.remove(&filter);
        reader
            .session
            .client
            .unsubscribe(&filter)
            .await
            .map_err(|e| self.unavailable(&format!("unsubscribing `{queue}`"), e))?;
        reader.session.close().await;
        Ok(())
    }

    /// The route that read `address` is deleted: its session here lets go of the topic.
    async fn release(&self, address: &str) -> Result<(), BrokerError> {
        self.let_go(&self.filter(address)?).await
    }

    fn kind(&self) -> &'static str {
        "mqtt"
    }
}

/// Connects afresh and says whether the broker lets this client in.
pub(crate) async fn test(name: &str, config: &MqttConfig) -> super::ConnectionTest {
    let shown = crate::redact::redact(&config.url);
    let client_id = format!(
        "{}t{}",
        config.client_prefix,
        &uuid::Uuid::new_v4().simple().to_string()[..15]
    );
    let dial = wire::Dial {
        config,
        client_id,
        clean: true,
        receive: 16,
        backlog: 16,
    };
    let (session, mut events) = match wire::start(dial) {
        Ok(started) => started,
        Err(e) => return super::ConnectionTest::new(false, format!("{shown}: {e}")),
    };
    let version = match config.protocol {
        Protocol::V5 => "MQTT 5",
        Protocol::V311 => "MQTT 3.1.1",
    };
    let wait = Duration::from_millis(config.timeout_ms);
    let result = loop {
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(Event::Connected { .. })) => {
                break super::ConnectionTest::new(
                    true,
                    format!("{shown} lets `{name}` in ({version})"),
                );
            }
            Ok(Some(Event::Down(why))) => {
                break super::ConnectionTest::new(false, format!("{shown}: {why}"));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                break super::ConnectionTest::new(
                    false,
                    format!("{shown}: no answer within {} ms", config.timeout_ms),
                );
            }
        }
    };
    session.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_topics_and_patterns_filters() {
        assert_eq!(topic_of("orders").unwrap(), "orders");
        assert_eq!(
            topic_of("events/Booking.created").unwrap(),
            "events/Booking/created"
        );
        assert!(topic_of("a+b").is_err());
        assert!(topic_of("$SYS").is_err());
        assert_eq!(
            filter_of("events", "Booking.*").unwrap(),
            "events/Booking/+"
        );
        assert_eq!(filter_of("events", "#").unwrap(), "events/#");
        assert!(filter_of("events", "a.#.b").is_err());
        assert!(filter_of("events", "a/b").is_err());
    }

    #[test]
    fn a_reading_session_is_named_by_host_connection_and_filter() {
        let one = hash16(&["host-a", "mqtt", "$share/wharf/orders"]);
        assert_eq!(one.len(), 16);
        assert_ne!(one, hash16(&["host-b", "mqtt", "$share/wharf/orders"]));
        assert_ne!(one, hash16(&["host-a", "mqtt", "$share/wharf/other"]));
    }
}
