//! Wharf: a host for WebAssembly message handlers.
//!
//! The library is the whole host; the `wharf` binary only parses its command line and calls
//! [`cli::run`]. See ARCHITECTURE.md at the repository's root for the map of the modules.

pub mod address;
pub mod auth;
pub mod backoff;
pub mod broker;
pub mod check;
pub mod cli;
pub mod config;
pub mod contract;
pub mod event;
pub mod events;
pub mod grant;
pub mod host;
pub mod leases;
pub mod message;
pub mod metrics;
pub mod outbox;
pub mod private;
pub mod redact;
pub mod router;
pub mod rpc;
pub mod runtime;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod supervisor;
pub mod time;
pub mod tls;
pub mod topic;
pub mod units;
pub mod web;
