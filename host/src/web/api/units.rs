//! `/api/v1/units/{name}/stop|start`: an operator holds a unit (a route) stopped on every host
//! on the database, or lets it run again. An operational switch: it leaves the definition
//! alone, so it works on the routes of a host's file too.

use super::{AppError, AppState, applied};
use crate::auth::Caller;
use crate::supervisor::{Desired, UnitStatus};
use axum::Json;
use axum::extract::{Extension, Path, State};

async fn known(state: &AppState, name: &str) -> Result<(), AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    if desired.routes.contains_key(name) {
        Ok(())
    } else {
        Err(AppError::NotFound(format!("no unit named `{name}`")))
    }
}

async fn status_of(state: &AppState, name: &str) -> Result<Json<UnitStatus>, AppError> {
    state
        .supervisor
        .status()
        .await
        .units
        .into_iter()
        .find(|u| u.name == name)
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no unit named `{name}` on this host")))
}

/// Stops a unit on every host: it finishes the messages it holds and takes no more.
#[utoipa::path(post, path = "/api/v1/units/{name}/stop", tag = "units",
    params(("name" = String, Path)),
    responses((status = 200, body = UnitStatus), (status = 404)))]
pub async fn stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<UnitStatus>, AppError> {
    known(&state, &name).await?;
    state
        .store
        .stop_unit(&name, &caller.name, crate::web::now_ms())
        .await?;
    applied(&state).await?;
    status_of(&state, &name).await
}

/// Lets a stopped unit run again.
#[utoipa::path(post, path = "/api/v1/units/{name}/start", tag = "units",
    params(("name" = String, Path)),
    responses((status = 200, body = UnitStatus), (status = 404)))]
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UnitStatus>, AppError> {
    known(&state, &name).await?;
    state.store.start_unit(&name).await?;
    applied(&state).await?;
    state
        .supervisor
        .settled(&name, std::time::Duration::from_secs(2))
        .await;
    status_of(&state, &name).await
}
