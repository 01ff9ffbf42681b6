//! The admin UI's pages and form actions. Each action checks the session's CSRF token and
//! the role, then calls the JSON API's own handler, so the UI and the API change things the
//! same way.

use super::{Page, done, error_for, flash, from_this_machine, message, render};
use crate::auth::Role;
use crate::config::RouteConfig;
use crate::web::api::{self, JsonBody};
use crate::web::{AppError, AppState, access};
use axum::extract::{ConnectInfo, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;

type Params = Query<HashMap<String, String>>;

/// A note shown at the top of a page.
type Note = minijinja::Value;

/// A form that carries only its CSRF token.
#[derive(Deserialize)]
pub struct Plain {
    #[serde(default)]
    csrf: String,
}

// --- signing in ------------------------------------------------------------------------

pub async fn login_page(
    State(state): State<AppState>,
    Query(q): Params,
    page: Option<Page>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if page.is_some() {
        return Redirect::to("/").into_response();
    }
    if from_this_machine(peer, &headers) && state.store.users().await.is_ok_and(|u| u.is_empty()) {
        return Redirect::to("/setup").into_response();
    }
    let registration = access::registration_open(&state).await.unwrap_or(false);
    render(
        "login.html",
        None,
        "",
        StatusCode::OK,
        context! { title => "Sign in", name => "", registration, flash => flash(&q) },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    match super::sign_in(&state, &headers, &form.name, form.password).await {
        Ok(signed_in) => {
            ([(header::SET_COOKIE, signed_in.cookie)], Redirect::to("/")).into_response()
        }
        Err(error) => {
            let (status, flash) = super::failed(error);
            render(
                "login.html",
                None,
                "",
                status,
                context! { title => "Sign in", name => form.name, flash },
            )
        }
    }
}

pub async fn logout(
    State(state): State<AppState>,
    page: Page,
    headers: HeaderMap,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Viewer, &form.csrf) {
        return *refused;
    }
    match crate::web::caller::sign_out(&state, &headers).await {
        Ok(expired) => ([(header::SET_COOKIE, expired)], Redirect::to("/login")).into_response(),
        Err(error) => error_for(&page, error),
    }
}

const SETUP_COOKIE: &str = "wharf_setup";

/// The first-admin page: only while no user exists, only from this host's machine. Its form
/// is guarded by a token also set as a SameSite=Strict cookie, so another site cannot post it.
pub async fn setup_page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = setup_allowed(&state, peer, &headers).await {
        return refused;
    }
    let (token, _) = crate::auth::new_token();
    let cookie =
        format!("{SETUP_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/setup; Max-Age=3600");
    (
        [(header::SET_COOKIE, cookie)],
        render(
            "setup.html",
            None,
            "",
            StatusCode::OK,
            context! { title => "Set up", setup_token => token, name => "" },
        ),
    )
        .into_response()
}

