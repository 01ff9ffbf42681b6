//! Kafka, through librdkafka (the `rdkafka` crate).
//!
//! - *Sending*: an idempotent producer (`enable.idempotence`, `acks=all`); a send completes
//!   when its delivery report says the brokers have the record. A topic no broker knows is
//!   refused at once (the brokers are asked, and the answer kept), not waited on.
//! - *Consuming*: a route joins the consumer group `{group}.{route}` (see [`consume`]); the
//!   offset of a record is stored only when it is acked, and records of one partition are
//!   handed out one at a time, so an offset is committed only once that record and every
//!   earlier one of its partition are done. Partitions run concurrently.
//! - *Delayed sends* (a route's retries) wait in the host's database, in the held queue
//!   [`DELAYED`], and a relay sends each to its topic when its delay is over: a failing
//!   record never holds up its partition, and a retry survives a restart of the host.
//! - *Topics* the definition names, and those routes use, are created through the admin API
//!   when missing.

pub mod consume;
pub mod map;

use super::{BrokerError, ConnectionTest, Depth, EmbeddedBroker, EmbeddedConfig, PartitionDepth};
pub mod config;
mod topics;
pub(crate) use topics::*;
mod kind;

use crate::message::{HeaderValue, Message};
use crate::store::Store;
use crate::units::RouteConfig;
pub use config::KafkaConfig;
use config::{KafkaTopicConfig, is_kafka_topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The held queue where delayed sends wait, in the host's database.
pub const DELAYED: &str = "wharf.kafka.delayed";
/// The header naming a delayed record's topic while it waits.
const DELAYED_TOPIC: &str = "x-wharf-kafka-topic";

/// One Kafka connection. Cheap to clone.
#[derive(Clone)]
pub struct KafkaBroker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Delayed sends, waiting in the host's database.
    held: EmbeddedBroker,
    /// Topics known to exist.
    known: Mutex<HashSet<String>>,
    /// This host's consumer-group members, by group.
    consumers: consume::Members,
    relay: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The one client peeks read with, made at the first and reused (one peek at a time).
    peeker: consume::Peeker,
    /// Each topic's member shared by its leased takes.
    takes: consume::SharedTakes,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.lock().unwrap_or_else(|p| p.into_inner()).take() {
            relay.abort();
        }
    }
}

/// Which client a librdkafka configuration is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Producer,
    Consumer,
    Admin,
}

/// The librdkafka configuration of connection `config`'s `part`: its brokers, security and
/// settings; what Wharf's guarantees need is set after them.
pub(crate) fn client_config(config: &KafkaConfig, part: Part) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set_log_level(RDKafkaLogLevel::Warning);
    let tls = config.tls.is_some();
    match (&config.sasl, tls) {
        (Some(sasl), _) => {
            c.set(
                "security.protocol",
                if tls { "SASL_SSL" } else { "SASL_PLAINTEXT" },
            )
            .set("sasl.mechanism", &sasl.mechanism)
            .set("sasl.username", &sasl.username)
            .set("sasl.password", &sasl.password);
        }
        (None, true) => {
            c.set("security.protocol", "SSL");
        }
        (None, false) => {}
    }
    if let Some(tls) = &config.tls {
        let path = |p: &std::path::PathBuf| p.display().to_string();
        if let Some(ca) = &tls.ca {
            c.set("ssl.ca.location", path(ca));
        }
        if let Some(cert) = &tls.cert {
            c.set("ssl.certificate.location", path(cert));
        }
        if let Some(key) = &tls.key {
            c.set("ssl.key.location", path(key));
        }
        if let Some(bundle) = &tls.pkcs12 {
            c.set("ssl.keystore.location", path(bundle))
                .set("ssl.keystore.password", &tls.pkcs12_password);
        }
    }
    for (name, value) in &config.settings {
        c.set(name, value);
    }
    match part {
        Part::Producer => {
            // Defaults a definition may change: a record waits at most 1 ms for others to
            // share its request, a send to brokers that are down fails after 30 s, and a
            // send to a topic that does not exist is refused rather than creating it with
            // the brokers' defaults (topics come from the configuration, with the
            // partitions it names).
            c.set("linger.ms", "1")
                .set("message.timeout.ms", "30000")
                .set("allow.auto.create.topics", "false");
            for (name, value) in &config.producer {
                c.set(name, value);
            }
            c.set("enable.idempotence", "true").set("acks", "all");
        }
        Part::Consumer => {
            // A member that stops heartbeating is out of the group after 10 s (librdkafka's
            // 45 s default would leave a killed host's partitions unread that long), and
            // brokers that wait out part of the session timeout before answering a join
            // (nisshi waits half) form the group sooner. A definition may change it.
            c.set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000")
                .set("enable.partition.eof", "false")
                .set("statistics.interval.ms", "5000")
                .set("auto.commit.interval.ms", "1000");
            for (name, value) in &config.consumer {
                c.set(name, value);
            }
            c.set("enable.auto.commit", "true")
                .set("enable.auto.offset.store", "false");
        }
        Part::Admin => {}
    }
    c
}

