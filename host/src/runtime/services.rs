//! What the host does for plugins beyond the sandbox: requests, subscriptions and state.
//!
//! The runtime knows nothing of brokers or databases; whoever loads a plugin hands it a
//! [`HostServices`]. [`Standalone`] serves a plugin run on its own (`wharf plugin run`, tests):
//! state kept in memory, and no broker to send requests to or receive from.

use crate::contract::{KvLimits, KvWrite};
use crate::message::Message;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

/// A boxed future, so [`HostServices`] can be used as a trait object.
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The host's side of the `host` and `daemon-host` imports. Grants are checked by the
/// runtime before these are called; errors are plain text because the plugin sees them.
pub trait HostServices: Send + Sync + 'static {
    /// Sends `msg` to `destination` and waits up to `timeout` for the reply.
    fn request<'a>(
        &'a self,
        plugin: &'a str,
        destination: &'a str,
        msg: Message,
        timeout: Duration,
    ) -> HostFuture<'a, Result<Message, String>>;

    /// Sends a daemon's message to `destination` now (a handler's publications are held
    /// and sent by its route when the call succeeds).
    fn publish<'a>(
        &'a self,
        plugin: &'a str,
        destination: &'a str,
        msg: Message,
    ) -> HostFuture<'a, Result<(), String>>;

    /// Opens `source` (`connection:queue`, or `connection:exchange/pattern` for events) for
    /// daemon `daemon` to take messages from.
    fn open_inbox<'a>(
        &'a self,
        daemon: &'a str,
        source: &'a str,
    ) -> HostFuture<'a, Result<Box<dyn Inbox>, String>>;

    /// Daemon `daemon` has been stopped (or removed) by an operator: the events patterns it
    /// took from are unbound, so its queues stop filling. How many were unbound.
    fn release_sources<'a>(&'a self, daemon: &'a str) -> HostFuture<'a, Result<usize, String>> {
        let _ = daemon;
        Box::pin(async { Ok(0) })
    }

    fn kv_get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> HostFuture<'a, Result<Option<Vec<u8>>, String>>;

    /// Writes `key` now (a daemon's write; a call on a message holds its writes until it
    /// succeeds, see [`HostServices::kv_usage`]).
    fn kv_set<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> HostFuture<'a, Result<(), String>>;

    /// The bytes `plugin`'s state holds in all and, of them, those of `key`: what a held
    /// write is checked against when it is made (it is checked again when it is applied).
    fn kv_usage<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> HostFuture<'a, Result<(usize, usize), String>>;

    /// The limits writes are checked against.
    fn kv_limits(&self) -> KvLimits;

    /// Where an event with routing key `key` is published (`connection:address`), what a
    /// plugin's `publish:` grants are checked against: by default `local:events/{key}`, the
    /// embedded broker's events exchange of a host without `[events]`.
    fn event_destination(&self, key: &str) -> Result<String, String> {
        Ok(format!("local:events/{key}"))
    }
    /// Routing key `key` as it goes out: behind `[events] prefix`, if the host has one.
    fn event_key(&self, key: &str) -> String {
        key.to_owned()
    }
}

/// Messages of one source, as a daemon takes them.
pub trait Inbox: Send + 'static {
    /// The next message, waiting up to `timeout`; `None` when none came. An error means
    /// the source is gone (its connection dropped); the daemon may take again, which opens
    /// it anew.
    fn next(&mut self, timeout: Duration) -> HostFuture<'_, Result<Option<Taken>, String>>;
    /// Stops reading; what the broker handed out but the daemon never took goes back.
    fn close(self: Box<Self>) -> HostFuture<'static, ()>;
}

/// One message a daemon took, and how to settle it.
pub struct Taken {
    pub message: Message,
    pub settle: Box<dyn Settlement>,
}

/// Settles one taken message.
pub trait Settlement: Send + 'static {
    /// Done with: removed from its source.
    fn ack(self: Box<Self>) -> HostFuture<'static, Result<(), String>>;
    /// Back to its source (`requeue`), or to its dead letters, named by the daemon's own
    /// `exception` where it gave one (`name-failure` before the nack).
    fn nack(
        self: Box<Self>,
        requeue: bool,
        exception: Option<super::error::Exception>,
    ) -> HostFuture<'static, Result<(), String>>;
}

/// Services for a plugin that runs without a broker: state in memory, no requests.
#[derive(Default)]
pub struct Standalone {
    limits: KvLimits,
    kv: Mutex<HashMap<String, HashMap<String, Vec<u8>>>>,
}

impl Standalone {
    pub fn new(limits: KvLimits) -> Self {
        Standalone {
            limits,
            kv: Mutex::default(),
        }
    }
}

const NO_BROKER: &str = "this plugin runs without a broker (standalone), so there is nothing to";

impl HostServices for Standalone {
    fn request<'a>(
        &'a self,
        _plugin: &'a str,
        destination: &'a str,
        _msg: Message,
        _timeout: Duration,
    ) -> HostFuture<'a, Result<Message, String>> {
        Box::pin(async move { Err(format!("{NO_BROKER} send a request to `{destination}`")) })
    }

    fn publish<'a>(
        &'a self,
        _plugin: &'a str,
        destination: &'a str,
        _msg: Message,
    ) -> HostFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(format!("{NO_BROKER} publish to `{destination}`")) })
    }

    fn open_inbox<'a>(
        &'a self,
        _daemon: &'a str,
        source: &'a str,
    ) -> HostFuture<'a, Result<Box<dyn Inbox>, String>> {
        Box::pin(async move { Err(format!("{NO_BROKER} receive from `{source}`")) })
    }

    fn kv_get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> HostFuture<'a, Result<Option<Vec<u8>>, String>> {
        let kv = self.kv.lock().unwrap_or_else(|p| p.into_inner());
        let value = kv.get(plugin).and_then(|m| m.get(key)).cloned();
        Box::pin(async move { Ok(value) })
    }

    fn kv_set<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> HostFuture<'a, Result<(), String>> {
        let mut kv = self.kv.lock().unwrap_or_else(|p| p.into_inner());
        let entries = kv.entry(plugin.to_owned()).or_default();
        let total = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        let replaced = entries.get(key).map_or(0, |v| key.len() + v.len());
        let result = self.limits.check(key, &value, total, replaced).map(|()| {
            entries.insert(key.to_owned(), value);
        });
        Box::pin(async move { result })
    }

    fn kv_usage<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> HostFuture<'a, Result<(usize, usize), String>> {
        let kv = self.kv.lock().unwrap_or_else(|p| p.into_inner());
        let usage = kv.get(plugin).map_or((0, 0), |entries| {
            (
                entries.iter().map(|(k, v)| k.len() + v.len()).sum(),
                entries.get(key).map_or(0, |v| key.len() + v.len()),
            )
        });
        Box::pin(async move { Ok(usage) })
    }

    fn kv_limits(&self) -> KvLimits {
        self.limits
    }
}

impl Standalone {
    /// Applies the writes a successful call held (what a route commits with its work).
    pub async fn kv_apply(&self, writes: Vec<KvWrite>) -> Result<(), String> {
        for write in writes {
            self.kv_set(&write.plugin, &write.key, write.value).await?;
        }
        Ok(())
    }
}
