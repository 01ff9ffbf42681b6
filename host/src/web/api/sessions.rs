//! `POST /api/v1/login` and `/api/v1/logout`: sessions for the admin UI's scripts and for
//! people with a JSON client.

use crate::web::caller::{self, SESSION_COOKIE, SESSION_LIFETIME, Via};
use crate::web::json::JsonBody;
use crate::web::ops::sessions as ops;
use crate::web::{AppError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum_extra::extract::cookie::CookieJar;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    name: String,
    password: String,
}

/// Signs a user in: a session cookie, and the CSRF token its changes must present. Each
/// name's attempts are limited (five in 15 minutes, on every host of the database), and each
/// address's.
#[utoipa::path(post, path = "/api/v1/login", tag = "sessions", security(()), request_body = Login,
    responses((status = 200, body = Object, description = "`{name, role, csrf}` and the session cookie"),
        (status = 401), (status = 429)))]
pub async fn login(
    State(state): State<AppState>,
    peer: caller::Peer,
    headers: HeaderMap,
    jar: CookieJar,
    JsonBody(Login { name, password }): JsonBody<Login>,
) -> Result<(CookieJar, Json<Value>), AppError> {
    let signed_in = ops::sign_in(&state, &name, password, Via::Api, peer.0).await?;
    let secure = caller::is_secure(&state, &headers);
    let jar = jar.add(caller::cookie(
        SESSION_COOKIE,
        signed_in.session,
        "/",
        SESSION_LIFETIME,
        secure,
    ));
    Ok((
        jar,
        Json(
            json!({ "name": name, "role": signed_in.caller.role.as_str(), "csrf": signed_in.csrf }),
        ),
    ))
}

/// Ends the caller's session (and any that have expired).
#[utoipa::path(post, path = "/api/v1/logout", tag = "sessions", security(()),
    responses((status = 200, body = Object)))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<(CookieJar, Json<Value>), AppError> {
    ops::sign_out(&state, caller::session_digest(&headers).as_deref()).await?;
    let secure = caller::is_secure(&state, &headers);
    let jar = jar.add(caller::cookie(
        SESSION_COOKIE,
        String::new(),
        "/",
        Duration::ZERO,
        secure,
    ));
    Ok((jar, Json(json!({ "signed_out": true }))))
}