/// A librdkafka error in Wharf's words.
pub(crate) fn error(connection: &str, doing: &str, e: KafkaError) -> BrokerError {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => BrokerError::Mapping {
            field: "payload".into(),
            problem: format!(
                "{doing}: the record is larger than the brokers take (message.max.bytes)"
            ),
        },
        Some(C::InvalidMessage | C::InvalidRecord | C::InvalidTopic) => BrokerError::Mapping {
            field: "message".into(),
            problem: format!("{doing}: {e}"),
        },
        Some(C::UnknownTopicOrPartition | C::UnknownTopic) => BrokerError::Unroutable {
            target: format!("{connection}:{doing}"),
            reason: "the topic does not exist".into(),
        },
        Some(
            C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::MessageTimedOut
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::Resolve
            | C::NetworkException,
        ) => BrokerError::Unavailable {
            connection: connection.to_owned(),
            detail: format!("{doing}: {e}"),
        },
        _ => BrokerError::Broker(format!("{doing}: {e}")),
    }
}

/// Checks an address: a topic name, or (to consume) a regular expression starting with `^`.
pub(crate) fn check_topic(
    connection: &str,
    topic: &str,
    pattern_allowed: bool,
) -> Result<(), BrokerError> {
    if (pattern_allowed && topic.starts_with('^') && topic.len() <= 1024) || is_kafka_topic(topic) {
        return Ok(());
    }
    Err(BrokerError::InvalidAddress {
        address: format!("{connection}:{}", super::shorten(topic)),
        problem: if pattern_allowed {
            "a Kafka address is a topic (1 to 249 of a-z, A-Z, 0-9, `.`, `_` and `-`) or a pattern starting with `^`".into()
        } else {
            "a Kafka topic is 1 to 249 of a-z, A-Z, 0-9, `.`, `_` and `-`".into()
        },
    })
}