async fn setup_allowed(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let empty = match state.store.users().await {
        Ok(users) => users.is_empty(),
        Err(error) => return Err(super::page_error(error.into())),
    };
    if !empty {
        return Err(Redirect::to("/login").into_response());
    }
    if !from_this_machine(peer, headers) {
        return Err(message(
            None,
            StatusCode::FORBIDDEN,
            "Set up from the host's machine",
            "The first admin is made from the host's own machine (this page, opened there), or with `wharf user add NAME --role admin`.",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    csrf: String,
    name: String,
    password: String,
}

pub async fn setup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Response {
    if let Err(refused) = setup_allowed(&state, peer, &headers).await {
        return refused;
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(&format!("{SETUP_COOKIE}="))
                .map(str::to_owned)
        });
    if cookie.as_deref() != Some(form.csrf.as_str()) {
        return message(
            None,
            StatusCode::FORBIDDEN,
            "Refused",
            "This form did not come from this host's set-up page; open /setup and try again.",
        );
    }
    let added = access::add_user(
        State(state.clone()),
        JsonBody(access::NewUser {
            name: form.name.clone(),
            password: form.password.clone(),
            role: "admin".into(),
        }),
    )
    .await;
    if let Err(error) = added {
        let (status, flash) = super::failed(error);
        return render(
            "setup.html",
            None,
            "",
            status,
            context! { title => "Set up", setup_token => form.csrf, name => form.name, flash },
        );
    }
    match super::sign_in(&state, &headers, &form.name, form.password).await {
        Ok(signed_in) => {
            ([(header::SET_COOKIE, signed_in.cookie)], Redirect::to("/")).into_response()
        }
        Err(error) => super::page_error(error),
    }
}

// --- dashboard -------------------------------------------------------------------------

pub async fn dashboard(State(state): State<AppState>, page: Page, Query(q): Params) -> Response {
    let status = state.supervisor.status().await;
    let up = status
        .connections
        .iter()
        .filter(|c| c.state == "up")
        .count();
    let running = status
        .units
        .iter()
        .filter(|u| u.state == crate::supervisor::UnitState::Running)
        .count();
    let totals = crate::metrics::route_totals();
    let (recent, window) = crate::metrics::recent();
    let counts: HashMap<String, Value> = status
        .units
        .iter()
        .map(|u| {
            let total = totals.get(&u.name).copied().unwrap_or_default();
            let recent = recent.get(&u.name).copied().unwrap_or_default();
            (u.name.clone(), json!({ "total": total, "recent": recent }))
        })
        .collect();
    let minutes = (window.as_secs() + 30) / 60;
    render(
        "dashboard.html",
        Some(&page),
        "/",
        StatusCode::OK,
        context! { title => "Dashboard", status, up, running, counts, minutes, flash => flash(&q) },
    )
}

// --- routes ----------------------------------------------------------------------------

pub async fn routes(State(state): State<AppState>, page: Page, Query(q): Params) -> Response {
    match api::routes::list(State(state)).await {
        Ok(Json(routes)) => render(
            "routes.html",
            Some(&page),
            "/routes",
            StatusCode::OK,
            context! { title => "Routes", routes, flash => flash(&q) },
        ),
        Err(error) => error_for(&page, error),
    }
}

/// The route form's fields, as typed.
#[derive(Deserialize, serde::Serialize, Default)]
pub struct RouteForm {
    #[serde(default)]
    csrf: String,
    name: String,
    from: String,
    #[serde(default)]
    through: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    dead_letter: String,
    #[serde(default)]
    concurrency: String,
    #[serde(default)]
    retry_max: String,
    #[serde(default)]
    backoff_ms: String,
}

impl RouteForm {
    fn of(route: &RouteConfig) -> RouteForm {
        RouteForm {
            csrf: String::new(),
            name: route.name.clone(),
            from: route.from.clone(),
            through: route.through.join(", "),
            to: route.to.clone().unwrap_or_default(),
            dead_letter: route.dead_letter.clone().unwrap_or_default(),
            concurrency: route.concurrency.to_string(),
            retry_max: route.retry.max.to_string(),
            backoff_ms: route.retry.backoff_ms.to_string(),
        }
    }

    /// The route, over `base` (what the form does not show is kept); a bad number names its
    /// field.
    fn route(&self, mut base: RouteConfig) -> Result<RouteConfig, AppError> {
        let number = |field: &str, text: &str| -> Result<Option<u64>, AppError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse().map(Some).map_err(|_| AppError::Invalid {
                field: field.into(),
                message: format!("`{text}` is not a whole number"),
            })
        };
        let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        base.name = self.name.trim().to_owned();
        base.from = self.from.trim().to_owned();
        base.through = self
            .through
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        base.to = optional(&self.to);
        base.dead_letter = optional(&self.dead_letter);
        if let Some(n) = number("concurrency", &self.concurrency)? {
            base.concurrency = n as usize;
        }
        if let Some(n) = number("retry_max", &self.retry_max)? {
            base.retry.max = n as u32;
        }
        if let Some(n) = number("backoff_ms", &self.backoff_ms)? {
            base.retry.backoff_ms = n;
        }
        Ok(base)
    }
}

async fn plugin_names(state: &AppState) -> Vec<String> {
    match api::plugins::list(State(state.clone())).await {
        Ok(Json(plugins)) => plugins.into_iter().map(|p| p.name).collect(),
        Err(_) => Vec::new(),
    }
}

async fn route_form(
    state: &AppState,
    page: &Page,
    status: StatusCode,
    form: &RouteForm,
    editing: bool,
    view: Option<Value>,
    error: Option<String>,
) -> Response {
    let readonly = view.as_ref().is_some_and(|v| v["source"] == "file");
    let title = if editing {
        format!("Route {}", form.name)
    } else {
        "New route".into()
    };
    render(
        "route_form.html",
        Some(page),
        "/routes",
        status,
        context! {
            title, form, editing, readonly, view,
            plugins => plugin_names(state).await,
            flash => error.map(|text| context! { kind => "error", text }),
        },
    )
}

pub async fn new_route(State(state): State<AppState>, page: Page) -> Response {
    if let Err(refused) = page.at_least(Role::Admin) {
        return *refused;
    }
    let form = RouteForm::of(&RouteConfig::default());
    route_form(&state, &page, StatusCode::OK, &form, false, None, None).await
}

pub async fn create_route(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<RouteForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let result = match form.route(RouteConfig::default()) {
        Ok(route) => api::routes::create(State(state.clone()), JsonBody(route))
            .await
            .map(drop),
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => done(
            &format!("/routes/{}", super::url_escape(form.name.trim())),
            "Route created and started.",
        ),
        Err(error) => {
            let (status, text) = error.status_and_message();
            route_form(&state, &page, status, &form, false, None, Some(text)).await
        }
    }
}

pub async fn route(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    match api::routes::get(State(state.clone()), Path(name)).await {
        Ok(Json(view)) => {
            let form = RouteForm::of(&view.route);
            let view = serde_json::to_value(&view).unwrap_or_default();
            let mut response =
                route_form(&state, &page, StatusCode::OK, &form, true, Some(view), None).await;
            if let Some(note) = flash(&q) {
                // Shown again with the note of what was done.
                response = render(
                    "route_form.html",
                    Some(&page),
                    "/routes",
                    StatusCode::OK,
                    context! {
                        title => format!("Route {}", form.name), form, editing => true,
                        readonly => false, plugins => plugin_names(&state).await,
                        view => api::routes::get(State(state.clone()), Path(form.name.clone())).await.ok().map(|Json(v)| serde_json::to_value(&v).unwrap_or_default()),
                        flash => note,
                    },
                );
            }
            response
        }
        Err(error) => error_for(&page, error),
    }
}

pub async fn update_route(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<RouteForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let current = match api::routes::get(State(state.clone()), Path(name.clone())).await {
        Ok(Json(view)) => view,
        Err(error) => return error_for(&page, error),
    };
    let result = match form.route(current.route.clone()) {
        Ok(route) => api::routes::update(State(state.clone()), Path(name.clone()), JsonBody(route))
            .await
            .map(drop),
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => done(
            &format!("/routes/{}", super::url_escape(&name)),
            "Saved; the route runs the new definition.",
        ),
        Err(error) => {
            let (status, text) = error.status_and_message();
            let view = serde_json::to_value(&current).unwrap_or_default();
            route_form(&state, &page, status, &form, true, Some(view), Some(text)).await
        }
    }
}

pub async fn delete_route(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    match api::routes::delete(State(state), Path(name.clone())).await {
        Ok(_) => done("/routes", &format!("Route {name} deleted.")),
        Err(error) => error_for(&page, error),
    }
}

pub async fn stop_route(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Operator, &form.csrf) {
        return *refused;
    }
    let caller = Extension(page.caller.clone());
    match api::units::stop(State(state), caller, Path(name.clone())).await {
        Ok(_) => done(
            &format!("/routes/{}", super::url_escape(&name)),
            "Stopped on every host.",
        ),
        Err(error) => error_for(&page, error),
    }
}

