//! Outbound HTTP for handlers and daemons, over the standard `wasi:http/outgoing-handler`.
//!
//! The host sends a request only to an origin the plugin's `http:` grants name
//! (`http:https://api.example.com`); any other fails with an [`Error`] that says it was
//! denied. Redirects are not followed: a `3xx` is returned as it is, and following it is a
//! new request, checked again. Secrets (an API key) belong in the plugin's config, which the
//! admin can seal, never in the component.
//!
//! ```ignore
//! let answer = wharf_sdk::http::get("https://api.example.com/rates")?;
//! let sent = wharf_sdk::http::Request::post("https://api.example.com/orders", body)
//!     .header("authorization", &format!("Bearer {}", config::require("api_key")?))
//!     .send()?;
//! ```

use crate::handler::wasi::http::outgoing_handler;
use crate::handler::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::handler::wasi::io::streams::StreamError;
use std::fmt;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ... (any case).
    pub method: String,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body; empty sends none.
    pub body: Vec<u8>,
    /// How long to wait for the response; the host bounds it by the plugin's `max_wait`
    /// and the call's own deadline.
    pub timeout_ms: Option<u32>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The status code (a `3xx` is not followed).
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request failed: refused by the host (no grant, a limit) or by the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<Error> for crate::Failure {
    /// A failed request is worth retrying: the service may be back.
    fn from(error: Error) -> Self {
        crate::Failure::Retry(error.0)
    }
}

fn code(error: ErrorCode) -> Error {
    Error(match error {
        ErrorCode::HttpRequestDenied => "denied: no http: grant names this origin".into(),
        ErrorCode::ConnectionLimitReached => "refused: too many requests for this call".into(),
        other => format!("{other:?}"),
    })
}

impl Request {
    /// `method url`, no headers, no body.
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// `POST url` with `body`.
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Request {
        Request::new("POST", url).body(body)
    }

    /// Adds header `name: value`.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Waits at most `ms` for the answer (the host may bound it further).
    pub fn timeout_ms(mut self, ms: u32) -> Request {
        self.timeout_ms = Some(ms);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        send(self)
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    Request::get(url).send()
}

/// Sends `request` and waits for the whole response.
pub fn send(request: Request) -> Result<Response, Error> {
    let (scheme, rest) = request
        .url
        .split_once("://")
        .ok_or_else(|| Error(format!("`{}` is not an absolute URL", request.url)))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => return Err(Error(format!("`{other}` is not http or https"))),
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };

    let headers = Fields::new();
    for (name, value) in &request.headers {
        headers
            .append(name, value)
            .map_err(|e| Error(format!("header `{name}`: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    };
    let bad = |what: &str| Error(format!("the request's {what} was refused"));
    outgoing.set_method(&method).map_err(|_| bad("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|_| bad("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|_| bad("host"))?;
    outgoing
        .set_path_with_query(Some(&path))
        .map_err(|_| bad("path"))?;
    let body = outgoing.body().map_err(|_| bad("body"))?;
    let options = RequestOptions::new();
    if let Some(ms) = request.timeout_ms {
        let ns = u64::from(ms) * 1_000_000;
        let _ = options.set_first_byte_timeout(Some(ns));
        let _ = options.set_between_bytes_timeout(Some(ns));
    }

    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(code)?;
    {
        let stream = body.write().map_err(|_| bad("body"))?;
        for chunk in request.body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| Error(format!("sending the body: {e:?}")))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(code)?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(error))) => return Err(code(error)),
        Some(Err(())) | None => return Err(Error("the response was lost".into())),
    };
    let status = response.status();
    let headers = response.headers().entries().into_iter().collect::<Vec<_>>();
    let incoming = response
        .consume()
        .map_err(|_| Error("the response has no body".into()))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|_| Error("the response has no body".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error(format!(
                        "reading the response: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
    }
    let _ = IncomingBody::finish(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}
