//! Broker connections of this host's file (read-only) and of the database. Secrets (passwords
//! in URLs, secret headers, bundle passwords) are never shown back; a definition sent back as
//! it was shown keeps the stored secrets, but a secret never follows its connection to another
//! host unless it is given again. In the database, a connection's definition is sealed with
//! the host's key (`crate::secrets`).

use super::{AppError, AppState, applied, audit, file_defined, now_ms};
use crate::broker::{Capabilities, ConnectionTest};
use crate::check::check_connection_name;
use crate::config::ConnectionConfig;
use crate::store::Documents;
use crate::supervisor::{Desired, Source};
use crate::web::caller::{Admin, Allowed, Viewer};
use crate::web::json::from_value;
use serde::Serialize;
use serde_json::{Value, json};

/// A connection as the API shows it (secrets hidden).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub name: String,
    pub source: Source,
    pub connection: ConnectionConfig,
    /// Where it connects (its URL or brokers, passwords hidden), where its kind says.
    pub address: Option<String>,
    /// What its kind can and cannot do (depth, purge, peek, leases, events, ingress).
    pub can: Capabilities,
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
pub fn definition(
    body: Value,
    named: bool,
) -> Result<(Option<String>, ConnectionConfig), AppError> {
    let Value::Object(mut fields) = body else {
        return Err(crate::web::error::invalid(
            "body",
            "a connection is a JSON object",
        ));
    };
    let bad = crate::web::error::invalid;
    let name = if named {
        match fields.remove("name") {
            Some(Value::String(name)) => Some(name),
            Some(_) => return Err(bad("name", "must be a string")),
            None => return Err(bad("name", "missing field `name`")),
        }
    } else {
        None
    };
    let kinds = crate::broker::registry::kind_list();
    let connection = match fields.remove("kind") {
        Some(Value::String(kind)) => {
            match ConnectionConfig::read(&kind, Value::Object(fields), &FromBody) {
                Some(read) => read?,
                None => return Err(bad("kind", &format!("must be {kinds}"))),
            }
        }
        Some(_) => return Err(bad("kind", &format!("must be {kinds}"))),
        None => return Err(bad("kind", &format!("missing field `kind` ({kinds})"))),
    };
    Ok((name, connection))
}

/// Reads a kind's fields as the API reads every body: naming the field at fault.
struct FromBody;

impl crate::broker::registry::ReadFields for FromBody {
    type Error = AppError;
    fn read<T: serde::de::DeserializeOwned>(&self, fields: Value) -> Result<T, AppError> {
        from_value(fields, "")
    }
}

/// The value of a definition's address field, passwords hidden.
fn address_of(spec: &ConnectionConfig) -> Option<String> {
    let field = spec.info().address_field?;
    let shown = serde_json::to_value(spec.redacted()).ok()?;
    shown.get(field)?.as_str().map(str::to_owned)
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
                address: address_of(&item.spec),
                can: item.spec.info().can,
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

pub async fn list(state: &AppState, _: &Allowed<Viewer>) -> Result<Vec<ConnectionView>, AppError> {
    views(state).await
}

pub async fn get(
    state: &AppState,
    _: &Allowed<Viewer>,
    name: &str,
) -> Result<ConnectionView, AppError> {
    view(state, name).await
}

/// Refuses a `/hooks/` path another connection of this host takes already.
fn hooks_free(state: &AppState, name: &str, connection: &ConnectionConfig) -> Result<(), AppError> {
    for (path, _) in connection.hooks() {
        if let Some((other, _)) = state
            .connections
            .hook(&path)
            .into_iter()
            .find(|(other, _)| other != name)
        {
            return Err(crate::web::error::invalid(
                &format!("hooks.{path}"),
                format!("`/hooks/{path}` is connection `{other}`'s already"),
            ));
        }
    }
    Ok(())
}

/// Adds a connection (`name` and its definition); every host on this database opens it.
pub async fn create(
    state: &AppState,
    who: &Allowed<Admin>,
    body: Value,
) -> Result<ConnectionView, AppError> {
    let (name, connection) = definition(body, true)?;
    let name = name.expect("named");
    check_connection_name("name", &name)?;
    if state.supervisor.file().connections.contains_key(&name) {
        return Err(file_defined(state, "connection", &name));
    }
    connection.check("")?;
    hooks_free(state, &name, &connection)?;
    if let Some(field) = connection.hidden_field() {
        return Err(crate::web::error::invalid(
            &field,
            "is hidden (***): a new connection has no stored secret to keep; give its value",
        ));
    }
    let spec = serde_json::to_string(&connection).expect("a connection serialises");
    if !state
        .store
        .create_document(Documents::Connections, &name, &spec, now_ms())
        .await?
    {
        return Err(AppError::Conflict(format!(
            "a connection named `{name}` exists already"
        )));
    }
    audit::record(
        state,
        who,
        "connection.create",
        &name,
        json!({ "connection": connection.redacted() }),
    )
    .await;
    applied(state).await?;
    view(state, &name).await
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
/// Secrets sent back hidden (`***`) keep their stored values, for the same host only.
pub async fn update(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    body: Value,
) -> Result<ConnectionView, AppError> {
    let old = stored(state, name).await?;
    let (_, mut connection) = definition(body, false)?;
    connection.keep_secrets(&old)?;
    connection.check("")?;
    hooks_free(state, name, &connection)?;
    let spec = serde_json::to_string(&connection).expect("a connection serialises");
    state
        .store
        .update_document(Documents::Connections, name, &spec, now_ms())
        .await?;
    audit::record(
        state,
        who,
        "connection.update",
        name,
        json!({ "connection": connection.redacted() }),
    )
    .await;
    applied(state).await?;
    view(state, name).await
}

/// Removes a connection no route uses.
pub async fn delete(state: &AppState, who: &Allowed<Admin>, name: &str) -> Result<(), AppError> {
    stored(state, name).await?;
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
        .delete_document(Documents::Connections, name)
        .await?;
    audit::record(state, who, "connection.delete", name, json!({})).await;
    applied(state).await?;
    Ok(())
}

/// Tests connection `name`: connects afresh, so the answer says whether it works now, not
/// only what this host last saw.
pub async fn test(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
) -> Result<ConnectionTest, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let item = desired
        .connections
        .get(name)
        .ok_or_else(|| AppError::NotFound(format!("no connection named `{name}`")))?;
    let tested = item.spec.test(name, &state.store).await;
    audit::record(
        state,
        who,
        "connection.test",
        name,
        json!({ "ok": tested.ok }),
    )
    .await;
    Ok(tested)
}

/// Tests a definition (`name` and its fields) before it is stored.
pub async fn test_new(
    state: &AppState,
    who: &Allowed<Admin>,
    body: Value,
) -> Result<ConnectionTest, AppError> {
    let (name, connection) = definition(body, true)?;
    let name = name.expect("named");
    check_connection_name("name", &name)?;
    connection.check("")?;
    let tested = connection.test(&name, &state.store).await;
    // A test reaches out from the host to wherever the definition points: it is audited.
    audit::record(
        state,
        who,
        "connection.test",
        &name,
        json!({ "ok": tested.ok, "kind": connection.kind(), "stored": false }),
    )
    .await;
    Ok(tested)
}
