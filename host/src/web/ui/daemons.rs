//! The Daemons pages: a daemon's form fields (the pages are `units`').

use super::units::{Pages, number};
use crate::config::DaemonConfig;
use crate::web::AppError;
use crate::web::error::invalid;
use serde::Deserialize;

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

impl Pages for DaemonConfig {
    type Form = DaemonForm;
    const PATH: &'static str = "/daemons";
    const TITLE: &'static str = "Daemons";
    const NOUN: &'static str = "Daemon";
    const LIST: &'static str = "daemons.html";
    const FORM: &'static str = "daemon_form.html";
    const PLUGIN_KIND: Option<&'static str> = Some("daemon");

    fn blank() -> Self {
        DaemonConfig {
            name: String::new(),
            plugin: String::new(),
            each_host: false,
            max_failures: 5,
            failure_window_secs: 300,
        }
    }

    fn form(daemon: &DaemonConfig) -> DaemonForm {
        DaemonForm {
            name: daemon.name.clone(),
            plugin: daemon.plugin.clone(),
            each_host: daemon.each_host.then(|| "1".to_owned()),
            max_failures: daemon.max_failures.to_string(),
            failure_window_secs: daemon.failure_window_secs.to_string(),
        }
    }

    fn typed(form: &DaemonForm, mut base: DaemonConfig) -> Result<DaemonConfig, AppError> {
        base.name = form.name.trim().to_owned();
        base.plugin = form.plugin.trim().to_owned();
        base.each_host = form.each_host.is_some();
        if let Some(n) = number("max_failures", &form.max_failures)? {
            base.max_failures =
                u32::try_from(n).map_err(|_| invalid("max_failures", "must be 1 to 1000"))?;
        }
        if let Some(n) = number("failure_window_secs", &form.failure_window_secs)? {
            base.failure_window_secs = n;
        }
        Ok(base)
    }
}
