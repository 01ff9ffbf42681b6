//! `/api/v1/connections`: broker connections of this host's file (read-only) and of the
//! database. Secrets (passwords in URLs) are never shown back; an update that sends a URL back
//! as it was shown keeps the stored one.

use super::{AppError, AppState, JsonBody, applied, file_defined, from_value};
use crate::config::{ConnectionConfig, check_connection_name};
use crate::store::Documents;
use crate::supervisor::{Desired, Source};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// A connection as the API shows it (secrets hidden).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub name: String,
    pub source: Source,
    pub connection: ConnectionConfig,
    /// `up` or `down` on this host.
    pub state: &'static str,
    pub error: Option<String>,
}

/// A new connection: its name and its definition, as in the file's `[connections.NAME]`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by `definition`, described by this
pub struct NewConnection {
    pub name: String,
    #[schema(inline)]
    pub connection: ConnectionConfig,
}

/// Reads a connection's definition (`kind` and the kind's fields; `name` too with
/// `named`), naming the field at fault. Read by kind rather than through serde's tagged enum,
/// which loses the path of a bad field.
fn definition(body: Value, named: bool) -> Result<(Option<String>, ConnectionConfig), AppError> {
    let Value::Object(mut fields) = body else {
        return Err(AppError::Invalid {
            field: "body".into(),
            message: "a connection is a JSON object".into(),
        });
    };
    let bad = |field: &str, message: &str| AppError::Invalid {
        field: field.into(),
        message: message.into(),
    };
    let name = if named {
        match fields.remove("name") {
            Some(Value::String(name)) => Some(name),
            Some(_) => return Err(bad("name", "must be a string")),
            None => return Err(bad("name", "missing field `name`")),
        }
    } else {
        None
    };
    let connection = match fields.remove("kind") {
        Some(Value::String(kind)) if kind == "amqp" => {
            ConnectionConfig::Amqp(Box::new(from_value(Value::Object(fields), "")?))
        }
        Some(Value::String(kind)) if kind == "http" => {
            ConnectionConfig::Http(Box::new(from_value(Value::Object(fields), "")?))
        }
        Some(Value::String(kind)) if kind == "embedded" => {
            ConnectionConfig::Embedded(from_value(Value::Object(fields), "")?)
        }
        Some(_) => return Err(bad("kind", "must be `amqp`, `http` or `embedded`")),
        None => {
            return Err(bad(
                "kind",
                "missing field `kind` (`amqp`, `http` or `embedded`)",
            ));
        }
    };
    Ok((name, connection))
}

async fn views(state: &AppState) -> Result<Vec<ConnectionView>, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let status = state.supervisor.status().await;
    Ok(desired
        .connections
        .into_iter()
        .map(|(name, item)| {
            let live = status.connections.iter().find(|c| c.name == name);
            ConnectionView {
                state: live.map_or("down", |c| c.state),
                error: match live {
                    Some(c) => c.error.clone(),
                    None => Some("not applied on this host yet".into()),
                },
                connection: item.spec.redacted(),
                source: item.source,
                name,
            }
        })
        .collect())
}

async fn view(state: &AppState, name: &str) -> Result<ConnectionView, AppError> {
    views(state)
        .await?
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| AppError::NotFound(format!("no connection named `{name}`")))
}

#[utoipa::path(get, path = "/api/v1/connections", tag = "connections",
    responses((status = 200, body = [ConnectionView])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ConnectionView>>, AppError> {
    Ok(Json(views(&state).await?))
}

#[utoipa::path(get, path = "/api/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConnectionView>, AppError> {
    Ok(Json(view(&state, &name).await?))
}

/// Adds a connection; every host on this database opens it.
#[utoipa::path(post, path = "/api/v1/connections", tag = "connections",
    request_body = NewConnection,
    responses((status = 201, body = ConnectionView), (status = 400), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<ConnectionView>), AppError> {
    let (name, connection) = definition(body, true)?;
    let name = name.expect("named");
    check_connection_name("name", &name)?;
    if state.supervisor.file().connections.contains_key(&name) {
        return Err(file_defined(&state, "connection", &name));
    }
    connection.check("")?;
    let spec = serde_json::to_string(&connection).expect("a connection serialises");
    if !state
        .store
        .create_document(Documents::Connections, &name, &spec, crate::web::now_ms())
        .await?
    {
        return Err(AppError::Conflict(format!(
            "a connection named `{name}` exists already"
        )));
    }
    applied(&state).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &name).await?)))
}

/// The stored definition of database connection `name`.
async fn stored(state: &AppState, name: &str) -> Result<ConnectionConfig, AppError> {
    if state.supervisor.file().connections.contains_key(name) {
        return Err(file_defined(state, "connection", name));
    }
    let doc = state
        .store
        .documents(Documents::Connections)
        .await?
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| AppError::NotFound(format!("no connection named `{name}`")))?;
    serde_json::from_str(&doc.spec).map_err(|e| {
        AppError::Conflict(format!(
            "connection `{name}` is stored in a form this host cannot read ({e}); replace it"
        ))
    })
}

