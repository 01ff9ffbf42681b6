//! {{name}}: a handler. It answers each request with a greeting for the name in its payload.
use wharf_sdk::{Failure, Info, Message, handler::Guest};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info::handler("{{name}}", env!("CARGO_PKG_VERSION"))
            .with_description("Replies with a greeting")
            .reusable()
    }

    fn handle(msg: Message) -> Result<Option<Message>, Failure> {
        let name = msg.text().map_err(|e| Failure::Reject(e.to_string()))?;
        if name.is_empty() {
            return Err(Failure::Reject("no name to greet".into()));
        }
        Ok(Some(msg.reply(format!("Hello, {name}!"))))
    }
}

wharf_sdk::export_handler!(Plugin);
