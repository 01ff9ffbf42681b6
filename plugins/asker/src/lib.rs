//! Test plugin: a handler that sends each message as a request to the destination in its
//! config (`to`, `connection:address`) through the host, and replies with what came back,
//! prefixed with `asked: `. A request that fails (refused, timed out) fails the call with
//! `reject`, carrying the host's words.
use wharf_sdk::{Failure, Info, Message, config, handler::Guest, host};

struct Asker;

impl Guest for Asker {
    fn describe() -> Info {
        Info::handler("asker", env!("CARGO_PKG_VERSION"))
            .with_description("Answers with the reply to a request made through the host")
            .wants("request:local:**")
    }

    fn handle(msg: Message) -> Result<Option<Message>, Failure> {
        let to = config::require("to")?;
        let answer = host::request(&to, &msg, 5_000).map_err(Failure::Reject)?;
        let mut payload = b"asked: ".to_vec();
        payload.extend_from_slice(&answer.payload);
        Ok(Some(msg.reply(payload)))
    }
}

wharf_sdk::export_handler!(Asker);
