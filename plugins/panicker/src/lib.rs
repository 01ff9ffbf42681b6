//! Test plugin: panics on every message, to prove a panic is contained in its call.
use wharf_sdk::{Failure, Info, Message, transformer::Guest};

struct Panicker;

impl Guest for Panicker {
    fn describe() -> Info {
        Info::transformer("panicker", env!("CARGO_PKG_VERSION")).with_description("Panics")
    }

    fn transform(msg: Message) -> Result<Vec<Message>, Failure> {
        panic!(
            "panicker always panics (payload was {} bytes)",
            msg.payload.len()
        );
    }
}

wharf_sdk::export_transformer!(Panicker);
