//! The Daemons pages: the list, a daemon's form (new or editing), stop, start, restart and
//! delete.

use super::{Page, Params, done, escape, flash};
use crate::config::DaemonConfig;
use crate::web::caller::{Admin, Operator, Viewer};
use crate::web::error::invalid;
use crate::web::ops::daemons as ops;
use crate::web::{AppError, AppState};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;

/// A daemon's row: the view, with its uptime in words while it runs.
#[derive(serde::Serialize)]
struct Row {
    #[serde(flatten)]
    view: ops::DaemonView,
    uptime: Option<String>,
}

fn row(view: ops::DaemonView) -> Row {
    let now = crate::message::now_ms();
    let uptime = view
        .status
        .as_ref()
        .filter(|s| s.state == crate::supervisor::UnitState::Running)
        .map(|s| crate::time::span_text(now.saturating_sub(s.since_ms)));
    Row { view, uptime }
}

pub async fn list(State(state): State<AppState>, page: Page<Viewer>, params: Params) -> Response {
    match ops::list(&state, &page.who).await {
        Ok(daemons) => {
            let daemons: Vec<Row> = daemons.into_iter().map(row).collect();
            page.render(
                "daemons.html",
                "/daemons",
                StatusCode::OK,
                context! { title => "Daemons", daemons, flash => flash(&params) },
            )
        }
        Err(error) => page.error(error),
    }
}

/// The form's fields, as typed.
#[derive(Deserialize, serde::Serialize, Default)]
pub struct DaemonForm {
    name: String,
    #[serde(default)]
    plugin: String,
    #[serde(default)]
    each_host: Option<String>,
    #[serde(default)]
    max_failures: String,
    #[serde(default)]
    failure_window_secs: String,
}

fn blank() -> DaemonConfig {
    DaemonConfig {
        name: String::new(),
        plugin: String::new(),
        each_host: false,
        max_failures: 5,
        failure_window_secs: 300,
    }
}

impl DaemonForm {
    fn of(daemon: &DaemonConfig) -> DaemonForm {
        DaemonForm {
            name: daemon.name.clone(),
            plugin: daemon.plugin.clone(),
            each_host: daemon.each_host.then(|| "1".to_owned()),
            max_failures: daemon.max_failures.to_string(),
            failure_window_secs: daemon.failure_window_secs.to_string(),
        }
    }

    fn daemon(&self, mut base: DaemonConfig) -> Result<DaemonConfig, AppError> {
        let number = |field: &str, text: &str| -> Result<Option<u64>, AppError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| invalid(field, format!("`{text}` is not a whole number")))
        };
        base.name = self.name.trim().to_owned();
        base.plugin = self.plugin.trim().to_owned();
        base.each_host = self.each_host.is_some();
        if let Some(n) = number("max_failures", &self.max_failures)? {
            base.max_failures =
                u32::try_from(n).map_err(|_| invalid("max_failures", "must be 1 to 1000"))?;
        }
        if let Some(n) = number("failure_window_secs", &self.failure_window_secs)? {
            base.failure_window_secs = n;
        }
        Ok(base)
    }
}

async fn form<R>(
    state: &AppState,
    page: &Page<R>,
    status: StatusCode,
    form: &DaemonForm,
    view: Option<ops::DaemonView>,
    note: Option<Value>,
) -> Response {
    let plugins: Vec<String> = match crate::web::ops::plugins::list(state, &page.who.lesser()).await
    {
        Ok(plugins) => plugins
            .into_iter()
            .filter(|p| p.versions.iter().any(|v| v.kind == "daemon"))
            .map(|p| p.name)
            .collect(),
        Err(_) => Vec::new(),
    };
    let editing = view.is_some();
    let readonly = view
        .as_ref()
        .is_some_and(|v| v.source == crate::supervisor::Source::File);
    let title = if editing {
        format!("Daemon {}", form.name)
    } else {
        "New daemon".into()
    };
    let view = view.map(row);
    page.render(
        "daemon_form.html",
        "/daemons",
        status,
        context! { title, form, editing, readonly, view, plugins, flash => note },
    )
}

pub async fn new(State(state): State<AppState>, page: Page<Admin>) -> Response {
    let typed = DaemonForm::of(&blank());
    form(&state, &page, StatusCode::OK, &typed, None, None).await
}

pub async fn create(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(typed): Form<DaemonForm>,
) -> Response {
    let result = match typed.daemon(blank()) {
        Ok(daemon) => ops::create(&state, &page.who, daemon).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(view) => done(
            &format!("/daemons/{}", escape(&view.name)),
            "Daemon created and started.",
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
            let typed = DaemonForm::of(&view.daemon);
            form(
                &state,
                &page,
                StatusCode::OK,
                &typed,
                Some(view),
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
    Form(typed): Form<DaemonForm>,
) -> Response {
    let current = match ops::get(&state, &page.who.lesser(), &name).await {
        Ok(view) => view,
        Err(error) => return page.error(error),
    };
    let result = match typed.daemon(current.daemon.clone()) {
        Ok(daemon) => ops::update(&state, &page.who, &name, daemon).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => done(
            &format!("/daemons/{}", escape(&name)),
            "Saved; the daemon was asked to stop and runs the new definition.",
        ),
        Err(error) => {
            let (status, note) = super::failed(error);
            form(&state, &page, status, &typed, Some(current), Some(note)).await
        }
    }
}

pub async fn delete(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
) -> Response {
    match ops::delete(&state, &page.who, &name).await {
        Ok(()) => done("/daemons", &format!("Daemon {name} deleted.")),
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
        "daemon",
        &name,
        super::Switch::Stop,
        "Stopped on every host; what it held went back to its queue.",
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
        "daemon",
        &name,
        super::Switch::Start,
        "Started.",
    )
    .await
}

pub async fn restart(
    State(state): State<AppState>,
    page: Page<Operator>,
    Path(name): Path<String>,
) -> Response {
    super::switch_unit(
        &state,
        &page,
        "daemon",
        &name,
        super::Switch::Restart,
        "Restarted; its failures are forgotten.",
    )
    .await
}