impl KafkaBroker {
    /// Connection `name` as `config` defines it; `routes` name topics it creates when
    /// missing, with the definition's own. librdkafka connects in the background.
    pub fn start(
        name: &str,
        config: KafkaConfig,
        store: Store,
        routes: &[RouteConfig],
    ) -> Result<KafkaBroker, BrokerError> {
        let producer: FutureProducer = client_config(&config, Part::Producer)
            .create()
            .map_err(|e| error(name, "creating the producer", e))?;
        let admin: AdminClient<DefaultClientContext> = client_config(&config, Part::Admin)
            .create()
            .map_err(|e| error(name, "creating the admin client", e))?;
        let held = EmbeddedBroker::new(
            store,
            EmbeddedConfig {
                connection: name.to_owned(),
                ..EmbeddedConfig::default()
            },
        );
        let broker = KafkaBroker {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                config,
                producer,
                admin,
                held,
                known: Mutex::default(),
                consumers: consume::Members::default(),
                relay: Mutex::default(),
                peeker: consume::Peeker::default(),
                takes: consume::SharedTakes::default(),
            }),
        };
        let relay = tokio::spawn(relay(Arc::downgrade(&broker.inner)));
        *broker.inner.relay.lock().unwrap_or_else(|p| p.into_inner()) = Some(relay);
        let wanted = topics_for(name, &broker.inner.config, routes);
        if !wanted.is_empty() {
            let creating = broker.clone();
            tokio::spawn(async move {
                let mut backoff = crate::backoff::Backoff::new(
                    Duration::from_millis(200),
                    Duration::from_secs(10),
                );
                loop {
                    match creating.create_topics(&wanted).await {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() => {
                            tracing::warn!(connection = %creating.inner.name, error = %e, "cannot create the topics yet; trying again");
                            tokio::time::sleep(backoff.next_delay()).await;
                        }
                        Err(e) => {
                            tracing::error!(connection = %creating.inner.name, error = %e, "cannot create the topics");
                            break;
                        }
                    }
                }
            });
        }
        Ok(broker)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn members(&self) -> &consume::Members {
        &self.inner.consumers
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.inner.config.timeout_ms)
    }

    /// Creates the topics that do not exist; reports what happened to each.
    pub async fn create_topics(
        &self,
        topics: &[KafkaTopicConfig],
    ) -> Result<Vec<(String, String)>, BrokerError> {
        let report =
            create_with(&self.inner.admin, &self.inner.name, topics, self.timeout()).await?;
        for topic in topics {
            self.known_insert(&topic.name);
        }
        Ok(report)
    }

    /// Makes sure `topic` exists (one partition if it is created).
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), BrokerError> {
        super::Transport::ensure(self, &[topic.to_owned()]).await
    }

    fn known_insert(&self, topic: &str) {
        self.inner
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned());
    }

    /// The partitions of `topic` (asking the brokers); an error if it does not exist.
    async fn partitions(&self, topic: &str) -> Result<Vec<i32>, BrokerError> {
        let producer = self.inner.producer.clone();
        let (owned, timeout, name) = (topic.to_owned(), self.timeout(), self.inner.name.clone());
        let metadata = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&owned), timeout)
        })
        .await
        .map_err(|e| BrokerError::Broker(e.to_string()))?
        .map_err(|e| error(&name, &format!("asking for topic `{topic}`"), e))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().iter().map(|p| p.id()).collect())
            }
            _ => Err(BrokerError::Unroutable {
                target: format!("{}:{topic}", self.inner.name),
                reason: "no such topic; name it in the connection's `topics`, or use it in a route, to have it created".into(),
            }),
        }
    }

    /// Sends `msg` to `topic` and waits for its delivery report. A dead letter (a message
    /// with the `exception` headers) too large for the brokers goes without its payload and
    /// key, and says so in `x-wharf-dropped`: a record nobody can take must still leave its
    /// partition, or it would hold up every record behind it.
    pub async fn publish(&self, topic: &str, msg: Message) -> Result<(), BrokerError> {
        // Only a dead letter keeps a copy for a second try: no other send pays for one.
        if msg.header("exception_name").is_none() {
            return self.publish_as_is(topic, msg).await;
        }
        match self.publish_as_is(topic, msg.clone()).await {
            Err(BrokerError::Mapping { field, problem }) if field == "payload" => {
                tracing::warn!(connection = %self.inner.name, %topic, %problem, "a dead letter too large for the brokers goes without its payload and key");
                let mut smaller = msg;
                let dropped = format!(
                    "payload ({} bytes) and key ({} bytes): {problem}",
                    smaller.payload.len(),
                    smaller.key.as_ref().map_or(0, Vec::len)
                );
                smaller.payload.clear();
                smaller.key = None;
                smaller.set_header("x-wharf-dropped", HeaderValue::Text(dropped));
                self.publish_as_is(topic, smaller).await
            }
            other => other,
        }
    }

    async fn publish_as_is(&self, topic: &str, msg: Message) -> Result<(), BrokerError> {
        super::check_message(&msg)?;
        check_topic(&self.inner.name, topic, false)?;
        let known = self
            .inner
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic);
        if !known {
            self.partitions(topic).await?;
            self.known_insert(topic);
        }
        let record = map::to_record(&msg, topic);
        let mut out = FutureRecord::to(topic)
            .payload(&record.payload)
            .headers(record.headers)
            .timestamp(record.timestamp_ms);
        if let Some(key) = &record.key {
            out = out.key(key);
        }
        match self
            .inner
            .producer
            .send(out, Timeout::After(self.timeout()))
            .await
        {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(error(&self.inner.name, &format!("sending to `{topic}`"), e)),
        }
    }

    /// Holds `msg` in the host's database until `delay` is over, then sends it to `topic`.
    pub async fn publish_delayed(
        &self,
        topic: &str,
        mut msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        check_topic(&self.inner.name, topic, false)?;
        msg.set_header(DELAYED_TOPIC, HeaderValue::Text(topic.to_owned()));
        self.inner.held.publish_delayed(DELAYED, msg, delay).await
    }

    /// Offsets of each partition of `topic`.
    pub async fn watermarks(&self, topic: &str) -> Result<Vec<PartitionDepth>, BrokerError> {
        let partitions = self.partitions(topic).await?;
        let producer = self.inner.producer.clone();
        let (owned, timeout, name) = (topic.to_owned(), self.timeout(), self.inner.name.clone());
        tokio::task::spawn_blocking(move || {
            partitions
                .into_iter()
                .map(|partition| {
                    producer
                        .client()
                        .fetch_watermarks(&owned, partition, timeout)
                        .map(|(low, high)| PartitionDepth {
                            partition,
                            low,
                            high,
                        })
                        .map_err(|e| error(&name, "reading offsets", e))
                })
                .collect()
        })
        .await
        .map_err(|e| BrokerError::Broker(e.to_string()))?
    }

    /// The newest records of `topic`, up to `count` (and `max_bytes` of whole messages,
    /// payload, key and headers, but always one), oldest first, read with the connection's
    /// one peek client. Kafka keeps what was read, so nothing is taken.
    pub async fn peek(
        &self,
        topic: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        check_topic(&self.inner.name, topic, false)?;
        let marks = self.watermarks(topic).await?;
        consume::peek(self, &self.inner.peeker, topic, &marks, count, max_bytes).await
    }

    /// Deletes every record of `topic` (the brokers' DeleteRecords); returns how many.
    pub async fn purge(&self, topic: &str) -> Result<u64, BrokerError> {
        check_topic(&self.inner.name, topic, false)?;
        let marks = self.watermarks(topic).await?;
        let mut list = rdkafka::TopicPartitionList::new();
        for mark in &marks {
            list.add_partition_offset(topic, mark.partition, rdkafka::Offset::Offset(mark.high))
                .map_err(|e| error(&self.inner.name, "purging", e))?;
        }
        let options = AdminOptions::new().operation_timeout(Some(self.timeout()));
        self.inner
            .admin
            .delete_records(&list, &options)
            .await
            .map_err(|e| error(&self.inner.name, &format!("purging `{topic}`"), e))?;
        Ok(marks.iter().map(|m| (m.high - m.low).max(0) as u64).sum())
    }
}

