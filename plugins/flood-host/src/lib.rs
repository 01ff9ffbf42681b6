//! Test plugin: a handler that floods the host through its imports, as config `mode` says:
//! - `publish`: one publication whose `count` headers all point at one `mib` MiB buffer;
//! - `publish-many`: `count` publications of `mib` MiB each, every one within the call's
//!   output budget alone, together far over it; errors are ignored and the call returns
//!   normally, so only the host's own count can fail it;
//! - `request`: a request whose headers all point at the buffer;
//! - `kv`: one kv write of `mib` MiB;
//! - `log`: one log line of `mib` MiB.
//!
//! The host must refuse each handover from the lengths the guest declares, before it copies
//! it, and fail the call with an output-limit error.
use wharf_sdk::{Failure, Info, Message, Value, config, handler::Guest, host, log};

struct FloodHost;

fn setting(key: &str, default: usize) -> usize {
    config::get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A message whose `count` headers all point into one leaked buffer of `mib` MiB. It must
/// not be dropped (the same bytes would be freed many times): the caller forgets it.
fn aliased(topic: &str) -> Message {
    let len = setting("mib", 32) << 20;
    let buffer = vec![b'x'; len].leak();
    let ptr = buffer.as_mut_ptr();
    let mut msg = Message::new(topic, Vec::new());
    for i in 0..setting("count", 20_000) {
        // SAFETY: the buffer is leaked and outlives every alias; the message is forgotten.
        let bytes = unsafe { Vec::from_raw_parts(ptr, len, len) };
        msg.headers.push((format!("h{i}"), Value::Bytes(bytes)));
    }
    msg
}

impl Guest for FloodHost {
    fn describe() -> Info {
        Info::handler("flood-host", env!("CARGO_PKG_VERSION"))
            .with_description("Floods the host through its imports")
            .wants("publish:local:**")
            .wants("request:local:**")
    }

    fn handle(msg: Message) -> Result<Option<Message>, Failure> {
        let to = config::get("to").unwrap_or_else(|| "local:flood.out".into());
        let mode = config::get("mode").unwrap_or_default();
        let outcome = match mode.as_str() {
            "publish" => {
                let flood = aliased(&msg.topic);
                let sent = host::publish(&to, &flood);
                std::mem::forget(flood);
                sent
            }
            "publish-many" => {
                let payload = vec![b'y'; setting("mib", 1) << 20];
                for _ in 0..setting("count", 100) {
                    let _ignored = host::publish(&to, &Message::new(&msg.topic, payload.clone()));
                }
                Ok(())
            }
            "request" => {
                let flood = aliased(&msg.topic);
                let asked = host::request(&to, &flood, 1_000).map(|_| ());
                std::mem::forget(flood);
                asked
            }
            "kv" => host::kv_set("flood", &vec![b'z'; setting("mib", 32) << 20]),
            "log" => {
                log::info(&"w".repeat(setting("mib", 32) << 20));
                Ok(())
            }
            other => return Err(Failure::Reject(format!("unknown mode `{other}`"))),
        };
        outcome.map_err(Failure::Retry)?;
        Ok(None)
    }
}

wharf_sdk::export_handler!(FloodHost);
