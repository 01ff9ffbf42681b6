//! Outbound HTTP for handlers and daemons: the standard `wasi:http/outgoing-handler`, allowed
//! only to the origins a plugin's `http:` grants name.
//!
//! wasmtime-wasi-http turns the guest's request into an `http::Request`; [`Outbound`] decides
//! whether it may go and sends it with the runtime's client: the system's trust store plus
//! `server.outbound_ca`, no redirects followed (a guest that follows one makes a new request,
//! checked again), no cookies kept.
//!
//! Bounds, each past the guest's reach:
//! - the origin must be granted (`http:https://api.example.com`); anything else is refused
//!   with `HTTP-request-denied` and a line in the plugin's log;
//! - at most [`MAX_IN_FLIGHT`] requests of one instance at once, and [`MAX_PER_CALL`] per call
//!   on a message (a daemon is held by the in-flight bound and its CPU window);
//! - a request's body at most the plugin's output budget (`max_output_bytes`); a response's
//!   body at most the plugin's memory limit, which is all it could hold anyway;
//! - connecting takes at most [`CONNECT_TIMEOUT`], and a whole exchange at most the plugin's
//!   `max_wait` (what it asks, if less), never past the call's wall-clock deadline: the time
//!   spent counts against the call's wall-clock limit, not its CPU limit.

use super::journal::{Level, SharedJournal, Source};
use crate::grant::Grants;
use http_body_util::{BodyExt, Limited};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Requests one instance may have in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 8;
/// Requests one call on a message may make.
pub(crate) const MAX_PER_CALL: usize = 100;
/// How long connecting to a server may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The runtime's HTTP client for plugins: built once, shared by every instance.
pub(crate) fn client(extra_ca: Option<&Path>) -> Result<reqwest::Client, String> {
    let tls = crate::tls::TlsConfig {
        ca: extra_ca.map(Path::to_path_buf),
        cert: None,
        key: None,
        pkcs12: None,
        pkcs12_password: String::new(),
    };
    let tls = crate::tls::client_config(Some(&tls)).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .user_agent(concat!("wharf-plugin/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the plugins' HTTP client: {e}"))
}

/// What one plugin may do over outbound HTTP: made once when it is loaded, shared by its
/// instances.
pub(crate) struct Policy {
    pub plugin: Arc<str>,
    pub grants: Grants,
    pub http: reqwest::Client,
    /// A request's body: at most the plugin's output budget.
    pub max_output_bytes: usize,
    /// A response's body: at most the plugin's memory limit.
    pub memory_limit: usize,
    pub max_wait: Duration,
}

/// What one instance may do over outbound HTTP, and what it has done in this call.
pub(crate) struct Outbound {
    plugin: Arc<Policy>,
    journal: SharedJournal,
    /// When the current call must be over; `None` for a daemon's run.
    pub deadline: Option<Instant>,
    /// Whether [`MAX_PER_CALL`] applies (a call on a message; not a daemon's run).
    pub per_call: bool,
    made: usize,
    in_flight: Arc<AtomicUsize>,
}