/// Replaces a connection: it is opened again, and the routes on it move to the new one.
#[utoipa::path(put, path = "/api/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path)), request_body = ConnectionConfig,
    responses((status = 200, body = ConnectionView), (status = 400), (status = 404), (status = 409)))]
pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ConnectionView>, AppError> {
    let old = stored(&state, &name).await?;
    let (_, mut connection) = definition(body, false)?;
    // Secrets sent back as the API showed them (hidden) keep their stored values.
    connection.keep_secrets(&old);
    connection.check("")?;
    let spec = serde_json::to_string(&connection).expect("a connection serialises");
    state
        .store
        .update_document(Documents::Connections, &name, &spec, crate::web::now_ms())
        .await?;
    applied(&state).await?;
    Ok(Json(view(&state, &name).await?))
}

/// Removes a connection no route uses.
#[utoipa::path(delete, path = "/api/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    stored(&state, &name).await?;
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    for route in desired.routes.values() {
        let spec = &route.spec;
        let dead = spec
            .dead_letter
            .clone()
            .unwrap_or_else(|| format!("{}.dead", spec.from));
        let uses = [Some(&spec.from), spec.to.as_ref(), Some(&dead)]
            .into_iter()
            .flatten()
            .any(|address| address.split_once(':').is_some_and(|(c, _)| c == name));
        if uses {
            return Err(AppError::Conflict(format!(
                "route `{}` uses connection `{name}`; change or delete the route first",
                spec.name
            )));
        }
    }
    state
        .store
        .delete_document(Documents::Connections, &name)
        .await?;
    applied(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The outcome of a connection test.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub ok: bool,
    /// What was tried, and what went wrong.
    pub detail: String,
}

/// Tests a connection: connects afresh (for RabbitMQ: opens a connection and closes it), so
/// the answer says whether it works now, not only what this host last saw.
#[utoipa::path(post, path = "/api/v1/connections/{name}/test", tag = "connections",
    params(("name" = String, Path)),
    responses((status = 200, body = TestResult), (status = 404)))]
pub async fn test(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TestResult>, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let item = desired
        .connections
        .get(&name)
        .ok_or_else(|| AppError::NotFound(format!("no connection named `{name}`")))?;
    Ok(Json(try_connection(&state, &name, &item.spec).await))
}

/// Tests a definition before it is stored.
#[utoipa::path(post, path = "/api/v1/connections/test", tag = "connections",
    request_body = NewConnection,
    responses((status = 200, body = TestResult), (status = 400)))]
pub async fn test_new(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<TestResult>, AppError> {
    let (name, connection) = definition(body, true)?;
    let name = name.expect("named");
    check_connection_name("name", &name)?;
    connection.check("")?;
    Ok(Json(try_connection(&state, &name, &connection).await))
}

async fn try_connection(state: &AppState, name: &str, spec: &ConnectionConfig) -> TestResult {
    match spec {
        ConnectionConfig::Embedded(_) => match state.store.ping().await {
            Ok(()) => TestResult {
                ok: true,
                detail: "the embedded broker lives in this host's database, which answers".into(),
            },
            Err(e) => TestResult {
                ok: false,
                detail: format!("the database does not answer: {e}"),
            },
        },
        ConnectionConfig::Http(http) => {
            let Some(base) = &http.base_url else {
                return TestResult {
                    ok: true,
                    detail:
                        "ingress only (no base_url): its messages are held in this host's database"
                            .into(),
                };
            };
            let shown = crate::config::redact(base);
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(http.timeout_ms.min(15_000)))
                .build();
            let answer = match client {
                Ok(client) => client.head(base).send().await,
                Err(e) => {
                    return TestResult {
                        ok: false,
                        detail: format!("cannot make an HTTP client: {e}"),
                    };
                }
            };
            match answer {
                // Any answer shows the endpoint is there; what it says of HEAD on its base
                // URL says nothing of the requests routes will send.
                Ok(response) => TestResult {
                    ok: true,
                    detail: format!("{shown} answers (HEAD: {})", response.status()),
                },
                Err(e) => TestResult {
                    ok: false,
                    detail: format!("{shown} does not answer: {}", e.without_url()),
                },
            }
        }
        ConnectionConfig::Amqp(amqp) => {
            let mut amqp = (**amqp).clone();
            amqp.connect_timeout_ms = amqp.connect_timeout_ms.min(5_000);
            let attempt = crate::broker::amqp::declare_once(
                name,
                amqp,
                crate::broker::amqp::Topology::default(),
            );
            match tokio::time::timeout(Duration::from_secs(15), attempt).await {
                Ok(Ok((url, _))) => TestResult {
                    ok: true,
                    detail: format!("connected to {url}"),
                },
                Ok(Err(e)) => TestResult {
                    ok: false,
                    detail: e.to_string(),
                },
                Err(_) => TestResult {
                    ok: false,
                    detail: "no answer within 15 s".into(),
                },
            }
        }
    }
}
