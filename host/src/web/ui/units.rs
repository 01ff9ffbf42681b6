//! The units' pages, written once for every kind: the list, a unit's page (its form, new or
//! editing), create, update, delete, and an operator's stop, start and restart. What differs
//! between kinds is [`Pages`]: its form's fields and the words on its pages.

use super::{Page, Params, done, escape, flash};
use crate::web::caller::{Admin, Operator, Viewer};
use crate::web::ops::units::{self as ops, Shown};
use crate::web::{AppError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::{Value, context};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One kind of unit's pages.
pub trait Pages: Shown {
    /// Its form's fields, as typed.
    type Form: DeserializeOwned + Serialize + Send + Sync + 'static;
    /// Where its pages are: `/routes`.
    const PATH: &'static str;
    /// `Routes`, `Route`.
    const TITLE: &'static str;
    const NOUN: &'static str;
    /// Its list's template and its form's.
    const LIST: &'static str;
    const FORM: &'static str;
    /// The plugins its form offers: those with a version of this kind (none: every plugin).
    const PLUGIN_KIND: Option<&'static str> = None;
    /// What an operator is told once it is held stopped.
    const STOPPED: &'static str = "Stopped on every host.";
    /// A new one, as the form starts it.
    fn blank() -> Self;
    /// The form showing `spec`.
    fn form(spec: &Self) -> Self::Form;
    /// The unit the form gives, over `base` (what the form does not show is kept); a bad
    /// number names its field.
    fn typed(form: &Self::Form, base: Self) -> Result<Self, AppError>;
}

/// A whole number a form field holds, if it holds one.
pub fn number(field: &str, text: &str) -> Result<Option<u64>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| crate::web::error::invalid(field, format!("`{text}` is not a whole number")))
}

/// A plugin chain as typed: `a, b@1.0`.
pub fn chain(text: &str) -> Vec<String> {
    text.split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The pages of kind `U` on `router`.
pub fn pages<U: Pages>(router: Router<AppState>) -> Router<AppState> {
    let at = |tail: &str| format!("{}{tail}", U::PATH);
    router
        .route(U::PATH, get(list::<U>))
        .route(&at("/new"), get(new::<U>).post(create::<U>))
        .route(&at("/{name}"), get(page::<U>).post(update::<U>))
        .route(&at("/{name}/delete"), post(delete::<U>))
        .route(&at("/{name}/stop"), post(stop::<U>))
        .route(&at("/{name}/start"), post(start::<U>))
        .route(&at("/{name}/restart"), post(restart::<U>))
}

/// A unit's row: its view, with how long it has run in words while it runs.
#[derive(Serialize)]
struct Row<'a, V> {
    #[serde(flatten)]
    view: &'a V,
    uptime: Option<String>,
}

fn row<U: Pages>(view: &U::View) -> Row<'_, U::View> {
    let now = crate::message::now_ms();
    let uptime = U::head(view)
        .status
        .as_ref()
        .filter(|s| s.state == crate::supervisor::UnitState::Running)
        .map(|s| crate::time::span_text(now.saturating_sub(s.since_ms)));
    Row { view, uptime }
}

/// This host's events place, as `connection:exchange`.
fn events(state: &AppState) -> String {
    let events = &state.supervisor.file().events;
    format!("{}:{}", events.connection, events.exchange)
}

async fn list<U: Pages>(
    State(state): State<AppState>,
    page: Page<Viewer>,
    params: Params,
) -> Response {
    match ops::list::<U>(&state, &page.who).await {
        Ok(units) => {
            let units: Vec<_> = units.iter().map(row::<U>).collect();
            page.render(
                U::LIST,
                U::PATH,
                StatusCode::OK,
                context! { title => U::TITLE, units, path => U::PATH, events => events(&state), flash => flash(&params) },
            )
        }
        Err(error) => page.error(error),
    }
}

