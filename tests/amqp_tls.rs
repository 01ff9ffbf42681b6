//! AMQP over TLS with a private CA and a client certificate, as PDC's brokers required,
//! against a RabbitMQ node of its own: started for this test on free ports with a TLS-only
//! listener that demands a client certificate, and stopped at the end. Certificates are made
//! with `openssl` for the run. Being its own node, it is also where a broker restart is
//! tested without disturbing the other AMQP tests.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use wharf::broker::amqp::AmqpConfig;
use wharf::broker::amqp::Topology;
use wharf::broker::amqp::config::AmqpQueueConfig;
use wharf::broker::{Address, AmqpBroker, Connections};
use wharf::message::Message;
use wharf::tls::TlsConfig;

/// A RabbitMQ node of this test's own; stopped when dropped.
struct Node {
    name: String,
    port: u16,
    dir: PathBuf,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let port = support::free_port();
        let name = format!("wharftls{}@localhost", std::process::id());
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp = none\nlisteners.ssl.default = {port}\n\
                 ssl_options.cacertfile = {d}/ca.pem\nssl_options.certfile = {d}/server.pem\n\
                 ssl_options.keyfile = {d}/server.key\nssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\nloopback_users = none\n",
                d = dir.display()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        // The server drops to the `rabbitmq` user: let it read the keys and write its data.
        support::run_in(dir, &["chmod", "-R", "a+rwX", "."]);
        support::run_in(dir, &["chmod", "a+rwx", dir.to_str().unwrap()]);
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &name)
            .env("RABBITMQ_DIST_PORT", support::free_port().to_string())
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("node.pid"))
            .status()
            .expect("rabbitmq-server is needed for this test (./dev test starts RabbitMQ)");
        assert!(status.success(), "rabbitmq-server -detached failed");
        let node = Node {
            name,
            port,
            dir: dir.to_owned(),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the TLS RabbitMQ node did not listen on {port}; see {}/log",
                node.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        node
    }
}

impl Node {
    fn ctl(&self, command: &str) {
        let out = Command::new("rabbitmqctl")
            .args(["-n", &self.name, command])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rabbitmqctl {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.name, "stop"])
            .output();
    }
}

fn config(node: &Node, dir: &Path, client_certificate: bool) -> AmqpConfig {
    AmqpConfig {
        url: Some(format!("amqps://guest:guest@localhost:{}/%2f", node.port)),
        connect_timeout_ms: 5_000,
        tls: Some(TlsConfig {
            ca: Some(dir.join("ca.pem")),
            cert: client_certificate.then(|| dir.join("client.pem")),
            key: client_certificate.then(|| dir.join("client.key")),
            pkcs12: None,
            pkcs12_password: String::new(),
        }),
        ..AmqpConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_broker_with_a_private_ca_and_client_certificates() {
    let dir = tempfile::Builder::new()
        .prefix("wharf-tls-")
        .tempdir_in("/tmp")
        .unwrap();
    support::make_certificates(dir.path());
    let node = Node::start(dir.path());
    let topology = Topology {
        queues: vec![AmqpQueueConfig::named("tls.q")],
        ..Topology::default()
    };

    // With the client certificate: connected, and a message goes round.
    let broker =
        AmqpBroker::start("secure", config(&node, dir.path(), true), topology.clone()).unwrap();
    broker.wait_first_attempt().await.unwrap();
    broker
        .check()
        .expect("connected over TLS with a client certificate");
    let connections = Connections::default();
    connections.insert("secure", wharf::broker::Producer::new(broker.clone()));
    let address = Address::parse("secure:tls.q").unwrap();
    let sent = Message::new("tls.q", b"over tls".to_vec());
    connections
        .producer(&address)
        .unwrap()
        .send("tls.q", sent.clone())
        .await
        .unwrap();
    let mut consumer = connections.consume(&address, 1).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.message.id, sent.id);
    assert_eq!(delivery.message.payload, b"over tls");
    delivery.ack.ack().await.unwrap();
    consumer.close().await;

    // A broker restart: a persistent message sent before it is there after it, the
    // connection reports itself down meanwhile and comes back by itself.
    let kept = Message::new("tls.q", b"kept".to_vec());
    connections
        .producer(&address)
        .unwrap()
        .send("tls.q", kept.clone())
        .await
        .unwrap();
    node.ctl("stop_app");
    let started = Instant::now();
    while broker.check().is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the drop was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.ctl("start_app");
    let started = Instant::now();
    while let Err(problem) = broker.check() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no reconnect after the restart: {problem}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut consumer = connections.consume(&address, 1).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        delivery.message.id, kept.id,
        "the message survived the restart"
    );
    delivery.ack.ack().await.unwrap();
    consumer.close().await;
    connections.close().await;

    // The same identity as a PKCS#12 bundle with a password.
    support::run_in(
        dir.path(),
        &[
            "openssl",
            "pkcs12",
            "-export",
            "-out",
            "client.p12",
            "-inkey",
            "client.key",
            "-in",
            "client.pem",
            "-passout",
            "pass:bunnies",
        ],
    );
    let mut bundled = config(&node, dir.path(), false);
    if let Some(tls) = bundled.tls.as_mut() {
        tls.pkcs12 = Some(dir.path().join("client.p12"));
        tls.pkcs12_password = "bunnies".into();
    }
    let broker = AmqpBroker::start("bundled", bundled, topology.clone()).unwrap();
    broker.wait_first_attempt().await.unwrap();
    broker
        .check()
        .expect("connected with a PKCS#12 client identity");
    broker.close().await;

    // Without it, the broker refuses the connection, and the connection reports why.
    let refused = AmqpBroker::start("secure", config(&node, dir.path(), false), topology).unwrap();
    refused.wait_first_attempt().await.unwrap();
    let problem = refused.check().unwrap_err();
    assert!(problem.contains(&node.port.to_string()), "{problem}");
    refused.close().await;
    drop(node);
}
