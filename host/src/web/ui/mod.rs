//! The admin UI: server-rendered pages (templates in the top-level `web/`, compiled into the
//! binary) over the same handlers as the JSON API, so a change made here takes the API's one
//! path and is checked the same way. Every page needs a signed-in session; every form carries
//! the session's CSRF token, checked before anything changes; a role sees only the pages and
//! actions it may use, and the server checks the role again on every action. Forms work
//! without JavaScript.

mod pages;

use super::caller::{self, session_of};
use super::{AppError, AppState};
use crate::auth::{Caller, Role};
use axum::Router;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{Environment, Value, context};
use std::sync::LazyLock;

/// The templates, compiled into the binary.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    macro_rules! add {
        ($($name:literal),*) => {$(
            env.add_template($name, include_str!(concat!("../../../../web/templates/", $name)))
                .expect(concat!("template ", $name));
        )*};
    }
    add!(
        "base.html",
        "login.html",
        "setup.html",
        "message.html",
        "dashboard.html",
        "routes.html",
        "route_form.html",
        "plugins.html",
        "connections.html",
        "send.html",
        "queue.html",
        "users.html",
        "account.html",
        "connection.html"
    );
    env.add_filter("ms_time", |ms: i64| -> String {
        let secs = ms.div_euclid(1000);
        let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        )
    });
    env
});

/// Days since 1970-01-01 as a calendar date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The stylesheet and the one script, compiled into the binary.
const STYLE: &str = include_str!("../../../../web/static/style.css");
const LIVE_SCRIPT: &str = include_str!("../../../../web/static/live.js");

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        LIVE_SCRIPT,
    )
        .into_response()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/style.css", get(stylesheet))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/setup", get(pages::setup_page).post(pages::setup))
        .route("/", get(pages::dashboard))
        .route("/routes", get(pages::routes))
        .route(
            "/routes/new",
            get(pages::new_route).post(pages::create_route),
        )
        .route(
            "/routes/{name}",
            get(pages::route).post(pages::update_route),
        )
        .route("/routes/{name}/delete", post(pages::delete_route))
        .route("/routes/{name}/stop", post(pages::stop_route))
        .route("/routes/{name}/start", post(pages::start_route))
        .route("/plugins", get(pages::plugins).post(pages::upload_plugin))
        .route(
            "/plugins/{name}/versions/{version}/{action}",
            post(pages::plugin_version),
        )
        .route("/plugins/{name}/rollback", post(pages::rollback_plugin))
        .route("/plugins/{name}/grants", post(pages::grant_plugin))
        .route(
            "/connections",
            get(pages::connections).post(pages::add_connection),
        )
        .route("/connections/test", post(pages::test_new_connection))
        .route(
            "/connections/{name}",
            get(pages::connection).post(pages::update_connection),
        )
        .route("/connections/{name}/test", post(pages::test_connection))
        .route("/connections/{name}/delete", post(pages::remove_connection))
        .route("/send", get(pages::send_page).post(pages::send))
        .route("/queue", get(pages::queue))
        .route("/queue/take", post(pages::take))
        .route("/queue/purge", post(pages::purge))
        .route("/queue/replay", post(pages::replay))
        .route("/queue/live", get(pages::live))
        .route("/static/live.js", get(script))
        .route("/users", get(pages::users).post(pages::add_user))
        .route("/users/{name}/delete", post(pages::remove_user))
        .route("/tokens", post(pages::create_token))
        .route("/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/users/{name}/role", post(pages::change_role))
        .route("/users/{name}/reset", post(pages::reset_link))
        .route("/users/{name}/{action}", post(pages::user_state))
        .route("/settings/registration", post(pages::set_registration))
        .route("/register", get(pages::register_page).post(pages::register))
        .route(
            "/account",
            get(pages::account_page).post(pages::change_password),
        )
        .route("/reset/{token}", get(pages::reset_page).post(pages::reset))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}

/// A signed-in user, on a page.
pub struct Page {
    pub caller: Caller,
    pub csrf: String,
}

/// Why a page was not shown: sign in first (or set up the first admin).
pub struct SignInFirst(Response);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<AppState> for Page {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, SignInFirst> {
        match session_of(state, &parts.headers).await {
            Ok(Some((caller, csrf))) => Ok(Page { caller, csrf }),
            Ok(None) => Err(SignInFirst(Redirect::to("/login").into_response())),
            Err(error) => Err(SignInFirst(page_error(error))),
        }
    }
}

