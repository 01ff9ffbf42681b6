//! Test plugin: a transformer that tries to make the host copy far more than its own memory
//! holds. It fills one buffer (config `mib`, 32 by default) and hands back many values that
//! all point into it: with `mode = results`, `count` messages (20,000 by default) whose
//! payloads are the buffer; with `mode = headers`, one message with `count` such headers.
//! With `describe = flood` its `describe()` asks for `count` grants that are all one long
//! string. The host must refuse each from the lengths the guest declares, before it copies
//! anything, and fail the call with an output-limit error.
use wharf_sdk::{Failure, Info, Message, Value, config, transformer::Guest};

struct Flood;

fn setting(key: &str, default: usize) -> usize {
    config::get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One buffer of `mib` MiB, leaked: every alias below points into it.
fn buffer() -> (*mut u8, usize) {
    let len = setting("mib", 32) << 20;
    let buffer = vec![b'x'; len].leak();
    (buffer.as_mut_ptr(), len)
}

/// A `Vec` over the shared buffer. It must never be dropped by the guest (the host would see
/// the same bytes freed many times): the canonical ABI takes ownership of what is returned.
fn alias(ptr: *mut u8, len: usize) -> Vec<u8> {
    // SAFETY: the buffer is leaked and outlives every alias; the aliases are only read.
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

impl Guest for Flood {
    fn describe() -> Info {
        let info = Info::transformer("flood", env!("CARGO_PKG_VERSION"))
            .with_description("Hands the host far more than it may, from little guest memory");
        if config::get("describe").as_deref() != Some("flood") {
            return info;
        }
        let (ptr, len) = buffer();
        let mut info = info;
        for _ in 0..setting("count", 20_000) {
            // SAFETY: as in `alias`; the bytes are ASCII.
            info.wants
                .push(unsafe { String::from_raw_parts(ptr, len, len) });
        }
        info
    }

    fn transform(msg: Message) -> Result<Vec<Message>, Failure> {
        let (ptr, len) = buffer();
        let count = setting("count", 20_000);
        match config::get("mode").as_deref() {
            Some("headers") => {
                let mut out = Message::new(&msg.topic, Vec::new());
                for i in 0..count {
                    out.headers
                        .push((format!("h{i}"), Value::Bytes(alias(ptr, len))));
                }
                Ok(vec![out])
            }
            _ => Ok((0..count)
                .map(|_| Message::new(&msg.topic, alias(ptr, len)))
                .collect()),
        }
    }
}

wharf_sdk::export_transformer!(Flood);
