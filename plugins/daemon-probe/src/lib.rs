//! Test daemon. Its config's `mode` says what it does:
//! - `trap`: panics (after `delay_ms`);
//! - `fail`: returns an error (after `delay_ms`), named `fail_name` when that is set;
//! - `spin`: loops without ever calling the host;
//! - `log-spin`: spins `spin_ms` (900 by default), logs a line, and again, for ever: a host
//!   call now and then must not renew its CPU budget;
//! - `hold`: takes messages from `source` and never settles them, publishing each one's
//!   payload to `report`, until asked to stop (or, with `trap_after`, until it has taken that
//!   many, when it panics);
//! - `ack`: takes messages from `source`, publishes each payload to `report` (with the
//!   probe's version as the topic), then acks it;
//! - `refuse`: takes messages from `source` and dead-letters each (`nack` without requeue),
//!   named `fail_name` when that is set;
//! - `probe`: tries to take from `source` and publishes the error it got (or `ok`) to
//!   `report`, then sleeps until asked to stop.
use wharf_sdk::{Info, Message, config, daemon::Guest, daemon_host, host};

struct Probe;

fn setting(key: &str) -> Result<String, String> {
    config::get(key).ok_or_else(|| format!("config `{key}` is not set"))
}

/// Names the failure that comes next `fail_name` (its type `probe::FAIL_NAME`), if set.
fn name_failure() {
    if let Some(name) = config::get("fail_name") {
        wharf_sdk::exception::name(&name, &format!("probe::{name}"));
    }
}

fn wait_for_stop() {
    while daemon_host::sleep(60_000) {}
}

impl Guest for Probe {
    fn describe() -> Info {
        Info::daemon("daemon-probe", env!("CARGO_PKG_VERSION"))
            .with_description("Traps, fails, spins or holds messages, for the host's tests")
    }

    fn run() -> Result<(), String> {
        let mode = setting("mode")?;
        let delay = config::get("delay_ms")
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        match mode.as_str() {
            "trap" => {
                daemon_host::sleep(delay);
                panic!("the probe traps as asked");
            }
            "fail" => {
                daemon_host::sleep(delay);
                name_failure();
                Err("the probe fails as asked".into())
            }
            "refuse" => {
                let source = setting("source")?;
                loop {
                    match daemon_host::take(&source, 500)? {
                        Some(delivery) => {
                            name_failure();
                            daemon_host::nack(delivery.tag, false)?;
                        }
                        None if !daemon_host::sleep(0) => return Ok(()),
                        None => {}
                    }
                }
            }
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "log-spin" => {
                let spin = std::time::Duration::from_millis(
                    config::get("spin_ms")
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(900),
                );
                loop {
                    let started = std::time::Instant::now();
                    let mut n: u64 = 0;
                    while started.elapsed() < spin {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                    wharf_sdk::log::info("still spinning");
                }
            }
            "hold" | "ack" => {
                let source = setting("source")?;
                let report = setting("report")?;
                let trap_after: Option<u32> =
                    config::get("trap_after").and_then(|n| n.parse().ok());
                let mut taken = 0;
                loop {
                    match daemon_host::take(&source, 500)? {
                        Some(delivery) => {
                            taken += 1;
                            let topic = if mode == "ack" {
                                env!("CARGO_PKG_VERSION")
                            } else {
                                "taken"
                            };
                            host::publish(&report, &Message::new(topic, delivery.msg.payload))?;
                            if mode == "ack" {
                                daemon_host::ack(delivery.tag)?;
                            }
                            if trap_after == Some(taken) {
                                panic!("the probe traps holding {taken} messages, as asked");
                            }
                        }
                        None if !daemon_host::sleep(0) => return Ok(()),
                        None => {}
                    }
                }
            }
            "probe" => {
                let source = setting("source")?;
                let report = setting("report")?;
                let outcome = match daemon_host::take(&source, 100) {
                    Ok(_) => "ok".to_owned(),
                    Err(error) => error,
                };
                host::publish(&report, &Message::new("probe", outcome))?;
                wait_for_stop();
                Ok(())
            }
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

wharf_sdk::export_daemon!(Probe);