/// The form: new, or editing `view` (as the API shows it), with a note.
async fn form<U: Pages, R>(
    state: &AppState,
    page: &Page<R>,
    status: StatusCode,
    form: &U::Form,
    view: Option<&U::View>,
    note: Option<Value>,
) -> Response {
    let plugins: Vec<String> = match crate::web::ops::plugins::list(state, &page.who.lesser()).await
    {
        Ok(plugins) => plugins
            .into_iter()
            .filter(|p| U::PLUGIN_KIND.is_none_or(|kind| p.versions.iter().any(|v| v.kind == kind)))
            .map(|p| p.name)
            .collect(),
        Err(_) => Vec::new(),
    };
    let editing = view.is_some();
    let readonly = view.is_some_and(|v| U::head(v).source == crate::supervisor::Source::File);
    let title = match view {
        Some(view) => format!("{} {}", U::NOUN, U::head(view).name),
        None => format!("New {}", U::KIND.as_str()),
    };
    let view = view.map(row::<U>);
    page.render(
        U::FORM,
        U::PATH,
        status,
        context! { title, form, editing, readonly, view, plugins, path => U::PATH, events => events(state), flash => note },
    )
}

async fn new<U: Pages>(State(state): State<AppState>, page: Page<Admin>) -> Response {
    let blank = U::form(&U::blank());
    form::<U, _>(&state, &page, StatusCode::OK, &blank, None, None).await
}

async fn create<U: Pages>(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(typed): Form<U::Form>,
) -> Response {
    let result = match U::typed(&typed, U::blank()) {
        Ok(spec) => ops::create(&state, &page.who, spec).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(view) => done(
            &format!("{}/{}", U::PATH, escape(&U::head(&view).name)),
            &format!("{} created and started.", U::NOUN),
        ),
        Err(error) => {
            let (status, note) = super::failed(error);
            form::<U, _>(&state, &page, status, &typed, None, Some(note)).await
        }
    }
}

async fn page<U: Pages>(
    State(state): State<AppState>,
    page: Page<Viewer>,
    Path(name): Path<String>,
    params: Params,
) -> Response {
    match ops::get::<U>(&state, &page.who, &name).await {
        Ok(view) => {
            let typed = U::form(U::spec(&view));
            form::<U, _>(
                &state,
                &page,
                StatusCode::OK,
                &typed,
                Some(&view),
                flash(&params),
            )
            .await
        }
        Err(error) => page.error(error),
    }
}

async fn update<U: Pages>(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
    Form(typed): Form<U::Form>,
) -> Response {
    let current = match ops::get::<U>(&state, &page.who.lesser(), &name).await {
        Ok(view) => view,
        Err(error) => return page.error(error),
    };
    let result = match U::typed(&typed, U::spec(&current).clone()) {
        Ok(spec) => ops::update(&state, &page.who, &name, spec).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => done(
            &format!("{}/{}", U::PATH, escape(&name)),
            &format!("Saved; the {} runs the new definition.", U::KIND.as_str()),
        ),
        Err(error) => {
            let (status, note) = super::failed(error);
            form::<U, _>(&state, &page, status, &typed, Some(&current), Some(note)).await
        }
    }
}

async fn delete<U: Pages>(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
) -> Response {
    match ops::delete::<U>(&state, &page.who, &name).await {
        Ok(()) => done(U::PATH, &format!("{} {name} deleted.", U::NOUN)),
        Err(error) => page.error(error),
    }
}

/// What an operator does to a unit from its page.
#[derive(Clone, Copy)]
enum Switch {
    Stop,
    Start,
    Restart,
}

/// Stops, starts or restarts unit `name` on every host, then shows its page with `note`.
async fn switch<U: Pages>(
    state: &AppState,
    page: &Page<Operator>,
    name: &str,
    switch: Switch,
    note: &str,
) -> Response {
    let result = match switch {
        Switch::Stop => ops::stop(state, &page.who, name).await,
        Switch::Start => ops::start(state, &page.who, name).await,
        Switch::Restart => ops::restart(state, &page.who, name).await,
    };
    match result {
        Ok(_) => done(&format!("{}/{}", U::PATH, escape(name)), note),
        Err(error) => page.error(error),
    }
}

async fn stop<U: Pages>(
    State(state): State<AppState>,
    page: Page<Operator>,
    Path(name): Path<String>,
) -> Response {
    switch::<U>(&state, &page, &name, Switch::Stop, U::STOPPED).await
}

async fn start<U: Pages>(
    State(state): State<AppState>,
    page: Page<Operator>,
    Path(name): Path<String>,
) -> Response {
    switch::<U>(&state, &page, &name, Switch::Start, "Started.").await
}

async fn restart<U: Pages>(
    State(state): State<AppState>,
    page: Page<Operator>,
    Path(name): Path<String>,
) -> Response {
    switch::<U>(
        &state,
        &page,
        &name,
        Switch::Restart,
        "Restarted on every host.",
    )
    .await
}
