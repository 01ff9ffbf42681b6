//! # Writing Wharf plugins
//!
//! A Wharf plugin is a WebAssembly component built for `wasm32-wasip2`. It implements one of
//! three worlds of the `wharf:plugin@0.1.3` contract (`wit/` in the Wharf repository):
//!
//! - a **transformer** turns one message into zero (a filter), one or several (a split) messages
//!   and has no side effects besides logging;
//! - a **handler** handles one message and may return a reply; through [`host`] it may publish,
//!   make requests and keep small state;
//! - a **daemon** runs until it returns or the host asks it to stop: it loops on
//!   [`daemon_host::sleep`] (which answers `false` when it should stop) and
//!   [`daemon_host::take`], publishes as it goes, and acks or nacks what it took; what it
//!   still holds when it stops goes back to its queue. The host restarts a daemon that fails
//!   and runs it on one host of a shared database at a time.
//!
//! A whole transformer:
//!
//! ```ignore
//! use wharf_sdk::{Failure, Info, Message, transformer::Guest};
//!
//! struct Uppercase;
//!
//! impl Guest for Uppercase {
//!     fn describe() -> Info {
//!         Info::transformer("uppercase", env!("CARGO_PKG_VERSION"))
//!             .with_description("Upper-cases the payload")
//!             .reusable()
//!     }
//!
//!     fn transform(msg: Message) -> Result<Vec<Message>, Failure> {
//!         let text = msg.text().map_err(|e| Failure::Reject(e.to_string()))?.to_uppercase();
//!         Ok(vec![msg.with_payload(text)])
//!     }
//! }
//!
//! wharf_sdk::export_transformer!(Uppercase);
//! ```
//!
//! with `crate-type = ["cdylib"]` in its `Cargo.toml`, built by
//! `cargo build --release --target wasm32-wasip2`. `wharf plugin check FILE` then shows what it
//! declares and `wharf plugin run FILE --input '{"payload": "hi"}'` runs it on one message.
//!
//! ## What the host guarantees, and what it asks
//!
//! - Each call gets a fresh instance unless [`Info::reusable`] says the plugin keeps no state
//!   between calls that matters; then the host may reuse an instance and recycles it after a
//!   number of calls or any trap.
//! - A call has a CPU-time deadline and a memory limit set by the admin. Past either, the call
//!   traps and the message is retried (then dead-lettered). Return [`Failure::Retry`] for
//!   transient trouble and [`Failure::Reject`] for a message that will never succeed.
//! - There is no filesystem, no network and no environment. Standard output and standard error
//!   go to the host's log, tagged with the plugin's name; [`log`] does the same with levels.
//! - Publishing and requests go only where the admin granted (`publish:CONNECTION:ADDRESS`
//!   globs); ask for what you need in [`Info::wants`]. [`host::publish_event`] publishes a
//!   model event (`host::publish_event("shop.models.Booking", "created", b"{...}")` goes out
//!   with routing key `Booking.created`) on the host's events exchange, under a grant for the
//!   event's address (`publish:local:events/Booking.*` on the default host).
//!
//! ## Keep the stack small
//!
//! A fresh instance costs less when its stack is small. Link plugins with
//! `-C link-arg=-zstack-size=65536` (Wharf's `plugins/.cargo/config.toml` does) unless the
//! plugin needs a deeper stack.
#![deny(missing_docs)]

// The generated bindings name the runtime as `::wharf_sdk::…` so that they also resolve from
// inside plugin crates, which depend on this crate and not on wit-bindgen.
extern crate self as wharf_sdk;

mod bindings;
pub mod http;
mod message;

pub use bindings::{daemon, handler, transformer};
pub use daemon::export_daemon;
pub use handler::export_handler;
pub use transformer::export_transformer;
pub use transformer::wharf::plugin::types::{Failure, Info, Kind, Message, Value};

/// Logging into the host's log, tagged with the plugin's name.
pub mod log {
    pub use crate::transformer::wharf::plugin::log::Level;
    use crate::transformer::wharf::plugin::log::log;

    /// Log at trace level.
    pub fn trace(text: &str) {
        log(Level::Trace, text)
    }
    /// Log at debug level.
    pub fn debug(text: &str) {
        log(Level::Debug, text)
    }
    /// Log at info level.
    pub fn info(text: &str) {
        log(Level::Info, text)
    }
    /// Log at warn level.
    pub fn warn(text: &str) {
        log(Level::Warn, text)
    }
    /// Log at error level.
    pub fn error(text: &str) {
        log(Level::Error, text)
    }
}

/// The plugin's configuration, as the admin set it.
pub mod config {
    pub use crate::transformer::wharf::plugin::config::{get, keys};

    /// The value of `key`, or a [`Failure::Reject`](crate::Failure::Reject) naming the missing
    /// key: a plugin that cannot work without it should not retry.
    pub fn require(key: &str) -> Result<String, crate::Failure> {
        get(key).ok_or_else(|| crate::Failure::Reject(format!("config key `{key}` is not set")))
    }
}

/// Publishing, requests and state: for handlers and daemons only.
pub mod host {
    pub use crate::handler::wharf::plugin::host::{
        kv_get, kv_set, publish, publish_event, request,
    };
}

/// Naming a failure as the plugin's language would (edeposit's `exception_name` and
/// `exception_type`): for a handler, [`Failure::named`] does it; a daemon calls [`name`]
/// (exception::name) before it returns its error, or before it dead-letters a message with
/// [`nack`](daemon_host::nack), and the daemon's status or the dead letter carries the name.
pub mod exception {
    /// Names the failure that comes next: `name` is the error's class (`NotFound`), `kind`
    /// its type as the plugin's language says it (`lookup::NotFound`). Each is 1 to 255
    /// bytes without control characters; anything else is ignored.
    pub fn name(name: &str, kind: &str) {
        crate::transformer::wharf::plugin::exception::name_failure(name, kind)
    }
}

/// Sleeping and receiving: for daemons only.
///
/// [`take`](daemon_host::take) holds a message until the daemon settles it with
/// [`ack`](daemon_host::ack) or [`nack`](daemon_host::nack); one still held when the daemon
/// returns, fails or is stopped goes back to its source, so a daemon that crashes mid-work
/// loses nothing. [`receive`](daemon_host::receive) settles on receipt (at most once).
pub mod daemon_host {
    pub use crate::daemon::wharf::plugin::daemon_host::{
        Delivery, ack, nack, receive, sleep, take,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}
