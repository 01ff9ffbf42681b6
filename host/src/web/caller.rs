//! Who is calling, and whether they may: an API token (`Authorization: Bearer …`, for
//! services and the CLI) or a signed-in session (a cookie, for the admin UI), checked against
//! the role each call needs.
//!
//! - A session is started by `POST /api/v1/login` with a name and password: the cookie
//!   `wharf_session` is HttpOnly and SameSite=Strict, and the store keeps only its SHA-256.
//!   Every change made through a session presents its CSRF token in `X-CSRF-Token` (a page of
//!   another site cannot read it), or is refused with 403.
//! - Sign-ins are throttled per user name: after [`Throttle::MAX_FAILURES`] failures within
//!   [`Throttle::WINDOW`] the next ones are refused with 429 until the window has passed, right
//!   password or not.

use super::{AppError, AppState, now_ms};
use crate::auth::{Caller, Role};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SESSION_COOKIE: &str = "wharf_session";
const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Failed sign-ins per user name.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    /// Failures allowed within the window.
    pub const MAX_FAILURES: u32 = 5;
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `name` must wait before trying again, if it must.
    fn wait(&self, name: &str) -> Option<Duration> {
        let failures = self.lock();
        let (count, since) = failures.get(name)?;
        let elapsed = since.elapsed();
        (*count >= Self::MAX_FAILURES && elapsed < Self::WINDOW).then(|| Self::WINDOW - elapsed)
    }

    fn failed(&self, name: &str) {
        let mut failures = self.lock();
        // Bounded: a flood of made-up names cannot grow it without end.
        if failures.len() > 100_000 {
            failures.retain(|_, (_, since)| since.elapsed() < Self::WINDOW);
        }
        let entry = failures
            .entry(name.to_owned())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= Self::WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    fn succeeded(&self, name: &str) {
        self.lock().remove(name);
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// The caller of a request: its token's, or its session's (for a change through a session,
/// only with the session's CSRF token).
async fn caller_of(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Caller, AppError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| {
                AppError::Unauthorized("send the token as `Authorization: Bearer TOKEN`".into())
            })?;
        return match state
            .store
            .token_caller(&crate::auth::token_digest(token))
            .await?
        {
            Some((name, role)) => Ok(Caller { name, role }),
            None => Err(AppError::Unauthorized(
                "the token is unknown or revoked".into(),
            )),
        };
    }
    let Some(session) = cookie(headers, SESSION_COOKIE) else {
        return Err(AppError::Unauthorized(
            "this needs an API token (`Authorization: Bearer TOKEN`; `wharf token create` makes one) or a signed-in session".into(),
        ));
    };
    let Some((name, role, csrf)) = state
        .store
        .session_caller(&crate::auth::token_digest(session), now_ms())
        .await?
    else {
        return Err(AppError::Unauthorized(
            "the session has ended; sign in again".into(),
        ));
    };
    let reads = matches!(*method, Method::GET | Method::HEAD);
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !reads && presented != Some(csrf.as_str()) {
        return Err(AppError::Forbidden(
            "a change made through a session needs its CSRF token in `X-CSRF-Token`".into(),
        ));
    }
    Ok(Caller { name, role })
}

/// Lets a request through when its caller's role suffices: reading (GET) needs viewer, every
/// other call operator.
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let needed = if matches!(*request.method(), Method::GET | Method::HEAD) {
        Role::Viewer
    } else {
        Role::Operator
    };
    admit(state, request, next, needed).await
}

/// Lets a request through for the control plane (connections, plugins, routes): reading
/// needs viewer, a change admin.
pub async fn authorize_control(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let needed = if matches!(*request.method(), Method::GET | Method::HEAD) {
        Role::Viewer
    } else {
        Role::Admin
    };
    admit(state, request, next, needed).await
}

/// Lets a request through only for an admin (users and tokens).
pub async fn authorize_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    admit(state, request, next, Role::Admin).await
}

