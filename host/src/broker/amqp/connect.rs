//! Keeping the connection up: the URLs tried in turn, TLS, the topology declared and the
//! publishing channels opened, reconnecting with backoff when it drops.

use super::*;

pub(super) fn load_tls(name: &str, config: &AmqpConfig) -> Result<OwnedTLSConfig, BrokerError> {
    let Some(tls) = &config.tls else {
        return Ok(OwnedTLSConfig::default());
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            BrokerError::Broker(format!(
                "connections.{name}.tls: cannot read {}: {e}",
                path.display()
            ))
        })
    };
    let cert_chain = match &tls.ca {
        Some(path) => Some(String::from_utf8_lossy(&read(path)?).into_owned()),
        None => None,
    };
    let identity = match (&tls.pkcs12, &tls.cert, &tls.key) {
        (Some(bundle), _, _) => Some(OwnedIdentity::PKCS12 {
            der: read(bundle)?,
            password: tls.pkcs12_password.clone(),
        }),
        (None, Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read(cert)?,
            key: read(key)?,
        }),
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

pub(super) async fn open_publish_channel(connection: &Connection) -> Result<Channel, BrokerError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| amqp_error("opening a publishing channel", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| amqp_error("enabling publisher confirms", e))?;
    Ok(channel)
}

/// Why one attempt to connect failed; `permanent` when retrying cannot help.
pub(super) struct ConnectFailure {
    error: String,
    permanent: bool,
}

/// Connects once to connection `name`, declares its topology and disconnects: `wharf schema
/// apply`. Returns the broker it reached and what each item needed.
pub async fn declare_once(
    name: &str,
    config: AmqpConfig,
    topology: Topology,
) -> Result<(String, Vec<(String, Outcome)>), BrokerError> {
    let tls = load_tls(name, &config)?;
    let (connection, url, report) = connect(name, &config, &tls, &topology)
        .await
        .map_err(|failure| BrokerError::Broker(failure.error))?;
    let _ = connection.close(200, "schema applied".into()).await;
    Ok((url, report))
}

/// Connects to the first URL that answers and declares the topology; returns the connection,
/// the URL (password hidden) and what each item of the topology needed.
pub(super) async fn connect(
    name: &str,
    config: &AmqpConfig,
    tls: &OwnedTLSConfig,
    topology: &Topology,
) -> Result<(Connection, String, Vec<(String, Outcome)>), ConnectFailure> {
    let mut urls = config.all_urls();
    if config.shuffle {
        use rand::seq::SliceRandom as _;
        urls.shuffle(&mut rand::rng());
    }
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let mut errors = Vec::new();
    for url in urls {
        let shown = redact(&url);
        let mut uri: lapin::uri::AMQPUri = match url.parse() {
            Ok(uri) => uri,
            Err(e) => {
                errors.push(format!("{shown}: {e}"));
                continue;
            }
        };
        uri.query.heartbeat = Some(config.heartbeat_s);
        uri.query.connection_timeout = Some(config.connect_timeout_ms);
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("wharf {} (pid {})", name, std::process::id()).into());
        let runtime = match lapin::runtime::default_runtime() {
            Ok(runtime) => runtime,
            Err(e) => {
                errors.push(format!("{shown}: {e}"));
                continue;
            }
        };
        let attempt = tokio::time::timeout(
            timeout,
            Connection::connect_uri_with_config(uri, properties, tls.clone(), runtime),
        )
        .await;
        let connection = match attempt {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => {
                errors.push(format!("{shown}: {e}"));
                continue;
            }
            Err(_) => {
                errors.push(format!(
                    "{shown}: no answer within {} ms",
                    timeout.as_millis()
                ));
                continue;
            }
        };
        let report = topology
            .apply(&connection)
            .await
            .map_err(|e| ConnectFailure {
                permanent: e.is_permanent(),
                error: format!("connections.{name}: {e}"),
            });
        let report = match report {
            Ok(report) => report,
            Err(failure) => {
                let _ = connection.close(200, "topology".into()).await;
                return Err(failure);
            }
        };
        return Ok((connection, shown, report));
    }
    Err(ConnectFailure {
        error: errors.join("; "),
        permanent: false,
    })
}

impl Live {
    /// A connection made live: its `count` publishing channels opened in confirm mode.
    pub(super) async fn open(
        connection: Connection,
        url: String,
        count: usize,
    ) -> Result<Live, BrokerError> {
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count {
            channels.push(open_publish_channel(&connection).await?);
        }
        Ok(Live {
            connection,
            url,
            channels: Mutex::new(channels),
            next: AtomicUsize::new(0),
        })
    }
}

