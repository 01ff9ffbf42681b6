//! HTTP as a transport.
//!
//! An `http` connection has two sides. **Ingress** (`/ingress/{connection}/{path}` on the
//! host's listener, in `web::ingress`) holds each message it accepts in the host's database,
//! in an embedded queue named after the path, before it answers: what a route consumes from
//! `{connection}:{path}` is that queue, with everything the embedded broker gives (acks,
//! redelivery counts, delayed retries, dead letters), and an accepted message survives a
//! restart. **Egress**: publishing to `{connection}:{path}` sends a request to `base_url` +
//! `path` with the connection's method, headers, content type and timeout; a message may name
//! its own method (`x-http-method`: GET, POST, PUT) and, as its address, a full URL
//! (`{connection}:https://…`) under `base_url` or on the connection's `allowed_hosts` (the
//! connection's headers, its credentials, go only to `base_url`). A 2xx answer is
//! the confirm; 5xx, 408, 429, a timeout or a refused connection fail retryably (the route
//! retries); any other 4xx fails for good (the route dead-letters, with the status and body).
//!
//! Two kinds of address are the host's own and held, never sent out: the reply queues of
//! the correlation table (`wharf.reply.…`) and dead letters (`….dead`). A delayed send (a
//! route's retry) is held too: it goes back to the ingress queue it came from.
//!
//! The mapping, both ways: the payload is the body; `content_type` is `Content-Type`; the
//! message's id, topic, correlation id, reply-to and timestamp travel as `X-Wharf-Id`,
//! `X-Wharf-Topic`, `X-Correlation-Id`, `X-Reply-To` and `X-Wharf-Timestamp-Ms`; every other
//! header is an HTTP header (names are case-insensitive, so they arrive in lower case), its
//! value as text: HTTP headers carry nothing else. A key, a priority, an expiry and
//! persistence do not travel over HTTP.

use super::{BrokerError, EmbeddedBroker, EmbeddedConfig, shorten};
pub mod config;
mod kind;

use crate::message::{HeaderValue, Message};
use crate::store::Store;
use base64::Engine as _;
pub use config::HttpConfig;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName};
use std::sync::Arc;
use std::time::Duration;

/// Message fields carried in headers of their own.
pub const ID_HEADER: &str = "x-wharf-id";
pub const TOPIC_HEADER: &str = "x-wharf-topic";
pub const CORRELATION_HEADER: &str = "x-correlation-id";
pub const REPLY_TO_HEADER: &str = "x-reply-to";
pub const TIMESTAMP_HEADER: &str = "x-wharf-timestamp-ms";
/// A message header that picks the egress method of one message (`GET`, `POST`, `PUT`).
pub const METHOD_HEADER: &str = "x-http-method";
/// The status of an HTTP answer, as a reply's header; a reply to ingress may set it.
pub const STATUS_HEADER: &str = "http-status";

/// The largest answer an egress request reads; a larger one fails the request.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Headers that describe one hop, not the message: never copied between the two.
const HOP_HEADERS: [&str; 15] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "content-type",
    "authorization",
    "cookie",
    "x-csrf-token",
    "accept-encoding",
];

/// Whether a header belongs to the hop (or to the message's own fields) rather than to the
/// message's headers.
pub fn is_hop_header(name: &str) -> bool {
    HOP_HEADERS.contains(&name)
        || [
            ID_HEADER,
            TOPIC_HEADER,
            CORRELATION_HEADER,
            REPLY_TO_HEADER,
            TIMESTAMP_HEADER,
        ]
        .contains(&name)
}

/// One `http` connection. Cheap to clone.
#[derive(Clone)]
pub struct HttpBroker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: HttpConfig,
    client: reqwest::Client,
    /// The same without the connection's headers: for full URLs on its `allowed_hosts`.
    foreign: reqwest::Client,
    /// Ingress queues, reply queues and dead letters, in the host's database.
    held: EmbeddedBroker,
}