/// Sends each delayed record to its topic when its delay is over; a record the brokers refuse
/// for now waits and is tried again, one they refuse for good is dead-lettered in the held
/// queue's dead letters.
async fn relay(inner: std::sync::Weak<Inner>) {
    let Some(held) = inner.upgrade().map(|i| i.held.clone()) else {
        return;
    };
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let mut consumer = match held.consume(DELAYED, 16).await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::warn!(error = %e, "the delayed-send relay cannot read its queue; trying again");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        loop {
            let delivery = match consumer.next().await {
                Ok(delivery) => delivery,
                Err(_) => break,
            };
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let broker = KafkaBroker { inner };
            let mut msg = delivery.message;
            let topic = match msg.header(DELAYED_TOPIC) {
                Some(HeaderValue::Text(topic)) => topic.clone(),
                _ => String::new(),
            };
            msg.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case(DELAYED_TOPIC));
            let settled = match broker.publish(&topic, msg).await {
                Ok(()) => delivery.ack.ack().await,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(connection = %broker.inner.name, %topic, error = %e, "a delayed send waits for the brokers");
                    delivery
                        .ack
                        .nack(super::Nack::RequeueAfter(Duration::from_secs(1)))
                        .await
                }
                Err(e) => {
                    delivery
                        .ack
                        .nack(super::Nack::DeadLetter(super::DeadLetter::new(
                            e.to_string(),
                            e.exception_name(),
                            "broker",
                        )))
                        .await
                }
            };
            if let Err(e) = settled {
                tracing::warn!(error = %e, "settling a delayed send failed; it is sent again");
            }
        }
    }
}

#[async_trait::async_trait]
impl super::Transport for KafkaBroker {
    async fn send(&self, topic: &str, msg: Message) -> Result<(), BrokerError> {
        self.publish(topic, msg).await
    }

