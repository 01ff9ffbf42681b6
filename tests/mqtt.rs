//! MQTT end to end, against the machine's Mosquitto (`./dev test` starts it; `WHARF_TEST_MQTT`
//! names another) and brokers of the tests' own: an independent `rumqttc` client feeds a
//! route and reads its outputs in order; a failing route retries in place and dead-letters
//! with the `exception` headers; two hosts split one route's messages through a shared
//! subscription; a host that was down gets what arrived meanwhile; a broker restarted
//! mid-stream loses nothing; model events reach each subscription once and a plain
//! subscriber of the same topics; an RPC through the API is answered over MQTT; MQTT 3.1.1
//! carries payloads; a broker that demands a password lets the right one in; depth and purge
//! say MQTT cannot, and peek shows a topic's retained message.

#[macro_use]
mod support;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use serde_json::json;
use std::time::Duration;
use support::{Backend, TestDb, all_running, unique};
use tokio::sync::mpsc;
use wharf::broker::Transport as _;
use wharf::broker::mqtt::MqttConfig;
use wharf::config::{
    Config, ConnectionConfig, EventsConfig, PluginConfig, RetryConfig, RouteConfig,
};

fn mqtt_at(url: &str) -> MqttConfig {
    MqttConfig {
        url: url.to_owned(),
        // The tests' sessions go from the broker soon after they end.
        session_expiry_s: 300,
        timeout_ms: 5_000,
        ..MqttConfig::default()
    }
}

fn mqtt() -> ConnectionConfig {
    ConnectionConfig::Mqtt(Box::new(mqtt_at(&support::mqtt_url())))
}

