//! The admin UI: server-rendered pages (templates in the top-level `web/`, compiled into the
//! binary), one file per noun, over the same operations as the JSON API (`ops/`), so a change
//! made here takes the API's one path and is checked and audited the same way.
//!
//! Every page needs a signed-in session ([`Page`]); the role each needs is in its handler's
//! signature, and every form's action carries the session's CSRF token in its URL, so both
//! are checked from the request's head before the form is read. A role sees only the pages
//! and actions it may use. Forms work without JavaScript; the one script of our own
//! (`web/static/wharf.js`) asks before destructive actions and runs the live consume, reading
//! only `data-` attributes: no value of ours is ever inside a script.

mod account;
mod audit;
mod connections;
mod daemons;
mod dashboard;
mod plugins;
mod queues;
mod routes;
mod send;
mod subscriptions;
mod units;
mod users;

use super::caller::{self, Allowed, Need, Refused, Surface, Treat};
use super::{AppError, AppState};
use crate::auth::Role;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
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
        "subscriptions.html",
        "subscription_form.html",
        "daemons.html",
        "daemon_form.html",
        "unit_actions.html",
        "plugins.html",
        "connections.html",
        "send.html",
        "queue.html",
        "queues.html",
        "users.html",
        "account.html",
        "connection.html",
        "audit.html"
    );
    env.add_filter("ms_time", crate::time::utc_text);
    // A value in a URL's path or query: everything but letters, digits and `-._~`
    // percent-encoded, so a `/`, `?` or `#` in a name or version cannot move a link or a
    // form's action elsewhere (names of `.` and `..` are refused where they are made).
    env.add_filter("segment", |text: &str| escape(text));
    env.add_filter("duration_ms", crate::time::span_text);
    env
});

/// The stylesheet and the one script, compiled into the binary.
const STYLE: &str = include_str!("../../../../web/static/style.css");
const SCRIPT: &str = include_str!("../../../../web/static/wharf.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// `upload_limit`: the largest plugin upload; every other form is held to the router's limit.
pub fn router(upload_limit: usize) -> Router<AppState> {
    let router = Router::new();
    let router = units::pages::<crate::config::RouteConfig>(router);
    let router = units::pages::<crate::config::SubscriptionConfig>(router);
    let router = units::pages::<crate::config::DaemonConfig>(router);
    router
        .route(
            "/static/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/static/wharf.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route("/logout", post(account::logout))
        .route(
            "/account",
            get(account::password_page).post(account::change_password),
        )
        .route("/", get(dashboard::page))
        .route(
            "/plugins",
            get(plugins::list)
                .post(plugins::upload)
                .layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/plugins/{name}/versions/{version}/{action}",
            post(plugins::version),
        )
        .route("/plugins/{name}/rollback", post(plugins::rollback))
        .route("/plugins/{name}/grants", post(plugins::grant))
        .route(
            "/connections",
            get(connections::list).post(connections::add),
        )
        .route("/connections/test", post(connections::test_new))
        .route(
            "/connections/{name}",
            get(connections::page).post(connections::update),
        )
        .route("/connections/{name}/test", post(connections::test))
        .route("/connections/{name}/delete", post(connections::remove))
        .route("/send", get(send::page).post(send::send))
        .route("/send/event", post(send::event))
        .route("/queue", get(queues::page))
        .route("/queue/take", post(queues::take))
        .route("/queue/purge", post(queues::purge))
        .route("/queue/replay", post(queues::replay))
        .route("/queue/lease", post(queues::settle_lease))
        .route("/queue/leases", post(queues::settle_leases))
        .route("/queue/stream/stop", post(queues::stop_stream))
        .route("/queue/live", get(queues::live))
        .route("/users", get(users::page).post(users::add))
        .route("/users/{name}/delete", post(users::remove))
        .route("/users/{name}/role", post(users::change_role))
        .route("/users/{name}/reset", post(users::reset_link))
        .route("/users/{name}/{action}", post(users::set_state))
        .route("/tokens", post(users::create_token))
        .route("/tokens/{id}/revoke", post(users::revoke_token))
        .route("/settings/registration", post(users::set_registration))
        .route("/audit", get(audit::page))
}

/// The pages of people not signed in yet (sign-in, the first admin's set-up, registration,
/// reset links): their bodies are kept small (`MAX_ANONYMOUS_BODY`).
pub fn anonymous_router() -> Router<AppState> {
    Router::new()
        .route("/login", get(account::login_page).post(account::login))
        .route("/setup", get(account::setup_page).post(account::setup))
        .route(
            "/register",
            get(account::register_page).post(account::register),
        )
        .route(
            "/reset/{token}",
            get(account::reset_page).post(account::reset),
        )
}

/// A signed-in user on a page, whose role is `R` or above (and, for a form, whose CSRF token
/// came in the action's URL), checked before the form is read. Without a session: to the
/// sign-in page.
pub struct Page<R> {
    pub who: Allowed<R>,
}

/// [`Page`], for a request that takes messages on GET (the live consume): its CSRF token is
/// checked as for a change.
pub struct Taking<R> {
    pub who: Allowed<R>,
}

/// Why a page was not shown.
pub struct Refusal(Response);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.0
    }
}

fn refusal(refused: Refused) -> Refusal {
    Refusal(match refused {
        Refused::NoCaller(_) => Redirect::to("/login").into_response(),
        Refused::Other(AppError::Unauthorized(_)) => Redirect::to("/login").into_response(),
        Refused::Other(error) => {
            let (status, text) = error.status_and_message();
            let title = if status == StatusCode::FORBIDDEN {
                "Not allowed"
            } else {
                "Something went wrong"
            };
            message(None, status, title, &text)
        }
    })
}

