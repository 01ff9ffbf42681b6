//! What every answer carries, and what every request must not be, whatever handler it meets:
//!
//! - **Headers** on every answer (tower-http's `SetResponseHeaderLayer`, each only if the
//!   handler set none): a Content-Security-Policy that lets nothing load ([`DEFAULT_POLICY`]),
//!   or, on a page, only the script and stylesheet it names with its answer's nonce
//!   ([`page_policy`]: no inline script or style, no `eval`, no other same-origin URL), so an
//!   escaping mistake in a page cannot run script; `X-Content-Type-Options: nosniff`; no framing (`frame-ancestors
//!   'none'` and `X-Frame-Options: DENY`); `Referrer-Policy: same-origin`; and, when the
//!   listener speaks TLS, `Strict-Transport-Security`.
//! - **Ingress answers** are a plugin's words on the admin UI's origin: they get a sandboxing
//!   CSP (no script, no forms, an opaque origin) and `nosniff` whatever the reply says, and a
//!   reply cannot set cookies or any of these headers ([`is_reserved_header`]).
//! - **Cross-site requests** that would change something are refused before any handler
//!   runs: a browser says where a request comes from (`Sec-Fetch-Site`, else `Origin`), and
//!   one from another site is 403. Requests with neither header (services, the CLI) pass, as
//!   do those to `/ingress/`, which may be posted from anywhere its token or `anonymous`
//!   allows. Sessions are SameSite=Strict and their changes need the CSRF token besides.
//! - **A refused upload** closes its connection: an error answered to an HTTP/1 request that
//!   carried a body says `Connection: close`, since the body may be left unread and the
//!   connection cannot be reused safely; a client that pools connections would otherwise
//!   send its next request down a connection the server is closing.
//! - **Panics** are caught and answered as a 500 in the one error shape; **requests** that
//!   take longer than [`REQUEST_TIMEOUT`] get 504 (the longest wait a caller may ask for, an
//!   RPC or a take, is within it), and a request body that stalls for [`BODY_TIMEOUT`] ends.

use super::AppError;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// What an answer that is not a page may load, if a browser opens it: nothing.
pub const DEFAULT_POLICY: &str =
    "default-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// What a page may load: only the script and stylesheet the page itself names with this
/// answer's `nonce` (the one script and the one stylesheet of `web/static/`), so neither an
/// injected tag nor a same-origin URL that serves something else (an ingress answer made of
/// a plugin's words) is run or applied; images, the live consume's events and forms only from
/// here; no frames, no plugins, no `<base>`.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'"
    )
}

/// A fresh nonce for one page's answer.
pub fn nonce() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 18]>())
}

/// What an ingress answer may do: nothing active. `sandbox` gives it an opaque origin (no
/// cookies, no storage of ours), no script and no forms.
pub const INGRESS_POLICY: &str = "sandbox; default-src 'none'; frame-ancestors 'none'";

/// The longest a request may take: the longest wait a caller may ask for (a take or an RPC,
/// `MAX_WAIT_MS`) and some.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(super::MAX_WAIT_MS + 30_000);
/// How long a request's body may stall before the request ends.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// HSTS's max-age: a year.
const HSTS: &str = "max-age=31536000";