/// The port of an `mqtt://host:port` URL.
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// An independent MQTT 5 client, as a device or another service would be.
struct Plain {
    client: rumqttc::v5::AsyncClient,
    got: mpsc::UnboundedReceiver<Publish>,
    subscribed: mpsc::UnboundedReceiver<()>,
    acked: mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Plain {
    async fn connect(url: &str) -> Plain {
        let mut options = rumqttc::v5::MqttOptions::new(unique("plain"), "127.0.0.1", port_of(url));
        options.set_max_packet_size(Some(1 << 20));
        let (client, mut events) = rumqttc::v5::AsyncClient::new(options, 1024);
        let (got_tx, got) = mpsc::unbounded_channel();
        let (sub_tx, subscribed) = mpsc::unbounded_channel();
        let (ack_tx, acked) = mpsc::unbounded_channel();
        let (up_tx, mut up) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = up_tx.send(());
                    }
                    Ok(rumqttc::v5::Event::Incoming(Packet::Publish(p))) => {
                        let _ = got_tx.send(p);
                    }
                    Ok(rumqttc::v5::Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(rumqttc::v5::Event::Incoming(Packet::PubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), up.recv())
            .await
            .expect("the MQTT broker answers (./dev test starts Mosquitto)");
        Plain {
            client,
            got,
            subscribed,
            acked,
            task,
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.subscribed.recv())
            .await
            .expect("subscribed");
    }

    /// Publishes QoS 1 messages and waits until the broker has every one.
    async fn publish_all(&mut self, messages: Vec<(String, Vec<u8>, PublishProperties, bool)>) {
        let count = messages.len();
        for (topic, payload, properties, retain) in messages {
            self.client
                .publish_with_properties(topic, QoS::AtLeastOnce, retain, payload, properties)
                .await
                .unwrap();
        }
        for _ in 0..count {
            tokio::time::timeout(Duration::from_secs(20), self.acked.recv())
                .await
                .expect("the broker acknowledges each publish");
        }
    }

    async fn read(&mut self, count: usize) -> Vec<Publish> {
        let mut found = Vec::with_capacity(count);
        while found.len() < count {
            let message = tokio::time::timeout(Duration::from_secs(60), self.got.recv())
                .await
                .unwrap_or_else(|_| panic!("{} of {count} within 60 s", found.len()))
                .unwrap();
            found.push(message);
        }
        found
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn user(properties: &Option<PublishProperties>, name: &str) -> Option<String> {
    properties
        .as_ref()?
        .user_properties
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// How many messages the host's local `queue` holds.
async fn local_depth(client: &reqwest::Client, base: &str, queue: &str) -> u64 {
    let depth = support::get_json(client, &format!("{base}/api/v1/queues/local/{queue}")).await;
    depth["ready"].as_u64().unwrap_or(0) + depth["in_flight"].as_u64().unwrap_or(0)
}

/// Waits (60 s at most) until the host's local `queue` holds `count` messages.
async fn local_reaches(client: &reqwest::Client, base: &str, queue: &str, count: u64) {
    let mut depth = 0;
    for _ in 0..600 {
        depth = local_depth(client, base, queue).await;
        if depth >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(depth, count, "{queue}");
}

fn numbered(topic: &str, i: usize) -> (String, Vec<u8>, PublishProperties, bool) {
    let properties = PublishProperties {
        user_properties: vec![("n".into(), i.to_string())],
        ..PublishProperties::default()
    };
    (
        topic.to_owned(),
        format!("order {i}").into_bytes(),
        properties,
        false,
    )
}

fn route(name: &str, from: String, to: String) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        from,
        through: vec!["uppercase".into()],
        to: Some(to),
        concurrency: 1,
        ..RouteConfig::default()
    }
}

/// A route on MQTT between two topics an independent client writes and reads: every message
/// once, upper-cased, in order, its user property kept; and a route whose plugin panics
/// retries once and dead-letters with the exception headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_client_feeds_a_route_and_reads_its_outputs_in_order() {
    let q = unique("orders");
    let boom = unique("boom");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![
            route("upper", format!("mqtt:{q}.in"), format!("mqtt:{q}.out")),
            RouteConfig {
                name: "boom".into(),
                from: format!("mqtt:{boom}.in"),
                through: vec!["panicker".into()],
                to: Some(format!("mqtt:{boom}.out")),
                retry: RetryConfig {
                    max: 1,
                    backoff_ms: 200,
                    max_backoff_ms: 200,
                },
                ..RouteConfig::default()
            },
        ],
        ..Config::default()
    };
    config.connections.insert("mqtt".into(), mqtt());
    config.plugins.insert(
        "panicker".into(),
        PluginConfig {
            path: support::plugin_path("panicker"),
            ..PluginConfig::default()
        },
    );
    let (host, _) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;

    let mut plain = Plain::connect(&support::mqtt_url()).await;
    plain.subscribe(&format!("{q}.out")).await;
    plain.subscribe(&format!("{boom}.in.dead")).await;
    let total = 300;
    plain
        .publish_all(
            (0..total)
                .map(|i| numbered(&format!("{q}.in"), i))
                .collect(),
        )
        .await;
    let outputs = plain.read(total).await;
    for (i, message) in outputs.iter().enumerate() {
        assert_eq!(message.payload, format!("ORDER {i}").as_bytes(), "in order");
        assert_eq!(
            user(&message.properties, "n"),
            Some(i.to_string()),
            "the other client's property arrives"
        );
    }

    plain
        .publish_all(vec![(
            format!("{boom}.in"),
            b"bad".to_vec(),
            PublishProperties::default(),
            false,
        )])
        .await;
    let dead = plain.read(1).await;
    assert_eq!(dead[0].payload, "bad".as_bytes());
    assert_eq!(
        user(&dead[0].properties, "exception_name").as_deref(),
        Some("Trap"),
        "{:?}",
        dead[0].properties
    );
    assert_eq!(
        user(&dead[0].properties, "x-wharf-attempts").as_deref(),
        Some("2"),
        "tried twice, held by the reader between"
    );

    // What MQTT cannot do says so; what it can (a retained message) is shown.
    let depth = client
        .get(format!("{base}/api/v1/queues/mqtt/{q}.in"))
        .send()
        .await
        .unwrap();
    let status = depth.status();
    let body = depth.text().await.unwrap();
    assert!(!status.is_success(), "{status} {body}");
    assert!(body.contains("MQTT cannot tell"), "{body}");
    let purge = client
        .delete(format!("{base}/api/v1/queues/mqtt/{q}.in/messages"))
        .send()
        .await
        .unwrap();
    let body = purge.text().await.unwrap();
    assert!(body.contains("MQTT cannot purge"), "{body}");
    plain
        .publish_all(vec![(
            format!("{q}.state"),
            b"retained".to_vec(),
            PublishProperties::default(),
            true,
        )])
        .await;
    let peeked = support::get_json(
        &client,
        &format!("{base}/api/v1/queues/mqtt/{q}.state/messages?count=5"),
    )
    .await;
    let payloads: Vec<&str> = peeked
        .as_array()
        .unwrap_or_else(|| panic!("{peeked}"))
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, ["retained"], "{peeked}");
    // An empty retained message removes it.
    plain
        .publish_all(vec![(
            format!("{q}.state"),
            Vec::new(),
            PublishProperties::default(),
            true,
        )])
        .await;
    host.stop().await;
}