pub async fn start_route(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Operator, &form.csrf) {
        return *refused;
    }
    match api::units::start(State(state), Path(name.clone())).await {
        Ok(_) => done(&format!("/routes/{}", super::url_escape(&name)), "Started."),
        Err(error) => error_for(&page, error),
    }
}

// --- plugins ---------------------------------------------------------------------------

pub async fn plugins(State(state): State<AppState>, page: Page, Query(q): Params) -> Response {
    match api::plugins::list(State(state)).await {
        Ok(Json(plugins)) => render(
            "plugins.html",
            Some(&page),
            "/plugins",
            StatusCode::OK,
            context! { title => "Plugins", plugins, flash => flash(&q) },
        ),
        Err(error) => error_for(&page, error),
    }
}

pub async fn upload_plugin(
    State(state): State<AppState>,
    page: Page,
    mut multipart: Multipart,
) -> Response {
    let (mut csrf, mut file, mut enabled) = (String::new(), None, false);
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let Ok(bytes) = field.bytes().await else {
                    return error_for(
                        &page,
                        AppError::PayloadTooLarge(
                            "the upload is over the host's limit (server.max_request_bytes)".into(),
                        ),
                    );
                };
                match name.as_str() {
                    "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
                    "file" => file = Some(bytes),
                    "enabled" => enabled = true,
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(error) => {
                return error_for(
                    &page,
                    AppError::BadRequest(format!("the upload could not be read: {error}")),
                );
            }
        }
    }
    if let Err(refused) = page.may(Role::Admin, &csrf) {
        return *refused;
    }
    let uploaded = api::plugins::upload(
        State(state),
        Extension(page.caller.clone()),
        Ok(Query(api::plugins::UploadParams {
            enabled: Some(enabled),
        })),
        Ok(file.unwrap_or_default()),
    )
    .await;
    match uploaded {
        Ok((_, Json(up))) => done(
            "/plugins",
            &format!(
                "{} {} {} ({}, {}); it asks for: {}.{}",
                if up.outcome == "created" {
                    "Uploaded"
                } else {
                    "Already stored:"
                },
                up.name,
                up.version.version,
                up.version.kind,
                up.version.contract,
                if up.version.wants.is_empty() {
                    "nothing".into()
                } else {
                    up.version.wants.join(", ")
                },
                if up.version.enabled {
                    " It serves now."
                } else {
                    " Stored disabled: grant what it needs, then enable it."
                }
            ),
        ),
        Err(error) => error_for(&page, error),
    }
}

pub async fn plugin_version(
    State(state): State<AppState>,
    page: Page,
    Path((name, version, action)): Path<(String, String, String)>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let path = Path((name.clone(), version.clone()));
    let result = match action.as_str() {
        "enable" => api::plugins::enable(State(state), path).await.map(drop),
        "disable" => api::plugins::disable(State(state), path).await.map(drop),
        "delete" => api::plugins::delete_version(State(state), path)
            .await
            .map(drop),
        _ => Err(AppError::NotFound(format!("no action `{action}`"))),
    };
    match result {
        Ok(()) => done("/plugins", &format!("{name} {version}: {action}d.")),
        Err(error) => error_for(&page, error),
    }
}

pub async fn rollback_plugin(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    match api::plugins::rollback(State(state), Path(name.clone())).await {
        Ok(Json(view)) => done(
            "/plugins",
            &format!(
                "{name} rolled back; serving {}.",
                view.serving.unwrap_or_default()
            ),
        ),
        Err(error) => error_for(&page, error),
    }
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    csrf: String,
    grant: String,
}

pub async fn grant_plugin(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<GrantForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let change = api::plugins::GrantChange {
        grants: vec![form.grant.trim().to_owned()],
    };
    match api::plugins::grant(State(state), Path(name.clone()), JsonBody(change)).await {
        Ok(_) => done(
            "/plugins",
            &format!("{name} granted {}.", form.grant.trim()),
        ),
        Err(error) => error_for(&page, error),
    }
}

// --- connections -----------------------------------------------------------------------

