//! {{name}}: a transformer. It upper-cases text payloads and filters out empty messages.
use wharf_sdk::{Failure, Info, Message, transformer::Guest};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info::transformer("{{name}}", env!("CARGO_PKG_VERSION"))
            .with_description("Upper-cases text payloads")
            .reusable()
    }

    fn transform(msg: Message) -> Result<Vec<Message>, Failure> {
        if msg.payload.is_empty() {
            return Ok(vec![]); // filtered out
        }
        let text = msg.text().map_err(|e| Failure::Reject(e.to_string()))?;
        let upper = text.to_uppercase();
        Ok(vec![msg.with_payload(upper)])
    }
}

wharf_sdk::export_transformer!(Plugin);
