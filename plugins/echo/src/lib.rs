//! Replies to each request with its payload, addressed to the request's reply-to and carrying
//! its correlation id.
use wharf_sdk::{Failure, Info, Message, handler::Guest};

struct Echo;

impl Guest for Echo {
    fn describe() -> Info {
        Info::handler("echo", env!("CARGO_PKG_VERSION"))
            .with_description("Replies with the request's payload")
            .reusable()
    }

    fn handle(msg: Message) -> Result<Option<Message>, Failure> {
        let mut reply = msg.reply(msg.payload.clone());
        reply.headers = msg.headers;
        Ok(Some(reply))
    }
}

wharf_sdk::export_handler!(Echo);