/// The layers every answer passes through.
pub fn layer(router: Router, tls: bool) -> Router {
    let router = router
        .layer(axum::middleware::from_fn(refuse_cross_site))
        .layer(axum::middleware::from_fn(close_after_refused_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::map_response(timeout_in_our_words))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(CatchPanicLayer::custom(|_| {
            AppError::Internal.into_response()
        }))
        .layer(if_absent(header::CONTENT_SECURITY_POLICY, DEFAULT_POLICY))
        .layer(if_absent(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(if_absent(header::X_FRAME_OPTIONS, "DENY"))
        .layer(if_absent(header::REFERRER_POLICY, "same-origin"))
        .layer(if_absent(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ));
    if tls {
        router.layer(if_absent(header::STRICT_TRANSPORT_SECURITY, HSTS))
    } else {
        router
    }
}

fn if_absent(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// tower-http's timeout answers with an empty body: say it in the API's shape.
async fn timeout_in_our_words(response: Response) -> Response {
    if response.status() == StatusCode::GATEWAY_TIMEOUT
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        return AppError::Timeout(format!(
            "the request took longer than {} s and was ended",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_response();
    }
    response
}

/// Ends an HTTP/1 connection after an error answered to a request with a body: the handler
/// may have refused it before reading the body (a role, a size, a type), and the unread rest
/// cannot be told apart from the next request.
async fn close_after_refused_body(request: Request, next: Next) -> Response {
    let http1 = request.version() < axum::http::Version::HTTP_2;
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0");
    let mut response = next.run(request).await;
    let refused = response.status().is_client_error() || response.status().is_server_error();
    if http1 && has_body && refused {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Refuses a change a browser says comes from another site.
async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if reads || request.uri().path().starts_with("/ingress/") || same_site(&request) {
        return next.run(request).await;
    }
    AppError::Forbidden(
        "a change from another site is refused; use this host's own pages, or a token".into(),
    )
    .into_response()
}

/// Whether a request came from this site (or not from a browser at all), by what the browser
/// says: `Sec-Fetch-Site` where it sends it, else whether `Origin` is this host.
fn same_site(request: &Request) -> bool {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    url::Url::parse(origin).is_ok_and(|origin| {
        let port = origin.port().map(|p| format!(":{p}")).unwrap_or_default();
        origin
            .host_str()
            .is_some_and(|h| format!("{h}{port}").eq_ignore_ascii_case(host))
    })
}

/// Headers a plugin's reply may not set on an ingress answer: the listener is the admin UI's
/// origin too, so what acts on that origin comes only from the host: cookies, cross-origin
/// grants, transport, content and reporting policies, credential prompts, redirects and hints
/// to fetch or run anything. A reply's other headers (its own data: `exception`, `UUID`,
/// `x-…`) pass.
pub fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "set-cookie",
        "access-control-",
        "cross-origin-",
        "content-security-policy",
        "public-key-pins",
        "sec-",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
        || matches!(
            name.as_str(),
            "strict-transport-security"
                | "expect-ct"
                | "x-content-type-options"
                | "x-frame-options"
                | "x-xss-protection"
                | "referrer-policy"
                | "permissions-policy"
                | "feature-policy"
                | "document-policy"
                | "clear-site-data"
                | "refresh"
                | "location"
                | "link"
                | "alt-svc"
                | "origin-agent-cluster"
                | "x-permitted-cross-domain-policies"
                | "x-dns-prefetch-control"
                | "nel"
                | "report-to"
                | "reporting-endpoints"
                | "www-authenticate"
                | "proxy-authenticate"
                | "accept-ch"
                | "critical-ch"
                | "service-worker-allowed"
                | "timing-allow-origin"
                | "set-login"
                | "supports-loading-mode"
                | "speculation-rules"
        )
}

/// Marks an ingress answer as a sandboxed, unsniffed document of no origin of ours.
pub fn sandbox(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(INGRESS_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn app() -> Router {
        let router = Router::new()
            .route("/page", get(|| async { "hello" }))
            .route("/boom", get(boom))
            .route("/change", post(|| async { "changed" }))
            .route("/ingress/x", post(|| async { "taken" }));
        layer(router, true)
    }

    async fn boom() -> &'static str {
        panic!("a bug")
    }

    async fn send(request: Request<Body>) -> Response {
        app().oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn every_answer_carries_the_headers() {
        let answer = send(Request::get("/page").body(Body::empty()).unwrap()).await;
        let headers = answer.headers();
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], DEFAULT_POLICY);
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
        assert_eq!(headers[header::STRICT_TRANSPORT_SECURITY], HSTS);
        let page = page_policy("n0nce");
        assert!(page.contains("script-src 'nonce-n0nce'") && !page.contains("unsafe"));
        assert!(
            !page.contains("script-src 'self'"),
            "no same-origin URL runs as script"
        );
    }

    #[tokio::test]
    async fn a_panic_is_a_500_in_the_one_error_shape() {
        let answer = send(Request::get("/boom").body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            answer
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
        let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("a bug"), "no internals: {body}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_takes_too_long_is_ended_in_the_one_error_shape() {
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        );
        let answer = layer(slow, false)
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "timeout", "{body}");
    }

    #[tokio::test]
    async fn a_refused_request_with_a_body_closes_its_connection() {
        let refused = |length: &str| {
            Request::post("/change")
                .header("sec-fetch-site", "cross-site")
                .header(header::CONTENT_LENGTH, length)
                .body(Body::from("x".repeat(length.parse().unwrap())))
                .unwrap()
        };
        let answer = send(refused("1000")).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        assert_eq!(answer.headers()[header::CONNECTION], "close");
        // Without a body, or when the answer is a success, the connection stays.
        let answer = send(refused("0")).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        assert!(!answer.headers().contains_key(header::CONNECTION));
        let accepted = Request::post("/change")
            .header(header::CONTENT_LENGTH, "3")
            .body(Body::from("abc"))
            .unwrap();
        let answer = send(accepted).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(!answer.headers().contains_key(header::CONNECTION));
    }

    #[tokio::test]
    async fn a_change_from_another_site_is_refused() {
        let from = |site: &str| {
            Request::post("/change")
                .header("sec-fetch-site", site)
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            send(from("cross-site")).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            send(from("same-site")).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(send(from("same-origin")).await.status(), StatusCode::OK);
        let origin = |origin: &str| {
            Request::post("/change")
                .header(header::HOST, "wharf.example:8080")
                .header(header::ORIGIN, origin)
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            send(origin("https://evil.example")).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            send(origin("http://wharf.example:8080")).await.status(),
            StatusCode::OK
        );
        // No browser: a service or the CLI.
        let plain = Request::post("/change").body(Body::empty()).unwrap();
        assert_eq!(send(plain).await.status(), StatusCode::OK);
        // Ingress may come from anywhere its token allows.
        let ingress = Request::post("/ingress/x")
            .header("sec-fetch-site", "cross-site")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(ingress).await.status(), StatusCode::OK);
    }

    #[test]
    fn a_plugin_sets_no_security_header() {
        for name in [
            "Set-Cookie",
            "content-security-policy",
            "Content-Security-Policy-Report-Only",
            "X-Frame-Options",
            "x-content-type-options",
            "Strict-Transport-Security",
            "Access-Control-Allow-Origin",
            "Cross-Origin-Resource-Policy",
            "Refresh",
            "NEL",
            "Report-To",
            "WWW-Authenticate",
            "Location",
            "Link",
        ] {
            assert!(is_reserved_header(name), "{name}");
        }
        assert!(!is_reserved_header("content-type"));
        assert!(!is_reserved_header("x-order-id"));
        assert!(!is_reserved_header("exception_name"));
        assert!(!is_reserved_header("UUID"));
    }
}
