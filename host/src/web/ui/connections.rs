//! The Connections pages: the list (with a form to add one, or test it first), a connection's
//! page (its URL, or its whole definition as JSON), test and remove. Secrets are never shown
//! back: a URL or definition saved as shown keeps them, for the same host only.

use super::{Page, Params, done, escape, failed, flash};
use crate::broker::registry;
use crate::web::caller::{Admin, Viewer};
use crate::web::error::invalid;
use crate::web::ops::connections as ops;
use crate::web::{AppError, AppState};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

/// The add form as posted: `name`, `kind`, and each kind's fields as `KIND.PATH` (every
/// kind's inputs are on the page; only the chosen kind's are read). Secrets are not kept to
/// be shown again.
#[derive(serde::Serialize, Default)]
pub struct ConnectionForm {
    name: String,
    kind: String,
    values: BTreeMap<String, String>,
}

impl ConnectionForm {
    fn posted(pairs: Vec<(String, String)>) -> ConnectionForm {
        let mut form = ConnectionForm::default();
        for (name, value) in pairs {
            match name.as_str() {
                "name" => form.name = value,
                "kind" => form.kind = value,
                _ if form.values.len() < MAX_FIELDS => {
                    form.values.insert(name, value);
                }
                _ => {}
            }
        }
        form
    }

    /// The definition the chosen kind's fields make.
    fn body(&self) -> Result<serde_json::Value, AppError> {
        let mut body = serde_json::Map::new();
        body.insert("name".into(), json!(self.name.trim()));
        body.insert("kind".into(), json!(self.kind));
        if let Some(kind) = registry::kind(&self.kind) {
            for field in kind.fields {
                let Some(typed) = self.values.get(&format!("{}.{}", kind.name, field.path)) else {
                    continue;
                };
                if typed.trim().is_empty() {
                    continue;
                }
                let value = field
                    .value(std::slice::from_ref(typed))
                    .map_err(|e| invalid(field.path, e))?;
                registry::set_field(&mut body, field.path, value)
                    .map_err(|e| invalid(field.path, e))?;
            }
        }
        Ok(serde_json::Value::Object(body))
    }

    /// What the page shows again after a refusal: no secret typed.
    fn shown(mut self) -> ConnectionForm {
        self.values.retain(|name, _| {
            let secret = name.split_once('.').is_some_and(|(kind, path)| {
                registry::kind(kind)
                    .and_then(|k| k.fields.iter().find(|f| f.path == path))
                    .is_some_and(|f| f.input == registry::Input::Secret)
            });
            !secret
        });
        self
    }
}

/// The most fields a posted form may hold (every kind's inputs are far fewer).
const MAX_FIELDS: usize = 200;

async fn list_page<R>(
    state: &AppState,
    page: &Page<R>,
    status: StatusCode,
    form: &ConnectionForm,
    note: Option<Value>,
) -> Response {
    match ops::list(state, &page.who.lesser()).await {
        Ok(connections) => page.render(
            "connections.html",
            "/connections",
            status,
            context! { title => "Connections", connections, form, kinds => registry::KINDS, flash => note },
        ),
        Err(error) => page.error(error),
    }
}

pub async fn list(State(state): State<AppState>, page: Page<Viewer>, params: Params) -> Response {
    let form = ConnectionForm {
        kind: registry::KINDS
            .iter()
            .find(|k| !k.fields.is_empty())
            .map_or_else(String::new, |k| k.name.to_owned()),
        ..ConnectionForm::default()
    };
    list_page(&state, &page, StatusCode::OK, &form, flash(&params)).await
}

pub async fn add(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = ConnectionForm::posted(pairs);
    let result = match form.body() {
        Ok(body) => ops::create(&state, &page.who, body).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(view) => done("/connections", &format!("Connection {} added.", view.name)),
        Err(error) => {
            let (status, note) = failed(error);
            list_page(&state, &page, status, &form.shown(), Some(note)).await
        }
    }
}

pub async fn test_new(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = ConnectionForm::posted(pairs);
    let result = match form.body() {
        Ok(body) => ops::test_new(&state, &page.who, body).await,
        Err(error) => Err(error),
    };
    let note = match result {
        Ok(result) => {
            context! { kind => if result.ok { "ok" } else { "error" }, text => result.detail }
        }
        Err(error) => failed(error).1,
    };
    list_page(&state, &page, StatusCode::OK, &form.shown(), Some(note)).await
}

pub async fn page(
    State(state): State<AppState>,
    page: Page<Viewer>,
    Path(name): Path<String>,
    params: Params,
) -> Response {
    match ops::get(&state, &page.who, &name).await {
        Ok(view) => {
            let definition = serde_json::to_string_pretty(&view.connection).unwrap_or_default();
            let kind = view.connection.info();
            let address = kind.address_field.map(|field| {
                serde_json::to_value(&view.connection)
                    .ok()
                    .and_then(|v| v.get(field).and_then(|a| a.as_str()).map(str::to_owned))
                    .unwrap_or_default()
            });
            page.render(
                "connection.html",
                "/connections",
                StatusCode::OK,
                context! { title => format!("Connection {}", view.name), view, kind, address, definition, flash => flash(&params) },
            )
        }
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct ConnectionEdit {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    definition: String,
}

impl ConnectionEdit {
    /// The definition as typed, with the URL field over it.
    fn body(self) -> Result<serde_json::Value, AppError> {
        let mut body: serde_json::Value = serde_json::from_str(&self.definition)
            .map_err(|e| invalid("definition", format!("not JSON: {e}")))?;
        let Some(fields) = body.as_object_mut() else {
            return Err(invalid(
                "definition",
                "a connection is a JSON object: `{\"kind\": \"amqp\", \"url\": …}`",
            ));
        };
        if let Some(url) = self.url.filter(|u| !u.trim().is_empty()) {
            let field = fields
                .get("kind")
                .and_then(|k| k.as_str())
                .and_then(registry::kind)
                .and_then(|k| k.address_field);
            if let Some(field) = field {
                fields.insert(field.into(), json!(url.trim()));
            }
        }
        Ok(body)
    }
}

/// Saves a changed connection: the whole definition as typed, with the URL field over it.
pub async fn update(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
    Form(form): Form<ConnectionEdit>,
) -> Response {
    let result = match form.body() {
        Ok(body) => ops::update(&state, &page.who, &name, body).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => done(
            &format!("/connections/{}", escape(&name)),
            "Saved; the connection was opened again and its routes moved to it.",
        ),
        Err(error) => page.error(error),
    }
}

pub async fn test(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
) -> Response {
    match ops::test(&state, &page.who, &name).await {
        Ok(result) => done(
            "/connections",
            &format!(
                "{name}: {} ({})",
                if result.ok { "works" } else { "failed" },
                result.detail
            ),
        ),
        Err(error) => page.error(error),
    }
}

pub async fn remove(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
) -> Response {
    match ops::delete(&state, &page.who, &name).await {
        Ok(()) => done("/connections", &format!("Connection {name} removed.")),
        Err(error) => page.error(error),
    }
}
