//! What a route does with an input that failed: a retry with a delay, a dead letter with the
//! exception headers, or the failure as the reply a waiting caller gets.

use super::*;

pub(super) async fn retry(
    route: &Route,
    connections: &Connections,
    input: &Message,
    attempts: u32,
    failure: &Failure,
) -> Result<(), BrokerError> {
    let delay = backoff(&route.retry, attempts);
    tracing::info!(route = %route.name, id = %input.id, attempt = attempts + 1, delay_ms = delay.as_millis() as u64, error = %failure.exception, "retrying");
    let mut copy = input.clone();
    copy.set_header(
        "x-wharf-attempts",
        HeaderValue::Int(i64::from(attempts) + 1),
    );
    connections
        .producer(&route.from)?
        .send_delayed(&route.from.address, copy, delay)
        .await
}

pub(super) async fn dead_letter(
    route: &Route,
    connections: &Connections,
    input: &Message,
    attempts: u32,
    failure: &Failure,
) -> Result<(), BrokerError> {
    tracing::warn!(route = %route.name, id = %input.id, to = %route.dead_letter, error = %failure.exception, "dead-lettering");
    let producer = connections.producer(&route.dead_letter)?;
    match producer
        .send(
            &route.dead_letter.address,
            dead_letter_copy(route, input, attempts, failure),
        )
        .await
    {
        // The input itself is what no transport takes (a NUL byte, a property too long): keep
        // it in a form the dead letters can carry rather than return it to loop.
        Err(error) if !error.is_retryable() => {
            tracing::warn!(route = %route.name, id = %input.id, %error, "the dead letter cannot be sent as it is; sending a copy with its fields made sendable");
            let sendable = dead_letter_copy(route, input, attempts, failure).sendable_copy();
            producer.send(&route.dead_letter.address, sendable).await
        }
        result => result,
    }
}

/// A request that failed on a route ending in a handler gets a reply saying so (the
/// `exception` headers, its correlation id and `UUID`), so its caller learns at once instead
/// of waiting out its timeout. Best effort: the dead letter is the record.
pub(super) async fn failure_reply(
    route: &Route,
    connections: &Connections,
    request: &Message,
    failure: &Failure,
) {
    if route.handler.is_none() || (request.reply_to.is_none() && route.reply_to.is_none()) {
        return;
    }
    let Ok(to) = reply_address(route, connections, request) else {
        return;
    };
    let mut reply = Message::new(request.topic.clone(), Vec::new());
    reply.correlation_id = request
        .correlation_id
        .clone()
        .or_else(|| Some(request.id.clone()));
    if let Some(uuid) = request.header("UUID") {
        reply.set_header("UUID", uuid.clone());
    }
    for (name, value) in [
        ("exception", failure.exception.clone()),
        ("exception_name", failure.name.to_string()),
        ("exception_type", failure.source.to_string()),
    ] {
        reply.set_header(name, HeaderValue::Text(value));
    }
    let name = format!("{}/{}/failure", request.id, route.name);
    reply.id = uuid::Uuid::new_v5(&OUTPUT_ID_NAMESPACE, name.as_bytes()).to_string();
    if let Err(error) = connections.send(&to, reply).await {
        tracing::warn!(route = %route.name, id = %request.id, %error, "the failure reply could not be sent; the request is dead-lettered");
    }
}

/// The input with the headers a dead letter carries: the exception, where it came from,
/// the route and the attempts.
pub(super) fn dead_letter_copy(
    route: &Route,
    input: &Message,
    attempts: u32,
    failure: &Failure,
) -> Message {
    let mut copy = input.clone();
    for (name, value) in [
        ("exception", HeaderValue::Text(failure.exception.clone())),
        (
            "exception_name",
            HeaderValue::Text(failure.name.to_string()),
        ),
        (
            "exception_type",
            HeaderValue::Text(failure.source.to_string()),
        ),
        ("x-wharf-route", HeaderValue::Text(route.name.clone())),
        (
            "x-wharf-attempts",
            HeaderValue::Int(i64::from(attempts) + 1),
        ),
    ] {
        copy.set_header(name, value);
    }
    if let Some(plugin) = &failure.plugin {
        copy.set_header("x-wharf-plugin", HeaderValue::Text(plugin.clone()));
    }
    copy
}