#[derive(Deserialize, serde::Serialize, Default)]
pub struct ConnectionForm {
    #[serde(default)]
    csrf: String,
    name: String,
    kind: String,
    #[serde(default)]
    url: String,
    /// For http: ingress without a token.
    #[serde(default)]
    anonymous: Option<String>,
}

impl ConnectionForm {
    fn body(&self) -> Value {
        let mut body = json!({ "name": self.name.trim(), "kind": self.kind });
        let url = self.url.trim();
        match self.kind.as_str() {
            "amqp" => body["url"] = json!(url),
            "http" => {
                if !url.is_empty() {
                    body["base_url"] = json!(url);
                }
                body["anonymous"] = json!(self.anonymous.is_some());
            }
            _ => {}
        }
        body
    }
}

async fn connections_page(
    state: &AppState,
    page: &Page,
    status: StatusCode,
    form: &ConnectionForm,
    note: Option<Note>,
) -> Response {
    match api::connections::list(State(state.clone())).await {
        Ok(Json(connections)) => render(
            "connections.html",
            Some(page),
            "/connections",
            status,
            context! { title => "Connections", connections, form, flash => note },
        ),
        Err(error) => error_for(page, error),
    }
}

pub async fn connections(State(state): State<AppState>, page: Page, Query(q): Params) -> Response {
    let form = ConnectionForm {
        kind: "amqp".into(),
        ..ConnectionForm::default()
    };
    connections_page(&state, &page, StatusCode::OK, &form, flash(&q)).await
}

pub async fn add_connection(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<ConnectionForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    match api::connections::create(State(state.clone()), JsonBody(form.body())).await {
        Ok(_) => done(
            "/connections",
            &format!("Connection {} added.", form.name.trim()),
        ),
        Err(error) => {
            let (status, note) = super::failed(error);
            connections_page(&state, &page, status, &form, Some(note)).await
        }
    }
}

pub async fn connection(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    match api::connections::get(State(state), Path(name)).await {
        Ok(Json(view)) => {
            let definition = serde_json::to_string_pretty(&view.connection).unwrap_or_default();
            render(
                "connection.html",
                Some(&page),
                "/connections",
                StatusCode::OK,
                context! { title => format!("Connection {}", view.name), view, definition, flash => flash(&q) },
            )
        }
        Err(error) => error_for(&page, error),
    }
}

#[derive(Deserialize)]
pub struct ConnectionEdit {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    definition: String,
}

/// Saves a changed connection: the whole definition as typed, with the URL field over it.
pub async fn update_connection(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<ConnectionEdit>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let mut body: Value = match serde_json::from_str(&form.definition) {
        Ok(body) => body,
        Err(e) => {
            return error_for(
                &page,
                AppError::Invalid {
                    field: "definition".into(),
                    message: format!("not JSON: {e}"),
                },
            );
        }
    };
    if let Some(url) = form.url.filter(|u| !u.trim().is_empty()) {
        let field = if body["kind"] == "http" {
            "base_url"
        } else {
            "url"
        };
        body[field] = json!(url.trim());
    }
    match api::connections::update(State(state), Path(name.clone()), JsonBody(body)).await {
        Ok(_) => done(
            &format!("/connections/{}", super::url_escape(&name)),
            "Saved; the connection was opened again and its routes moved to it.",
        ),
        Err(error) => error_for(&page, error),
    }
}

pub async fn test_new_connection(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<ConnectionForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let note = match api::connections::test_new(State(state.clone()), JsonBody(form.body())).await {
        Ok(Json(result)) => {
            context! { kind => if result.ok { "ok" } else { "error" }, text => result.detail }
        }
        Err(error) => super::failed(error).1,
    };
    connections_page(&state, &page, StatusCode::OK, &form, Some(note)).await
}

pub async fn test_connection(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    match api::connections::test(State(state), Path(name.clone())).await {
        Ok(Json(result)) => done(
            "/connections",
            &format!(
                "{name}: {} ({})",
                if result.ok { "works" } else { "failed" },
                result.detail
            ),
        ),
        Err(error) => error_for(&page, error),
    }
}

pub async fn remove_connection(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    match api::connections::delete(State(state), Path(name.clone())).await {
        Ok(_) => done("/connections", &format!("Connection {name} removed.")),
        Err(error) => error_for(&page, error),
    }
}

// --- send and read ---------------------------------------------------------------------

#[derive(Deserialize, serde::Serialize, Default)]
pub struct SendForm {
    #[serde(default)]
    csrf: String,
    address: String,
    #[serde(default)]
    headers: String,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    payload: String,
    /// Send as a request and wait for its reply.
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    timeout_ms: String,
}

/// The Send page: the form, a note, and the reply a request got (shown as a message).
fn send_form(
    page: &Page,
    state: &AppState,
    status: StatusCode,
    form: &SendForm,
    note: Option<Note>,
    reply: Option<Value>,
) -> Response {
    let reply = reply.as_ref().map(shown);
    render(
        "send.html",
        Some(page),
        "/send",
        status,
        context! { title => "Send", form, connections => state.connections.names(), reply, flash => note },
    )
}

pub async fn send_page(State(state): State<AppState>, page: Page, Query(q): Params) -> Response {
    if let Err(refused) = page.at_least(Role::Operator) {
        return *refused;
    }
    let form = SendForm {
        address: q
            .get("address")
            .cloned()
            .unwrap_or_else(|| "local:demo.in".into()),
        ..SendForm::default()
    };
    send_form(&page, &state, StatusCode::OK, &form, flash(&q), None)
}

