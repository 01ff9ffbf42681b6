//! `/ingress/{connection}/{path}`: HTTP ingress of an `http` connection.
//!
//! A request becomes a message (its body the payload; its headers, query and content type
//! the message's, as `broker::http` maps them; its path the topic) for the route bound to
//! `{connection}:{path}`. The answer:
//! - `202 {"id"}` once the message is held in the host's database, where the route takes it
//!   (it survives a restart of the host);
//! - on a route that replies (no `to`: its handler answers the caller), the reply itself:
//!   its payload, content type and headers, with the status its `http-status` header names
//!   (200 by default; 502 for a failure reply, which carries the `exception` headers); 504
//!   if none comes within the connection's `reply_timeout_ms` (the message is still handled);
//! - 404 for a path no route consumes from (nor a queue holds), so a mistyped path loses
//!   nothing silently; 405 for a method the connection does not take; 413 for a body over
//!   `server.max_message_bytes`, which no route would take; 429 (with `Retry-After`) for a
//!   caller past the connection's `ingress_per_second` or `ingress_bytes_per_second`, which
//!   count per caller (an anonymous one by its address), so one flooding source does not
//!   take the others' share.
//!
//! Everything about the path is checked before the body is read, and an error names neither
//! the connection nor the path a caller tried (nor any other), so ingress tells a stranger
//! nothing it did not already know. Every message carries its source in `x-wharf-source`
//! (the caller's name, or `anonymous:{address}`), set here whatever the caller sent: a
//! route's inbox remembers ids per source (`router::inbox_key`), so a caller who guesses
//! another's `X-Wharf-Id` first cannot make the real message a duplicate.
//!
//! Callers present a token (or a session, with its CSRF token whatever the method) of an
//! operator or above, unless the connection's `anonymous` says anyone may send.
//!
//! Every answer, the reply of a plugin above all, is sandboxed: a CSP that gives it no
//! script, no forms and an opaque origin, and `nosniff`, since it is served on the admin UI's
//! origin; a reply sets no cookie or security header (`security::is_reserved_header`).
//! Requests to a connection that does not exist are counted without its name, so made-up
//! names add no metric series.

use super::caller::{self, Operator, Surface, Treat};
use super::{AppError, AppState, security};
use crate::broker::http::{STATUS_HEADER, message_from_http, request_headers};
use crate::broker::{Address, check_name};
use crate::message::{HeaderValue, Message};
use crate::rpc::RpcError;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

/// The header naming the method a request came in with.
pub const METHOD_HEADER: &str = "x-http-request-method";
/// Query parameters become headers named `query.{name}`.
pub const QUERY_PREFIX: &str = "query.";

/// HTTP ingress: the body (and headers, query, content type) as a message for the route
/// bound to `{connection}:{path}` of an `http` connection. 202 with the message's id once it
/// is held in the database; on a route that replies, the reply (its status, headers, content
/// type and payload). Operator token, unless the connection takes anonymous ingress.
#[utoipa::path(post, path = "/ingress/{connection}/{path}", tag = "ingress",
    params(("connection" = String, Path, description = "an `http` connection"),
        ("path" = String, Path, description = "the address a route consumes from")),
    request_body(content = String, description = "the payload, in any content type"),
    responses(
        (status = 202, body = Object, description = "held for the route: `{\"id\"}`"),
        (status = 200, description = "the reply of a route that replies"),
        (status = 401), (status = 403),
        (status = 404, description = "no such http connection, or no route consumes from the path"),
        (status = 405, description = "a method the connection does not take"),
        (status = 413), (status = 429, description = "the caller is past the connection's ingress_per_second or ingress_bytes_per_second"),
        (status = 502, description = "the route's handler failed; the exception headers say how"),
        (status = 504, description = "no reply within the connection's reply_timeout_ms")))]
pub async fn ingress(
    State(state): State<AppState>,
    Path((connection, path)): Path<(String, String)>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let known = state.connections.http(&connection).is_some();
    let mut response = match take(&state, &parts, &connection, &path, query, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    security::sandbox(&mut response);
    crate::metrics::http_ingress(
        known.then_some(connection.as_str()),
        response.status().as_u16(),
    );
    response
}

/// Ingress at a path the admin chose (`hooks` of an `http` connection, streamtools'):
/// `/hooks/{path}` is taken exactly as `/ingress/{connection}/{address}` for the connection
/// and address the path names, with its methods, tokens and limits; 404 for a path no
/// connection takes (or two do: connections added at once on other hosts).
#[utoipa::path(post, path = "/hooks/{path}", tag = "ingress",
    params(("path" = String, Path, description = "a path an `http` connection's `hooks` names")),
    request_body(content = String, description = "the payload, in any content type"),
    responses(
        (status = 202, body = Object, description = "held for the route: `{\"id\"}`"),
        (status = 200, description = "the reply of a route that replies"),
        (status = 401), (status = 403),
        (status = 404, description = "no connection takes the path, or no route its address"),
        (status = 405), (status = 413), (status = 429),
        (status = 502), (status = 504)))]
pub async fn hook(
    State(state): State<AppState>,
    Path(path): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let owners = state.connections.hook(&path);
    let mut response = match owners.as_slice() {
        [(connection, address)] => {
            let answer = take(&state, &parts, connection, address, query, body).await;
            let mut response = answer.unwrap_or_else(IntoResponse::into_response);
            security::sandbox(&mut response);
            crate::metrics::http_ingress(Some(connection), response.status().as_u16());
            return response;
        }
        [] => AppError::NotFound("nothing takes messages at this address".into()).into_response(),
        [(first, _), (second, ..), ..] => {
            tracing::warn!(
                path,
                first,
                second,
                "two connections take one /hooks/ path: refused until one lets it go"
            );
            AppError::NotFound("nothing takes messages at this address".into()).into_response()
        }
    };
    security::sandbox(&mut response);
    crate::metrics::http_ingress(None, response.status().as_u16());
    response
}