/// Two hosts reading one topic share its messages through a shared subscription: each gets
/// some, together every one once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_split_one_routes_messages() {
    let q = unique("split");
    let mut hosts = Vec::new();
    let mut dbs = Vec::new();
    for name in ["a", "b"] {
        let db = TestDb::new(Backend::Sqlite).await;
        let mut config = Config {
            routes: vec![route(
                "split",
                format!("mqtt:{q}.in"),
                format!("local:{q}.out"),
            )],
            ..Config::default()
        };
        config.server.name = Some(unique(name));
        config.connections.insert("mqtt".into(), mqtt());
        let (host, _) = support::start_host(&db, config).await;
        let client = support::client_with_token(&support::local_token(host.addr));
        let base = format!("http://{}", host.addr);
        all_running(&client, &base).await;
        hosts.push((host, client, base));
        dbs.push(db);
    }
    let mut plain = Plain::connect(&support::mqtt_url()).await;
    let total = 200;
    plain
        .publish_all(
            (0..total)
                .map(|i| numbered(&format!("{q}.in"), i))
                .collect(),
        )
        .await;
    let mut counts = Vec::new();
    for _ in 0..600 {
        counts.clear();
        for (_, client, base) in &hosts {
            counts.push(local_depth(client, base, &format!("{q}.out")).await);
        }
        if counts.iter().sum::<u64>() >= total as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counts.iter().sum::<u64>(), total as u64, "{counts:?}");
    assert!(
        counts.iter().all(|&n| n > 0),
        "each host got a share: {counts:?}"
    );
    for (host, _, _) in hosts {
        host.stop().await;
    }
}

/// A host that was stopped gets, when it starts again, what was sent while it was down: its
/// session stayed with the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_gets_what_arrived_while_it_was_down() {
    let q = unique("away");
    let db = TestDb::new(Backend::Sqlite).await;
    let name = unique("host");
    let config = || {
        let mut config = Config {
            routes: vec![route(
                "away",
                format!("mqtt:{q}.in"),
                format!("local:{q}.out"),
            )],
            ..Config::default()
        };
        config.server.name = Some(name.clone());
        config.connections.insert("mqtt".into(), mqtt());
        config
    };
    let (host, _) = support::start_host(&db, config()).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    all_running(&client, &format!("http://{}", host.addr)).await;
    host.stop().await;

    let mut plain = Plain::connect(&support::mqtt_url()).await;
    plain
        .publish_all((0..50).map(|i| numbered(&format!("{q}.in"), i)).collect())
        .await;

    let (host, _) = support::start_host(&db, config()).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    local_reaches(&client, &base, &format!("{q}.out"), 50).await;
    host.stop().await;
}

/// A Mosquitto of the test's own, on a free port, with its store in a folder of its own;
/// killed when dropped.
struct Broker {
    child: Option<std::process::Child>,
    url: String,
    dir: tempfile::TempDir,
}

impl Broker {
    async fn start(extra: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        // Mosquitto started as root runs as `mosquitto`, which must write its store here.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = support::free_port();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\npersistence true\npersistence_location {}/\n{extra}\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut broker = Broker {
            child: None,
            url: format!("mqtt://127.0.0.1:{port}"),
            dir,
        };
        broker.run().await;
        broker
    }

    async fn run(&mut self) {
        let binary = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = std::process::Command::new(binary)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto runs (./dev test installs it)");
        self.child = Some(child);
        let port = port_of(&self.url);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mosquitto did not listen on {port}");
    }

    /// Stops it as a service manager would (SIGTERM: it saves its sessions and messages).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The payloads in the host's local `queue` (up to 1,000).
