//! The Subscriptions pages: a subscription's form fields (the pages are `units`').

use super::units::{Pages, chain, number};
use crate::config::{RetryConfig, SubscriptionConfig};
use crate::web::AppError;
use serde::Deserialize;

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

impl Pages for SubscriptionConfig {
    type Form = SubscriptionForm;
    const PATH: &'static str = "/subscriptions";
    const TITLE: &'static str = "Subscriptions";
    const NOUN: &'static str = "Subscription";
    const LIST: &'static str = "subscriptions.html";
    const FORM: &'static str = "subscription_form.html";
    const STOPPED: &'static str = "Stopped on every host; its queue keeps what arrives.";

    fn blank() -> Self {
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

    fn form(subscription: &SubscriptionConfig) -> SubscriptionForm {
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

    fn typed(
        form: &SubscriptionForm,
        mut base: SubscriptionConfig,
    ) -> Result<SubscriptionConfig, AppError> {
        base.name = form.name.trim().to_owned();
        base.pattern = form.pattern.trim().to_owned();
        base.service = form.service.trim().to_owned();
        base.through = chain(&form.through);
        base.to = Some(form.to.trim().to_owned()).filter(|t| !t.is_empty());
        if let Some(n) = number("concurrency", &form.concurrency)? {
            base.concurrency = n as usize;
        }
        if let Some(n) = number("retry_max", &form.retry_max)? {
            base.retry.max = n as u32;
        }
        base.durable = form.durable.is_some();
        base.inbox = form.inbox.is_some();
        Ok(base)
    }
}
