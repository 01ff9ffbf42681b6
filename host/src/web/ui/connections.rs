//! The Connections pages: the list (with a form to add one, or test it first), a connection's
//! page (its URL, or its whole definition as JSON), test and remove. Secrets are never shown
//! back: a URL or definition saved as shown keeps them, for the same host only.

use super::{Page, Params, done, escape, failed, flash};
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

#[derive(Deserialize, serde::Serialize, Default)]
pub struct ConnectionForm {
    name: String,
    kind: String,
    #[serde(default)]
    url: String,
    /// For http: ingress without a token.
    #[serde(default)]
    anonymous: Option<String>,
}

impl ConnectionForm {
    fn body(&self) -> serde_json::Value {
        let mut body = json!({ "name": self.name.trim(), "kind": self.kind });
        let url = self.url.trim();
        match self.kind.as_str() {
            "amqp" => body["url"] = json!(url),
            "kafka" => body["brokers"] = json!(url),
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
            context! { title => "Connections", connections, form, flash => note },
        ),
        Err(error) => page.error(error),
    }
}

pub async fn list(State(state): State<AppState>, page: Page<Viewer>, params: Params) -> Response {
    let form = ConnectionForm {
        kind: "amqp".into(),
        ..ConnectionForm::default()
    };
    list_page(&state, &page, StatusCode::OK, &form, flash(&params)).await
}

pub async fn add(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(form): Form<ConnectionForm>,
) -> Response {
    match ops::create(&state, &page.who, form.body()).await {
        Ok(view) => done("/connections", &format!("Connection {} added.", view.name)),
        Err(error) => {
            let (status, note) = failed(error);
            list_page(&state, &page, status, &form, Some(note)).await
        }
    }
}

pub async fn test_new(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(form): Form<ConnectionForm>,
) -> Response {
    let note = match ops::test_new(&state, &page.who, form.body()).await {
        Ok(result) => {
            context! { kind => if result.ok { "ok" } else { "error" }, text => result.detail }
        }
        Err(error) => failed(error).1,
    };
    list_page(&state, &page, StatusCode::OK, &form, Some(note)).await
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
            page.render(
                "connection.html",
                "/connections",
                StatusCode::OK,
                context! { title => format!("Connection {}", view.name), view, definition, flash => flash(&params) },
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
            let field = match fields.get("kind").and_then(|k| k.as_str()) {
                Some("http") => "base_url",
                Some("kafka") => "brokers",
                _ => "url",
            };
            fields.insert(field.into(), json!(url.trim()));
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