/// `connection:queue` as the API's path parts.
fn split(address: &str) -> Result<(String, String), AppError> {
    match address.trim().split_once(':') {
        Some((c, q)) if !c.is_empty() && !q.is_empty() => Ok((c.to_owned(), q.to_owned())),
        _ => Err(AppError::Invalid {
            field: "address".into(),
            message: format!("`{address}` is not connection:queue, e.g. local:demo.in"),
        }),
    }
}

pub async fn send(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<SendForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Operator, &form.csrf) {
        return *refused;
    }
    if form.wait.is_some() {
        return send_and_wait(state, page, form).await;
    }
    let result = async {
        let (connection, queue) = split(&form.address)?;
        let message = form.message()?;
        let (_, Json(published)) = api::queues::publish(
            State(state.clone()),
            Path((connection, queue)),
            Ok(Json(message)),
        )
        .await?;
        Ok::<Value, AppError>(published)
    }
    .await;
    match result {
        Ok(published) => done(
            &format!("/send?address={}", super::url_escape(form.address.trim())),
            &format!(
                "Accepted by {}: message {}.",
                form.address.trim(),
                published["id"].as_str().unwrap_or("")
            ),
        ),
        Err(error) => send_failed(&page, &state, &form, error),
    }
}

/// The Send page again, with the form as it was and what went wrong.
fn send_failed(page: &Page, state: &AppState, form: &SendForm, error: AppError) -> Response {
    let (status, note) = super::failed(error);
    send_form(page, state, status, form, Some(note), None)
}

impl SendForm {
    /// The message the form describes, in the API's JSON form.
    fn message(&self) -> Result<Value, AppError> {
        let mut headers = serde_json::Map::new();
        for (i, line) in self
            .headers
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let (name, value) = line.split_once(':').ok_or_else(|| AppError::Invalid {
                field: "headers".into(),
                message: format!("line {}: write `name: value`", i + 1),
            })?;
            headers.insert(name.trim().to_owned(), json!(value.trim()));
        }
        let content_type = self.content_type.trim();
        if content_type == "application/json" {
            serde_json::from_str::<Value>(&self.payload).map_err(|e| AppError::Invalid {
                field: "payload".into(),
                message: format!("the payload is not JSON: {e}"),
            })?;
        }
        let mut message = json!({ "payload": self.payload, "headers": headers });
        if !content_type.is_empty() {
            message["content_type"] = json!(content_type);
        }
        Ok(message)
    }
}

/// The Send page's "wait for the reply" mode: the message goes as a request through the
/// RPC endpoint's own handler, and the page shows the reply (or how long it waited).
async fn send_and_wait(state: AppState, page: Page, form: SendForm) -> Response {
    let result = async {
        let (connection, address) = split(&form.address)?;
        let timeout_ms = match form.timeout_ms.trim() {
            "" => None,
            text => Some(text.parse::<u64>().map_err(|_| AppError::Invalid {
                field: "timeout_ms".into(),
                message: format!("`{text}` is not a number of milliseconds"),
            })?),
        };
        let message = form.message()?;
        let Json(reply) = api::rpc::call(
            State(state.clone()),
            Path((connection, address)),
            Ok(Query(api::rpc::RpcParams { timeout_ms })),
            Ok(Json(message)),
        )
        .await?;
        Ok::<Value, AppError>(reply)
    }
    .await;
    match result {
        Ok(reply) => {
            let note =
                context! { kind => "ok", text => format!("Reply from {}.", form.address.trim()) };
            send_form(
                &page,
                &state,
                StatusCode::OK,
                &form,
                Some(note),
                Some(reply),
            )
        }
        Err(error) => send_failed(&page, &state, &form, error),
    }
}

