//! The Users page: users (add, change role, disable and enable, reset link, remove), API
//! tokens (create, shown once; revoke) and whether people may register. Admin only.

use super::{Page, Params, done, failed, flash};
use crate::web::AppState;
use crate::web::caller::Admin;
use crate::web::ops::users::{self as ops, NewToken, NewUser, Settings, UserChange};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;

/// What the page shows besides its lists: a note, a token just made, a reset link just issued
/// (each shown on this answer only: never in a URL, never again).
#[derive(Default)]
struct Shown {
    note: Option<Value>,
    new_token: Option<Value>,
    reset_link: Option<Value>,
}

async fn render(
    state: &AppState,
    page: &Page<Admin>,
    status: StatusCode,
    shown: Shown,
) -> Response {
    let (users, tokens) = match (
        ops::list(state, &page.who).await,
        ops::tokens(state, &page.who).await,
    ) {
        (Ok(users), Ok(tokens)) => (users, tokens),
        (Err(error), _) | (_, Err(error)) => return page.error(error),
    };
    page.render(
        "users.html",
        "/users",
        status,
        context! {
            title => "Users and tokens", users, tokens,
            new_token => shown.new_token, reset_link => shown.reset_link,
            registration => ops::registration_open(state).await.unwrap_or(false),
            flash => shown.note,
        },
    )
}

pub async fn page(State(state): State<AppState>, page: Page<Admin>, params: Params) -> Response {
    let shown = Shown {
        note: flash(&params),
        ..Shown::default()
    };
    render(&state, &page, StatusCode::OK, shown).await
}

#[derive(Deserialize)]
pub struct UserForm {
    name: String,
    password: String,
    role: String,
}

pub async fn add(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(form): Form<UserForm>,
) -> Response {
    let new = NewUser {
        name: form.name.trim().to_owned(),
        password: form.password,
        role: form.role,
    };
    match ops::add(&state, &page.who, new).await {
        Ok(added) => done("/users", &format!("User {} added.", added.name)),
        Err(error) => {
            let (status, note) = failed(error);
            let shown = Shown {
                note: Some(note),
                ..Shown::default()
            };
            render(&state, &page, status, shown).await
        }
    }
}

pub async fn remove(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
) -> Response {
    match ops::remove(&state, &page.who, &name).await {
        Ok(()) => done("/users", &format!("User {name} removed.")),
        Err(error) => page.error(error),
    }
}

/// Applies a change to user `name` and goes back to the Users page saying `note`.
async fn change(
    state: &AppState,
    page: &Page<Admin>,
    name: &str,
    change: UserChange,
    note: &str,
) -> Response {
    match ops::update(state, &page.who, name, change).await {
        Ok(()) => done("/users", note),
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn change_role(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(name): Path<String>,
    Form(form): Form<RoleForm>,
) -> Response {
    let update = UserChange {
        role: Some(form.role.clone()),
        disabled: None,
    };
    let note = format!("{name} is now {}.", form.role);
    change(&state, &page, &name, update, &note).await
}

pub async fn set_state(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => {
            return page.error(crate::web::AppError::NotFound(format!(
                "no action `{action}`"
            )));
        }
    };
    let update = UserChange {
        role: None,
        disabled: Some(disabled),
    };
    change(&state, &page, &name, update, &format!("{name} {action}d.")).await
}

pub async fn reset_link(
    State(state): State<AppState>,
    page: Page<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    match ops::issue_reset(&state, &page.who, &name).await {
        Ok(link) => {
            let url = format!("{}{}", super::origin(&state, &headers), link.path);
            let shown = Shown {
                reset_link: Some(context! { user => name, url }),
                ..Shown::default()
            };
            render(&state, &page, StatusCode::CREATED, shown).await
        }
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
    role: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(form): Form<TokenForm>,
) -> Response {
    let new = NewToken {
        name: form.name.trim().to_owned(),
        role: form.role,
    };
    let (status, shown) = match ops::create_token(&state, &page.who, new).await {
        Ok(made) => (
            StatusCode::CREATED,
            Shown {
                new_token: Some(context! { name => made.name, token => made.token }),
                ..Shown::default()
            },
        ),
        Err(error) => {
            let (status, note) = failed(error);
            (
                status,
                Shown {
                    note: Some(note),
                    ..Shown::default()
                },
            )
        }
    };
    render(&state, &page, status, shown).await
}

pub async fn revoke_token(
    State(state): State<AppState>,
    page: Page<Admin>,
    Path(id): Path<String>,
) -> Response {
    match ops::revoke_token(&state, &page.who, &id).await {
        Ok(_) => done("/users", &format!("Token {id} revoked.")),
        Err(error) => page.error(error),
    }
}

#[derive(Deserialize)]
pub struct RegistrationForm {
    open: bool,
}

pub async fn set_registration(
    State(state): State<AppState>,
    page: Page<Admin>,
    Form(form): Form<RegistrationForm>,
) -> Response {
    let settings = Settings {
        registration: form.open,
    };
    match ops::set_settings(&state, &page.who, settings).await {
        Ok(_) => done(
            "/users",
            if form.open {
                "Registration is open: new users start as viewers."
            } else {
                "Registration is closed."
            },
        ),
        Err(error) => page.error(error),
    }
}
