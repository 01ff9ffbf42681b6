//! Test plugin. Declares itself reusable and counts the calls its instance has served, in the
//! `x-calls` header of its output, so a test can see whether an instance was reused or fresh.
//! A payload of `panic` makes it panic (a trap), after which the host must recycle it.
use std::sync::atomic::{AtomicU64, Ordering};
use wharf_sdk::{Failure, Info, Message, Value, transformer::Guest};

static CALLS: AtomicU64 = AtomicU64::new(0);

struct Counter;

impl Guest for Counter {
    fn describe() -> Info {
        Info::transformer("counter", env!("CARGO_PKG_VERSION"))
            .with_description("Counts the calls its instance served; panics on `panic`")
            .reusable()
    }

    fn transform(mut msg: Message) -> Result<Vec<Message>, Failure> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        if msg.payload == b"panic" {
            panic!("asked to panic on call {calls}");
        }
        msg.set_header("x-calls", Value::Int(calls as i64));
        Ok(vec![msg])
    }
}

wharf_sdk::export_transformer!(Counter);
