//! Exchanges, queues and bindings an AMQP connection declares: at start-up and after every
//! reconnect, and on demand by `wharf schema apply`.
//!
//! Declaring is idempotent. Each item is first looked up passively, so the report can say what
//! was created and what was there already; then it is declared with the configured arguments,
//! so an existing queue whose arguments differ is a clear error (the broker's 406
//! `PRECONDITION_FAILED`, with its own words about which argument), never a silent mismatch.
//! Queues a route needs but the config does not list (its input, its default dead-letter queue)
//! are only ensured: declared durable if missing, left as they are if they exist.

use super::config::{AmqpQueueConfig, BindingConfig, ExchangeConfig};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ExchangeKind};
use std::collections::BTreeMap;

/// What one connection declares.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub exchanges: Vec<ExchangeConfig>,
    pub queues: Vec<AmqpQueueConfig>,
    pub bindings: Vec<BindingConfig>,
    /// Queues that must exist, with whatever arguments they have.
    pub ensured: Vec<String>,
}

/// What declaring one item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Existed,
    /// Bindings cannot be looked up in AMQP; declaring one is idempotent.
    Declared,
}

impl Outcome {
    /// What declaring an item did, given whether it was there before.
    fn of(existed: bool) -> Outcome {
        if existed {
            Outcome::Existed
        } else {
            Outcome::Created
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Existed => "exists",
            Outcome::Declared => "declared",
        })
    }
}

/// Why the topology could not be declared.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The item exists with other arguments or type.
    #[error(
        "{item} exists on the broker with other settings than the config asks for: {detail}. Change the config to match, or delete the {what} (losing its messages) and start again"
    )]
    Mismatch {
        item: String,
        what: &'static str,
        detail: String,
    },
    #[error("declaring {item}: {detail}")]
    Failed { item: String, detail: String },
}

impl TopologyError {
    /// Whether trying again cannot help without a change to the config or the broker.
    pub fn is_permanent(&self) -> bool {
        matches!(self, TopologyError::Mismatch { .. })
    }
}

fn code_of(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

fn broker_text(error: &lapin::Error) -> String {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
        _ => error.to_string(),
    }
}

/// The `x-…` arguments of a queue as configured.
pub fn queue_arguments(queue: &AmqpQueueConfig) -> FieldTable {
    let mut args: BTreeMap<ShortString, AMQPValue> = BTreeMap::new();
    if let Some(kind) = &queue.kind {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(kind.clone().into()),
        );
    }
    if let Some(exchange) = &queue.dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(exchange.clone().into()),
        );
    }
    if let Some(key) = &queue.dead_letter_routing_key {
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(key.clone().into()),
        );
    }
    if let Some(ttl) = queue.message_ttl_ms {
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl as i64));
    }
    if let Some(max) = queue.max_length {
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(max as i64));
    }
    FieldTable::from(args)
}

fn exchange_kind(kind: &str) -> ExchangeKind {
    match kind {
        "topic" => ExchangeKind::Topic,
        "fanout" => ExchangeKind::Fanout,
        "headers" => ExchangeKind::Headers,
        _ => ExchangeKind::Direct,
    }
}

