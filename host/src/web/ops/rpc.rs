//! A request through Wharf: the message goes out with a fresh correlation id and this host's
//! reply-to, and the answer is its reply, paired by the host's correlation table; a timeout
//! says how long it waited.

use super::{AppError, AppState};
use crate::message::Message;
use crate::rpc::RpcError;
use crate::web::MAX_WAIT_MS;
use crate::web::caller::{Allowed, Operator};
use crate::web::error::invalid;
use serde_json::Value;
use std::time::Duration;

/// Sends `request` (the JSON form of a message) to `connection:address` and returns its
/// reply, waiting up to `timeout_ms` (5,000 by default).
pub async fn call(
    state: &AppState,
    _: &Allowed<Operator>,
    connection: &str,
    address: &str,
    timeout_ms: Option<u64>,
    request: &Value,
) -> Result<Message, AppError> {
    let timeout = match timeout_ms.unwrap_or(5_000) {
        ms @ 1..=MAX_WAIT_MS => Duration::from_millis(ms),
        ms => {
            return Err(invalid(
                "timeout_ms",
                format!("timeout_ms {ms} is out of range: from 1 to {MAX_WAIT_MS}"),
            ));
        }
    };
    let to = super::queues::known(state, connection, address)?;
    let mut request = Message::from_json(request)?;
    crate::broker::check_message(&request)?;
    super::queues::check_size(state, &request)?;
    if request.topic.is_empty() {
        request.topic = to.address.clone();
    }
    match state.rpc.call(&to, request, timeout).await {
        Ok(reply) => Ok(reply),
        Err(RpcError::Timeout { .. }) => Err(AppError::Timeout(format!(
            "no reply from {to} within {} ms",
            timeout.as_millis()
        ))),
        Err(RpcError::Broker(error)) => Err(error.into()),
        Err(RpcError::Stopping) => Err(AppError::Unavailable("the host is stopping".into())),
    }
}
