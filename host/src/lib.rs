//! Wharf: a host for WebAssembly message handlers.
//!
//! The library is the whole host; the `wharf` binary only parses its command line and calls
//! [`cli::run`]. See ARCHITECTURE.md at the repository's root for the map of the modules.

pub mod broker;
pub mod cli;
pub mod grant;
pub mod message;
pub mod runtime;
pub mod store;
