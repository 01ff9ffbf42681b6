//! Test plugin: a handler that floods the host through its imports, as config `mode` says:
//! - `publish`: one publication whose `count` headers all point at one `mib` MiB buffer;
//! - `publish-many`: `count` publications of `mib` MiB each, every one within the call's
//!   output budget alone, together far over it; errors are ignored and the call returns
//!   normally, so only the host's own count can fail it;
//! - `request`: a request whose headers all point at the buffer;
//! - `kv`: one kv write of `mib` MiB;
//! - `log`: one log line of `mib` MiB;
//! - `http-many`: `count` GETs of config `url`, one after another;
//! - `http-parallel`: `count` GETs of config `url` started at once, then awaited.
//!
//! The two `http` modes fail the call with `ok=N refused=M` (how many requests were
//! answered and how many the host refused), for the test to read.
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
            "http-many" => {
                let url = config::get("url").unwrap_or_default();
                let (mut ok, mut refused) = (0, 0);
                for _ in 0..setting("count", 150) {
                    match wharf_sdk::http::get(&url) {
                        Ok(_) => ok += 1,
                        Err(_) => refused += 1,
                    }
                }
                return Err(Failure::Reject(format!("ok={ok} refused={refused}")));
            }
            "http-parallel" => {
                let (ok, refused) = parallel(&config::get("url").unwrap_or_default());
                return Err(Failure::Reject(format!("ok={ok} refused={refused}")));
            }
            other => return Err(Failure::Reject(format!("unknown mode `{other}`"))),
        };
        outcome.map_err(Failure::Retry)?;
        Ok(None)
    }
}

/// Starts `count` GETs of `url` (`http://host:port/path`) before awaiting any.
fn parallel(url: &str) -> (usize, usize) {
    use wharf_sdk::handler::wasi::http::outgoing_handler;
    use wharf_sdk::handler::wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut pending = Vec::new();
    let mut refused = 0;
    for _ in 0..setting("count", 20) {
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_scheme(Some(&Scheme::Http));
        let _ = request.set_authority(Some(authority));
        let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { path }));
        match outgoing_handler::handle(request, None) {
            Ok(future) => pending.push(future),
            Err(_) => refused += 1,
        }
    }
    let mut ok = 0;
    for future in pending {
        future.subscribe().block();
        match future.get() {
            Some(Ok(Ok(_))) => ok += 1,
            _ => refused += 1,
        }
    }
    (ok, refused)
}

wharf_sdk::export_handler!(FloodHost);
