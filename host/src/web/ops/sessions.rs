//! What people do before (or instead of) a token: sign in and out, set up the first admin,
//! register, use a reset link, change their own password.
//!
//! Nothing here lets an anonymous caller grow memory or work without a bound:
//! - each peer address gets a few credential attempts a second ([`super::super::limits`]);
//! - a name that cannot be a user's is refused before anything is looked up or hashed;
//! - each name's attempts are counted in the database *before* its password is hashed, per
//!   address and in all, so parallel guesses cannot slip past the limit together, and every
//!   host on the database sees the same counts. After [`MAX_ATTEMPTS`] within [`WINDOW`] from
//!   one address, that address is refused for that name (429) until the window has passed,
//!   right password or not. Past [`MAX_ATTEMPTS`] in all (guesses from many addresses), the
//!   name is checked at most once a second: the guessers are slowed to that pace, and the
//!   name's owner, from an address of their own, still signs in (at worst a second later);
//! - password hashes run a few at a time (`auth::Hashing`), and a reset link is checked
//!   before the new password is hashed.

use super::{AppError, AppState, audit, now_ms};
use crate::auth::{self, Caller, Role};
use crate::web::caller::{Allowed, SESSION_LIFETIME, Via, Viewer};
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

/// Attempts allowed per name within [`WINDOW`].
pub const MAX_ATTEMPTS: u32 = 5;
/// How long a name's attempts are counted.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// A session just made.
pub struct SignedIn {
    pub caller: Caller,
    /// The session's token (the cookie's value); the store keeps only its SHA-256.
    pub session: String,
    pub csrf: String,
}

/// Refused with the words of a wrong password, whatever was wrong.
fn wrong() -> AppError {
    AppError::Unauthorized("the name or the password is wrong".into())
}

/// How a password check ended, besides its answer: what the audit log and the metrics say
/// of it. Only a user who exists is named in the audit log: a name nobody has (a typo, a
/// password typed in the name field, a flood of made-up names) is only counted.
enum Checked {
    Passed(Role),
    /// The name is a user's; the password was wrong.
    Wrong,
    /// The name is nobody's (or cannot be anybody's).
    UnknownName,
    /// Past the name's limit; `first`: the first refusal of its window.
    Throttled {
        error: AppError,
        first: bool,
    },
}

/// Checks `name`'s password without starting a session: the attempt is counted before any
/// hash is made, and refused past the name's limit.
async fn check_password(
    state: &AppState,
    name: &str,
    password: String,
    peer: Option<IpAddr>,
) -> Result<Checked, AppError> {
    if auth::check_name(name).is_err() || password.len() > auth::MAX_PASSWORD_BYTES {
        return Ok(Checked::UnknownName);
    }
    let now = now_ms();
    let window = WINDOW.as_millis() as i64;
    let name_digest = auth::token_digest(name);
    let pair_digest = pair_digest(name, peer);
    let (from_here, since) = state
        .store
        .sign_in_attempt(&pair_digest, now, window)
        .await?;
    if from_here > MAX_ATTEMPTS {
        let wait_s = ((since + window - now).max(0) / 1000 + 1) as u64;
        let error = AppError::TooManyRequests {
            message: format!(
                "too many failed sign-ins for `{}` from this address; try again in {wait_s} s",
                crate::broker::shorten(name)
            ),
            retry_after_s: wait_s,
        };
        return Ok(Checked::Throttled {
            error,
            first: from_here == MAX_ATTEMPTS + 1,
        });
    }
    let (in_all, _) = state
        .store
        .sign_in_attempt(&name_digest, now, window)
        .await?;
    if in_all > MAX_ATTEMPTS {
        // Tried from many addresses: checked at the name's pace, one a second.
        if let Err(error) = state.limits.pace_name(&name_digest) {
            return Ok(Checked::Throttled {
                error,
                first: in_all == MAX_ATTEMPTS + 1,
            });
        }
    }
    let user = state.store.user_login(name).await?;
    // The hash is checked even for an unknown name, so the answer's timing does not tell
    // which names exist.
    let hash = user
        .as_ref()
        .map(|(hash, _)| hash.clone())
        .unwrap_or_else(|| auth::DECOY_HASH.clone());
    let matches = state.hashing.verify(password, hash).await?;
    Ok(match user {
        Some((_, role)) if matches => {
            state.store.sign_in_succeeded(&name_digest).await?;
            state.store.sign_in_succeeded(&pair_digest).await?;
            Checked::Passed(role)
        }
        Some(_) => Checked::Wrong,
        None => Checked::UnknownName,
    })
}

/// What a name's attempts from one address are counted under.
fn pair_digest(name: &str, peer: Option<IpAddr>) -> String {
    let address = peer.map_or_else(
        || "unknown".to_owned(),
        |p| crate::web::limits::peer_key(p).to_string(),
    );
    auth::token_digest(&format!("{name}\n{address}"))
}

/// Checks `name`'s password as a sign-in does, records what the audit log and the metrics
/// keep of it, and answers with the user's role or the refusal.
async fn signed_in_role(
    state: &AppState,
    name: &str,
    password: String,
    via: Via,
    peer: Option<IpAddr>,
) -> Result<Role, AppError> {
    let record =
        |action: &'static str| audit::record_anonymous(state, name, via, peer, action, json!({}));
    match check_password(state, name, password, peer).await? {
        Checked::Passed(role) => {
            crate::metrics::sign_in("signed_in");
            Ok(role)
        }
        Checked::Wrong => {
            crate::metrics::sign_in("wrong_password");
            record("session.sign_in_failed").await;
            Err(wrong())
        }
        Checked::UnknownName => {
            crate::metrics::sign_in("unknown_name");
            Err(wrong())
        }
        Checked::Throttled { error, first } => {
            crate::metrics::sign_in("throttled");
            if first && state.store.user_login(name).await?.is_some() {
                record("session.throttled").await;
            }
            Err(error)
        }
    }
}

