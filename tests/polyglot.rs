//! Plugins written in Python (componentize-py) and JavaScript (componentize-js) pass the
//! behaviour tests the Rust ones pass, each inside a real route of a host started in-process,
//! on the embedded broker and on RabbitMQ: a transform, a filter, a reply with its correlation
//! id, failures with their kind (retry, reject, an unexpected exception), the CPU deadline
//! and the memory limit, and publishing only where granted.
//!
//! The plugins are `plugins/py-uppercase`, `py-probe`, `js-uppercase` and `js-probe`, built
//! by `./dev plugins` with the pinned toolchains.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::{Backend, TestDb};
use wharf::broker::{Address, Connections, Consumer};
use wharf::config::Config;
use wharf::message::{HeaderValue, Message};

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Embedded,
    Rabbit,
}

fn header(msg: &Message, name: &str) -> String {
    match msg.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v) {
        Some(HeaderValue::Text(s)) => s.clone(),
        other => panic!("header {name}: {other:?} in {:?}", msg.headers),
    }
}

/// The next message at `address`, acked; panics after 60 s.
async fn next(consumer: &mut Consumer, address: &str) -> Message {
    let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next())
        .await
        .unwrap_or_else(|_| panic!("nothing arrived at {address} within 60 s"))
        .unwrap();
    let msg = delivery.message.clone();
    delivery.ack.ack().await.unwrap();
    msg
}

async fn consume(connections: &Connections, address: &str) -> Consumer {
    let at = Address::parse(address).unwrap();
    connections.ensure(&[&at]).await.unwrap();
    connections.consume(&at, 16).await.unwrap()
}

async fn send(connections: &Connections, address: &str, msg: Message) {
    connections
        .send(&Address::parse(address).unwrap(), msg)
        .await
        .unwrap();
}

