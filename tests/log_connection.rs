//! `kind = "log"` (PDC's DummyMessenger): what a route or a model event sends to a log
//! connection is written to the host's log, and every surface says it cannot be read.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::wharf_cli as wharf;

#[test]
fn what_is_sent_to_a_log_connection_is_in_the_hosts_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
database = "sqlite://wharf.db"
plugin_dir = "{plugins}"

[connections.audit]
kind = "log"
payload = true

[events]
connection = "audit"

[[routes]]
name = "shouting"
from = "local:shout.in"
through = ["uppercase"]
to = "audit:orders.out"
"#,
            plugins = support::plugin_dir().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("wharf.log");
    let mut host = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    support::wait_ready(port);

    let sent = wharf(&["publish", "local:shout.in", "hello log"], port);
    assert!(sent.status.success(), "{sent:?}");
    let event = wharf(
        &["event", "shop.models.Booking", "created", r#"{"id":7}"#],
        port,
    );
    assert!(event.status.success(), "{event:?}");

    let started = Instant::now();
    let text = loop {
        let mut text = String::new();
        std::fs::File::open(&log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        if (text.contains("HELLO LOG") && text.contains("Booking.created"))
            || started.elapsed() > Duration::from_secs(20)
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle} in the log:\n{text}"))
            .to_owned()
    };
    let routed = line("HELLO LOG");
    assert!(
        routed.contains("connection=audit") && routed.contains("address=\"orders.out\""),
        "{routed}"
    );
    let booking = line("Booking.created");
    assert!(booking.contains("events/Booking.created"), "{booking}");

    // Nothing can be read from it, and every surface says so in its words.
    let peek = wharf(&["queue", "peek", "audit:orders.out"], port);
    assert!(!peek.status.success());
    assert!(
        String::from_utf8_lossy(&peek.stderr).contains("is a log"),
        "{peek:?}"
    );
    // The CLI makes one from the flags the kind declares, and it shows among the connections.
    let added = wharf(
        &[
            "connection",
            "add",
            "dry",
            "--kind",
            "log",
            "--level",
            "debug",
            "--payload",
        ],
        port,
    );
    assert!(added.status.success(), "{added:?}");
    let listed = wharf(&["connection", "list"], port);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("dry") && listed.contains("log"), "{listed}");
    let bad = wharf(
        &[
            "connection",
            "add",
            "loud",
            "--kind",
            "log",
            "--level",
            "shout",
        ],
        port,
    );
    assert!(!bad.status.success(), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("level"),
        "the error names the field: {bad:?}"
    );
    let _ = Command::new("kill").arg(host.id().to_string()).status();
    let _ = host.wait();
}