/// The HTTP client of connection `name`: its headers on every request, its TLS (the system's
/// roots, its private CA, its client certificate), requests bounded by `timeout`, and no
/// redirects. Following a 301 or 302 would turn a POST into a GET without its body, which the
/// endpoint could confirm with a 200, and carry the connection's headers to another host: a
/// 3xx is an answer like any other non-2xx.
pub fn client(
    name: &str,
    config: &HttpConfig,
    timeout: Duration,
) -> Result<reqwest::Client, BrokerError> {
    let unusable = |detail: String| BrokerError::Unavailable {
        connection: name.to_owned(),
        detail,
    };
    let mut headers = HeaderMap::new();
    for (header, value) in &config.headers {
        let (Ok(header), Ok(value)) = (
            HeaderName::from_bytes(header.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) else {
            return Err(BrokerError::Mapping {
                field: format!("headers.{header}"),
                problem: "not a valid header".into(),
            });
        };
        headers.insert(header, value);
    }
    let tls = crate::tls::client_config(config.tls.as_ref())
        .map_err(|e| unusable(format!("connections.{name}.tls: {e}")))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
        .map_err(|e| unusable(format!("cannot make an HTTP client: {e}")))
}

/// What went wrong with a request, with its causes (a refused certificate, a reset
/// connection), and without its URL (which errors show redacted, where they show one).
pub(crate) fn reason(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    reason
}

impl HttpBroker {
    /// Connection `name` as `config` defines it, holding its queues in `store`.
    pub fn new(name: &str, config: HttpConfig, store: Store) -> Result<HttpBroker, BrokerError> {
        let client = client(name, &config, Duration::from_millis(config.timeout_ms))?;
        let foreign = self::client(
            name,
            &HttpConfig {
                headers: Default::default(),
                ..config.clone()
            },
            Duration::from_millis(config.timeout_ms),
        )?;
        let held = EmbeddedBroker::new(
            store,
            EmbeddedConfig {
                connection: name.to_owned(),
                ..EmbeddedConfig::default()
            },
        );
        Ok(HttpBroker {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                config,
                client,
                foreign,
                held,
            }),
        })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// The embedded broker that holds this connection's ingress queues, reply queues and
    /// dead letters.
    pub fn held(&self) -> &EmbeddedBroker {
        &self.inner.held
    }

    /// Whether `address` is held here rather than sent out: a reply queue or dead letters.
    pub fn is_held(address: &str) -> bool {
        address.starts_with("wharf.reply.") || address.ends_with(".dead")
    }

    /// Publishing: held addresses stay in the database; every other one is a request out,
    /// confirmed by a 2xx answer.
    pub async fn publish(&self, address: &str, msg: Message) -> Result<(), BrokerError> {
        if HttpBroker::is_held(address) {
            self.inner.held.publish(address, msg).await
        } else {
            self.request(address, msg).await.map(drop)
        }
    }

    /// A delayed send is a route's retry: back to the ingress queue `address`, after `delay`.
    pub async fn publish_delayed(
        &self,
        address: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        self.inner.held.publish_delayed(address, msg, delay).await
    }

    /// Holds a message that came in at `/ingress/{connection}/{path}` for the route bound to
    /// `path`; returns once it is committed.
    pub async fn accept(&self, path: &str, msg: Message) -> Result<(), BrokerError> {
        self.inner.held.publish(path, msg).await
    }

    /// The URL a message to `address` goes to, and whether it is under `base_url` (the
    /// connection's headers go only there). An address is a path below `base_url`, or a full
    /// URL (`https://…`) under `base_url` or on one of `allowed_hosts`.
    pub fn url(&self, address: &str) -> Result<(String, bool), BrokerError> {
        // Errors name the address with any password in it hidden.
        let refuse = |problem: String| BrokerError::InvalidAddress {
            address: format!(
                "{}:{}",
                self.inner.name,
                shorten(&crate::redact::redact(address))
            ),
            problem,
        };
        let config = &self.inner.config;
        if address.starts_with("http://") || address.starts_with("https://") {
            let url =
                reqwest::Url::parse(address).map_err(|e| refuse(format!("not a URL: {e}")))?;
            if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
                return Err(refuse(
                    "a full URL carries no credentials and no `#` fragment".into(),
                ));
            }
            let under_base = config.base_url.as_deref().is_some_and(|base| {
                reqwest::Url::parse(base).is_ok_and(|base| {
                    let path = base.path().trim_end_matches('/');
                    base.origin() == url.origin()
                        && (url.path() == path
                            || url.path().starts_with(&format!("{path}/"))
                            || path.is_empty())
                })
            });
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or(0);
            let default_port = if url.scheme() == "https" { 443 } else { 80 };
            let allowed = under_base
                || config
                    .allowed_hosts
                    .iter()
                    .any(|p| crate::check::host_allowed(p, host, port, default_port));
            if !allowed {
                return Err(refuse(format!(
                    "`{}` is neither under the connection's base_url nor on its allowed_hosts",
                    shorten(url.origin().ascii_serialization().as_str())
                )));
            }
            return Ok((url.to_string(), under_base));
        }
        if address.contains("://") {
            return Err(refuse(
                "a full URL is http:// or https://; anything else is a path below the connection's base_url".into(),
            ));
        }
        let Some(base) = &config.base_url else {
            return Err(refuse(format!(
                "connection `{}` has no base_url, so it only takes ingress (or full URLs on its allowed_hosts)",
                self.inner.name
            )));
        };
        // The address stays below the base URL (grants on addresses mean what they say): no
        // `.` or `..` segment, however spelled, and no `\` or fragment.
        let escapes = address.contains('\\')
            || address.contains('#')
            || address
                .split(['/', '?'])
                .map(|segment| segment.to_ascii_lowercase().replace("%2e", "."))
                .any(|segment| segment == "." || segment == "..");
        if escapes {
            return Err(refuse("an HTTP address is a path below the connection's base_url (no `.` or `..` segments, `\\` or `#`), or a full URL on its allowed_hosts".into()));
        }
        Ok((
            format!(
                "{}/{}",
                base.trim_end_matches('/'),
                address.trim_start_matches('/')
            ),
            true,
        ))
    }

    /// Sends `msg` to `address` and returns the answer as a message (a 2xx; any other status
    /// is an error saying whether to try again).
    pub async fn request(&self, address: &str, msg: Message) -> Result<Message, BrokerError> {
        super::check_message(&msg)?;
        let (url, own) = self.url(address)?;
        let method = match msg.header(METHOD_HEADER) {
            Some(HeaderValue::Text(method)) => method.to_ascii_uppercase(),
            _ => self.inner.config.method.clone(),
        };
        let method = match method.as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            other => {
                return Err(BrokerError::Mapping {
                    field: format!("headers.{METHOD_HEADER}"),
                    problem: format!("`{}` is not GET, POST or PUT", shorten(other)),
                });
            }
        };
        if method == reqwest::Method::GET && !msg.payload.is_empty() {
            return Err(BrokerError::Mapping {
                field: "payload".into(),
                problem: format!(
                    "a GET request carries no body, and this message has {} bytes; send it with POST or PUT",
                    msg.payload.len()
                ),
            });
        }
        let headers = request_headers(&msg, self.inner.config.content_type.as_deref())?;
        // What errors and dead letters say of the request: never a password in its URL.
        let shown = format!("{method} {}", crate::redact::redact(&url));
        let correlation_id = msg.correlation_id.clone();
        // The connection's headers (its credentials) go only to its base_url.
        let client = if own {
            &self.inner.client
        } else {
            &self.inner.foreign
        };
        let mut request = client.request(method.clone(), &url).headers(headers);
        if method != reqwest::Method::GET {
            request = request.body(msg.payload);
        }
        let unavailable = |detail: String| BrokerError::Unavailable {
            connection: self.inner.name.clone(),
            detail,
        };
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                format!("{shown} took over {} ms", self.inner.config.timeout_ms)
            } else if e.is_connect() {
                format!("{shown}: cannot connect: {}", reason(e))
            } else {
                format!("{shown}: {}", reason(e))
            };
            unavailable(what)
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut response = response;
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > MAX_ANSWER_BYTES => {
                    return Err(BrokerError::TooLarge {
                        size: body.len() + chunk.len(),
                        limit: MAX_ANSWER_BYTES,
                    });
                }
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return Err(unavailable(format!(
                        "{shown}: the answer's body was cut off: {}",
                        reason(e)
                    )));
                }
            }
        }
        crate::metrics::http_egress(&self.inner.name, status.as_u16());
        if !status.is_success() {
            return Err(BrokerError::HttpStatus {
                request: shown,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(1_000)]).into_owned(),
            });
        }
        let mut reply = message_from_http(&headers, body);
        reply.set_header(STATUS_HEADER, HeaderValue::Int(i64::from(status.as_u16())));
        if reply.correlation_id.is_none() {
            reply.correlation_id = correlation_id;
        }
        Ok(reply)
    }
}

