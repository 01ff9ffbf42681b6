//! Test plugin: a handler that holds its call without running wasm, so a CPU deadline never
//! fires. Config `mode`:
//! - `sleep`: sleeps for an hour in WASI (`subscribe-duration` and `poll`);
//! - `request`: asks `to` (which never answers) again and again, each time for a minute.
//!
//! The host must end the call at its wall-clock limit.
use wharf_sdk::{Failure, Info, Message, config, handler::Guest, host};

struct Sleeper;

impl Guest for Sleeper {
    fn describe() -> Info {
        Info::handler("sleeper", env!("CARGO_PKG_VERSION"))
            .with_description("Waits without running wasm")
            .wants("request:local:**")
    }

    fn handle(msg: Message) -> Result<Option<Message>, Failure> {
        match config::get("mode").as_deref() {
            Some("request") => {
                let to = config::require("to")?;
                loop {
                    let _ignored = host::request(&to, &msg, 60_000);
                }
            }
            _ => {
                std::thread::sleep(std::time::Duration::from_secs(3_600));
                Ok(None)
            }
        }
    }
}

wharf_sdk::export_handler!(Sleeper);