    fn kind(&self) -> &'static str {
        "kafka"
    }

    /// The events topic: every event in one topic, its routing key in the record's
    /// `x-wharf-topic` header.
    async fn declare_events(&self, topic: &str) -> Result<(), BrokerError> {
        self.ensure_topic(topic).await
    }

    /// A consumer group of the subscription's own on the events topic; it reads every event
    /// and handles those its pattern matches.
    async fn subscribe(
        &self,
        topic: &str,
        queue: &str,
        _pattern: &str,
    ) -> Result<super::Subscribed, BrokerError> {
        self.ensure_topic(topic).await?;
        Ok(super::Subscribed {
            address: topic.to_owned(),
            group: queue.to_owned(),
            shared_log: true,
        })
    }

    async fn send_delayed(
        &self,
        topic: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        self.publish_delayed(topic, msg, delay).await
    }

    async fn consume(
        &self,
        address: &str,
        options: super::ConsumeOptions,
    ) -> Result<super::Consumer, BrokerError> {
        if options.shared && options.unit.is_none() {
            return Ok(super::Consumer::new(
                self.inner.takes.consume(self, address, &options)?,
            ));
        }
        Ok(super::Consumer::new(consume::KafkaConsumer::start(
            self, address, &options,
        )?))
    }

    async fn ensure(&self, topics: &[String]) -> Result<(), BrokerError> {
        let missing: Vec<_> = {
            let known = self.inner.known.lock().unwrap_or_else(|p| p.into_inner());
            topics
                .iter()
                .filter(|t| is_kafka_topic(t) && !known.contains(*t))
                .map(|t| single(t))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        self.create_topics(&missing).await.map(drop)
    }

    /// Each partition's offsets, and the records they hold between them.
    async fn depth(&self, topic: &str) -> Result<Depth, BrokerError> {
        check_topic(&self.inner.name, topic, false)?;
        let partitions = self.watermarks(topic).await?;
        Ok(Depth {
            queue: topic.to_owned(),
            depth: Some(
                partitions
                    .iter()
                    .map(|p| (p.high - p.low).max(0) as u64)
                    .sum(),
            ),
            partitions,
            ..Depth::default()
        })
    }

    async fn peek(
        &self,
        topic: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        KafkaBroker::peek(self, topic, count, max_bytes).await
    }

    async fn purge(&self, topic: &str) -> Result<u64, BrokerError> {
        KafkaBroker::purge(self, topic).await
    }

    fn consumers(&self) -> Vec<super::ConsumerState> {
        self.inner.consumers.states()
    }

    /// Up while the brokers answer a metadata request. Asked on a thread of its own, not on
    /// the blocking pool that password hashing and plugin compiles share: a slow broker must
    /// not hold their threads (callers reuse one answer a second, see `Connections::check`).
    async fn check(&self) -> Result<(), String> {
        let producer = self.inner.producer.clone();
        let name = self.inner.name.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("wharf-kafka-health".into())
            .spawn(move || {
                let _ = answer.send(
                    producer
                        .client()
                        .fetch_metadata(None, Duration::from_secs(3))
                        .map(drop)
                        .map_err(|e| error(&name, "asking the brokers", e).to_string()),
                );
            })
            .map_err(|e| format!("cannot start the health check: {e}"))?;
        answered
            .await
            .map_err(|_| "the health check stopped".to_string())?
    }

    async fn close(&self) {
        let producer = self.inner.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
        if let Some(relay) = self
            .inner
            .relay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            relay.abort();
        }
    }
}

/// Whether the brokers answer now, with what they say of themselves.
pub(crate) async fn test(name: &str, config: &KafkaConfig) -> ConnectionTest {
    let client: Result<FutureProducer, _> = client_config(config, Part::Producer).create();
    let producer = match client {
        Ok(producer) => producer,
        Err(e) => return ConnectionTest::new(false, error(name, "connecting", e).to_string()),
    };
    let brokers = config.brokers.clone();
    let answer = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|m| (m.brokers().len(), m.topics().len()))
    })
    .await;
    match answer {
        Ok(Ok((brokers_seen, topics))) => ConnectionTest::new(
            true,
            format!("connected to {brokers}: {brokers_seen} broker(s), {topics} topic(s)"),
        ),
        Ok(Err(e)) => ConnectionTest::new(
            false,
            format!(
                "{brokers} does not answer: {}",
                error(name, "connecting", e)
            ),
        ),
        Err(e) => ConnectionTest::new(false, e.to_string()),
    }
}
