//! Example daemon: a lookup service in edeposit's style. It takes requests from `source`
//! (default `local:lookup.requests`), looks each payload up among its config's `entry.KEY`
//! values, and publishes the answer to the request's reply-to on the same connection, with
//! the request's correlation id and its `UUID` header. A key it does not know is answered
//! with the `exception`, `exception_name` and `exception_type` headers, as edeposit's daemons
//! reported errors. A request is acked only once its answer is sent: if the daemon stops
//! first, the request goes back to the queue.
use wharf_sdk::{Info, Message, Value, config, daemon::Guest, daemon_host, host};

struct LookupService;

impl Guest for LookupService {
    fn describe() -> Info {
        Info::daemon("lookup-service", env!("CARGO_PKG_VERSION"))
            .with_description("Answers lookups taken from a queue at each request's reply-to")
            .wants("receive:local:lookup.requests")
            .wants("publish:local:**")
    }

    fn run() -> Result<(), String> {
        let source = config::get("source").unwrap_or_else(|| "local:lookup.requests".into());
        let Some((connection, _)) = source.split_once(':') else {
            return Err(format!("source `{source}` is not connection:queue"));
        };
        loop {
            let Some(delivery) = daemon_host::take(&source, 1_000)? else {
                // Nothing came within the wait; return if asked to stop, else wait again.
                if !daemon_host::sleep(0) {
                    return Ok(());
                }
                continue;
            };
            let request = delivery.msg;
            let Some(reply_to) = request.reply_to.clone().filter(|r| !r.is_empty()) else {
                // Nobody to answer: the request goes to the dead letters.
                daemon_host::nack(delivery.tag, false)?;
                continue;
            };
            let answer = answer(&request);
            host::publish(&format!("{connection}:{reply_to}"), &answer)?;
            daemon_host::ack(delivery.tag)?;
        }
    }
}

fn answer(request: &Message) -> Message {
    let key = String::from_utf8_lossy(&request.payload).trim().to_owned();
    let found = config::get(&format!("entry.{key}"));
    let mut reply = request.reply(found.clone().unwrap_or_default());
    reply.content_type = Some("text/plain".into());
    if let Some(uuid) = request.header("UUID") {
        reply.set_header("UUID", uuid.clone());
    }
    if found.is_none() {
        reply.set_header("exception", Value::Text(format!("no entry for `{key}`")));
        reply.set_header("exception_name", Value::Text("KeyError".into()));
        reply.set_header("exception_type", Value::Text("lookup".into()));
    }
    reply
}

wharf_sdk::export_daemon!(LookupService);