impl Topology {
    /// One line per item, as `wharf schema show` prints it.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for e in &self.exchanges {
            lines.push(format!(
                "exchange {} ({}{}{})",
                e.name,
                e.kind,
                if e.durable { ", durable" } else { "" },
                if e.auto_delete { ", auto-delete" } else { "" }
            ));
        }
        for q in &self.queues {
            lines.push(format!("queue {}{}", q.name, describe_queue(q)));
        }
        for name in &self.ensured {
            lines.push(format!(
                "queue {name} (durable; used by a route, kept as it is if it exists)"
            ));
        }
        for b in &self.bindings {
            lines.push(format!(
                "binding {} -> {} (key `{}`)",
                b.exchange, b.queue, b.key
            ));
        }
        lines
    }

    /// Declares everything on `connection`; returns one line per item with what it did.
    pub async fn apply(
        &self,
        connection: &Connection,
    ) -> Result<Vec<(String, Outcome)>, TopologyError> {
        let mut declarer = Declarer {
            connection,
            channel: None,
        };
        let mut report = Vec::new();
        for e in &self.exchanges {
            let item = format!("exchange `{}`", e.name);
            let existed = declarer
                .try_op(&item, |ch| {
                    let name = e.name.clone();
                    async move {
                        ch.exchange_declare(
                            name.into(),
                            ExchangeKind::Direct,
                            ExchangeDeclareOptions {
                                passive: true,
                                ..Default::default()
                            },
                            FieldTable::default(),
                        )
                        .await
                    }
                })
                .await?;
            declarer
                .op(&item, "exchange", |ch| {
                    let (name, kind) = (e.name.clone(), exchange_kind(&e.kind));
                    let options = ExchangeDeclareOptions {
                        durable: e.durable,
                        auto_delete: e.auto_delete,
                        ..Default::default()
                    };
                    async move {
                        ch.exchange_declare(name.into(), kind, options, FieldTable::default())
                            .await
                    }
                })
                .await?;
            report.push((item, Outcome::of(existed)));
        }
        for q in &self.queues {
            let item = format!("queue `{}`", q.name);
            let existed = declarer.queue_exists(&item, &q.name).await?;
            declarer
                .op(&item, "queue", |ch| {
                    let name = q.name.clone();
                    let options = QueueDeclareOptions {
                        durable: q.durable,
                        ..Default::default()
                    };
                    let args = queue_arguments(q);
                    async move { ch.queue_declare(name.into(), options, args).await.map(drop) }
                })
                .await?;
            report.push((item, Outcome::of(existed)));
        }
        for name in &self.ensured {
            let item = format!("queue `{name}`");
            if declarer.queue_exists(&item, name).await? {
                report.push((item, Outcome::Existed));
                continue;
            }
            declarer
                .op(&item, "queue", |ch| {
                    let name = name.clone();
                    async move {
                        ch.queue_declare(
                            name.into(),
                            QueueDeclareOptions::durable(),
                            FieldTable::default(),
                        )
                        .await
                        .map(drop)
                    }
                })
                .await?;
            report.push((item, Outcome::Created));
        }
        for b in &self.bindings {
            let item = format!(
                "binding `{}` -> `{}` (key `{}`)",
                b.exchange, b.queue, b.key
            );
            declarer
                .op(&item, "binding", |ch| {
                    let (queue, exchange, key) =
                        (b.queue.clone(), b.exchange.clone(), b.key.clone());
                    async move {
                        ch.queue_bind(
                            queue.into(),
                            exchange.into(),
                            key.into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                    }
                })
                .await?;
            report.push((item, Outcome::Declared));
        }
        if let Some(channel) = declarer.channel.take()
            && channel.status().connected()
        {
            let _ = channel.close(200, "declared".into()).await;
        }
        Ok(report)
    }
}

fn describe_queue(q: &AmqpQueueConfig) -> String {
    let mut parts = vec![q.kind.clone().unwrap_or_else(|| "classic".into())];
    if q.durable {
        parts.push("durable".into());
    }
    if let Some(exchange) = &q.dead_letter_exchange {
        parts.push(format!(
            "dead letters to exchange `{exchange}`{}",
            q.dead_letter_routing_key
                .as_ref()
                .map(|k| format!(" key `{k}`"))
                .unwrap_or_default()
        ));
    }
    if let Some(ttl) = q.message_ttl_ms {
        parts.push(format!("ttl {ttl} ms"));
    }
    if let Some(max) = q.max_length {
        parts.push(format!("max length {max}"));
    }
    format!(" ({})", parts.join(", "))
}

/// Runs declarations on one channel, opening a new one after a failure closed it.
struct Declarer<'a> {
    connection: &'a Connection,
    channel: Option<Channel>,
}

impl Declarer<'_> {
    async fn channel(&mut self, item: &str) -> Result<Channel, TopologyError> {
        if let Some(channel) = &self.channel
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let channel =
            self.connection
                .create_channel()
                .await
                .map_err(|e| TopologyError::Failed {
                    item: item.to_owned(),
                    detail: e.to_string(),
                })?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    /// Runs `op` on the current channel; a failed operation has closed it, so the next one
    /// opens another.
    async fn run<F, Fut>(&mut self, item: &str, op: F) -> Result<lapin::Result<()>, TopologyError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = lapin::Result<()>>,
    {
        let result = op(self.channel(item).await?).await;
        if result.is_err() {
            self.channel = None;
        }
        Ok(result)
    }

    /// Runs a passive check: true if it passed, false on 404 NOT_FOUND.
    async fn try_op<F, Fut>(&mut self, item: &str, op: F) -> Result<bool, TopologyError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = lapin::Result<()>>,
    {
        match self.run(item, op).await? {
            Ok(()) => Ok(true),
            Err(e) if code_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(failure(item, "item", &e)),
        }
    }

    async fn queue_exists(&mut self, item: &str, name: &str) -> Result<bool, TopologyError> {
        self.try_op(item, |ch| {
            let name = name.to_owned();
            async move {
                ch.queue_declare(
                    name.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(drop)
            }
        })
        .await
    }

    async fn op<F, Fut>(
        &mut self,
        item: &str,
        what: &'static str,
        op: F,
    ) -> Result<(), TopologyError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = lapin::Result<()>>,
    {
        self.run(item, op)
            .await?
            .map_err(|e| failure(item, what, &e))
    }
}

/// A declaration the broker refused: a 406 PRECONDITION_FAILED is a mismatch with what exists.
fn failure(item: &str, what: &'static str, e: &lapin::Error) -> TopologyError {
    if code_of(e) == Some(406) {
        TopologyError::Mismatch {
            item: item.to_owned(),
            what,
            detail: broker_text(e),
        }
    } else {
        TopologyError::Failed {
            item: item.to_owned(),
            detail: broker_text(e),
        }
    }
}
