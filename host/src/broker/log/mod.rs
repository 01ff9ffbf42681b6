//! `kind = "log"`: a connection that writes each message it is sent to the host's log, as
//! PDC's default `DummyMessenger` did. Nothing is delivered anywhere: it is for a first run,
//! a development machine or a dry run of a pipeline, where what would have been sent is
//! what one wants to see. It carries model events too (`[events] connection = "…"`), so a
//! service's events show in the log with no broker at all; it cannot be read from, so no
//! route or subscription takes from it.
//!
//! Each message is one line at the connection's `level` (target `wharf::log`): the
//! connection, the address, the id, the routing key, the content type and the size; the
//! payload too (up to 1 KiB, as text where it is UTF-8) when `payload` says so.

pub mod config;
mod kind;

use crate::broker::{BrokerError, ConsumeOptions, Consumer, Depth, Transport, check_message};
use crate::message::Message;
use config::{LogConfig, LogLevel};
use std::time::Duration;

/// The most payload bytes a line shows.
const SHOWN_PAYLOAD: usize = 1024;

/// A connection that logs what it is sent.
pub struct LogBroker {
    name: String,
    config: LogConfig,
}

impl LogBroker {
    pub fn new(name: &str, config: LogConfig) -> LogBroker {
        LogBroker {
            name: name.to_owned(),
            config,
        }
    }

    fn write(&self, address: &str, msg: &Message, delay: Option<Duration>) {
        let payload = self.config.payload.then(|| shown(&msg.payload));
        let delay_ms = delay.map(|d| d.as_millis() as u64);
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "wharf::log",
                    connection = %self.name,
                    address,
                    id = %msg.id,
                    topic = %msg.topic,
                    content_type = msg.content_type.as_deref().unwrap_or(""),
                    bytes = msg.payload.len(),
                    delay_ms,
                    payload,
                    "message"
                )
            };
        }
        match self.config.level {
            LogLevel::Debug => line!(debug),
            LogLevel::Info => line!(info),
            LogLevel::Warn => line!(warn),
        }
    }

    fn unreadable(&self, what: &str) -> BrokerError {
        BrokerError::Unsupported(format!(
            "connection `{}` is a log: it writes what it is sent to the host's log and holds nothing to {what}",
            self.name
        ))
    }
}

/// The payload as a line shows it: text where it is UTF-8, else its length; cut to 1 KiB.
fn shown(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(SHOWN_PAYLOAD)];
    let more = if payload.len() > SHOWN_PAYLOAD {
        "…"
    } else {
        ""
    };
    match std::str::from_utf8(cut) {
        Ok(text) => format!("{}{more}", text.escape_debug()),
        Err(_) => format!("({} bytes, not UTF-8)", payload.len()),
    }
}

#[async_trait::async_trait]
impl Transport for LogBroker {
    async fn send(&self, address: &str, msg: Message) -> Result<(), BrokerError> {
        check_message(&msg)?;
        self.write(address, &msg, None);
        Ok(())
    }

    async fn send_delayed(
        &self,
        address: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        check_message(&msg)?;
        self.write(address, &msg, Some(delay));
        Ok(())
    }

    async fn consume(
        &self,
        _address: &str,
        _options: ConsumeOptions,
    ) -> Result<Consumer, BrokerError> {
        Err(self.unreadable("consume"))
    }

    async fn depth(&self, _address: &str) -> Result<Depth, BrokerError> {
        Err(self.unreadable("count"))
    }

    async fn peek(
        &self,
        _address: &str,
        _count: usize,
        _max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        Err(self.unreadable("show"))
    }

    async fn purge(&self, _address: &str) -> Result<u64, BrokerError> {
        Err(self.unreadable("purge"))
    }

    async fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Events are logged like any message, under `exchange/key`.
    async fn declare_events(&self, _exchange: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "log"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_text_escaped_and_cut_and_bytes_by_their_length() {
        assert_eq!(shown(b"hi\nthere"), "hi\\nthere");
        assert_eq!(shown(&[0xff, 0xfe]), "(2 bytes, not UTF-8)");
        let long = shown(&vec![b'a'; 5_000]);
        assert_eq!(long.chars().count(), SHOWN_PAYLOAD + 1);
        assert!(long.ends_with('…'));
    }
}
