//! Example daemon: publishes a numbered heartbeat to `to` every `interval_ms` (default 1000)
//! and returns when the host shuts down (`sleep` answers false).
use wharf_sdk::{Info, Message, config, daemon::Guest, daemon_host, host};

struct Heartbeat;

impl Guest for Heartbeat {
    fn describe() -> Info {
        Info::daemon("heartbeat", env!("CARGO_PKG_VERSION"))
            .with_description("Publishes a heartbeat to `to` every `interval_ms`")
            .wants("publish:local:heartbeat")
    }

    fn run() -> Result<(), String> {
        let to = config::get("to").unwrap_or_else(|| "local:heartbeat".into());
        let interval = match config::get("interval_ms") {
            Some(ms) => ms
                .parse()
                .map_err(|_| format!("interval_ms `{ms}` is not a number"))?,
            None => 1000,
        };
        let mut beat = 0u64;
        loop {
            beat += 1;
            host::publish(&to, &Message::new("heartbeat", beat.to_string()))?;
            if !daemon_host::sleep(interval) {
                return Ok(());
            }
        }
    }
}

wharf_sdk::export_daemon!(Heartbeat);
