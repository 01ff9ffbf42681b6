//! Test plugin. Puts its own version in the `x-version` header of each message, so a test
//! that upgrades or rolls back the plugin on a running host can see which version handled
//! each message. `stamp-v2` builds this same source as version 2.0.0.
use wharf_sdk::{Failure, Info, Message, Value, transformer::Guest};

struct Stamp;

impl Guest for Stamp {
    fn describe() -> Info {
        Info::transformer("stamp", env!("CARGO_PKG_VERSION"))
            .with_description("Stamps each message with this plugin's version")
            .reusable()
    }

    fn transform(mut msg: Message) -> Result<Vec<Message>, Failure> {
        msg.set_header("x-version", Value::Text(env!("CARGO_PKG_VERSION").into()));
        Ok(vec![msg])
    }
}

wharf_sdk::export_transformer!(Stamp);