impl Outbound {
    pub fn new(plugin: Arc<Policy>, journal: SharedJournal) -> Self {
        Outbound {
            plugin,
            journal,
            deadline: None,
            per_call: true,
            made: 0,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Readies the count for the next call.
    pub fn begin_call(&mut self) {
        self.made = 0;
        self.deadline = None;
    }

    fn log(&self, level: Level, text: String) {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(level, Source::Log, text);
    }

    /// Why `request` may not go, if it may not; counts it if it may.
    fn admit(&mut self, request: &http::Request<WasiBody>) -> Result<InFlight, HttpError> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else {
            return Err(HttpError::HttpRequestUriInvalid);
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let origin = format!("{scheme}://{host}:{port}");
        if !self.plugin.grants.allows_http(scheme, host, port) {
            self.log(
                Level::Warn,
                format!("outbound HTTP to {origin} refused: no http: grant names it"),
            );
            count(&self.plugin.plugin, "denied");
            return Err(HttpError::HttpRequestDenied);
        }
        if self.per_call && self.made >= MAX_PER_CALL {
            self.log(
                Level::Warn,
                format!("outbound HTTP to {origin} refused: a call may make {MAX_PER_CALL}"),
            );
            count(&self.plugin.plugin, "limited");
            return Err(HttpError::ConnectionLimitReached);
        }
        let in_flight = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = InFlight(self.in_flight.clone());
        if in_flight > MAX_IN_FLIGHT {
            self.log(
                Level::Warn,
                format!("outbound HTTP to {origin} refused: {MAX_IN_FLIGHT} already in flight"),
            );
            count(&self.plugin.plugin, "limited");
            return Err(HttpError::ConnectionLimitReached);
        }
        self.made += 1;
        Ok(slot)
    }

    /// How long the exchange may take: what the guest asks (its first-byte timeout, the
    /// longest it names), at most `max_wait`, and never past the call's deadline.
    fn timeout(&self, options: Option<RequestOptions>) -> Duration {
        let asked = options
            .and_then(|o| o.first_byte_timeout.or(o.connect_timeout))
            .unwrap_or(self.plugin.max_wait);
        let bound = asked.min(self.plugin.max_wait);
        match self.deadline {
            Some(deadline) => bound.min(deadline.saturating_duration_since(Instant::now())),
            None => bound,
        }
    }
}

/// One request in flight; the count goes down when it is dropped (done, failed or abandoned).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn count(plugin: &str, outcome: &'static str) {
    metrics::counter!(
        crate::metrics::PLUGIN_HTTP_REQUESTS,
        "plugin" => plugin.to_owned(),
        "outcome" => outcome,
    )
    .increment(1);
}

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sent {
        let admitted = self.admit(&request);
        let timeout = self.timeout(options);
        let client = self.plugin.http.clone();
        let plugin = self.plugin.plugin.clone();
        let max_request = self.plugin.max_output_bytes;
        let max_response = self.plugin.memory_limit;
        Box::new(async move {
            let slot = admitted?;
            let (parts, body) = request.into_parts();
            // The guest streams its body while this waits; it may not grow past the budget.
            let body = Limited::new(body, max_request)
                .collect()
                .await
                .map_err(|_| HttpError::HttpRequestBodySize(Some(max_request as u64)))?
                .to_bytes();
            let url = parts.uri.to_string();
            let mut outgoing = client
                .request(parts.method, url.as_str())
                .headers(parts.headers)
                .timeout(timeout);
            if !body.is_empty() {
                outgoing = outgoing.body(body);
            }
            let response = match outgoing.send().await {
                Ok(response) => response,
                Err(error) => {
                    count(&plugin, "failed");
                    return Err(error_code(&error));
                }
            };
            count(&plugin, "sent");
            let status = response.status();
            let headers = response.headers().clone();
            let limited =
                Limited::new(reqwest::Body::from(response), max_response).map_err(move |error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        HttpError::HttpResponseBodySize(Some(max_response as u64))
                    } else {
                        match error.downcast::<reqwest::Error>() {
                            Ok(error) => error_code(&error),
                            Err(error) => HttpError::InternalError(Some(error.to_string())),
                        }
                    }
                });
            // The slot is held until the body is read or dropped.
            let body = SlotBody {
                inner: limited,
                _slot: slot,
            }
            .boxed_unsync();
            let mut answer = http::Response::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((answer, done))
        })
    }
}

/// A response body that keeps its request's in-flight slot until it is dropped.
struct SlotBody<B> {
    inner: B,
    _slot: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for SlotBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The `wasi:http` error code a guest sees for a failed exchange.
fn error_code(error: &reqwest::Error) -> HttpError {
    if error.is_timeout() {
        return HttpError::HttpResponseTimeout;
    }
    let chain = {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    };
    if chain.contains("certificate") || chain.contains("InvalidCertificate") {
        return HttpError::TlsCertificateError;
    }
    if error.is_connect() {
        if chain.contains("refused") {
            return HttpError::ConnectionRefused;
        }
        if chain.contains("dns") || chain.contains("resolve") || chain.contains("lookup") {
            return HttpError::DestinationNotFound;
        }
        return HttpError::DestinationUnavailable;
    }
    HttpError::InternalError(Some(chain))
}
