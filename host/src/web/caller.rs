//! Who is calling, and whether they may: the one place every request's caller, role and CSRF
//! token are checked, before its body is read.
//!
//! - **Tokens** (`Authorization: Bearer …`, for services and the CLI) are looked up by their
//!   SHA-256. They carry no cookie, so they need no CSRF token.
//! - **Sessions** (the admin UI's): the cookie `wharf_session` is HttpOnly and
//!   SameSite=Strict (and Secure when the listener speaks TLS or a proxy in front says it
//!   ended TLS); the store keeps only its SHA-256. A change made through a session presents
//!   the session's CSRF token, compared in constant time: JavaScript and API clients in
//!   `X-CSRF-Token`, the UI's forms in the `csrf` parameter of their action's URL, so that it
//!   is checked from the request's head like everything else here, before any body is read
//!   (an upload is refused before a byte of it arrives). A cross-site request cannot carry
//!   the cookie (SameSite) and is refused by [`super::security`] besides.
//! - **Roles** are part of each handler's signature: [`Allowed<Admin>`] is a caller who is an
//!   admin, and the operations (`ops/`) take it, so a change cannot be reached without the
//!   check.

use super::{AppError, AppState};
use crate::auth::{Caller, Role};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub const SESSION_COOKIE: &str = "wharf_session";
const CSRF_HEADER: &str = "x-csrf-token";
/// The query parameter a form's action carries the CSRF token in.
pub const CSRF_PARAM: &str = "csrf";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A role a handler needs, as a type: [`Viewer`], [`Operator`] or [`Admin`].
pub trait Need: Send + Sync + 'static {
    const ROLE: Role;
}

/// Reading.
pub enum Viewer {}
/// Publishing, taking, purging, replaying; stopping and starting units.
pub enum Operator {}
/// Everything: connections, plugins, routes, users, tokens, settings, the audit log.
pub enum Admin {}

impl Need for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl Need for Operator {
    const ROLE: Role = Role::Operator;
}
impl Need for Admin {
    const ROLE: Role = Role::Admin;
}

/// How a request reached the host, as the audit log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The admin UI's pages (a session).
    Ui,
    /// The JSON API (a token, or a session's script).
    Api,
    /// The `wharf` command line (a token, told by its User-Agent; or a command working on the
    /// database directly).
    Cli,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Ui => "ui",
            Via::Api => "api",
            Via::Cli => "cli",
        }
    }
}

/// The User-Agent the `wharf` command line sends.
pub const CLI_AGENT: &str = concat!("wharf-cli/", env!("CARGO_PKG_VERSION"));

/// A caller whose role is `R` or above, checked (with the session's CSRF token, for a change
/// made through a session) before the request's body was read.
pub struct Allowed<R> {
    pub caller: Caller,
    /// How the request came: for the audit log.
    pub via: Via,
    /// The address the request came from.
    pub peer: Option<IpAddr>,
    /// The session's CSRF token (none for a token), for pages to put in their forms.
    pub csrf: Option<String>,
    /// One of the caller's requests in flight (`limits::MAX_IN_FLIGHT`), held as long as
    /// the request is handled.
    _in_flight: Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>,
    role: PhantomData<R>,
}

impl<R> Allowed<R> {
    /// The same caller, for an operation that needs less.
    pub fn lesser<S: Need>(&self) -> Allowed<S> {
        debug_assert!(self.caller.role >= S::ROLE);
        Allowed {
            caller: self.caller.clone(),
            via: self.via,
            peer: self.peer,
            csrf: self.csrf.clone(),
            _in_flight: self._in_flight.clone(),
            role: PhantomData,
        }
    }
}

/// Where a request may present its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The JSON API and ingress: a token or a session.
    Api,
    /// The admin UI: a session only.
    Ui,
}

/// Whether a request is checked as a change (its CSRF token needed through a session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treat {
    /// By its method: GET and HEAD read, everything else changes.
    ByMethod,
    /// As a change whatever its method (ingress sends a message on GET too; the live consume
    /// takes messages).
    AsChange,
}

/// Why a caller was not let through.
#[derive(Debug)]
pub enum Refused {
    /// No token or session: an API answers 401, a page sends to the sign-in page.
    NoCaller(AppError),
    /// A caller, but not this: 401 (token revoked, session ended) or 403 (role, CSRF).
    Other(AppError),
}

impl From<Refused> for AppError {
    fn from(refused: Refused) -> AppError {
        match refused {
            Refused::NoCaller(e) | Refused::Other(e) => e,
        }
    }
}

impl From<crate::store::StoreError> for Refused {
    fn from(e: crate::store::StoreError) -> Self {
        Refused::Other(e.into())
    }
}