async fn behaves_like_a_rust_plugin(lang: &str, transport: Transport) {
    let _shared = match transport {
        Transport::Rabbit => Some(support::RABBIT.read().await),
        Transport::Embedded => None,
    };
    let db = TestDb::new(Backend::Sqlite).await;
    let conn = match transport {
        Transport::Embedded => "local",
        Transport::Rabbit => "rabbit",
    };
    let p = format!("poly.{lang}.{}", uuid::Uuid::new_v4().simple());
    let rabbit = match transport {
        Transport::Rabbit => format!(
            "[connections.rabbit]\nkind = \"amqp\"\nurl = \"{}\"\nconnect_timeout_ms = 10000\n",
            support::amqp_url()
        ),
        Transport::Embedded => String::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.toml");
    std::fs::write(
        &path,
        format!(
            r#"
{rabbit}
[plugins.{lang}-uppercase]
path = "{uppercase}"

[plugins.{lang}-probe]
path = "{probe}"
memory_mb = 160
timeout_ms = 1000
publish = ["{conn}:{p}.granted"]

[[routes]]
name = "up"
from = "{conn}:{p}.up.in"
through = ["{lang}-uppercase"]
to = "{conn}:{p}.up.out"
concurrency = 1

[[routes]]
name = "probe"
from = "{conn}:{p}.probe.in"
through = ["{lang}-probe"]
dead_letter = "{conn}:{p}.probe.dead"
retry = {{ max = 1, backoff_ms = 10 }}
"#,
            uppercase = support::plugin_path(&format!("{lang}-uppercase")).display(),
            probe = support::plugin_path(&format!("{lang}-probe")).display(),
        ),
    )
    .unwrap();
    let config = Config::load(Some(&path)).expect("a valid config");
    let (host, _) = support::start_host(&db, config).await;
    let connections = host.connections().clone();

    // Transform and filter: an empty message and one marked skip give nothing; the rest come
    // out upper-cased, in order (the route takes one at a time).
    let mut out = consume(&connections, &format!("{conn}:{p}.up.out")).await;
    let mut skipped = Message::new("", "skipped");
    skipped
        .headers
        .push(("skip".into(), HeaderValue::Boolean(true)));
    for msg in [
        Message::new("", "hello"),
        Message::new("", ""),
        skipped,
        Message::new("", "grüße"),
    ] {
        send(&connections, &format!("{conn}:{p}.up.in"), msg).await;
    }
    assert_eq!(next(&mut out, "up.out").await.payload, b"HELLO");
    assert_eq!(
        next(&mut out, "up.out").await.payload,
        "GRÜSSE".as_bytes(),
        "the Unicode text upper-cased, the two before it filtered out"
    );

    // A reply goes to the request's reply-to with its correlation id and headers.
    let mut replies = consume(&connections, &format!("{conn}:{p}.replies")).await;
    let mut request = Message::new("", "ping");
    request.reply_to = Some(format!("{p}.replies"));
    request.correlation_id = Some("corr-1".into());
    request
        .headers
        .push(("x-trace".into(), HeaderValue::Text("t-1".into())));
    send(&connections, &format!("{conn}:{p}.probe.in"), request).await;
    let reply = next(&mut replies, "replies").await;
    assert_eq!(reply.payload, b"ping");
    assert_eq!(reply.correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(header(&reply, "x-trace"), "t-1");

    // Publishing where granted reaches the queue; anywhere else the call fails.
    let mut granted = consume(&connections, &format!("{conn}:{p}.granted")).await;
    send(
        &connections,
        &format!("{conn}:{p}.probe.in"),
        Message::new("", format!("publish {conn}:{p}.granted from {lang}")),
    )
    .await;
    assert_eq!(
        next(&mut granted, "granted").await.payload,
        format!("from {lang}").as_bytes()
    );

    // Each failure is dead-lettered with its kind: rejected at once, retried first otherwise.
    // An exception of the plugin's own is named by its class (edeposit's `exception_name` and
    // `exception_type`); one of a class the plugin marks permanent is not retried.
    let (raised, raised_type, missing, missing_type) = match lang {
        "py" => (
            "ValueError",
            "<class 'ValueError'>",
            "KeyError",
            "<class 'KeyError'>",
        ),
        _ => ("TypeError", "TypeError", "RangeError", "RangeError"),
    };
    let mut dead = consume(&connections, &format!("{conn}:{p}.probe.dead")).await;
    let cases = [
        ("reject", "Rejected", 1),
        ("retry", "Retry", 2),
        ("raise", raised, 2),
        ("missing", missing, 1),
        ("spin", "Deadline", 2),
        ("hog", "MemoryLimit", 2),
        ("publish forbidden", "Rejected", 1),
    ];
    for (payload, _, _) in &cases {
        let payload = payload.replace("forbidden", &format!("{conn}:{p}.forbidden"));
        send(
            &connections,
            &format!("{conn}:{p}.probe.in"),
            Message::new("", payload),
        )
        .await;
    }
    let mut seen = BTreeMap::new();
    for _ in 0..cases.len() {
        let letter = next(&mut dead, "probe.dead").await;
        let text = String::from_utf8(letter.payload.clone()).unwrap();
        let command = text.split_whitespace().next().unwrap().to_owned();
        let command = if command == "publish" {
            "publish forbidden".to_owned()
        } else {
            command
        };
        seen.insert(
            command,
            (
                header(&letter, "exception_name"),
                format!(
                    "{} [{}]",
                    header(&letter, "exception"),
                    header(&letter, "exception_type")
                ),
                letter
                    .headers
                    .iter()
                    .find(|(k, _)| k == "x-wharf-attempts")
                    .map(|(_, v)| format!("{v:?}"))
                    .unwrap_or_default(),
            ),
        );
    }
    for (payload, kind, attempts) in cases {
        let (name, exception, tries) = &seen[payload];
        assert_eq!(name, kind, "{lang} `{payload}`: {exception}");
        assert!(
            tries.contains(&attempts.to_string()),
            "{lang} `{payload}`: {attempts} attempt(s) expected, header {tries}"
        );
        if payload == "publish forbidden" {
            assert!(
                exception.contains("refused"),
                "{lang}: the refusal names itself: {exception}"
            );
        }
        if payload == "raise" {
            assert!(
                exception.contains("an unexpected error"),
                "{lang}: the exception's text is kept: {exception}"
            );
            assert!(
                exception.ends_with(&format!("[{raised_type}]")),
                "{exception}"
            );
        }
        if payload == "missing" {
            assert!(
                exception.ends_with(&format!("[{missing_type}]")),
                "{exception}"
            );
        }
        if payload == "reject" {
            assert!(exception.ends_with("[plugin]"), "{exception}");
        }
    }
    // Nothing reached the forbidden queue, and the probe still answers after all that.
    let forbidden = Address::parse(&format!("{conn}:{p}.forbidden")).unwrap();
    connections.ensure(&[&forbidden]).await.unwrap();
    assert_eq!(connections.depth(&forbidden).await.unwrap().ready, Some(0));
    let mut request = Message::new("", "still here");
    request.reply_to = Some(format!("{p}.replies"));
    send(&connections, &format!("{conn}:{p}.probe.in"), request).await;
    assert_eq!(next(&mut replies, "replies").await.payload, b"still here");

    for consumer in [out, replies, granted, dead] {
        consumer.close().await;
    }
    host.stop().await;
    if transport == Transport::Rabbit {
        support::delete_amqp_queues(
            &[
                "up.in",
                "up.out",
                "probe.in",
                "probe.dead",
                "replies",
                "granted",
                "forbidden",
            ]
            .map(|q| format!("{p}.{q}")),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_plugins_on_the_embedded_broker() {
    behaves_like_a_rust_plugin("py", Transport::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_plugins_on_rabbitmq() {
    behaves_like_a_rust_plugin("py", Transport::Rabbit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_plugins_on_the_embedded_broker() {
    behaves_like_a_rust_plugin("js", Transport::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_plugins_on_rabbitmq() {
    behaves_like_a_rust_plugin("js", Transport::Rabbit).await;
}
