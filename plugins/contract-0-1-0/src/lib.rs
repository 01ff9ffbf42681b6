//! Built against `wharf:plugin@0.1.0` (its `wit/` is that release's contract, kept as it was):
//! a host serving a later 0.1.x must still link and run it. A handler that publishes each
//! message to its config's `to`, counts them in its kv state and replies with the count.
wit_bindgen::generate!({ path: "wit", world: "handler" });

use wharf::plugin::types::Kind;
use wharf::plugin::{config, host};

struct Oldest;

impl Guest for Oldest {
    fn describe() -> Info {
        Info {
            name: "contract-0-1-0".into(),
            version: "0.1.0".into(),
            kind: Kind::Handler,
            description: "Built against wharf:plugin@0.1.0".into(),
            reusable: true,
            wants: vec!["publish:local:oldest.*".into()],
        }
    }

    fn handle(msg: Message) -> Result<Option<Message>, Failure> {
        if let Some(to) = config::get("to") {
            host::publish(&to, &msg).map_err(Failure::Reject)?;
        }
        let count = host::kv_get("count")
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        host::kv_set("count", count.to_string().as_bytes()).map_err(Failure::Retry)?;
        let mut reply = msg.clone();
        reply.payload = count.to_string().into_bytes();
        Ok(Some(reply))
    }
}

export!(Oldest);