async fn local_payloads(client: &reqwest::Client, base: &str, queue: &str) -> Vec<String> {
    let found = support::get_json(
        client,
        &format!("{base}/api/v1/queues/local/{queue}/messages?count=1000"),
    )
    .await;
    found
        .as_array()
        .unwrap_or_else(|| panic!("{found}"))
        .iter()
        .map(|m| m["payload"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The broker is stopped twice while a route moves 600 messages, each time right after a
/// batch was sent (some still waiting with the broker for the host, some in the host's
/// hands): every message arrives. A restarted Mosquitto 2.0 brings back a session's messages
/// but not its shared subscriptions, so a topic has no reader until the host is back and
/// subscribes again: each batch after a restart is sent once a probe has come through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_broker_restarts_mid_stream() {
    let mut broker = Broker::start("allow_anonymous true").await;
    let q = unique("restart");
    let out = format!("{q}.out");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![route(
            "restart",
            format!("mqtt:{q}.in"),
            format!("local:{out}"),
        )],
        ..Config::default()
    };
    config.connections.insert(
        "mqtt".into(),
        ConnectionConfig::Mqtt(Box::new(mqtt_at(&broker.url))),
    );
    let (host, _) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;
    let total = 600;
    for round in 0..3 {
        let mut plain = Plain::connect(&broker.url).await;
        if round > 0 {
            // The host is back when a probe goes through its route.
            let mut through = false;
            for k in 0..300 {
                let probe = (
                    format!("{q}.in"),
                    format!("probe {round}.{k}").into_bytes(),
                    PublishProperties::default(),
                    false,
                );
                plain.publish_all(vec![probe]).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let payloads = local_payloads(&client, &base, &out).await;
                if payloads
                    .iter()
                    .any(|p| p.starts_with(&format!("PROBE {round}.")))
                {
                    through = true;
                    break;
                }
            }
            assert!(
                through,
                "the host came back after the broker's restart {round}"
            );
        }
        plain
            .publish_all(
                (round * 200..(round + 1) * 200)
                    .map(|i| numbered(&format!("{q}.in"), i))
                    .collect(),
            )
            .await;
        drop(plain);
        if round < 2 {
            broker.stop();
            broker.run().await;
        }
    }
    // Duplicates are allowed (at least once); none may be missing.
    let expected: std::collections::BTreeSet<String> =
        (0..total).map(|i| format!("ORDER {i}")).collect();
    let mut missing = expected.len();
    for _ in 0..600 {
        let payloads: std::collections::BTreeSet<String> = local_payloads(&client, &base, &out)
            .await
            .into_iter()
            .collect();
        missing = expected.difference(&payloads).count();
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(missing, 0, "every message arrived");
    host.stop().await;
}

/// A broker that demands a password lets the right one in, refuses a wrong one without
/// showing it, and the definition shown hides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_demands_a_password_lets_the_right_one_in() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwords");
    support::run_in(
        dir.path(),
        &[
            "mosquitto_passwd",
            "-b",
            "-c",
            passwords.to_str().unwrap(),
            "wharf",
            "s3cret-pass",
        ],
    );
    let broker = Broker::start(&format!(
        "allow_anonymous false\npassword_file {}",
        passwords.display()
    ))
    .await;
    let db = TestDb::new(Backend::Sqlite).await;
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let with = |password: &str| MqttConfig {
        user: Some("wharf".into()),
        password: Some(password.into()),
        ..mqtt_at(&broker.url)
    };
    let spec = ConnectionConfig::Mqtt(Box::new(with("s3cret-pass")));
    spec.check("").unwrap();
    let shown = serde_json::to_string(&spec.redacted()).unwrap();
    assert!(
        !shown.contains("s3cret-pass") && shown.contains("***"),
        "{shown}"
    );
    let tested = spec.test("secured", &store).await;
    assert!(tested.ok, "{}", tested.detail);

    let mqtt =
        wharf::broker::mqtt::MqttBroker::start("secured", with("s3cret-pass"), "pw-test").unwrap();
    mqtt.started().await.unwrap();
    let mut consumer = mqtt
        .consume("signed.in", wharf::broker::ConsumeOptions::new(1))
        .await
        .unwrap();
    let mut msg = wharf::message::Message::new("", b"signed in".to_vec());
    msg.id = "m-1".into();
    mqtt.send("signed.in", msg).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery")
        .unwrap();
    assert_eq!(delivery.message.payload, b"signed in");
    assert_eq!(delivery.message.id, "m-1");
    delivery.ack.ack().await.unwrap();
    consumer.close().await;
    mqtt.close().await;

    let refused = ConnectionConfig::Mqtt(Box::new(with("wrong-pass")))
        .test("secured", &store)
        .await;
    assert!(!refused.ok, "a wrong password was let in");
    assert!(!refused.detail.contains("wrong-pass"), "{}", refused.detail);
}

/// MQTT 3.1.1 carries the payload: a route between two topics of a 3.1.1 connection moves an
/// independent client's messages, and a request (which needs a reply address) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_carries_payloads() {
    let q = unique("v311");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![route("old", format!("old:{q}.in"), format!("old:{q}.out"))],
        ..Config::default()
    };
    config.connections.insert(
        "old".into(),
        ConnectionConfig::Mqtt(Box::new(MqttConfig {
            protocol: wharf::broker::mqtt::config::Protocol::V311,
            ..mqtt_at(&support::mqtt_url())
        })),
    );
    let (host, _) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;
    let mut plain = Plain::connect(&support::mqtt_url()).await;
    plain.subscribe(&format!("{q}.out")).await;
    plain
        .publish_all((0..20).map(|i| numbered(&format!("{q}.in"), i)).collect())
        .await;
    let outputs = plain.read(20).await;
    for (i, message) in outputs.iter().enumerate() {
        assert_eq!(message.payload, format!("ORDER {i}").as_bytes());
    }
    let call = client
        .post(format!("{base}/api/v1/rpc/old/{q}.in?timeout_ms=2000"))
        .json(&json!({ "payload": "x" }))
        .send()
        .await
        .unwrap();
    let body = call.text().await.unwrap();
    assert!(body.contains("MQTT 3.1.1"), "{body}");
    host.stop().await;
}

