//! Request and reply through the host's correlation table: 1,000 concurrent calls over the
//! embedded broker and over RabbitMQ each get their own reply (from an `echo` route); a
//! timeout says how long it waited; a reply nobody waits for is dead-lettered; the table is
//! empty once the calls are done; a failed request is answered with its exception at once;
//! `wharf rpc` prints the reply.

#[macro_use]
mod support;

use futures::StreamExt as _;
use serde_json::{Value, json};
use support::{Backend, TestDb, client_with_token, local_token, start_host};
use wharf::broker::amqp::AmqpConfig;
use wharf::config::{Config, ConnectionConfig, RouteConfig};
use wharf::host::RunningHost;
use wharf::message::{HeaderValue, Message};

on_every_backend!(replies_reach_their_own_callers_on_the_embedded_broker);

fn echo_route(name: &str, from: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        from: from.into(),
        through: vec!["echo".into()],
        concurrency: 64,
        ..RouteConfig::default()
    }
}

/// 1,000 calls at once to `connection:address` through the API; each reply must be its own.
async fn thousand_calls(host: &RunningHost, connection: &str, address: &str) {
    let client = client_with_token(&local_token(host.addr));
    let url = format!(
        "http://{}/api/v1/rpc/{connection}/{address}?timeout_ms=60000",
        host.addr
    );
    let replies: Vec<(usize, u16, Value)> = futures::stream::iter(0..1000usize)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let response = client
                    .post(&url)
                    .json(&json!({ "payload": format!("call {i}"), "headers": { "n": i } }))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (i, status, response.json().await.unwrap_or(Value::Null))
            }
        })
        .buffer_unordered(1000)
        .collect()
        .await;
    for (i, status, reply) in replies {
        assert_eq!(status, 200, "call {i}: {reply}");
        assert_eq!(
            reply["payload"],
            format!("call {i}"),
            "call {i} got another's reply"
        );
        assert_eq!(reply["headers"]["n"], i, "{reply}");
        assert_eq!(
            reply["headers"]["UUID"], reply["correlation_id"],
            "the UUID header carries the correlation id: {reply}"
        );
    }
    assert_eq!(host.rpc.in_flight(), 0, "no waiter is left behind");
}

