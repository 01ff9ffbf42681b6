//! Host bindings generated from `wit/`, the only place outside the SDK that reads it.
//!
//! The handler world is generated first and owns the shared interfaces; the transformer and
//! daemon worlds reuse them through `with`, so one `impl` of each import serves every world.
//! Every import is async: a plugin waiting on the host holds no thread.

use crate::message::{HeaderValue, Message};

mod generated {
    pub mod handler {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "wharf:plugin/handler",
            imports: { default: async },
            exports: { default: async },
            // Outbound HTTP is wasmtime-wasi-http's, linked beside these imports.
            with: {
                "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                "wasi:io": wasmtime_wasi::p2::bindings::io,
                "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            },
        });
    }

    pub mod transformer {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "wharf:plugin/transformer",
            imports: { default: async },
            exports: { default: async },
            with: {
                "wharf:plugin/types": super::handler::wharf::plugin::types,
                "wharf:plugin/log": super::handler::wharf::plugin::log,
                "wharf:plugin/config": super::handler::wharf::plugin::config,
                "wharf:plugin/exception": super::handler::wharf::plugin::exception,
            },
        });
    }

    pub mod daemon {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "wharf:plugin/daemon",
            imports: { default: async },
            exports: { default: async },
            with: {
                "wharf:plugin/types": super::handler::wharf::plugin::types,
                "wharf:plugin/log": super::handler::wharf::plugin::log,
                "wharf:plugin/config": super::handler::wharf::plugin::config,
                "wharf:plugin/exception": super::handler::wharf::plugin::exception,
                "wharf:plugin/host": super::handler::wharf::plugin::host,
                "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                "wasi:io": wasmtime_wasi::p2::bindings::io,
                "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            },
        });
    }
}

pub(crate) use generated::daemon::wharf::plugin::daemon_host;
pub(crate) use generated::daemon::{Daemon, DaemonPre};
pub(crate) use generated::handler::wharf::plugin::{config, exception, host, log, types};
pub(crate) use generated::handler::{Handler, HandlerPre};
pub(crate) use generated::transformer::{Transformer, TransformerPre};

/// The version of the contract this host serves; plugins built against any `0.1.x` link.
pub const CONTRACT_PACKAGE: &str = "wharf:plugin";
pub const CONTRACT_VERSION: &str = "0.1.3";

impl From<&Message> for types::Message {
    fn from(m: &Message) -> Self {
        types::Message {
            id: m.id.clone(),
            topic: m.topic.clone(),
            key: m.key.clone(),
            headers: m
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.into()))
                .collect(),
            content_type: m.content_type.clone(),
            correlation_id: m.correlation_id.clone(),
            reply_to: m.reply_to.clone(),
            priority: m.priority,
            expiration_ms: m.expiration_ms,
            persistent: m.persistent,
            payload: m.payload.clone(),
            timestamp_ms: m.timestamp_ms,
        }
    }
}

impl From<types::Message> for Message {
    fn from(m: types::Message) -> Self {
        Message {
            id: m.id,
            topic: m.topic,
            key: m.key,
            headers: m.headers.into_iter().map(|(k, v)| (k, v.into())).collect(),
            content_type: m.content_type,
            correlation_id: m.correlation_id,
            reply_to: m.reply_to,
            priority: m.priority,
            expiration_ms: m.expiration_ms,
            persistent: m.persistent,
            payload: m.payload,
            timestamp_ms: m.timestamp_ms,
        }
    }
}

impl From<&HeaderValue> for types::Value {
    fn from(v: &HeaderValue) -> Self {
        match v {
            HeaderValue::Text(s) => types::Value::Text(s.clone()),
            HeaderValue::Bytes(b) => types::Value::Bytes(b.clone()),
            HeaderValue::Int(i) => types::Value::Int(*i),
            HeaderValue::Float(f) => types::Value::Float(*f),
            HeaderValue::Boolean(b) => types::Value::Boolean(*b),
            HeaderValue::List(l) => types::Value::List(l.clone()),
            HeaderValue::Json(j) => types::Value::Json(j.clone()),
        }
    }
}

impl From<types::Value> for HeaderValue {
    fn from(v: types::Value) -> Self {
        match v {
            types::Value::Text(s) => HeaderValue::Text(s),
            types::Value::Bytes(b) => HeaderValue::Bytes(b),
            types::Value::Int(i) => HeaderValue::Int(i),
            types::Value::Float(f) => HeaderValue::Float(f),
            types::Value::Boolean(b) => HeaderValue::Boolean(b),
            types::Value::List(l) => HeaderValue::List(l),
            types::Value::Json(j) => HeaderValue::Json(j),
        }
    }
}
