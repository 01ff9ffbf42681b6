//! Example daemon: publishes a numbered heartbeat every `interval_ms` (default 10000), as the
//! model event `event` (default `Host.heartbeat`) or, when `to` is set, as a message to that
//! `connection:address`; returns when the host asks it to stop (`sleep` answers false).
use wharf_sdk::{Info, Message, config, daemon::Guest, daemon_host, host};

struct Heartbeat;

impl Guest for Heartbeat {
    fn describe() -> Info {
        Info::daemon("heartbeat", env!("CARGO_PKG_VERSION"))
            .with_description("Publishes a numbered heartbeat event every `interval_ms`")
            .wants("publish:local:events/Host.heartbeat")
    }

    fn run() -> Result<(), String> {
        let interval = match config::get("interval_ms") {
            Some(ms) => ms
                .parse()
                .map_err(|_| format!("interval_ms `{ms}` is not a number of milliseconds"))?,
            None => 10_000,
        };
        let event = config::get("event").unwrap_or_else(|| "Host.heartbeat".into());
        let Some((model, name)) = event.rsplit_once('.') else {
            return Err(format!("event `{event}` is not `Model.event`"));
        };
        let to = config::get("to");
        let mut beat = 0u64;
        loop {
            beat += 1;
            let payload = format!("{{\"beat\":{beat}}}");
            match &to {
                Some(to) => host::publish(to, &Message::new("heartbeat", payload))?,
                None => host::publish_event(model, name, payload.as_bytes())?,
            }
            if !daemon_host::sleep(interval) {
                return Ok(());
            }
        }
    }
}

wharf_sdk::export_daemon!(Heartbeat);