/// Events on MQTT: two services subscribed to `Booking.*` each get both Booking events and no
/// `Order.created`, and a plain subscriber of `{exchange}/Booking/+` sees the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_each_get_every_booking_event_on_mqtt() {
    let exchange = unique("events");
    let (billing, audit) = (unique("billing"), unique("audit"));
    let db = TestDb::new(Backend::Sqlite).await;
    let subscriptions = support::events::booking_subscriptions(&billing, &audit);
    let mut config = Config {
        events: EventsConfig {
            connection: "mqtt".into(),
            exchange: exchange.clone(),
            prefix: None,
        },
        subscriptions,
        ..Config::default()
    };
    config.connections.insert("mqtt".into(), mqtt());
    let (host, broker) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;
    let mut plain = Plain::connect(&support::mqtt_url()).await;
    plain.subscribe(&format!("{exchange}/Booking/+")).await;

    support::events::publish_three(&client, &base).await;
    support::events::each_service_got_the_booking_events(&broker).await;
    let mut seen: Vec<String> = plain
        .read(2)
        .await
        .iter()
        .map(|p| String::from_utf8_lossy(&p.topic).into_owned())
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            format!("{exchange}/Booking/created"),
            format!("{exchange}/Booking/updated")
        ]
    );
    host.stop().await;
}

/// Calls through the API to a topic on MQTT are answered by the route that reads it, each
/// with its own reply (MQTT 5's response topic and correlation data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_over_mqtt_gets_its_reply() {
    let q = unique("lookup");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![RouteConfig {
            name: "lookup".into(),
            from: format!("mqtt:{q}"),
            through: vec!["echo".into()],
            concurrency: 8,
            ..RouteConfig::default()
        }],
        ..Config::default()
    };
    config.connections.insert("mqtt".into(), mqtt());
    let (host, _) = support::start_host(&db, config).await;
    let client = support::client_with_token(&support::local_token(host.addr));
    let base = format!("http://{}", host.addr);
    all_running(&client, &base).await;
    support::fifty_calls_each_get_their_own_reply(&client, &base, &format!("mqtt:{q}")).await;
    host.stop().await;
}