async fn take(
    state: &AppState,
    parts: &Parts,
    connection: &str,
    path: &str,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    let method = &parts.method;
    let nothing_here = || AppError::NotFound("nothing takes messages at this address".into());
    let Some(http) = state.connections.http(connection) else {
        return Err(nothing_here());
    };
    let config = http.config();
    if !config
        .ingress_methods
        .iter()
        .any(|m| m.as_str() == method.as_str())
    {
        return Err(AppError::MethodNotAllowed {
            message: format!(
                "this address takes {} (the connection's ingress_methods)",
                if config.ingress_methods.is_empty() {
                    "nothing".to_owned()
                } else {
                    config.ingress_methods.join(" and ")
                }
            ),
            allow: config.ingress_methods.join(", "),
        });
    }
    // Taken as a change whatever its method: a session must show its CSRF token for a GET
    // too, since ingress sends a message either way. Checked before the body is read. A
    // session's token is not part of the message.
    let (session, source) = if config.anonymous {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(addr)| super::limits::peer_key(addr.ip()));
        let address = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        (false, format!("anonymous:{address}"))
    } else {
        let who = caller::admit::<Operator>(parts, state, Surface::Api, Treat::AsChange).await?;
        (who.csrf.is_some(), who.caller.actor())
    };
    // The caller's pace, and the path, before a byte of the body is read.
    let limits = (config.ingress_per_second, config.ingress_bytes_per_second);
    state.limits.ingress_message(connection, limits, &source)?;
    check_name("path", path, false).map_err(|_| nothing_here())?;
    if crate::broker::HttpBroker::is_held(path) {
        return Err(nothing_here());
    }
    let to = Address {
        connection: connection.to_owned(),
        address: path.to_owned(),
    };
    let replies = match state.supervisor.binding(&to.to_string()) {
        Some(replies) => replies,
        None if http.held().has_queue(path).await? => false,
        None => return Err(nothing_here()),
    };
    // The route's limit: a larger body is refused as it arrives, not read whole first.
    let too_large = || {
        AppError::PayloadTooLarge(format!(
            "the body is over {} bytes, the most routes take (server.max_message_bytes)",
            state.max_message_bytes
        ))
    };
    let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
        .await
        .map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            _ => AppError::from(e),
        })?;
    if body.len() > state.max_message_bytes {
        return Err(too_large());
    }
    state
        .limits
        .ingress_bytes(connection, limits, &source, body.len())?;
    let Query(query) = query?;
    let mut msg = message_from_http(&parts.headers, body.to_vec());
    // Where it came from, as the host saw it: the inbox keys ids by it.
    msg.set_header(
        crate::router::SOURCE_HEADER,
        HeaderValue::Text(source.clone()),
    );
    if msg.topic.is_empty() {
        msg.topic = path.to_owned();
    }
    // A caller does not pick the method of a later egress request, nor the status of an
    // answer; an anonymous one does not pick where replies go either.
    msg.headers.retain(|(name, _)| {
        !name.eq_ignore_ascii_case(crate::broker::http::METHOD_HEADER)
            && !name.eq_ignore_ascii_case(STATUS_HEADER)
    });
    if config.anonymous {
        msg.reply_to = None;
    }
    msg.set_header(METHOD_HEADER, HeaderValue::Text(method.as_str().to_owned()));
    for (name, value) in query {
        if session && name == caller::CSRF_PARAM {
            continue;
        }
        msg.headers
            .push((format!("{QUERY_PREFIX}{name}"), HeaderValue::Text(value)));
    }
    let id = msg.id.clone();
    if !replies {
        http.accept(path, msg).await?;
        return Ok((StatusCode::ACCEPTED, axum::Json(json!({ "id": id }))).into_response());
    }
    let timeout = Duration::from_millis(config.reply_timeout_ms);
    let accept = |msg: Message| async move { http.accept(path, msg).await };
    match state.rpc.call_with(&to, msg, timeout, accept).await {
        Ok(reply) => Ok(answer(reply)),
        Err(RpcError::Timeout { .. }) => Err(AppError::Timeout(format!(
            "accepted as `{id}`, but no reply came within {} ms (reply_timeout_ms); the route still handles it",
            timeout.as_millis()
        ))),
        Err(RpcError::Broker(error)) => Err(error.into()),
        Err(RpcError::Stopping) => Err(AppError::Unavailable(format!(
            "accepted as `{id}`, but the host is stopping before its reply; the route still handles it"
        ))),
    }
}

/// A reply as the HTTP answer: its status (`http-status` from 200 to 599, else 502 for a
/// failure reply, else 200), headers (but cookies and security headers), content type and
/// payload.
fn answer(mut reply: Message) -> Response {
    let status = match reply.header(STATUS_HEADER) {
        Some(HeaderValue::Int(n)) => u16::try_from(*n).ok(),
        Some(HeaderValue::Text(text)) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|n| (200..=599).contains(n))
    .and_then(|n| StatusCode::from_u16(n).ok())
    .unwrap_or(if reply.header("exception").is_some() {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    });
    reply
        .headers
        .retain(|(name, _)| !security::is_reserved_header(name));
    let headers = match request_headers(&reply, None) {
        Ok(headers) => headers,
        Err(error) => {
            return AppError::BadGateway(format!(
                "the reply cannot be answered over HTTP: {error}"
            ))
            .into_response();
        }
    };
    let mut response = Response::new(Body::from(reply.payload));
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    response
}
