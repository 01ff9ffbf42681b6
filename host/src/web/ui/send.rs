//! The Send page: publish text or JSON with headers to any address, or send it as a request
//! and show the reply.

use super::{Page, Params, done, escape, failed, flash, ok_note};
use crate::web::caller::Operator;
use crate::web::error::invalid;
use crate::web::ops::{outbox, queues, rpc};
use crate::web::{AppError, AppState};
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, serde::Serialize, Default)]
pub struct SendForm {
    address: String,
    #[serde(default)]
    headers: String,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    payload: String,
    /// Hand it to the outbox instead of the broker.
    #[serde(default)]
    durable: Option<String>,
    /// Send as a request and wait for its reply.
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    timeout_ms: String,
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
            let (name, value) = line.split_once(':').ok_or_else(|| {
                invalid("headers", format!("line {}: write `name: value`", i + 1))
            })?;
            headers.insert(name.trim().to_owned(), json!(value.trim()));
        }
        let content_type = self.content_type.trim();
        if content_type == "application/json" {
            serde_json::from_str::<Value>(&self.payload)
                .map_err(|e| invalid("payload", format!("the payload is not JSON: {e}")))?;
        }
        let mut message = json!({ "payload": self.payload, "headers": headers });
        if !content_type.is_empty() {
            message["content_type"] = json!(content_type);
        }
        Ok(message)
    }
}

/// The event form's fields, as typed.
#[derive(Deserialize, serde::Serialize)]
pub struct EventForm {
    model: String,
    event: String,
    #[serde(default)]
    data: String,
    #[serde(default)]
    durable: Option<String>,
}

impl Default for EventForm {
    fn default() -> Self {
        EventForm {
            model: String::new(),
            event: String::new(),
            data: "{}".into(),
            durable: None,
        }
    }
}

/// The Send page: the message form, the event form, a note, and the reply a request got
/// (shown as a message).
fn form(
    page: &Page<Operator>,
    state: &AppState,
    status: StatusCode,
    form: &SendForm,
    note: Option<minijinja::Value>,
    reply: Option<Value>,
) -> Response {
    render(
        page,
        state,
        status,
        form,
        &EventForm::default(),
        note,
        reply,
    )
}

fn render(
    page: &Page<Operator>,
    state: &AppState,
    status: StatusCode,
    form: &SendForm,
    event: &EventForm,
    note: Option<minijinja::Value>,
    reply: Option<Value>,
) -> Response {
    let reply = reply.as_ref().map(super::queues::shown);
    let events = &state.supervisor.file().events;
    let events = format!("{}:{}", events.connection, events.exchange);
    page.render(
        "send.html",
        "/send",
        status,
        context! { title => "Send", form, event, events, connections => state.connections.names(), reply, flash => note },
    )
}

/// Publishes the event form's event.
pub async fn event(
    State(state): State<AppState>,
    page: Page<Operator>,
    Form(typed): Form<EventForm>,
) -> Response {
    let durable = typed.durable.is_some();
    let result = async {
        let data: Value = serde_json::from_str(&typed.data)
            .map_err(|e| invalid("data", format!("the data is not JSON: {e}")))?;
        crate::web::ops::events::publish(
            &state,
            &page.who,
            typed.model.trim(),
            typed.event.trim(),
            &data,
            durable,
        )
        .await
    }
    .await;
    match result {
        Ok(published) => done(
            "/send",
            &format!(
                "Event {} published to {}{}: message {}.",
                published.routing_key,
                published.to,
                if durable { " through the outbox" } else { "" },
                published.id
            ),
        ),
        Err(error) => {
            let (status, note) = failed(error);
            let blank = SendForm {
                address: "local:demo.in".into(),
                ..SendForm::default()
            };
            render(&page, &state, status, &blank, &typed, Some(note), None)
        }
    }
}

pub async fn page(State(state): State<AppState>, page: Page<Operator>, params: Params) -> Response {
    let typed = SendForm {
        address: params
            .get("address")
            .cloned()
            .unwrap_or_else(|| "local:demo.in".into()),
        ..SendForm::default()
    };
    form(&page, &state, StatusCode::OK, &typed, flash(&params), None)
}

pub async fn send(
    State(state): State<AppState>,
    page: Page<Operator>,
    Form(typed): Form<SendForm>,
) -> Response {
    if typed.wait.is_some() && typed.durable.is_some() {
        let note = failed(invalid(
            "durable",
            "a request waits for its reply now; the outbox sends later. Choose one.",
        ));
        return form(&page, &state, note.0, &typed, Some(note.1), None);
    }
    if typed.wait.is_some() {
        return send_and_wait(state, page, typed).await;
    }
    let durable = typed.durable.is_some();
    let result = async {
        let message = typed.message()?;
        if durable {
            let origin = format!("ui:{}", page.who.caller.actor());
            let handover = outbox::Handover {
                to: typed.address.trim().to_owned(),
                message,
            };
            let ids = outbox::accept(&state, &page.who, &origin, vec![handover]).await?;
            return Ok(ids.into_iter().next().unwrap_or_default());
        }
        let at = queues::parse(&state, &typed.address)?;
        queues::publish(&state, &page.who, &at, &message).await
    }
    .await;
    match result {
        Ok(id) => done(
            &format!("/send?address={}", escape(typed.address.trim())),
            &if durable {
                format!(
                    "In the outbox for {}: message {id}; it is sent when the broker takes it.",
                    typed.address.trim()
                )
            } else {
                format!("Accepted by {}: message {id}.", typed.address.trim())
            },
        ),
        Err(error) => {
            let (status, note) = failed(error);
            form(&page, &state, status, &typed, Some(note), None)
        }
    }
}

/// The "wait for the reply" mode: the message goes as a request through the correlation
/// table, and the page shows the reply (or how long it waited).
async fn send_and_wait(state: AppState, page: Page<Operator>, typed: SendForm) -> Response {
    let result = async {
        let at = queues::parse(&state, &typed.address)?;
        let timeout_ms = match typed.timeout_ms.trim() {
            "" => None,
            text => Some(text.parse::<u64>().map_err(|_| {
                invalid(
                    "timeout_ms",
                    format!("`{text}` is not a number of milliseconds"),
                )
            })?),
        };
        let message = typed.message()?;
        rpc::call(
            &state,
            &page.who,
            &at.connection,
            &at.address,
            timeout_ms,
            &message,
        )
        .await
    }
    .await;
    match result {
        Ok(reply) => {
            let note = ok_note(format!("Reply from {}.", typed.address.trim()));
            form(
                &page,
                &state,
                StatusCode::OK,
                &typed,
                Some(note),
                Some(reply.to_json()),
            )
        }
        Err(error) => {
            let (status, note) = failed(error);
            form(&page, &state, status, &typed, Some(note), None)
        }
    }
}
