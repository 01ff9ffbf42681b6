//! The Routes pages: a route's form fields (the pages are `units`').

use super::units::{Pages, chain, number};
use crate::config::RouteConfig;
use crate::web::AppError;
use serde::Deserialize;

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

impl Pages for RouteConfig {
    type Form = RouteForm;
    const PATH: &'static str = "/routes";
    const TITLE: &'static str = "Routes";
    const NOUN: &'static str = "Route";
    const LIST: &'static str = "routes.html";
    const FORM: &'static str = "route_form.html";

    fn blank() -> Self {
        RouteConfig::default()
    }

    fn form(route: &RouteConfig) -> RouteForm {
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

    fn typed(form: &RouteForm, mut base: RouteConfig) -> Result<RouteConfig, AppError> {
        let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        base.name = form.name.trim().to_owned();
        base.from = form.from.trim().to_owned();
        base.through = chain(&form.through);
        base.to = optional(&form.to);
        base.dead_letter = optional(&form.dead_letter);
        if let Some(n) = number("concurrency", &form.concurrency)? {
            base.concurrency = n as usize;
        }
        if let Some(n) = number("retry_max", &form.retry_max)? {
            base.retry.max = n as u32;
        }
        if let Some(n) = number("backoff_ms", &form.backoff_ms)? {
            base.retry.backoff_ms = n;
        }
        base.durable = form.durable.is_some();
        base.inbox = form.inbox.is_some();
        Ok(base)
    }
}