/// A broker on TLS that asks for a client certificate: a connection with the private CA and
/// the client's certificate carries a message there and back; one without the certificate is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    support::make_certificates(certs.path());
    // Mosquitto started as root reads them as `mosquitto`.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(certs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in ["ca.pem", "server.pem", "server.key"] {
        std::fs::set_permissions(
            certs.path().join(file),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let at = |file: &str| certs.path().join(file);
    let broker = Broker::start(&format!(
        "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true",
        at("ca.pem").display(),
        at("server.pem").display(),
        at("server.key").display()
    ))
    .await;
    let url = broker.url.replace("mqtt://127.0.0.1", "mqtts://localhost");
    let with = |cert: bool| MqttConfig {
        tls: Some(wharf::tls::TlsConfig {
            ca: Some(at("ca.pem")),
            cert: cert.then(|| at("client.pem")),
            key: cert.then(|| at("client.key")),
            pkcs12: None,
            pkcs12_password: String::new(),
        }),
        ..mqtt_at(&url)
    };
    let db = TestDb::new(Backend::Sqlite).await;
    let store = wharf::store::Store::open(&db.url).await.unwrap();
    let spec = ConnectionConfig::Mqtt(Box::new(with(true)));
    spec.check("").unwrap();
    let tested = spec.test("tls", &store).await;
    assert!(tested.ok, "{}", tested.detail);
    let refused = ConnectionConfig::Mqtt(Box::new(with(false)))
        .test("tls", &store)
        .await;
    assert!(!refused.ok, "a client without its certificate was let in");

    let mqtt = wharf::broker::mqtt::MqttBroker::start("tls", with(true), "tls-test").unwrap();
    mqtt.started().await.unwrap();
    let mut consumer = mqtt
        .consume("secure.in", wharf::broker::ConsumeOptions::new(1))
        .await
        .unwrap();
    mqtt.send(
        "secure.in",
        wharf::message::Message::new("", b"over tls".to_vec()),
    )
    .await
    .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery")
        .unwrap();
    assert_eq!(delivery.message.payload, b"over tls");
    delivery.ack.ack().await.unwrap();
    consumer.close().await;
    mqtt.close().await;
}

/// A host lets go of a topic it no longer reads: after its route is deleted, and after a take
/// (a passing reader), its session holds no share of the topic, so another host's route on
/// it gets every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_route_and_a_take_leave_no_share_behind() {
    let q = unique("letgo");
    let db_a = TestDb::new(Backend::Sqlite).await;
    let mut config = Config::default();
    config.routes.clear();
    config.server.name = Some(unique("a"));
    config.connections.insert("mqtt".into(), mqtt());
    let (a, _) = support::start_host(&db_a, config).await;
    let client_a = support::client_with_token(&support::local_token(a.addr));
    let base_a = format!("http://{}", a.addr);
    let made = client_a
        .post(format!("{base_a}/api/v1/routes"))
        .json(&json!({
            "name": "passing", "from": format!("mqtt:{q}.in"),
            "through": ["uppercase"], "to": format!("local:{q}.out"),
        }))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.text().await.unwrap());
    let gone = client_a
        .delete(format!("{base_a}/api/v1/routes/passing"))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.text().await.unwrap());
    let took = client_a
        .post(format!(
            "{base_a}/api/v1/queues/mqtt/{q}.in/take?count=1&timeout_ms=200"
        ))
        .send()
        .await
        .unwrap();
    assert!(took.status().is_success(), "{}", took.text().await.unwrap());

    let db_b = TestDb::new(Backend::Sqlite).await;
    let mut config = Config {
        routes: vec![route(
            "kept",
            format!("mqtt:{q}.in"),
            format!("local:{q}.out"),
        )],
        ..Config::default()
    };
    config.server.name = Some(unique("b"));
    config.connections.insert("mqtt".into(), mqtt());
    let (b, _) = support::start_host(&db_b, config).await;
    let client_b = support::client_with_token(&support::local_token(b.addr));
    let base_b = format!("http://{}", b.addr);
    all_running(&client_b, &base_b).await;
    // The deleted route's session lets go once its runner has closed: give it that moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut plain = Plain::connect(&support::mqtt_url()).await;
    plain
        .publish_all((0..40).map(|i| numbered(&format!("{q}.in"), i)).collect())
        .await;
    local_reaches(&client_b, &base_b, &format!("{q}.out"), 40).await;
    a.stop().await;
    b.stop().await;
}