/// A header value as HTTP text.
fn header_text(value: &HeaderValue) -> String {
    match value {
        HeaderValue::Text(text) => text.clone(),
        HeaderValue::Bytes(bytes) => base64::engine::general_purpose::STANDARD.encode(bytes),
        HeaderValue::Int(n) => n.to_string(),
        HeaderValue::Float(x) => x.to_string(),
        HeaderValue::Boolean(b) => b.to_string(),
        HeaderValue::List(items) => items.join(", "),
        HeaderValue::Json(json) => json.clone(),
    }
}

/// The HTTP headers that carry `msg`: its fields, its content type (or `default_type`) and
/// its headers. A header HTTP cannot carry (a control character in it) is an error naming it.
pub fn request_headers(
    msg: &Message,
    default_type: Option<&str>,
) -> Result<HeaderMap, BrokerError> {
    let mut headers = HeaderMap::new();
    let mut put = |name: &str, text: &str| -> Result<(), BrokerError> {
        let bad = || {
            BrokerError::Mapping {
            field: format!("headers.{}", shorten(name)),
            problem: "HTTP cannot carry this header: a name is a token, a value holds no control characters".into(),
        }
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = reqwest::header::HeaderValue::from_bytes(text.as_bytes()).map_err(|_| bad())?;
        headers.append(name, value);
        Ok(())
    };
    put(ID_HEADER, &msg.id)?;
    if !msg.topic.is_empty() {
        put(TOPIC_HEADER, &msg.topic)?;
    }
    if let Some(id) = &msg.correlation_id {
        put(CORRELATION_HEADER, id)?;
    }
    if let Some(reply_to) = &msg.reply_to {
        put(REPLY_TO_HEADER, reply_to)?;
    }
    if msg.timestamp_ms != 0 {
        put(TIMESTAMP_HEADER, &msg.timestamp_ms.to_string())?;
    }
    let content_type = msg
        .content_type
        .as_deref()
        .or(default_type)
        .unwrap_or("application/octet-stream");
    put(CONTENT_TYPE.as_str(), content_type)?;
    for (name, value) in &msg.headers {
        let lower = name.to_ascii_lowercase();
        if is_hop_header(&lower) || lower == METHOD_HEADER || lower == STATUS_HEADER {
            continue;
        }
        put(name, &header_text(value))?;
    }
    Ok(headers)
}

/// The message an HTTP request or answer carries: its body and headers (each as text, or as
/// bytes where it is not UTF-8), its fields from their own headers.
pub fn message_from_http(headers: &HeaderMap, body: Vec<u8>) -> Message {
    let mut msg = Message::new("", body);
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(id) = text(ID_HEADER).filter(|id| !id.is_empty()) {
        msg.id = id;
    }
    msg.topic = text(TOPIC_HEADER).unwrap_or_default();
    msg.correlation_id = text(CORRELATION_HEADER);
    msg.reply_to = text(REPLY_TO_HEADER);
    msg.content_type = text(CONTENT_TYPE.as_str());
    msg.timestamp_ms = text(TIMESTAMP_HEADER)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(crate::message::now_ms);
    for (name, value) in headers {
        if is_hop_header(name.as_str()) {
            continue;
        }
        let value = match std::str::from_utf8(value.as_bytes()) {
            Ok(text) => HeaderValue::Text(text.to_owned()),
            Err(_) => HeaderValue::Bytes(value.as_bytes().to_vec()),
        };
        msg.headers.push((name.as_str().to_owned(), value));
    }
    msg
}

/// An HTTP connection sends requests out, and consumes from the queues it holds in the
/// host's database (what its ingress accepted, retries, dead letters).
#[async_trait::async_trait]
impl super::Transport for HttpBroker {
    fn kind(&self) -> &'static str {
        "http"
    }

    /// Events over HTTP are webhooks: each goes out as a request to
    /// `{base_url}{exchange}/{routing key}`, confirmed by a 2xx. Nothing to declare.
    async fn declare_events(&self, exchange: &str) -> Result<(), BrokerError> {
        super::check_name("exchange", exchange, false)?;
        Ok(())
    }

    /// An endpoint cannot be bound to: a subscription reads from a broker.
    async fn subscribe(
        &self,
        _exchange: &str,
        _queue: &str,
        _pattern: &str,
    ) -> Result<super::Subscribed, BrokerError> {
        Err(BrokerError::Broker(
            "an http connection sends events as requests but holds no subscriptions; name an embedded, amqp or kafka connection in [events] to subscribe".into(),
        ))
    }

    async fn send(&self, address: &str, msg: Message) -> Result<(), BrokerError> {
        self.publish(address, msg).await
    }

    async fn send_delayed(
        &self,
        address: &str,
        msg: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        self.publish_delayed(address, msg, delay).await
    }

    async fn consume(
        &self,
        address: &str,
        options: super::ConsumeOptions,
    ) -> Result<super::Consumer, BrokerError> {
        super::Transport::consume(self.held(), address, options).await
    }

    async fn depth(&self, address: &str) -> Result<super::Depth, BrokerError> {
        super::Transport::depth(self.held(), address).await
    }

    async fn peek(
        &self,
        address: &str,
        count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        self.held().peek(address, count, max_bytes).await
    }

    async fn purge(&self, address: &str) -> Result<u64, BrokerError> {
        self.held().purge(address).await
    }

    /// Ingress is up while its database answers; an egress endpoint that is down fails its
    /// own requests, which are retried.
    async fn check(&self) -> Result<(), String> {
        self.held().store().ping().await.map_err(|e| e.to_string())
    }

    fn held(&self) -> Option<&EmbeddedBroker> {
        Some(HttpBroker::held(self))
    }

    /// A request to any address but a held one is answered by its endpoint.
    fn answers(&self, address: &str) -> bool {
        !HttpBroker::is_held(address)
    }

    async fn request(&self, address: &str, msg: Message) -> Option<Result<Message, BrokerError>> {
        Some(HttpBroker::request(self, address, msg).await)
    }
}