/// A message as the queue page shows it: JSON pretty-printed, text as it is, bytes as hex.
fn shown(message: &Value) -> Value {
    let mut message = message.clone();
    let text = match (message.get("payload"), message.get("payload_base64")) {
        (Some(Value::String(text)), _) => match serde_json::from_str::<Value>(text) {
            Ok(json @ (Value::Object(_) | Value::Array(_))) => {
                serde_json::to_string_pretty(&json).unwrap_or_else(|_| text.clone())
            }
            _ => text.clone(),
        },
        (_, Some(Value::String(b64))) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            bytes
                .chunks(16)
                .map(|row| {
                    row.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => String::new(),
    };
    message["shown"] = json!(text);
    message
}

pub async fn queue(State(state): State<AppState>, page: Page, Query(q): Params) -> Response {
    let address = q.get("address").cloned().unwrap_or_default();
    let mut ctx = context! { title => "Queues", address => address.clone(), flash => flash(&q) };
    if !address.is_empty() {
        let read = async {
            let (connection, queue) = split(&address)?;
            let Json(stats) = api::queues::queue_stats(
                State(state.clone()),
                Path((connection.clone(), queue.clone())),
            )
            .await?;
            let Json(messages) = api::queues::peek(
                State(state.clone()),
                Path((connection, queue)),
                Ok(Query(api::queues::ReadParams {
                    count: Some(50),
                    timeout_ms: None,
                })),
            )
            .await?;
            Ok::<_, AppError>((stats, messages))
        }
        .await;
        match read {
            Ok((stats, messages)) => {
                let messages: Vec<Value> = messages
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(shown)
                    .collect();
                // A queue of dead letters: its name says so, or its messages carry exceptions.
                let dead_letters = address.ends_with(".dead")
                    || messages
                        .iter()
                        .any(|m| m["headers"].get("exception").is_some());
                let embedded = address
                    .split_once(':')
                    .is_some_and(|(c, _)| state.connections.is_embedded(c));
                ctx = context! { stats, messages, dead_letters, embedded, ..ctx };
            }
            Err(error) => return error_for(&page, error),
        }
    }
    render("queue.html", Some(&page), "/queue", StatusCode::OK, ctx)
}

#[derive(Deserialize)]
pub struct QueueForm {
    #[serde(default)]
    csrf: String,
    address: String,
}

pub async fn take(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<QueueForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Operator, &form.csrf) {
        return *refused;
    }
    let result = async {
        let (connection, queue) = split(&form.address)?;
        let Json(taken) = api::queues::take(
            State(state),
            Path((connection, queue)),
            Ok(Query(api::queues::ReadParams {
                count: Some(1),
                timeout_ms: Some(0),
            })),
        )
        .await?;
        Ok::<_, AppError>(taken)
    }
    .await;
    let back = format!("/queue?address={}", super::url_escape(&form.address));
    match result {
        Ok(taken) => match taken.as_array().and_then(|a| a.first()) {
            Some(m) => done(
                &back,
                &format!(
                    "Took message {}: {}",
                    m["id"].as_str().unwrap_or(""),
                    shown(m)["shown"].as_str().unwrap_or("")
                ),
            ),
            None => done(&back, "Nothing to take."),
        },
        Err(error) => error_for(&page, error),
    }
}

pub async fn purge(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<QueueForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Operator, &form.csrf) {
        return *refused;
    }
    let result = async {
        let (connection, queue) = split(&form.address)?;
        let Json(purged) = api::queues::purge(State(state), Path((connection, queue))).await?;
        Ok::<_, AppError>(purged)
    }
    .await;
    match result {
        Ok(purged) => done(
            &format!("/queue?address={}", super::url_escape(&form.address)),
            &format!("Purged {} messages.", purged["purged"]),
        ),
        Err(error) => error_for(&page, error),
    }
}

#[derive(Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    csrf: String,
    address: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    count: Option<usize>,
    /// One chosen message.
    #[serde(default)]
    id: Option<String>,
}

pub async fn replay(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<ReplayForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Operator, &form.csrf) {
        return *refused;
    }
    let result = async {
        let (connection, queue) = split(&form.address)?;
        let to = Some(form.to.trim().to_owned()).filter(|t| !t.is_empty());
        let Json(replayed) = api::queues::replay(
            State(state),
            Path((connection, queue)),
            Ok(Query(api::queues::ReplayParams {
                count: form.count,
                to,
                id: form.id.clone().filter(|id| !id.is_empty()),
            })),
        )
        .await?;
        Ok::<_, AppError>(replayed)
    }
    .await;
    match result {
        Ok(replayed) => {
            let went: Vec<String> = replayed
                .to
                .iter()
                .map(|(to, n)| format!("{n} to {to}"))
                .collect();
            let mut note = format!(
                "Replayed {}{}.",
                replayed.replayed,
                if went.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", went.join(", "))
                }
            );
            if replayed.left > 0 {
                note.push_str(&format!(
                    " {} left: no route input known; give an address to replay them to.",
                    replayed.left
                ));
            }
            done(
                &format!("/queue?address={}", super::url_escape(&form.address)),
                &note,
            )
        }
        Err(error) => error_for(&page, error),
    }
}

#[derive(Deserialize)]
pub struct LiveParams {
    address: String,
}

