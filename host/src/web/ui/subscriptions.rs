//! The Subscriptions pages: the list, a subscription's form (new or editing), stop, start
//! and delete.

use super::{Page, Params, done, escape, flash};
use crate::config::{RetryConfig, SubscriptionConfig};
use crate::web::caller::{Admin, Operator, Viewer};
use crate::web::error::invalid;
use crate::web::ops::subscriptions as ops;
use crate::web::{AppError, AppState};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;

pub async fn list(State(state): State<AppState>, page: Page<Viewer>, params: Params) -> Response {
    let events = &state.supervisor.file().events;
    let events = format!("{}:{}", events.connection, events.exchange);
    match ops::list(&state, &page.who).await {
        Ok(subscriptions) => page.render(
            "subscriptions.html",
            "/subscriptions",
            StatusCode::OK,
            context! { title => "Subscriptions", subscriptions, events, flash => flash(&params) },
        ),
        Err(error) => page.error(error),
    }
}

/// The form's fields, as typed.
#[derive(Deserialize, serde::Serialize, Default)]
pub struct SubscriptionForm {
    name: String,
    #[serde(default)]
    pattern: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    through: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    concurrency: String,
    #[serde(default)]
    retry_max: String,
    #[serde(default)]
    durable: Option<String>,
    #[serde(default)]
    inbox: Option<String>,
}

fn blank() -> SubscriptionConfig {
    SubscriptionConfig {
        name: String::new(),
        pattern: String::new(),
        service: String::new(),
        through: Vec::new(),
        to: None,
        concurrency: 16,
        retry: RetryConfig::default(),
        dead_letter: None,
        durable: false,
        inbox: false,
        max_outputs: None,
        max_deliveries: crate::store::DEFAULT_MAX_DELIVERIES,
    }
}

impl SubscriptionForm {
    fn of(subscription: &SubscriptionConfig) -> SubscriptionForm {
        SubscriptionForm {
            name: subscription.name.clone(),
            pattern: subscription.pattern.clone(),
            service: subscription.service.clone(),
            through: subscription.through.join(", "),
            to: subscription.to.clone().unwrap_or_default(),
            concurrency: subscription.concurrency.to_string(),
            retry_max: subscription.retry.max.to_string(),
            durable: subscription.durable.then(|| "1".to_owned()),
            inbox: subscription.inbox.then(|| "1".to_owned()),
        }
    }

    /// The subscription, over `base` (what the form does not show is kept).
    fn subscription(&self, mut base: SubscriptionConfig) -> Result<SubscriptionConfig, AppError> {
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
        base.pattern = self.pattern.trim().to_owned();
        base.service = self.service.trim().to_owned();
        base.through = self
            .through
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        base.to = Some(self.to.trim().to_owned()).filter(|t| !t.is_empty());
        if let Some(n) = number("concurrency", &self.concurrency)? {
            base.concurrency = n as usize;
        }
        if let Some(n) = number("retry_max", &self.retry_max)? {
            base.retry.max = n as u32;
        }
        base.durable = self.durable.is_some();
        base.inbox = self.inbox.is_some();
        Ok(base)
    }
}

async fn form<R>(
    state: &AppState,
    page: &Page<R>,
    status: StatusCode,
    form: &SubscriptionForm,
    view: Option<&ops::SubscriptionView>,
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
        format!("Subscription {}", form.name)
    } else {
        "New subscription".into()
    };
    let events = &state.supervisor.file().events;
    let events = format!("{}:{}", events.connection, events.exchange);
    page.render(
        "subscription_form.html",
        "/subscriptions",
        status,
        context! { title, form, editing, readonly, view, plugins, events, flash => note },
    )
}

pub async fn new(State(state): State<AppState>, page: Page<Admin>) -> Response {
    let typed = SubscriptionForm::of(&blank());
    form(&state, &page, StatusCode::OK, &typed, None, None).await
}

pub async fn create(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(typed): Form<SubscriptionForm>,
) -> Response {
    let result = match typed.subscription(blank()) {
        Ok(subscription) => ops::create(&state, &page.who, subscription).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(view) => done(
            &format!("/subscriptions/{}", escape(&view.name)),
            "Subscription created and started.",
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
            let typed = SubscriptionForm::of(&view.subscription);
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
    Form(typed): Form<SubscriptionForm>,
) -> Response {
    let current = match ops::get(&state, &page.who.lesser(), &name).await {
        Ok(view) => view,
        Err(error) => return page.error(error),
    };
    let result = match typed.subscription(current.subscription.clone()) {
        Ok(subscription) => ops::update(&state, &page.who, &name, subscription).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => done(
            &format!("/subscriptions/{}", escape(&name)),
            "Saved; the subscription runs the new definition.",
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
        Ok(()) => done("/subscriptions", &format!("Subscription {name} deleted.")),
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
        "subscription",
        &name,
        super::Switch::Stop,
        "Stopped on every host; its queue keeps what arrives.",
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
        "subscription",
        &name,
        super::Switch::Start,
        "Started.",
    )
    .await
}