/// The one check: who the caller of a request's head is, and whether `needed` and (for a
/// change through a session) the CSRF token let them through.
pub async fn admit<R: Need>(
    parts: &Parts,
    state: &AppState,
    surface: Surface,
    treat: Treat,
) -> Result<Allowed<R>, Refused> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let headers = &parts.headers;
    let changes = treat == Treat::AsChange || !matches!(parts.method, Method::GET | Method::HEAD);
    let (caller, via, csrf) = match headers.get(header::AUTHORIZATION) {
        Some(value) if surface == Surface::Api => {
            let token = value
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    Refused::Other(AppError::Unauthorized(
                        "send the token as `Authorization: Bearer TOKEN`".into(),
                    ))
                })?;
            let Some((name, role)) = state
                .store
                .token_caller(&crate::auth::token_digest(token))
                .await?
            else {
                return Err(Refused::Other(AppError::Unauthorized(
                    "the token is unknown or revoked".into(),
                )));
            };
            let cli = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|agent| agent.starts_with("wharf-cli/"));
            let via = if cli { Via::Cli } else { Via::Api };
            (Caller::token(&name, role), via, None)
        }
        _ => {
            let Some((caller, csrf)) = session_of(state, headers).await? else {
                return Err(Refused::NoCaller(AppError::Unauthorized(match surface {
                    Surface::Api => "this needs an API token (`Authorization: Bearer TOKEN`; `wharf token create` makes one) or a signed-in session".into(),
                    Surface::Ui => "sign in first".into(),
                })));
            };
            if changes {
                let presented = headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .or_else(|| query_param(parts, CSRF_PARAM));
                if !presented.is_some_and(|p| same_secret(&csrf, &p)) {
                    return Err(Refused::Other(AppError::Forbidden(match surface {
                        Surface::Api => "a change made through a session needs its CSRF token in `X-CSRF-Token`".into(),
                        Surface::Ui => "this form did not carry this session's CSRF token; reload the page and try again".into(),
                    })));
                }
            }
            let via = match surface {
                Surface::Api => Via::Api,
                Surface::Ui => Via::Ui,
            };
            (caller, via, Some(csrf))
        }
    };
    if caller.role < R::ROLE {
        // Refusals are audited, a few a minute per caller (written here, below `ops/`, whose
        // audit module takes an `Allowed`).
        if state.limits.audit_refusal(&caller.actor()) {
            let entry = crate::store::NewAudit {
                at_ms: crate::message::now_ms() as i64,
                actor: caller.actor(),
                via: via.as_str(),
                peer: peer.map(|p| p.to_string()),
                action: "request.refused",
                target: caller.actor(),
                detail: serde_json::json!({
                    "method": parts.method.as_str(),
                    "path": crate::broker::shorten(parts.uri.path()),
                    "role": caller.role.to_string(),
                    "needs": R::ROLE.to_string(),
                })
                .to_string(),
            };
            if let Err(error) = state.store.add_audit(&entry).await {
                tracing::error!(%error, actor = entry.actor, "could not write a refusal to the audit log");
            }
        }
        return Err(Refused::Other(AppError::Forbidden(format!(
            "`{}` is a {}; this needs {} or above",
            caller.name,
            caller.role,
            R::ROLE
        ))));
    }
    let in_flight = state
        .limits
        .in_flight(&caller.actor())
        .map_err(Refused::Other)?;
    Ok(Allowed {
        caller,
        via,
        peer,
        csrf,
        _in_flight: Some(std::sync::Arc::new(in_flight)),
        role: PhantomData,
    })
}

impl<R: Need> FromRequestParts<AppState> for Allowed<R> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        admit(parts, state, Surface::Api, Treat::ByMethod)
            .await
            .map_err(AppError::from)
    }
}

/// Whether `presented` is `expected` (a CSRF token, a signature), in time that does not
/// depend on where they differ.
pub fn same_secret(expected: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

fn query_param(parts: &Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The signed-in user of a request's session cookie, with the session's CSRF token; `None`
/// without a live session.
pub async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Caller, String)>, crate::store::StoreError> {
    let jar = CookieJar::from_headers(headers);
    let Some(session) = jar.get(SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(state
        .store
        .session_caller(&crate::auth::token_digest(session.value()), super::now_ms())
        .await?
        .map(|(name, role, csrf)| (Caller::user(&name, role), csrf)))
}

/// The session cookie's digest, if the request has one.
pub fn session_digest(headers: &HeaderMap) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(SESSION_COOKIE)
        .map(|c| crate::auth::token_digest(c.value()))
}

/// Whether answers to this request go out over TLS: the listener's own, or a proxy in front
/// that ended it and says so (`X-Forwarded-Proto: https`). Cookies are then `Secure`.
pub fn is_secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.tls
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// A cookie of ours: HttpOnly, SameSite=Strict, Secure over TLS, for `path`, living
/// `max_age` (zero: removed).
pub fn cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    max_age: Duration,
    secure: bool,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .path(path)
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build()
}

/// The peer a request came from.
pub fn peer_of(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The address a request came from, when the listener knows it.
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(peer_of(parts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_must_match_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", ""));
    }
}
