//! Signing in and out, the first admin's set-up, registration, reset links and one's own
//! password: the pages people use before (or about) their session.

use super::{Page, Params, done, failed, flash, message, page_error, render};
use crate::web::caller::{self, Peer, SESSION_COOKIE, SESSION_LIFETIME, Via, Viewer};
use crate::web::ops::sessions::{self as ops, SignedIn};
use crate::web::ops::users::registration_open;
use crate::web::{AppError, AppState};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;
use serde::Deserialize;
use std::time::Duration;

/// The session cookie of `signed_in`, and on to the dashboard.
fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    jar: CookieJar,
    signed_in: SignedIn,
) -> Response {
    let cookie = caller::cookie(
        SESSION_COOKIE,
        signed_in.session,
        "/",
        SESSION_LIFETIME,
        caller::is_secure(state, headers),
    );
    (jar.add(cookie), Redirect::to("/")).into_response()
}

pub async fn login_page(
    State(state): State<AppState>,
    page: Option<Page<Viewer>>,
    params: Params,
) -> Response {
    if page.is_some() {
        return Redirect::to("/").into_response();
    }
    let no_users = state.store.users().await.is_ok_and(|u| u.is_empty());
    let registration = registration_open(&state).await.unwrap_or(false);
    render(
        "login.html",
        None,
        "",
        StatusCode::OK,
        context! { title => "Sign in", name => "", registration, no_users, flash => flash(&params) },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    match ops::sign_in(&state, &form.name, form.password, Via::Ui, peer).await {
        Ok(session) => signed_in(&state, &headers, jar, session),
        Err(error) => {
            let (status, flash) = failed(error);
            render(
                "login.html",
                None,
                "",
                status,
                context! { title => "Sign in", name => form.name, flash },
            )
        }
    }
}

pub async fn logout(
    State(state): State<AppState>,
    page: Page<Viewer>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    if let Err(error) = ops::sign_out(&state, caller::session_digest(&headers).as_deref()).await {
        return page.error(error);
    }
    let expired = caller::cookie(
        SESSION_COOKIE,
        String::new(),
        "/",
        Duration::ZERO,
        caller::is_secure(&state, &headers),
    );
    (jar.add(expired), Redirect::to("/login")).into_response()
}

/// The first-admin page: only with the one-time link the host printed when it started, and
/// only while no user exists.
pub async fn setup_page(State(state): State<AppState>, params: Params) -> Response {
    match state.store.users().await {
        Ok(users) if !users.is_empty() => {
            // An admin exists (made here, on another host or with the CLI): the link is done.
            state.setup.used();
            return Redirect::to("/login").into_response();
        }
        Ok(_) => {}
        Err(error) => return page_error(error.into()),
    }
    let token = params.get("token").cloned().unwrap_or_default();
    if !state.setup.accepts(&token) {
        return message(
            None,
            StatusCode::FORBIDDEN,
            "Open the set-up link",
            "The first admin is made with the one-time link this host printed when it started (look in its log for /setup?token=…), or with `wharf user add NAME --role admin` on its machine.",
        );
    }
    render(
        "setup.html",
        None,
        "",
        StatusCode::OK,
        context! { title => "Set up", setup_token => token, name => "" },
    )
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    token: String,
    name: String,
    password: String,
}

pub async fn setup(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<SetupForm>,
) -> Response {
    match ops::set_up(&state, &form.token, form.name.trim(), form.password, peer).await {
        Ok(session) => signed_in(&state, &headers, jar, session),
        Err(error @ (AppError::Forbidden(_) | AppError::Conflict(_))) => page_error(error),
        Err(error) => {
            let (status, flash) = failed(error);
            render(
                "setup.html",
                None,
                "",
                status,
                context! { title => "Set up", setup_token => form.token, name => form.name, flash },
            )
        }
    }
}

const REGISTER_COOKIE: &str = "wharf_register";

fn account_form(
    viewing: Option<&super::Viewing>,
    status: StatusCode,
    ctx: minijinja::Value,
    error: Option<String>,
) -> Response {
    render(
        "account.html",
        viewing,
        "",
        status,
        context! { flash => error.map(|text| context! { kind => "error", text }), ..ctx },
    )
}

fn register_ctx(token: &str, name: &str) -> minijinja::Value {
    context! {
        title => "Register", heading => "Register", action => "/register", form_token => token,
        ask_name => true, name, button => "Register and sign in",
        note => "You start as a viewer; an admin can give you more.",
    }
}

/// Registration, while an admin has it open: a new user is a viewer, signed in at once. Its
/// form is guarded by a token also set as a SameSite=Strict cookie, so another site cannot
/// post it.
pub async fn register_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    match registration_open(&state).await {
        Ok(true) => {}
        Ok(false) => return Redirect::to("/login").into_response(),
        Err(error) => return page_error(error),
    }
    let (token, _) = crate::auth::new_token();
    let cookie = caller::cookie(
        REGISTER_COOKIE,
        token.clone(),
        "/register",
        Duration::from_secs(3600),
        caller::is_secure(&state, &headers),
    );
    (
        jar.add(cookie),
        account_form(None, StatusCode::OK, register_ctx(&token, ""), None),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    token: String,
    name: String,
    password: String,
}

pub async fn register(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<RegisterForm>,
) -> Response {
    let cookie = jar.get(REGISTER_COOKIE).map(|c| c.value().to_owned());
    if !cookie.is_some_and(|c| caller::same_secret(&c, &form.token)) {
        return message(
            None,
            StatusCode::FORBIDDEN,
            "Refused",
            "This form did not come from this host's registration page; open /register and try again.",
        );
    }
    match ops::register(&state, form.name.trim(), form.password, peer).await {
        Ok(session) => signed_in(&state, &headers, jar, session),
        Err(error @ AppError::Forbidden(_)) => page_error(error),
        Err(error) => {
            let (status, text) = error.status_and_message();
            account_form(
                None,
                status,
                register_ctx(&form.token, &form.name),
                Some(text),
            )
        }
    }
}

fn password_ctx(name: &str) -> minijinja::Value {
    context! {
        title => "Your password", heading => format!("Change the password of {name}"),
        action => "/account", ask_current => true, button => "Change the password",
        note => "Every session of yours ends when the password changes, this one too.",
    }
}

pub async fn password_page(page: Page<Viewer>) -> Response {
    let ctx = password_ctx(&page.who.caller.name);
    account_form(Some(&page.viewing()), StatusCode::OK, ctx, None)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    page: Page<Viewer>,
    Form(form): Form<PasswordForm>,
) -> Response {
    match ops::change_own_password(&state, &page.who, form.current, form.password).await {
        // Every session of the user ended with the change: sign in again.
        Ok(()) => done("/login", "Password changed; sign in with the new one."),
        Err(error) => {
            let (status, text) = error.status_and_message();
            let ctx = password_ctx(&page.who.caller.name);
            account_form(Some(&page.viewing()), status, ctx, Some(text))
        }
    }
}

fn dead_link() -> Response {
    message(
        None,
        StatusCode::NOT_FOUND,
        "This link does not work",
        "It was used already, or it expired, or it never existed; ask an admin for a new one.",
    )
}

pub async fn reset_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match ops::reset_user(&state, &token).await {
        Ok(Some(user)) => {
            let ctx = context! {
                title => "Set a new password", heading => format!("Set a new password for {user}"),
                action => format!("/reset/{}", super::escape(&token)), button => "Set the password",
                note => "This link works once.",
            };
            account_form(None, StatusCode::OK, ctx, None)
        }
        Ok(None) => dead_link(),
        Err(error) => page_error(error),
    }
}

#[derive(Deserialize)]
pub struct ResetForm {
    password: String,
}

pub async fn reset(
    State(state): State<AppState>,
    Peer(peer): Peer,
    Path(token): Path<String>,
    Form(form): Form<ResetForm>,
) -> Response {
    match ops::reset(&state, &token, form.password, peer).await {
        Ok(Some(user)) => done(
            "/login",
            &format!("The password of {user} is set; sign in with it."),
        ),
        Ok(None) => dead_link(),
        Err(error) => {
            let (status, text) = error.status_and_message();
            message(None, status, "Choose another password", &text)
        }
    }
}
