//! Upper-cases the payload. Text is upper-cased as Unicode; a payload that is not UTF-8 has
//! its ASCII letters upper-cased and every other byte kept.
use wharf_sdk::{Failure, Info, Message, transformer::Guest};

struct Uppercase;

impl Guest for Uppercase {
    fn describe() -> Info {
        Info::transformer("uppercase", env!("CARGO_PKG_VERSION"))
            .with_description("Upper-cases the payload")
            .reusable()
    }

    fn transform(mut msg: Message) -> Result<Vec<Message>, Failure> {
        match msg.text() {
            Ok(text) => msg.payload = text.to_uppercase().into_bytes(),
            Err(_) => msg.payload.make_ascii_uppercase(),
        }
        Ok(vec![msg])
    }
}

wharf_sdk::export_transformer!(Uppercase);
