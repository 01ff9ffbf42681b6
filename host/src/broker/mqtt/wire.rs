//! MQTT 3.1.1 and 5 behind one face: `rumqttc` has a client for each, with the same shape
//! and different types. A [`Session`] is one client and the task that drives its event
//! loop, reporting what happens as [`Event`]s; the rest of the transport speaks only this.

use super::config::{MqttConfig, Protocol};
use rumqttc::v5::mqttbytes::v5 as m5;
use rumqttc::{Outgoing, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

pub use m5::PublishProperties;

/// A client of either version. Cheap to clone.
#[derive(Clone)]
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// A message as either version delivered it (kept whole: it is what an ack names).
#[derive(Debug, Clone)]
pub enum Publish {
    V4(rumqttc::Publish),
    V5(m5::Publish),
}

impl Publish {
    pub fn topic(&self) -> String {
        match self {
            Publish::V4(p) => p.topic.clone(),
            Publish::V5(p) => String::from_utf8_lossy(&p.topic).into_owned(),
        }
    }
    pub fn payload(&self) -> &[u8] {
        match self {
            Publish::V4(p) => &p.payload,
            Publish::V5(p) => &p.payload,
        }
    }
    pub fn pkid(&self) -> u16 {
        match self {
            Publish::V4(p) => p.pkid,
            Publish::V5(p) => p.pkid,
        }
    }
    /// Whether the broker sent it before (a resend after a reconnect).
    pub fn dup(&self) -> bool {
        match self {
            Publish::V4(p) => p.dup,
            Publish::V5(p) => p.dup,
        }
    }
    pub fn retain(&self) -> bool {
        match self {
            Publish::V4(p) => p.retain,
            Publish::V5(p) => p.retain,
        }
    }
    /// Its MQTT 5 properties (none in 3.1.1).
    pub fn properties(&self) -> Option<&PublishProperties> {
        match self {
            Publish::V4(_) => None,
            Publish::V5(p) => p.properties.as_ref(),
        }
    }
}

/// What a session's event loop reports.
#[derive(Debug)]
pub enum Event {
    /// Connected (again); whether the broker still had the session.
    Connected { session_present: bool },
    /// A message arrived.
    Message(Publish),
    /// A publish went out under this packet id (again, after a reconnect).
    Sent(u16),
    /// The broker confirmed (or refused, saying why) the publish with this packet id.
    Acked { pkid: u16, refused: Option<String> },
    /// The broker answered a subscribe: `Some` says why it refused.
    Subscribed(Option<String>),
    /// The connection failed; the loop connects again.
    Down(String),
}

/// One client, its event loop driven by a task of its own (stopped when this is dropped or
/// closed).
pub struct Session {
    pub client: Client,
    task: tokio::task::JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Session {
    /// Disconnects for good: the loop connects no more (a persistent session stays with the
    /// broker, holding what arrives for it).
    pub async fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.client.disconnect().await;
        // What was asked before (an UNSUBSCRIBE) goes out ahead of the DISCONNECT; wait for
        // it, a little, before the session can be dropped (which cuts the connection).
        for _ in 0..100 {
            if self.task.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a session connects.
pub struct Dial<'a> {
    pub config: &'a MqttConfig,
    pub client_id: String,
    /// A clean session forgets everything at a disconnect; otherwise the broker keeps the
    /// session's subscriptions and unacked messages for the client id.
    pub clean: bool,
    /// Messages the broker may have unacked with this client at once (MQTT 5).
    pub receive: u16,
    /// How many events may wait for their reader before the loop waits.
    pub backlog: usize,
}

/// Starts a session: connects in the background (and again after each failure, waiting
/// longer each time up to 5 s) and reports to the returned receiver.
pub fn start(dial: Dial<'_>) -> Result<(Session, mpsc::Receiver<Event>), String> {
    let config = dial.config;
    let (host, port, tls) = config.endpoint()?;
    let transport = match (tls, &config.tls) {
        (false, None) => None,
        (_, tls_config) => {
            let rustls =
                crate::tls::client_config(tls_config.as_ref()).map_err(|e| e.to_string())?;
            Some(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(rustls)),
            ))
        }
    };
    let credentials = config.credentials();
    let keep_alive = Duration::from_secs(config.keep_alive_s);
    let max_packet = config.max_packet_bytes;
    let (tx, rx) = mpsc::channel(dial.backlog.max(16));
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let (client, task) = match config.protocol {
        Protocol::V311 => {
            let mut options = rumqttc::MqttOptions::new(dial.client_id, host, port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_session(dial.clean)
                .set_manual_acks(true)
                .set_max_packet_size(max_packet, max_packet)
                .set_request_channel_capacity(1024);
            if let Some((user, password)) = credentials {
                options.set_credentials(user, password);
            }
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, mut events) = rumqttc::AsyncClient::new(options, 1024);
            let stopped = stopped.clone();
            let task = tokio::spawn(async move {
                let mut wait = Duration::from_millis(100);
                loop {
                    let event = match events.poll().await {
                        Ok(rumqttc::Event::Incoming(packet)) => {
                            wait = Duration::from_millis(100);
                            from_v4(packet)
                        }
                        Ok(rumqttc::Event::Outgoing(Outgoing::Publish(pkid))) => {
                            Some(Event::Sent(pkid))
                        }
                        // Closed: what was asked before the DISCONNECT has gone out with it.
                        Ok(rumqttc::Event::Outgoing(Outgoing::Disconnect))
                            if stopped.load(Ordering::Relaxed) =>
                        {
                            return;
                        }
                        Ok(_) => None,
                        Err(_) if stopped.load(Ordering::Relaxed) => return,
                        Err(e) => Some(Event::Down(e.to_string())),
                    };
                    if !report(&tx, event, &mut wait).await {
                        return;
                    }
                }
            });
            (Client::V4(client), task)
        }
        Protocol::V5 => {
            let mut options = rumqttc::v5::MqttOptions::new(dial.client_id, host, port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_start(dial.clean)
                .set_manual_acks(true)
                .set_max_packet_size(Some(u32::try_from(max_packet).unwrap_or(u32::MAX)))
                .set_receive_maximum(Some(dial.receive.max(1)))
                .set_request_channel_capacity(1024);
            if !dial.clean {
                options.set_session_expiry_interval(Some(config.session_expiry_s));
            }
            if let Some((user, password)) = credentials {
                options.set_credentials(user, password);
            }
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, mut events) = rumqttc::v5::AsyncClient::new(options, 1024);
            let stopped = stopped.clone();
            let task = tokio::spawn(async move {
                let mut wait = Duration::from_millis(100);
                loop {
                    let event = match events.poll().await {
                        Ok(rumqttc::v5::Event::Incoming(packet)) => {
                            wait = Duration::from_millis(100);
                            from_v5(packet)
                        }
                        Ok(rumqttc::v5::Event::Outgoing(Outgoing::Publish(pkid))) => {
                            Some(Event::Sent(pkid))
                        }
                        // Closed: what was asked before the DISCONNECT has gone out with it.
                        Ok(rumqttc::v5::Event::Outgoing(Outgoing::Disconnect))
                            if stopped.load(Ordering::Relaxed) =>
                        {
                            return;
                        }
                        Ok(_) => None,
                        Err(_) if stopped.load(Ordering::Relaxed) => return,
                        Err(e) => Some(Event::Down(e.to_string())),
                    };
                    if !report(&tx, event, &mut wait).await {
                        return;
                    }
                }
            });
            (Client::V5(client), task)
        }
    };
    Ok((Session { client, task, stop }, rx))
}

/// Hands `event` on; after a failure, waits before the loop connects again. False when
/// nobody listens any more.
async fn report(tx: &mpsc::Sender<Event>, event: Option<Event>, wait: &mut Duration) -> bool {
    let Some(event) = event else {
        return !tx.is_closed();
    };
    let down = matches!(event, Event::Down(_));
    if tx.send(event).await.is_err() {
        return false;
    }
    if down {
        tokio::time::sleep(*wait).await;
        *wait = (*wait * 2).min(Duration::from_secs(5));
    }
    true
}

fn from_v4(packet: rumqttc::Packet) -> Option<Event> {
    use rumqttc::Packet;
    Some(match packet {
        Packet::ConnAck(c) => Event::Connected {
            session_present: c.session_present,
        },
        Packet::Publish(p) => Event::Message(Publish::V4(p)),
        Packet::PubAck(a) => Event::Acked {
            pkid: a.pkid,
            refused: None,
        },
        Packet::SubAck(s) => Event::Subscribed(
            s.return_codes
                .iter()
                .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                .then(|| "the broker refused the subscription".to_owned()),
        ),
        _ => return None,
    })
}

fn from_v5(packet: m5::Packet) -> Option<Event> {
    use m5::Packet;
    Some(match packet {
        Packet::ConnAck(c) => Event::Connected {
            session_present: c.session_present,
        },
        Packet::Publish(p) => Event::Message(Publish::V5(p)),
        Packet::PubAck(a) => Event::Acked {
            pkid: a.pkid,
            refused: match a.reason {
                m5::PubAckReason::Success | m5::PubAckReason::NoMatchingSubscribers => None,
                reason => Some(format!("{reason:?}")),
            },
        },
        Packet::SubAck(s) => Event::Subscribed(
            s.return_codes
                .iter()
                .find(|c| !matches!(c, m5::SubscribeReasonCode::Success(_)))
                .map(|c| format!("the broker refused the subscription: {c:?}")),
        ),
        _ => return None,
    })
}

impl Client {
    /// Queues a QoS 1 publish (MQTT 3.1.1 leaves `properties` out).
    pub async fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
        properties: PublishProperties,
        retain: bool,
    ) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .publish_bytes(topic, QoS::AtLeastOnce, retain, payload.into())
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .publish_with_properties(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    retain,
                    payload,
                    properties,
                )
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub async fn subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V4(c) => c.subscribe(filter, QoS::AtLeastOnce).await,
            Client::V5(c) => {
                return c
                    .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                    .await
                    .map_err(|e| e.to_string());
            }
        }
        .map_err(|e| e.to_string())
    }

    pub async fn unsubscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V4(c) => c.unsubscribe(filter).await.map_err(|e| e.to_string()),
            Client::V5(c) => c.unsubscribe(filter).await.map_err(|e| e.to_string()),
        }
    }

    /// Confirms a message to the broker (its PUBACK).
    pub async fn ack(&self, publish: &Publish) -> Result<(), String> {
        match (self, publish) {
            (Client::V4(c), Publish::V4(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Client::V5(c), Publish::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Err("a message acked on a client of the other protocol".into()),
        }
    }

    pub async fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
    }
}