/// Server-sent events: each message taken from the queue as it arrives (acked once sent),
/// until the page goes away or the host stops.
pub async fn live(
    State(state): State<AppState>,
    page: Page,
    Query(params): Query<LiveParams>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    if let Err(refused) = page.at_least(Role::Operator) {
        return *refused;
    }
    let address = match split(&params.address).and_then(|(c, q)| {
        if state.connections.contains(&c) {
            Ok(crate::broker::Address {
                connection: c,
                address: q,
            })
        } else {
            Err(AppError::NotFound(format!(
                "there is no connection named `{c}`"
            )))
        }
    }) {
        Ok(address) => address,
        Err(error) => return error_for(&page, error),
    };
    let consumer = match state.connections.consume(&address, 1).await {
        Ok(consumer) => consumer,
        Err(error) => return error_for(&page, error.into()),
    };
    let stream = futures::stream::unfold(
        (consumer, state.shutdown.clone()),
        |(mut consumer, mut shutdown)| async move {
            let delivery = tokio::select! {
                _ = shutdown.fired() => None,
                delivery = consumer.next() => delivery.ok(),
            };
            let Some(delivery) = delivery else {
                consumer.close().await;
                return None;
            };
            let shown = shown(&delivery.message.to_json());
            if let Err(error) = delivery.ack.ack().await {
                tracing::warn!(%error, "a message shown live could not be acked; it comes back");
            }
            let event = Event::default().event("message").data(shown.to_string());
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (consumer, shutdown),
            ))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// --- users and tokens ------------------------------------------------------------------

async fn users_page(
    state: &AppState,
    page: &Page,
    status: StatusCode,
    note: Option<Note>,
    new_token: Option<Note>,
) -> Response {
    users_page_with(state, page, status, note, new_token, None).await
}

async fn users_page_with(
    state: &AppState,
    page: &Page,
    status: StatusCode,
    note: Option<Note>,
    new_token: Option<Note>,
    reset_link: Option<Note>,
) -> Response {
    if let Err(refused) = page.at_least(Role::Admin) {
        return *refused;
    }
    let (users, tokens) = match (state.store.users().await, state.store.tokens().await) {
        (Ok(users), Ok(tokens)) => (users, tokens),
        (Err(error), _) | (_, Err(error)) => return error_for(page, error.into()),
    };
    render(
        "users.html",
        Some(page),
        "/users",
        status,
        context! {
            title => "Users and tokens", users, tokens, new_token, reset_link,
            registration => access::registration_open(state).await.unwrap_or(false),
            flash => note,
        },
    )
}

pub async fn users(State(state): State<AppState>, page: Page, Query(q): Params) -> Response {
    users_page(&state, &page, StatusCode::OK, flash(&q), None).await
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    name: String,
    password: String,
    role: String,
}

pub async fn add_user(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<UserForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let new = access::NewUser {
        name: form.name.trim().to_owned(),
        password: form.password,
        role: form.role,
    };
    match access::add_user(State(state.clone()), JsonBody(new)).await {
        Ok(_) => done("/users", &format!("User {} added.", form.name.trim())),
        Err(error) => {
            let (status, note) = super::failed(error);
            users_page(&state, &page, status, Some(note), None).await
        }
    }
}

pub async fn remove_user(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    match access::remove_user(
        State(state),
        Extension(page.caller.clone()),
        Path(name.clone()),
    )
    .await
    {
        Ok(_) => done("/users", &format!("User {name} removed.")),
        Err(error) => error_for(&page, error),
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    name: String,
    role: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let new = access::NewToken {
        name: form.name.trim().to_owned(),
        role: form.role,
    };
    match access::create_token(State(state.clone()), JsonBody(new)).await {
        // Shown on this answer only: never in a URL, never again.
        Ok((_, Json(made))) => {
            let shown = context! { name => made.name, token => made.token };
            users_page(&state, &page, StatusCode::CREATED, None, Some(shown)).await
        }
        Err(error) => {
            let (status, note) = super::failed(error);
            users_page(&state, &page, status, Some(note), None).await
        }
    }
}

pub async fn revoke_token(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    match access::revoke_token(State(state), Path(id.clone())).await {
        Ok(_) => done("/users", &format!("Token {id} revoked.")),
        Err(error) => error_for(&page, error),
    }
}

// --- accounts: role and state, reset links, registration, own password ------------------

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    csrf: String,
    role: String,
}

/// Applies a change to user `name` and goes back to the Users page saying `note`.
async fn update_user(
    state: AppState,
    page: &Page,
    name: String,
    change: access::UserChange,
    note: &str,
) -> Response {
    let caller = Extension(page.caller.clone());
    match access::update_user(State(state), caller, Path(name), JsonBody(change)).await {
        Ok(_) => done("/users", note),
        Err(error) => error_for(page, error),
    }
}

pub async fn change_role(
    State(state): State<AppState>,
    page: Page,
    Path(name): Path<String>,
    Form(form): Form<RoleForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let change = access::UserChange {
        role: Some(form.role.clone()),
        disabled: None,
    };
    update_user(
        state,
        &page,
        name.clone(),
        change,
        &format!("{name} is now {}.", form.role),
    )
    .await
}

pub async fn user_state(
    State(state): State<AppState>,
    page: Page,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return error_for(&page, AppError::NotFound(format!("no action `{action}`"))),
    };
    let change = access::UserChange {
        role: None,
        disabled: Some(disabled),
    };
    update_user(
        state,
        &page,
        name.clone(),
        change,
        &format!("{name} {action}d."),
    )
    .await
}

pub async fn reset_link(
    State(state): State<AppState>,
    page: Page,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<Plain>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    match access::issue_reset(State(state.clone()), Path(name.clone())).await {
        // Shown on this answer only: never in a redirect's URL, never again.
        Ok((_, Json(link))) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8080");
            let url = format!("http://{host}{}", link.path);
            let shown = context! { user => name, url };
            users_page_with(&state, &page, StatusCode::CREATED, None, None, Some(shown)).await
        }
        Err(error) => error_for(&page, error),
    }
}

#[derive(Deserialize)]
pub struct RegistrationForm {
    #[serde(default)]
    csrf: String,
    open: bool,
}

pub async fn set_registration(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<RegistrationForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Admin, &form.csrf) {
        return *refused;
    }
    let settings = access::Settings {
        registration: form.open,
    };
    match access::put_settings(State(state), JsonBody(settings)).await {
        Ok(_) => done(
            "/users",
            if form.open {
                "Registration is open: new users start as viewers."
            } else {
                "Registration is closed."
            },
        ),
        Err(error) => error_for(&page, error),
    }
}

fn account_form(
    page: Option<&Page>,
    status: StatusCode,
    ctx: minijinja::Value,
    error: Option<String>,
) -> Response {
    render(
        "account.html",
        page,
        "",
        status,
        context! { flash => error.map(|text| context! { kind => "error", text }), ..ctx },
    )
}

const REGISTER_COOKIE: &str = "wharf_register";