/// The task behind every [`AmqpBroker`]: connect, watch, reconnect, until the handle is gone.
pub(super) async fn keep_connected(inner: std::sync::Weak<Inner>) {
    let initial = Duration::from_millis(100);
    let mut backoff: Option<crate::backoff::Backoff> = None;
    let mut attempts = 0u32;
    let mut since = Instant::now();
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if matches!(*strong.link.borrow(), Link::Closed) {
            return;
        }
        attempts += 1;
        let topology = strong.topology_now();
        let live = match connect(&strong.name, &strong.config, &strong.tls, &topology).await {
            Ok((connection, url, _)) => Live::open(connection, url, strong.config.channels)
                .await
                .map_err(|e| ConnectFailure {
                    error: e.to_string(),
                    permanent: false,
                }),
            Err(failure) => Err(failure),
        };
        match live {
            Ok(live) => {
                tracing::info!(connection = %strong.name, url = %live.url, "connected to the AMQP broker");
                let live = Arc::new(live);
                let mut events = live.connection.events_listener();
                let replaced = strong.link.send_if_modified(|link| {
                    if matches!(link, Link::Closed) {
                        return false;
                    }
                    *link = Link::Up(live.clone());
                    true
                });
                if !replaced {
                    let _ = live.connection.close(200, "wharf is stopping".into()).await;
                    return;
                }
                backoff = None;
                let mut closed = strong.link.subscribe();
                drop(strong);
                // Watch until the connection drops or the broker handle is closed.
                let error = loop {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(lapin::Event::Error(e)) => break Some(e.to_string()),
                            Some(_) => {}
                            None => break None,
                        },
                        changed = closed.changed() => {
                            if changed.is_err() || matches!(*closed.borrow(), Link::Closed) {
                                return;
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if !live.connection.status().connected() {
                                break None;
                            }
                        }
                    }
                };
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                let error = error.unwrap_or_else(|| "the connection closed".into());
                tracing::warn!(connection = %strong.name, %error, "AMQP connection lost; reconnecting");
                since = Instant::now();
                attempts = 0;
                strong.link.send_if_modified(|link| {
                    if matches!(link, Link::Closed) {
                        return false;
                    }
                    *link = Link::Down {
                        since,
                        error: Some(error.clone()),
                        permanent: false,
                        attempts: attempts.max(1),
                    };
                    true
                });
                continue;
            }
            Err(failure) => {
                let max = Duration::from_millis(strong.config.reconnect_max_ms);
                let wait = backoff
                    .get_or_insert_with(|| crate::backoff::Backoff::new(initial, max))
                    .next_delay();
                if failure.permanent {
                    tracing::error!(connection = %strong.name, error = %failure.error, retry_in_ms = wait.as_millis() as u64, "cannot set up the AMQP connection");
                } else {
                    tracing::warn!(connection = %strong.name, error = %failure.error, retry_in_ms = wait.as_millis() as u64, "cannot connect to the AMQP broker");
                }
                strong.link.send_if_modified(|link| {
                    if matches!(link, Link::Closed) {
                        return false;
                    }
                    *link = Link::Down {
                        since,
                        error: Some(failure.error.clone()),
                        permanent: failure.permanent,
                        attempts,
                    };
                    true
                });
                let mut closed = strong.link.subscribe();
                drop(strong);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = closed.wait_for(|l| matches!(l, Link::Closed)) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports nothing listens on, each its own.
    fn closed_ports(count: usize) -> Vec<u16> {
        let listeners: Vec<std::net::TcpListener> = (0..count)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    }

    /// The order `config`'s brokers were tried in, read from the error naming each.
    async fn tried(config: &AmqpConfig, ports: &[u16]) -> Vec<u16> {
        let tls = OwnedTLSConfig::default();
        let failure = match connect("t", config, &tls, &Topology::default()).await {
            Err(failure) => failure,
            Ok(_) => panic!("nothing listens there"),
        };
        let mut order: Vec<(usize, u16)> = ports
            .iter()
            .map(|port| {
                let at = failure
                    .error
                    .find(&format!(":{port}/"))
                    .unwrap_or_else(|| panic!("{port} tried: {}", failure.error));
                (at, *port)
            })
            .collect();
        order.sort();
        order.into_iter().map(|(_, port)| port).collect()
    }

    /// PDC's shuffled AMQP URLs: with `shuffle` the brokers are tried in a random order each
    /// time, so clients spread over a cluster; without it, in the order given, `url` first.
    #[tokio::test]
    async fn shuffle_tries_the_brokers_in_a_random_order() {
        let ports = closed_ports(4);
        let urls: Vec<String> = ports
            .iter()
            .map(|port| format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
            .collect();
        let mut config = AmqpConfig {
            url: Some(urls[0].clone()),
            urls: urls[1..].to_vec(),
            connect_timeout_ms: 2_000,
            ..AmqpConfig::default()
        };
        for _ in 0..3 {
            assert_eq!(tried(&config, &ports).await, ports, "in the order given");
        }
        config.shuffle = true;
        let mut orders = std::collections::HashSet::new();
        for _ in 0..20 {
            let order = tried(&config, &ports).await;
            let mut sorted = order.clone();
            sorted.sort();
            let mut all = ports.clone();
            all.sort();
            assert_eq!(sorted, all, "each broker tried once");
            orders.insert(order);
        }
        // 24 orders are possible; 20 draws all alike would happen once in 24^19.
        assert!(orders.len() > 1, "always {orders:?}");
    }
}
