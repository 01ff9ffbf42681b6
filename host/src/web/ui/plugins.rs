//! The Plugins page: every plugin and version; upload (checked before it is stored, and
//! refused to anyone but an admin before its body is read), enable, disable, delete, roll
//! back, grant.

use super::{Page, Params, done, flash};
use crate::web::caller::{Admin, Viewer};
use crate::web::ops::plugins::{self as ops, GrantChange};
use crate::web::{AppError, AppState};
use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

pub async fn list(State(state): State<AppState>, page: Page<Viewer>, params: Params) -> Response {
    match ops::list(&state, &page.who).await {
        Ok(plugins) => page.render(
            "plugins.html",
            "/plugins",
            StatusCode::OK,
            context! { title => "Plugins", plugins, flash => flash(&params) },
        ),
        Err(error) => page.error(error),
    }
}

/// The upload form's fields: the file, whether it serves at once, and the installed plugin
/// it is a new version of (empty: a new plugin).
async fn read_upload(
    mut multipart: Multipart,
) -> Result<(Vec<u8>, bool, Option<String>), AppError> {
    let (mut file, mut enabled, mut upgrade) = (None, false, None);
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let bytes = field.bytes().await.map_err(|_| {
                    AppError::PayloadTooLarge(
                        "the upload is over the host's limit (server.max_request_bytes)".into(),
                    )
                })?;
                match name.as_str() {
                    "file" => file = Some(bytes.to_vec()),
                    "enabled" => enabled = true,
                    "upgrade" => {
                        let named = String::from_utf8_lossy(&bytes).trim().to_owned();
                        upgrade = (!named.is_empty()).then_some(named);
                    }
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(error) => {
                return Err(AppError::BadRequest(format!(
                    "the upload could not be read: {error}"
                )));
            }
        }
    }
    Ok((file.unwrap_or_default(), enabled, upgrade))
}

pub async fn upload(
    State(state): State<AppState>,
    page: Page<Admin>,
    multipart: Multipart,
) -> Response {
    let uploaded = match read_upload(multipart).await {
        Ok((bytes, enabled, upgrade)) => {
            ops::upload(&state, &page.who, &bytes, enabled, upgrade.as_deref()).await
        }
        Err(error) => Err(error),
    };
    match uploaded {
        Ok(up) => done(
            "/plugins",
            &format!(
                "{} {} {} ({}, {}); it asks for: {}.{}",
                if up.outcome == "created" {
                    "Uploaded"
                } else {
                    "Already stored:"
                },
                up.name,
                up.version.version,
                up.version.kind,
                up.version.contract,
                if up.version.wants.is_empty() {
                    "nothing".into()
                } else {
                    up.version.wants.join(", ")
                },
                if up.version.enabled {
                    " It serves now."
                } else {
                    " Stored disabled: grant what it needs, then enable it."
                }
            ),
        ),
        Err(error) => page.error(error),
    }
}

pub async fn version(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path((name, version, action)): Path<(String, String, String)>,
) -> Response {
    let result = match action.as_str() {
        "enable" => ops::set_enabled(&state, &page.who, &name, &version, true)
            .await
            .map(drop),
        "disable" => ops::set_enabled(&state, &page.who, &name, &version, false)
            .await
            .map(drop),
        "delete" => ops::delete_version(&state, &page.who, &name, &version).await,
        _ => Err(AppError::NotFound(format!("no action `{action}`"))),
    };
    match result {
        Ok(()) => done("/plugins", &format!("{name} {version}: {action}d.")),
        Err(error) => page.error(error),
    }
}

pub async fn rollback(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
) -> Response {
    match ops::rollback(&state, &page.who, &name).await {
        Ok(view) => done(
            "/plugins",
            &format!(
                "{name} rolled back; serving {}.",
                view.serving.unwrap_or_default()
            ),
        ),
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct GrantForm {
    grant: String,
}

pub async fn grant(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
    Form(form): Form<GrantForm>,
) -> Response {
    let grant = form.grant.trim().to_owned();
    let change = GrantChange {
        grants: vec![grant.clone()],
    };
    match ops::grant(&state, &page.who, &name, change).await {
        Ok(_) => done("/plugins", &format!("{name} granted {grant}.")),
        Err(error) => page.error(error),
    }
}
