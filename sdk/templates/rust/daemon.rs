//! {{name}}: a daemon. It takes each message from `local:{{name}}.in`, publishes it upper-cased
//! to `local:{{name}}.out`, and acks it only once that is done.
use wharf_sdk::{Info, daemon::Guest, daemon_host, host};

const SOURCE: &str = "local:{{name}}.in";
const TARGET: &str = "local:{{name}}.out";

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info::daemon("{{name}}", env!("CARGO_PKG_VERSION"))
            .with_description("Upper-cases what arrives on its queue")
            .wants(&format!("receive:{SOURCE}"))
            .wants(&format!("publish:{TARGET}"))
    }

    fn run() -> Result<(), String> {
        loop {
            let Some(delivery) = daemon_host::take(SOURCE, 1_000)? else {
                if !daemon_host::sleep(0) {
                    return Ok(()); // asked to stop
                }
                continue;
            };
            let upper = String::from_utf8_lossy(&delivery.msg.payload).to_uppercase();
            host::publish(TARGET, &delivery.msg.clone().with_payload(upper))?;
            daemon_host::ack(delivery.tag)?;
        }
    }
}

wharf_sdk::export_daemon!(Plugin);
