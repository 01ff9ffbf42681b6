//! The Routes pages: the list, a route's form (new or editing), stop, start and delete.

use super::{Page, Params, done, escape, flash};
use crate::config::RouteConfig;
use crate::web::caller::{Admin, Operator, Viewer};
use crate::web::error::invalid;
use crate::web::ops::routes as ops;
use crate::web::{AppError, AppState};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;

pub async fn list(State(state): State<AppState>, page: Page<Viewer>, params: Params) -> Response {
    match ops::list(&state, &page.who).await {
        Ok(routes) => page.render(
            "routes.html",
            "/routes",
            StatusCode::OK,
            context! { title => "Routes", routes, flash => flash(&params) },
        ),
        Err(error) => page.error(error),
    }
}

/// The route form's fields, as typed.
#[derive(Deserialize, serde::Serialize, Default)]
pub struct RouteForm {
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
    /// A checkbox: present when ticked.
    #[serde(default)]
    durable: Option<String>,
    #[serde(default)]
    inbox: Option<String>,
}

impl RouteForm {
    fn of(route: &RouteConfig) -> RouteForm {
        RouteForm {
            name: route.name.clone(),
            from: route.from.clone(),
            through: route.through.join(", "),
            to: route.to.clone().unwrap_or_default(),
            dead_letter: route.dead_letter.clone().unwrap_or_default(),
            concurrency: route.concurrency.to_string(),
            retry_max: route.retry.max.to_string(),
            backoff_ms: route.retry.backoff_ms.to_string(),
            durable: route.durable.then(|| "1".to_owned()),
            inbox: route.inbox.then(|| "1".to_owned()),
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
            text.parse()
                .map(Some)
                .map_err(|_| invalid(field, format!("`{text}` is not a whole number")))
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
        base.durable = self.durable.is_some();
        base.inbox = self.inbox.is_some();
        Ok(base)
    }
}

/// The route form: new, or editing `view` (as the API shows it), with a note.
async fn form<R>(
    state: &AppState,
    page: &Page<R>,
    status: StatusCode,
    form: &RouteForm,
    view: Option<&ops::RouteView>,
    note: Option<Value>,
) -> Response {
    let plugins: Vec<String> = match crate::web::ops::plugins::list(state, &page.who.lesser()).await
    {
        Ok(plugins) => plugins.into_iter().map(|p| p.name).collect(),
        Err(_) => Vec::new(),
    };
    let editing = view.is_some();
    let readonly = view.is_some_and(|v| v.source == crate::supervisor::Source::File);
    let title = if editing {
        format!("Route {}", form.name)
    } else {
        "New route".into()
    };
    page.render(
        "route_form.html",
        "/routes",
        status,
        context! { title, form, editing, readonly, view, plugins, flash => note },
    )
}

pub async fn new(State(state): State<AppState>, page: Page<Admin>) -> Response {
    let blank = RouteForm::of(&RouteConfig::default());
    form(&state, &page, StatusCode::OK, &blank, None, None).await
}

pub async fn create(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(typed): Form<RouteForm>,
) -> Response {
    let result = match typed.route(RouteConfig::default()) {
        Ok(route) => ops::create(&state, &page.who, route).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(view) => done(
            &format!("/routes/{}", escape(&view.name)),
            "Route created and started.",
        ),
        Err(error) => {
            let (status, note) = super::failed(error);
            form(&state, &page, status, &typed, None, Some(note)).await
        }
    }
}

pub async fn page(
    State(state): State<AppState>,
    page: Page<Viewer>,
    Path(name): Path<String>,
    params: Params,
) -> Response {
    match ops::get(&state, &page.who, &name).await {
        Ok(view) => {
            let typed = RouteForm::of(&view.route);
            form(
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

pub async fn update(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
    Form(typed): Form<RouteForm>,
) -> Response {
    let current = match ops::get(&state, &page.who.lesser(), &name).await {
        Ok(view) => view,
        Err(error) => return page.error(error),
    };
    let result = match typed.route(current.route.clone()) {
        Ok(route) => ops::update(&state, &page.who, &name, route).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => done(
            &format!("/routes/{}", escape(&name)),
            "Saved; the route runs the new definition.",
        ),
        Err(error) => {
            let (status, note) = super::failed(error);
            form(&state, &page, status, &typed, Some(&current), Some(note)).await
        }
    }
}

pub async fn delete(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
) -> Response {
    match ops::delete(&state, &page.who, &name).await {
        Ok(()) => done("/routes", &format!("Route {name} deleted.")),
        Err(error) => page.error(error),
    }
}

pub async fn stop(
    State(state): State<AppState>,
    page: Page<Operator>,
    Path(name): Path<String>,
) -> Response {
    super::switch_unit(
        &state,
        &page,
        "route",
        &name,
        super::Switch::Stop,
        "Stopped on every host.",
    )
    .await
}

pub async fn start(
    State(state): State<AppState>,
    page: Page<Operator>,
    Path(name): Path<String>,
) -> Response {
    super::switch_unit(
        &state,
        &page,
        "route",
        &name,
        super::Switch::Start,
        "Started.",
    )
    .await
}