impl OptionalFromRequestParts<AppState> for Page {
    type Rejection = SignInFirst;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, SignInFirst> {
        match session_of(state, &parts.headers).await {
            Ok(found) => Ok(found.map(|(caller, csrf)| Page { caller, csrf })),
            Err(error) => Err(SignInFirst(page_error(error))),
        }
    }
}

impl Page {
    /// Refuses (403) below `role`, and a form whose CSRF token is not the session's.
    pub fn may(&self, role: Role, form_csrf: &str) -> Result<(), Box<Response>> {
        if form_csrf != self.csrf {
            return Err(Box::new(message(
                Some(self),
                StatusCode::FORBIDDEN,
                "Refused",
                "This form did not carry this session's CSRF token; reload the page and try again.",
            )));
        }
        self.at_least(role)
    }

    /// Refuses (403) below `role`.
    pub fn at_least(&self, role: Role) -> Result<(), Box<Response>> {
        if self.caller.role < role {
            return Err(Box::new(message(
                Some(self),
                StatusCode::FORBIDDEN,
                "Not allowed",
                &format!(
                    "`{}` is a {}; this needs {role} or above.",
                    self.caller.name, self.caller.role
                ),
            )));
        }
        Ok(())
    }
}

/// The navigation a role is offered, with `current` marked.
fn nav(role: Role, current: &str) -> Vec<Value> {
    let mut items = vec![
        ("/", "Dashboard"),
        ("/routes", "Routes"),
        ("/plugins", "Plugins"),
        ("/connections", "Connections"),
        ("/queue", "Queues"),
    ];
    if role >= Role::Operator {
        items.push(("/send", "Send"));
    }
    if role >= Role::Admin {
        items.push(("/users", "Users"));
    }
    items
        .into_iter()
        .map(|(href, label)| context! { href, label, current => href == current })
        .collect()
}

/// Renders `template` for `page` (or nobody, before sign-in) with `ctx`.
pub fn render(
    template: &str,
    page: Option<&Page>,
    current: &str,
    status: StatusCode,
    ctx: Value,
) -> Response {
    let base = match page {
        Some(page) => context! {
            user => context! { name => page.caller.name.clone(), role => page.caller.role.as_str() },
            csrf => page.csrf.clone(),
            nav => nav(page.caller.role, current),
            can_operate => page.caller.role >= Role::Operator,
            can_change => page.caller.role >= Role::Admin,
        },
        None => context! {},
    };
    let rendered = TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(context! { ..ctx, ..base }));
    match rendered {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, template, "a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// A page that says one thing.
pub fn message(page: Option<&Page>, status: StatusCode, title: &str, text: &str) -> Response {
    render(
        "message.html",
        page,
        "",
        status,
        context! { title, text, error => !status.is_success() },
    )
}

/// An API error as a page, in the API's words.
pub fn page_error(error: AppError) -> Response {
    let (status, text) = error.status_and_message();
    message(None, status, "Something went wrong", &text)
}

/// The same, for a signed-in user.
pub fn error_for(page: &Page, error: AppError) -> Response {
    let (status, text) = error.status_and_message();
    message(Some(page), status, "That did not work", &text)
}

/// An API error as a form's flash, in the API's words, with its status: for a page that
/// shows the form again, as it was.
pub fn failed(error: AppError) -> (StatusCode, Value) {
    let (status, text) = error.status_and_message();
    (status, context! { kind => "error", text })
}

/// Back to `to` with a note saying what happened.
pub fn done(to: &str, note: &str) -> Response {
    let separator = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{separator}ok={}", url_escape(note))).into_response()
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The note a redirect carried (`?ok=`), as a flash.
pub fn flash(query: &std::collections::HashMap<String, String>) -> Option<Value> {
    query
        .get("ok")
        .map(|text| context! { kind => "ok", text => text.clone() })
}

/// Whether the request came from this host's own machine (the first-admin page is offered
/// only there): the peer is a loopback address and no proxy forwarded it.
pub fn from_this_machine(peer: std::net::SocketAddr, headers: &HeaderMap) -> bool {
    peer.ip().is_loopback() && !headers.contains_key("x-forwarded-for")
}

pub use caller::sign_in;