impl<R: Need> FromRequestParts<AppState> for Page<R> {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        caller::admit(parts, state, Surface::Ui, Treat::ByMethod)
            .await
            .map(|who| Page { who })
            .map_err(refusal)
    }
}

impl<R: Need> axum::extract::OptionalFromRequestParts<AppState> for Page<R> {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Refusal> {
        match caller::admit(parts, state, Surface::Ui, Treat::ByMethod).await {
            Ok(who) => Ok(Some(Page { who })),
            Err(Refused::NoCaller(_) | Refused::Other(AppError::Unauthorized(_))) => Ok(None),
            Err(refused) => Err(refusal(refused)),
        }
    }
}

impl<R: Need> FromRequestParts<AppState> for Taking<R> {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        caller::admit(parts, state, Surface::Ui, Treat::AsChange)
            .await
            .map(|who| Taking { who })
            .map_err(refusal)
    }
}

/// What every page shows of who is signed in.
pub struct Viewing {
    name: String,
    role: Role,
    csrf: String,
}

impl<R> Page<R> {
    pub fn viewing(&self) -> Viewing {
        Viewing {
            name: self.who.caller.name.clone(),
            role: self.who.caller.role,
            csrf: self.who.csrf.clone().unwrap_or_default(),
        }
    }

    /// Renders `template` for this page's user.
    pub fn render(
        &self,
        template: &str,
        current: &str,
        status: StatusCode,
        ctx: Value,
    ) -> Response {
        render(template, Some(&self.viewing()), current, status, ctx)
    }

    /// A page saying what went wrong, in the API's words.
    pub fn error(&self, error: AppError) -> Response {
        let (status, text) = error.status_and_message();
        message(Some(&self.viewing()), status, "That did not work", &text)
    }
}

/// The navigation a role is offered, with `current` marked.
fn nav(role: Role, current: &str) -> Vec<Value> {
    let mut items = vec![
        ("/", "Dashboard"),
        ("/routes", "Routes"),
        ("/subscriptions", "Subscriptions"),
        ("/daemons", "Daemons"),
        ("/plugins", "Plugins"),
        ("/connections", "Connections"),
        ("/queue", "Queues"),
    ];
    if role >= Role::Operator {
        items.push(("/send", "Send"));
    }
    if role >= Role::Admin {
        items.push(("/users", "Users"));
        items.push(("/audit", "Audit log"));
    }
    items
        .into_iter()
        .map(|(href, label)| context! { href, label, current => href == current })
        .collect()
}

/// Renders `template` for `viewing` (or nobody, before sign-in) with `ctx`.
pub fn render(
    template: &str,
    viewing: Option<&Viewing>,
    current: &str,
    status: StatusCode,
    ctx: Value,
) -> Response {
    let base = match viewing {
        Some(v) => context! {
            user => context! { name => v.name.clone(), role => v.role.as_str() },
            csrf => v.csrf.clone(),
            nav => nav(v.role, current),
            can_operate => v.role >= Role::Operator,
            can_change => v.role >= Role::Admin,
        },
        None => context! {},
    };
    let nonce = super::security::nonce();
    let policy = super::security::page_policy(&nonce);
    let rendered = TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(context! { nonce, ..context! { ..ctx, ..base } }));
    match rendered {
        Ok(html) => (
            status,
            [
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (header::CONTENT_SECURITY_POLICY, policy),
            ],
            Html(html),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, template, "a page could not be rendered");
            AppError::Internal.into_response()
        }
    }
}

/// A page that says one thing.
pub fn message(viewing: Option<&Viewing>, status: StatusCode, title: &str, text: &str) -> Response {
    render(
        "message.html",
        viewing,
        "",
        status,
        context! { title, text, error => !status.is_success() },
    )
}

/// An API error as a page for someone not signed in, in the API's words.
pub fn page_error(error: AppError) -> Response {
    let (status, text) = error.status_and_message();
    message(None, status, "Something went wrong", &text)
}

/// An API error as a form's flash, in the API's words, with its status: for a page that
/// shows the form again, as it was.
pub fn failed(error: AppError) -> (StatusCode, Value) {
    let (status, text) = error.status_and_message();
    (status, context! { kind => "error", text })
}

/// A flash saying what went well.
pub fn ok_note(text: impl Into<String>) -> Value {
    context! { kind => "ok", text => text.into() }
}

/// Back to `to` with a note saying what happened (a 303: the browser GETs it). The note is
/// signed, so a link made elsewhere cannot put words of its own on the host's pages.
pub fn done(to: &str, note: &str) -> Response {
    let separator = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!(
        "{to}{separator}ok={}&sig={}",
        escape(note),
        note_signature(note)
    ))
    .into_response()
}

/// The key notes are signed with: this process's own (a redirect comes back to the host that
/// made it).
static NOTE_KEY: LazyLock<[u8; 32]> = LazyLock::new(rand::random);

fn note_signature(note: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&*NOTE_KEY).expect("any key length");
    mac.update(note.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub use crate::address::escape;

/// The note a redirect carried (`?ok=`, signed by [`done`]), as a flash; a note without its
/// signature is not shown.
pub fn flash(query: &std::collections::HashMap<String, String>) -> Option<Value> {
    let text = query.get("ok")?;
    let signature = query.get("sig")?;
    caller::same_secret(&note_signature(text), signature).then(|| ok_note(text.clone()))
}

/// The query of a page: `?ok=` notes and a page's own fields.
pub type Params = axum::extract::Query<std::collections::HashMap<String, String>>;

/// The scheme and host people reach this host at, for links shown to them (`https` over
/// TLS, or behind a proxy that says it ended TLS).
pub fn origin(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    let scheme = if caller::is_secure(state, headers) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}