async fn admit(state: AppState, mut request: Request, next: Next, needed: Role) -> Response {
    let caller = match caller_with(&state, request.method(), request.headers(), needed).await {
        Ok(caller) => caller,
        Err(refused) => return refuse(request, refused).await,
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The caller of a request, if its role is `needed` or above (401 or 403 otherwise).
pub async fn caller_with(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Caller, AppError> {
    let caller = caller_of(state, method, headers).await?;
    if caller.role < needed {
        return Err(AppError::Forbidden(format!(
            "`{}` is a {}; this needs {needed} or above",
            caller.name, caller.role
        )));
    }
    Ok(caller)
}

/// Answers a refused request, having read (and dropped) a small body first: a client that
/// keeps its connection open for the next request finds it usable, instead of closed under it
/// because a body was left unread.
async fn refuse(request: Request, refused: AppError) -> Response {
    const DRAIN: usize = 256 * 1024;
    let _ = axum::body::to_bytes(request.into_body(), DRAIN).await;
    refused.into_response()
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    name: String,
    password: String,
}

/// Signs a user in: a session cookie, and the CSRF token its changes must present.
#[utoipa::path(post, path = "/api/v1/login", tag = "sessions", security(()), request_body = Login,
    responses((status = 200, body = Object, description = "`{name, role, csrf}` and the session cookie"),
        (status = 401), (status = 429)))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let Json(Login { name, password }) = body?;
    let signed_in = sign_in(&state, &headers, &name, password).await?;
    Ok((
        [(header::SET_COOKIE, signed_in.cookie)],
        Json(json!({ "name": name, "role": signed_in.role.as_str(), "csrf": signed_in.csrf })),
    )
        .into_response())
}

/// A session just made.
pub struct SignedIn {
    /// The `Set-Cookie` value.
    pub cookie: String,
    pub role: Role,
    pub csrf: String,
}

/// Checks a name and password (throttled per name) and makes a session: what the API's
/// `/login` and the admin UI's sign-in page share.
pub async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    password: String,
) -> Result<SignedIn, AppError> {
    if let Some(wait) = state.throttle.wait(name) {
        return Err(AppError::TooManyRequests {
            message: format!(
                "too many failed sign-ins for `{}`; try again in {} s",
                crate::broker::shorten(name),
                wait.as_secs() + 1
            ),
            retry_after_s: wait.as_secs() + 1,
        });
    }
    let user = state.store.user_login(name).await?;
    // The hash is checked (slowly, off the async workers) even for an unknown name, so the
    // answer's timing does not tell which names exist.
    let hash = user
        .as_ref()
        .map(|(hash, _)| hash.clone())
        .unwrap_or_else(|| crate::auth::DECOY_HASH.as_str().to_owned());
    let matches =
        tokio::task::spawn_blocking(move || crate::auth::verify_password(&password, &hash))
            .await
            .unwrap_or(false);
    let role = match user {
        Some((_, role)) if matches => role,
        _ => {
            state.throttle.failed(name);
            return Err(AppError::Unauthorized(
                "the name or the password is wrong".into(),
            ));
        }
    };
    state.throttle.succeeded(name);
    let (session, digest) = crate::auth::new_token();
    let (csrf, _) = crate::auth::new_token();
    let now = now_ms();
    state
        .store
        .add_session(
            &digest,
            name,
            &csrf,
            now,
            now + SESSION_LIFETIME.as_millis() as i64,
        )
        .await?;
    // Behind a proxy that ends TLS the cookie is marked Secure, so a browser never sends it
    // over plain HTTP.
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    Ok(SignedIn { cookie, role, csrf })
}

/// The signed-in user of a request's session cookie, with the session's CSRF token; `None`
/// without a live session.
pub async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Caller, String)>, AppError> {
    let Some(session) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(state
        .store
        .session_caller(&crate::auth::token_digest(session), now_ms())
        .await?
        .map(|(name, role, csrf)| (Caller { name, role }, csrf)))
}

/// Ends the session of a request's cookie (and any that have expired); the `Set-Cookie`
/// value that clears it.
pub async fn sign_out(state: &AppState, headers: &HeaderMap) -> Result<String, AppError> {
    if let Some(session) = cookie(headers, SESSION_COOKIE) {
        state
            .store
            .remove_session(&crate::auth::token_digest(session), now_ms())
            .await?;
    }
    Ok(format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    ))
}

/// Ends the caller's session (and any that have expired).
#[utoipa::path(post, path = "/api/v1/logout", tag = "sessions", security(()),
    responses((status = 200, body = Object)))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let expired = sign_out(&state, &headers).await?;
    Ok((
        [(header::SET_COOKIE, expired)],
        Json(json!({ "signed_out": true })),
    )
        .into_response())
}
