//! Test plugin: a handler that publishes each message to every destination in its config
//! (`to`, comma-separated `connection:address`), counts the messages it relayed in its kv
//! state, and replies with the count. A refused publish fails the call with `reject`, so a
//! test can see both the grant check and that nothing is published from a failed call. A
//! payload of `fail-after-kv` fails the call (`reject`) after its kv write, so a test can see
//! that a failed call's writes are not kept. With `event = "Model:event"` in its config it
//! also publishes each message's payload as that model event (`publish-event`, under the same
//! grants).
use wharf_sdk::{Failure, Info, Message, Value, config, handler::Guest, host};

struct Relay;

impl Guest for Relay {
    fn describe() -> Info {
        Info::handler("relay", env!("CARGO_PKG_VERSION"))
            .with_description("Publishes each message to the destinations in `to`")
            .wants("publish:local:relay.*")
    }

    fn handle(msg: Message) -> Result<Option<Message>, Failure> {
        if let Some(to) = config::get("to") {
            for destination in to.split(',').map(str::trim) {
                host::publish(destination, &msg).map_err(Failure::Reject)?;
            }
        }
        if let Some(event) = config::get("event") {
            let (model, name) = event.split_once(':').ok_or_else(|| {
                Failure::Reject(format!("config `event` is `{event}`, not Model:event"))
            })?;
            host::publish_event(model, name, &msg.payload).map_err(Failure::Reject)?;
        }
        let count = host::kv_get("relayed")
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        host::kv_set("relayed", count.to_string().as_bytes()).map_err(Failure::Retry)?;
        if msg.payload == b"fail-after-kv" {
            return Err(Failure::Reject(format!(
                "asked to fail after writing relayed = {count}"
            )));
        }
        let mut reply = msg.reply(count.to_string());
        reply.set_header("x-relayed", Value::Int(count as i64));
        Ok(Some(reply))
    }
}

wharf_sdk::export_handler!(Relay);