/// Whether the endpoint answers: a HEAD on its base URL through the very client egress uses
/// (its TLS, its headers, no redirects).
pub(crate) async fn test(name: &str, config: &HttpConfig) -> super::ConnectionTest {
    use super::ConnectionTest;
    let Some(base) = &config.base_url else {
        return ConnectionTest::new(
            true,
            "ingress only (no base_url): its messages are held in this host's database",
        );
    };
    let shown = crate::redact::redact(base);
    let timeout = Duration::from_millis(config.timeout_ms.min(15_000));
    let client = match client(name, config, timeout) {
        Ok(client) => client,
        Err(e) => return ConnectionTest::new(false, e.to_string()),
    };
    match client.head(base).send().await {
        // Any answer shows the endpoint is there; what it says of HEAD on its base URL says
        // nothing of the requests routes will send. A redirect is said as it is: egress does
        // not follow one either.
        Ok(answer) if answer.status().is_redirection() => ConnectionTest::new(
            true,
            format!(
                "{shown} answers (HEAD: {}, a redirect, which egress does not follow)",
                answer.status()
            ),
        ),
        Ok(answer) => {
            ConnectionTest::new(true, format!("{shown} answers (HEAD: {})", answer.status()))
        }
        Err(e) => ConnectionTest::new(false, format!("{shown} does not answer: {}", reason(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_trip_through_http_headers() {
        let mut msg = Message::new("orders.created", b"{}".to_vec());
        msg.correlation_id = Some("c-1".into());
        msg.reply_to = Some("replies".into());
        msg.content_type = Some("application/json".into());
        msg.set_header("tenant", HeaderValue::Text("ünï".into()));
        msg.set_header("count", HeaderValue::Int(3));
        msg.set_header("Authorization", HeaderValue::Text("Bearer leak".into()));
        let headers = request_headers(&msg, None).unwrap();
        assert!(headers.get("authorization").is_none(), "{headers:?}");
        let back = message_from_http(&headers, msg.payload.clone());
        assert_eq!(back.id, msg.id);
        assert_eq!(back.topic, msg.topic);
        assert_eq!(back.correlation_id, msg.correlation_id);
        assert_eq!(back.reply_to, msg.reply_to);
        assert_eq!(back.content_type, msg.content_type);
        assert_eq!(back.timestamp_ms, msg.timestamp_ms);
        assert_eq!(
            back.header("tenant"),
            Some(&HeaderValue::Text("ünï".into()))
        );
        assert_eq!(back.header("count"), Some(&HeaderValue::Text("3".into())));
    }

    #[test]
    fn a_header_http_cannot_carry_is_named() {
        let mut msg = Message::new("", Vec::new());
        msg.set_header("line", HeaderValue::Text("a\nb".into()));
        let error = request_headers(&msg, None).unwrap_err();
        assert!(error.to_string().contains("headers.line"), "{error}");
        assert!(!error.is_retryable());
    }
}