/// Registration, while an admin has it open: a new user is a viewer, signed in at once. Its
/// form is guarded by a SameSite cookie token, like the first-admin page's.
pub async fn register_page(State(state): State<AppState>) -> Response {
    match access::registration_open(&state).await {
        Ok(true) => {}
        Ok(false) => return Redirect::to("/login").into_response(),
        Err(error) => return super::page_error(error),
    }
    let (token, _) = crate::auth::new_token();
    let cookie = format!(
        "{REGISTER_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/register; Max-Age=3600"
    );
    let ctx = context! {
        title => "Register", heading => "Register", action => "/register", form_token => token,
        ask_name => true, name => "", button => "Register and sign in",
        note => "You start as a viewer; an admin can give you more.",
    };
    (
        [(header::SET_COOKIE, cookie)],
        account_form(None, StatusCode::OK, ctx, None),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    csrf: String,
    name: String,
    password: String,
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
}

pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> Response {
    match access::registration_open(&state).await {
        Ok(true) => {}
        Ok(false) => {
            return message(
                None,
                StatusCode::FORBIDDEN,
                "Registration is closed",
                "An admin adds users, or opens registration on the Users page.",
            );
        }
        Err(error) => return super::page_error(error),
    }
    if cookie_value(&headers, REGISTER_COOKIE).as_deref() != Some(form.csrf.as_str())
        || form.csrf.is_empty()
    {
        return message(
            None,
            StatusCode::FORBIDDEN,
            "Refused",
            "This form did not come from this host's registration page; open /register and try again.",
        );
    }
    let new = access::NewUser {
        name: form.name.trim().to_owned(),
        password: form.password.clone(),
        role: "viewer".into(),
    };
    if let Err(error) = access::add_user(State(state.clone()), JsonBody(new)).await {
        let ctx = context! {
            title => "Register", heading => "Register", action => "/register", form_token => form.csrf,
            ask_name => true, name => form.name, button => "Register and sign in",
        };
        let (status, text) = error.status_and_message();
        return account_form(None, status, ctx, Some(text));
    }
    match super::sign_in(&state, &headers, form.name.trim(), form.password).await {
        Ok(signed_in) => {
            ([(header::SET_COOKIE, signed_in.cookie)], Redirect::to("/")).into_response()
        }
        Err(error) => super::page_error(error),
    }
}

pub async fn account_page(page: Page) -> Response {
    let ctx = context! {
        title => "Your password", heading => format!("Change the password of {}", page.caller.name),
        action => "/account", ask_current => true, button => "Change the password",
        note => "Your other sessions end when the password changes.",
    };
    account_form(Some(&page), StatusCode::OK, ctx, None)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    current: String,
    password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    page: Page,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    if let Err(refused) = page.may(Role::Viewer, &form.csrf) {
        return *refused;
    }
    let ctx = context! {
        title => "Your password", heading => format!("Change the password of {}", page.caller.name),
        action => "/account", ask_current => true, button => "Change the password",
    };
    // The current password is checked as a sign-in is (throttled the same way).
    if let Err(error) = super::sign_in(&state, &headers, &page.caller.name, form.current).await {
        let (status, text) = error.status_and_message();
        return account_form(
            Some(&page),
            status,
            ctx,
            Some(format!("The current password: {text}")),
        );
    }
    let new = access::NewPassword {
        password: form.password,
    };
    match access::set_password(
        State(state.clone()),
        Path(page.caller.name.clone()),
        JsonBody(new),
    )
    .await
    {
        // Every session of the user ended with the change: sign in again.
        Ok(_) => done("/login", "Password changed; sign in with the new one."),
        Err(error) => {
            let (status, text) = error.status_and_message();
            account_form(Some(&page), status, ctx, Some(text))
        }
    }
}

pub async fn reset_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let digest = crate::auth::token_digest(&token);
    match state
        .store
        .password_reset_user(&digest, crate::web::now_ms())
        .await
    {
        Ok(Some(user)) => {
            let ctx = context! {
                title => "Set a new password", heading => format!("Set a new password for {user}"),
                action => format!("/reset/{token}"), form_token => token, button => "Set the password",
                note => "This link works once.",
            };
            account_form(None, StatusCode::OK, ctx, None)
        }
        Ok(None) => message(
            None,
            StatusCode::NOT_FOUND,
            "This link does not work",
            "It was used already, or it expired, or it never existed; ask an admin for a new one.",
        ),
        Err(error) => super::page_error(error.into()),
    }
}

#[derive(Deserialize)]
pub struct ResetForm {
    password: String,
}

pub async fn reset(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<ResetForm>,
) -> Response {
    let hash = match tokio::task::spawn_blocking(move || crate::auth::hash_password(&form.password))
        .await
    {
        Ok(Ok(hash)) => hash,
        Ok(Err(error)) => {
            return message(
                None,
                StatusCode::BAD_REQUEST,
                "Choose another password",
                &format!("password: {error}"),
            );
        }
        Err(_) => {
            return message(
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "hashing the password failed",
            );
        }
    };
    let digest = crate::auth::token_digest(&token);
    match state
        .store
        .use_password_reset(&digest, &hash, crate::web::now_ms())
        .await
    {
        Ok(Some(user)) => done(
            "/login",
            &format!("The password of {user} is set; sign in with it."),
        ),
        Ok(None) => message(
            None,
            StatusCode::NOT_FOUND,
            "This link does not work",
            "It was used already, or it expired; ask an admin for a new one.",
        ),
        Err(error) => super::page_error(error.into()),
    }
}