async fn replies_reach_their_own_callers_on_the_embedded_broker(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = Config {
        routes: vec![echo_route("echo", "local:echo.in")],
        ..Config::default()
    };
    let (host, broker) = start_host(&db, config).await;
    thousand_calls(&host, "local", "echo.in").await;

    // A timeout says how long it waited.
    let client = client_with_token(&local_token(host.addr));
    let answer = client
        .post(format!(
            "http://{}/api/v1/rpc/local/nobody.listens?timeout_ms=300",
            host.addr
        ))
        .json(&json!({ "payload": "anyone?" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 504);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("300 ms"),
        "{body}"
    );

    // A reply nobody waits for is dead-lettered, with the reason.
    let reply_queue = host.rpc.reply_queue().to_owned();
    let mut stray = Message::new(&reply_queue, b"who asked?".to_vec());
    stray.correlation_id = Some("not-a-call-of-this-host".into());
    broker.publish(&reply_queue, stray).await.unwrap();
    let dead = format!("{reply_queue}.dead");
    let found = support::arrived(&broker, &dead).await;
    assert_eq!(found.len(), 1, "the stray reply is in {dead}");
    assert_eq!(
        found[0].header("exception_name"),
        Some(&HeaderValue::Text("UnknownCorrelation".into()))
    );

    // `wharf rpc` prints the reply.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "rpc",
            "local:echo.in",
            "hello over rpc",
            "--url",
            &format!("http://{}", host.addr),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello over rpc"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reach_their_own_callers_over_rabbitmq() {
    let _rabbit = support::RABBIT.read().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let queue = format!("wharf.rpc.{}", uuid::Uuid::new_v4().simple());
    let mut config = Config::default();
    config.connections.insert(
        "rabbit".into(),
        ConnectionConfig::Amqp(Box::new(AmqpConfig {
            url: Some(support::amqp_url()),
            ..AmqpConfig::default()
        })),
    );
    config.routes = vec![echo_route("echo", &format!("rabbit:{queue}"))];
    let (host, _) = start_host(&db, config).await;
    thousand_calls(&host, "rabbit", &queue).await;

    // A service of its own (plain lapin, not Wharf) answers on the host's reply queue: each
    // reply crosses RabbitMQ and is paired by the reply listener.
    use futures::StreamExt as _;
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
    let service_queue = format!("{queue}.service");
    let client = support::amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    channel
        .queue_declare(
            service_queue.as_str().into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut requests = channel
        .basic_consume(
            service_queue.as_str().into(),
            "service".into(),
            BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let answering = channel.clone();
    let service = tokio::spawn(async move {
        while let Some(Ok(request)) = requests.next().await {
            let reply_to = request.properties.reply_to().clone().unwrap();
            let mut body = b"service: ".to_vec();
            body.extend_from_slice(&request.data);
            answering
                .basic_publish(
                    "".into(),
                    reply_to.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default()
                        .with_correlation_id(request.properties.correlation_id().clone().unwrap()),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            request.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    let api = client_with_token(&local_token(host.addr));
    let url = format!(
        "http://{}/api/v1/rpc/rabbit/{service_queue}?timeout_ms=30000",
        host.addr
    );
    let replies: Vec<(usize, Value)> = futures::stream::iter(0..200usize)
        .map(|i| {
            let (api, url) = (api.clone(), url.clone());
            async move {
                let reply = api
                    .post(&url)
                    .json(&json!({ "payload": format!("call {i}") }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                (i, reply)
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    for (i, reply) in replies {
        assert_eq!(reply["payload"], format!("service: call {i}"), "{reply}");
    }
    assert_eq!(host.rpc.in_flight(), 0);
    service.abort();
    let reply_queue = host.rpc.reply_queue().to_owned();
    host.stop().await;
    support::delete_amqp_queues(&[queue, service_queue, reply_queue]).await;
}

/// A request that fails gets a reply carrying the failure at once (and is dead-lettered as
/// ever), instead of leaving its caller to wait out the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_is_answered_with_its_exception() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut failing = echo_route("boom", "local:boom.in");
    failing.through = vec!["panicker".into(), "echo".into()];
    failing.retry.max = 0;
    let mut config = Config {
        routes: vec![failing],
        ..Config::default()
    };
    config.plugins.insert(
        "panicker".into(),
        wharf::config::PluginConfig {
            path: support::plugin_path("panicker"),
            ..Default::default()
        },
    );
    let (host, broker) = start_host(&db, config).await;
    let client = client_with_token(&local_token(host.addr));
    let started = std::time::Instant::now();
    let answer = client
        .post(format!(
            "http://{}/api/v1/rpc/local/boom.in?timeout_ms=30000",
            host.addr
        ))
        .json(&json!({ "payload": "panic" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let reply: Value = answer.json().await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "answered, not timed out"
    );
    assert_eq!(reply["headers"]["exception_name"], "Trap", "{reply}");
    assert_eq!(reply["headers"]["exception_type"], "plugin", "{reply}");
    assert!(
        reply["headers"]["exception"]
            .as_str()
            .unwrap()
            .contains("panicker")
    );
    assert_eq!(reply["headers"]["UUID"], reply["correlation_id"]);
    support::drained(&broker, "boom.in").await;
    assert_eq!(
        broker.stats("boom.in.dead").await.unwrap().depth(),
        1,
        "dead-lettered as ever"
    );
    host.stop().await;
}

/// An independent client written the way edeposit's document shows (plain lapin, not Wharf
/// code): it publishes a request carrying only a `UUID` header (no reply-to) and reads a fixed
/// reply queue. It gets the right reply from an `echo` route, and the exception headers from a
/// failing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edeposit_style_client_gets_replies_on_its_fixed_queue() {
    use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable, ShortString};
    let _rabbit = support::RABBIT.read().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (requests, failing, replies) = (
        format!("edeposit.{id}.requests"),
        format!("edeposit.{id}.failing"),
        format!("edeposit.{id}.replies"),
    );
    let mut config = Config::default();
    config.connections.insert(
        "rabbit".into(),
        ConnectionConfig::Amqp(Box::new(AmqpConfig {
            url: Some(support::amqp_url()),
            ..AmqpConfig::default()
        })),
    );
    let mut serving = echo_route("edeposit", &format!("rabbit:{requests}"));
    serving.reply_to = Some(format!("rabbit:{replies}"));
    let mut broken = echo_route("edeposit-failing", &format!("rabbit:{failing}"));
    broken.through = vec!["panicker".into(), "echo".into()];
    broken.retry.max = 0;
    broken.reply_to = Some(format!("rabbit:{replies}"));
    config.routes = vec![serving, broken];
    config.plugins.insert(
        "panicker".into(),
        wharf::config::PluginConfig {
            path: support::plugin_path("panicker"),
            ..Default::default()
        },
    );
    let (host, _) = start_host(&db, config).await;

    let client = support::amqp_client().await;
    let channel = client.create_channel().await.unwrap();
    channel
        .queue_declare(
            replies.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the route declared its reply queue");
    let ask = |queue: String, uuid: String, body: &'static [u8]| {
        let channel = channel.clone();
        async move {
            let mut headers = FieldTable::default();
            headers.insert(
                ShortString::from("UUID"),
                AMQPValue::LongString(uuid.into()),
            );
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    lapin::BasicProperties::default().with_headers(headers),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    // Reads the fixed reply queue until the reply with `uuid` arrives.
    let answer = |uuid: String| {
        let channel = channel.clone();
        let replies = replies.clone();
        async move {
            for _ in 0..200 {
                if let Some(message) = channel
                    .basic_get(replies.as_str().into(), BasicGetOptions { no_ack: true })
                    .await
                    .unwrap()
                {
                    let headers = message.properties.headers().clone().unwrap_or_default();
                    let header = |name: &str| match headers.inner().get(name) {
                        Some(AMQPValue::LongString(text)) => text.to_string(),
                        other => format!("{other:?}"),
                    };
                    if header("UUID") == uuid {
                        return (
                            message.data.clone(),
                            header("exception_name"),
                            header("exception_type"),
                        );
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("no reply with UUID {uuid} on the fixed reply queue")
        }
    };
    let first = uuid::Uuid::new_v4().to_string();
    ask(requests.clone(), first.clone(), b"ISBN 80-251-0225-4").await;
    let (body, exception, _) = answer(first).await;
    assert_eq!(body, b"ISBN 80-251-0225-4");
    assert!(
        exception.contains("None"),
        "no exception on a good reply: {exception}"
    );

    let second = uuid::Uuid::new_v4().to_string();
    ask(failing.clone(), second.clone(), b"panic").await;
    let (_, exception_name, exception_type) = answer(second).await;
    assert_eq!(exception_name, "Trap");
    assert_eq!(exception_type, "plugin");
    host.stop().await;
    let _ = client.close(200, "done".into()).await;
    support::delete_amqp_queues(&[requests, failing, replies]).await;
}

/// A plugin's `request` goes through the correlation table and gets its reply (`asker` asks
/// the `echo` route); a reply from another process crosses the reply queue to its caller; a
/// reply that comes after its caller gave up is dropped with a warning: it is taken off the
/// reply queue, not dead-lettered, and no waiter is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_request_is_answered_and_a_late_reply_dropped() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![
            echo_route("echo", "local:echo.in"),
            RouteConfig {
                name: "asking".into(),
                from: "local:ask.in".into(),
                through: vec!["asker".into()],
                ..RouteConfig::default()
            },
        ],
        ..Config::default()
    };
    config.plugins.insert(
        "asker".into(),
        wharf::config::PluginConfig {
            path: support::plugin_path("asker"),
            request: vec!["local:echo.*".into()],
            config: [("to".to_owned(), "local:echo.in".to_owned())].into(),
            ..Default::default()
        },
    );
    let (host, broker) = start_host(&db, config).await;
    let client = client_with_token(&local_token(host.addr));
    let reply: Value = client
        .post(format!(
            "http://{}/api/v1/rpc/local/ask.in?timeout_ms=20000",
            host.addr
        ))
        .json(&json!({ "payload": "hi" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["payload"], "asked: hi", "{reply}");

    // A reply from another process (here the test's own handle on the database) crosses the
    // reply queue and is paired by the listener.
    let to = wharf::broker::Address::parse("local:manual.in").unwrap();
    let rpc = host.rpc.clone();
    let call = tokio::spawn(async move {
        rpc.call(
            &to,
            Message::new("", b"anyone?".to_vec()),
            std::time::Duration::from_secs(20),
        )
        .await
    });
    let mut consumer = broker.consume("manual.in", 1).await.unwrap();
    let request = consumer.next().await.unwrap();
    let mut answer = Message::new("", b"here".to_vec());
    answer.correlation_id = request.message.correlation_id.clone();
    broker
        .publish(request.message.reply_to.as_deref().unwrap(), answer)
        .await
        .unwrap();
    request.ack.ack().await.unwrap();
    consumer.close().await;
    assert_eq!(call.await.unwrap().unwrap().payload, b"here");

    // Nobody answers in time; the reply comes afterwards.
    let to = wharf::broker::Address::parse("local:late.in").unwrap();
    let rpc = host.rpc.clone();
    let call = tokio::spawn(async move {
        rpc.call(
            &to,
            Message::new("", b"late?".to_vec()),
            std::time::Duration::from_millis(300),
        )
        .await
    });
    let mut consumer = broker.consume("late.in", 1).await.unwrap();
    let request = consumer.next().await.unwrap();
    let timed_out = call.await.unwrap().unwrap_err();
    assert!(timed_out.to_string().contains("300 ms"), "{timed_out}");
    let mut late = Message::new("", b"too late".to_vec());
    late.correlation_id = request.message.correlation_id.clone();
    let reply_queue = request.message.reply_to.clone().unwrap();
    request.ack.ack().await.unwrap();
    consumer.close().await;
    broker.publish(&reply_queue, late).await.unwrap();
    support::drained(&broker, &reply_queue).await;
    assert_eq!(
        broker
            .stats(&format!("{reply_queue}.dead"))
            .await
            .unwrap()
            .depth(),
        0,
        "a late reply is not dead-lettered"
    );
    assert_eq!(host.rpc.in_flight(), 0);
    host.stop().await;
}

/// A caller that goes away (its HTTP request dropped) takes its waiter with it: the table
/// holds only calls someone waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_leaves_no_waiter() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (host, _) = start_host(&db, Config::default()).await;
    let client = client_with_token(&local_token(host.addr));
    let url = format!(
        "http://{}/api/v1/rpc/local/nobody.answers?timeout_ms=60000",
        host.addr
    );
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({ "payload": format!("call {i}") }))
                    .send()
                    .await
            })
        })
        .collect();
    for _ in 0..200 {
        if host.rpc.in_flight() == 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(host.rpc.in_flight(), 20, "every call waits");
    for call in calls {
        call.abort();
    }
    for _ in 0..200 {
        if host.rpc.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        host.rpc.in_flight(),
        0,
        "the callers went away, and so did their waiters"
    );
    host.stop().await;
}

/// A plugin's `request` over RabbitMQ: `asker` asks a route on a RabbitMQ queue, the request
/// and its reply both cross the broker, and the answer comes back to the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_request_over_rabbitmq_is_answered() {
    let _rabbit = support::RABBIT.read().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let queue = format!("wharf.ask.{}", uuid::Uuid::new_v4().simple());
    let mut config = Config::default();
    config.connections.insert(
        "rabbit".into(),
        ConnectionConfig::Amqp(Box::new(AmqpConfig {
            url: Some(support::amqp_url()),
            ..AmqpConfig::default()
        })),
    );
    config.routes = vec![echo_route("echo", &format!("rabbit:{queue}"))];
    support::asker(
        &mut config,
        &format!("rabbit:{queue}"),
        "rabbit:wharf.ask.*",
    );
    let (host, _broker) = start_host(&db, config).await;
    for i in 0..3 {
        let reply = support::ask(host.addr, &format!("over rabbit {i}")).await;
        assert_eq!(
            reply["payload"],
            format!("asked: over rabbit {i}"),
            "{reply}"
        );
    }
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
}