/// Signs `name` in: checks the password (limited per address and per name) and makes a
/// session.
pub async fn sign_in(
    state: &AppState,
    name: &str,
    password: String,
    via: Via,
    peer: Option<IpAddr>,
) -> Result<SignedIn, AppError> {
    state
        .limits
        .check(peer)
        .inspect_err(|_| crate::metrics::sign_in("limited"))?;
    let role = signed_in_role(state, name, password, via, peer).await?;
    let signed_in = start_session(state, Caller::user(name, role)).await?;
    audit::record_anonymous(state, name, via, peer, "session.sign_in", json!({})).await;
    Ok(signed_in)
}

async fn start_session(state: &AppState, caller: Caller) -> Result<SignedIn, AppError> {
    let (session, digest) = auth::new_token();
    let (csrf, _) = auth::new_token();
    let now = now_ms();
    state
        .store
        .add_session(
            &digest,
            &caller.name,
            &csrf,
            now,
            now + SESSION_LIFETIME.as_millis() as i64,
        )
        .await?;
    Ok(SignedIn {
        caller,
        session,
        csrf,
    })
}

/// Ends the session with this digest (and every expired one).
pub async fn sign_out(state: &AppState, session_digest: Option<&str>) -> Result<(), AppError> {
    if let Some(digest) = session_digest {
        state.store.remove_session(digest, now_ms()).await?;
    }
    Ok(())
}

/// Changes the caller's own password: the current one is checked as a sign-in is (and
/// throttled the same way), without starting a session; every session of theirs ends.
pub async fn change_own_password(
    state: &AppState,
    who: &Allowed<Viewer>,
    current: String,
    new: String,
) -> Result<(), AppError> {
    if who.caller.is_token {
        return Err(AppError::BadRequest(
            "a token has no password; an admin sets users' passwords".into(),
        ));
    }
    let name = who.caller.name.clone();
    signed_in_role(state, &name, current, who.via, who.peer)
        .await
        .map_err(|e| match e {
            AppError::Unauthorized(_) => {
                crate::web::error::invalid("current", "the current password is wrong")
            }
            other => other,
        })?;
    let hash = state.hashing.hash(new).await?;
    state.store.set_password(&name, &hash, now_ms()).await?;
    state.store.remove_sessions_of(&name).await?;
    audit::record(state, who, "user.password", &name, json!({ "own": true })).await;
    Ok(())
}

/// Makes the first admin with the host's one-time set-up token: only while no user exists,
/// checked in the same transaction as the insert. Signs them in.
pub async fn set_up(
    state: &AppState,
    setup_token: &str,
    name: &str,
    password: String,
    peer: Option<IpAddr>,
) -> Result<SignedIn, AppError> {
    state.limits.check(peer)?;
    if !state.setup.accepts(setup_token) {
        return Err(AppError::Forbidden(
            "this is not the set-up link the host printed when it started (or an admin exists already); use that link, or `wharf user add NAME --role admin`".into(),
        ));
    }
    let new = super::users::NewUser {
        name: name.to_owned(),
        password,
        role: "admin".into(),
    };
    let (role, hash) = super::users::prepare(state, &new).await?;
    if !state.store.add_first_admin(name, &hash, now_ms()).await? {
        state.setup.used();
        return Err(AppError::Conflict(
            "an admin exists already; sign in instead".into(),
        ));
    }
    state.setup.used();
    audit::record_anonymous(state, name, Via::Ui, peer, "user.first_admin", json!({})).await;
    start_session(state, Caller::user(name, role)).await
}

/// Registers `name` as a viewer, while an admin has registration open; signs them in.
pub async fn register(
    state: &AppState,
    name: &str,
    password: String,
    peer: Option<IpAddr>,
) -> Result<SignedIn, AppError> {
    state.limits.check(peer)?;
    if !super::users::registration_open(state).await? {
        return Err(AppError::Forbidden(
            "registration is closed; an admin adds users, or opens registration on the Users page"
                .into(),
        ));
    }
    let new = super::users::NewUser {
        name: name.to_owned(),
        password,
        role: "viewer".into(),
    };
    let (role, hash) = super::users::prepare(state, &new).await?;
    if !state.store.add_user(name, &hash, role, now_ms()).await? {
        return Err(AppError::Conflict(format!(
            "a user named `{name}` exists already"
        )));
    }
    audit::record_anonymous(state, name, Via::Ui, peer, "user.register", json!({})).await;
    start_session(state, Caller::user(name, role)).await
}

/// The user a live reset link is for, without using it.
pub async fn reset_user(state: &AppState, token: &str) -> Result<Option<String>, AppError> {
    Ok(state
        .store
        .password_reset_user(&auth::token_digest(token), now_ms())
        .await?)
}

/// Uses a reset link once: sets its user's password (their sessions end). The link is
/// checked before the password is hashed; `None` if it is not live.
pub async fn reset(
    state: &AppState,
    token: &str,
    password: String,
    peer: Option<IpAddr>,
) -> Result<Option<String>, AppError> {
    state.limits.check(peer)?;
    if reset_user(state, token).await?.is_none() {
        return Ok(None);
    }
    let hash = state.hashing.hash(password).await?;
    let user = state
        .store
        .use_password_reset(&auth::token_digest(token), &hash, now_ms())
        .await?;
    if let Some(user) = &user {
        audit::record_anonymous(state, user, Via::Ui, peer, "user.reset", json!({})).await;
    }
    Ok(user)
}
