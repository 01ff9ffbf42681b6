//! Users and API tokens (see `crate::auth` for what they mean).

use super::{Doing, Store, StoreError, with_pool};
use crate::auth::Role;

/// A user, as listed (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created_ms: i64,
}

/// An API token, as listed (never with the token or its digest).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: String,
    /// The token the host keeps for its own CLI.
    pub local: bool,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

impl Store {
    /// Adds a user; `Ok(false)` if the name is taken.
    pub async fn add_user(
        &self,
        name: &str,
        password_hash: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO users (name, password_hash, role, disabled, created_ms, updated_ms) \
             VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (name) DO NOTHING"
        )
        .bind(name)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .doing("adding a user"))?;
        Ok(done == 1)
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = with_pool!(&self.pool, |pool| {
            sqlx::query_as("SELECT name, role, disabled, created_ms FROM users ORDER BY name")
                .fetch_all(pool)
                .await
                .doing("listing users")
        })?;
        Ok(rows
            .into_iter()
            .map(|(name, role, disabled, created_ms)| User {
                name,
                role,
                disabled: disabled != 0,
                created_ms,
            })
            .collect())
    }

    /// The password hash and role of an enabled user.
    pub async fn user_login(&self, name: &str) -> Result<Option<(String, Role)>, StoreError> {
        let row: Option<(String, String)> = with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT password_hash, role FROM users WHERE name = $1 AND disabled = 0"
        )
        .bind(name)
        .fetch_optional(pool)
        .await
        .doing("reading a user"))?;
        Ok(row.and_then(|(hash, role)| Some((hash, role.parse().ok()?))))
    }

    /// Sets a user's password; `Ok(false)` if there is no such user.
    pub async fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "UPDATE users SET password_hash = $1, updated_ms = $2 WHERE name = $3"
        )
        .bind(password_hash)
        .bind(now_ms)
        .bind(name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .doing("changing a password"))?;
        Ok(done == 1)
    }

    /// Removes a user; `Ok(false)` if there is no such user.
    pub async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM users WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .doing("removing a user"))?;
        Ok(done == 1)
    }

    /// Records a token by its digest; returns its id.
    pub async fn add_token(
        &self,
        name: &str,
        role: Role,
        digest: &str,
        local: bool,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_sha256, local, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(&id)
        .bind(name)
        .bind(role.as_str())
        .bind(digest)
        .bind(i64::from(local))
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .doing("adding a token"))?;
        Ok(id)
    }

    pub async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows: Vec<(String, String, String, i64, i64, Option<i64>)> =
            with_pool!(&self.pool, |pool| sqlx::query_as(
                "SELECT id, name, role, local, created_ms, revoked_ms FROM api_tokens \
                 ORDER BY created_ms, id"
            )
            .fetch_all(pool)
            .await
            .doing("listing tokens"))?;
        Ok(rows
            .into_iter()
            .map(|(id, name, role, local, created_ms, revoked_ms)| ApiToken {
                id,
                name,
                role,
                local: local != 0,
                created_ms,
                revoked_ms,
            })
            .collect())
    }

    /// The name and role of the live token with this digest.
    pub async fn token_caller(&self, digest: &str) -> Result<Option<(String, Role)>, StoreError> {
        let row: Option<(String, String)> = with_pool!(&self.pool, |pool| sqlx::query_as(
            "SELECT name, role FROM api_tokens WHERE token_sha256 = $1 AND revoked_ms IS NULL"
        )
        .bind(digest)
        .fetch_optional(pool)
        .await
        .doing("checking a token"))?;
        Ok(row.and_then(|(name, role)| Some((name, role.parse().ok()?))))
    }

    /// Revokes the live tokens with this id or name; returns how many.
    pub async fn revoke_tokens(&self, id_or_name: &str, now_ms: i64) -> Result<u64, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $1 \
             WHERE (id = $2 OR name = $2) AND revoked_ms IS NULL"
        )
        .bind(now_ms)
        .bind(id_or_name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .doing("revoking a token"))?;
        Ok(done)
    }

    /// Revokes the tokens a host kept for its CLI at `name` (its listen address).
    pub async fn revoke_local_tokens(&self, name: &str, now_ms: i64) -> Result<u64, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $1 \
             WHERE local = 1 AND name = $2 AND revoked_ms IS NULL"
        )
        .bind(now_ms)
        .bind(name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .doing("revoking the CLI's token"))?;
        Ok(done)
    }
}

impl Store {
    /// Records a session by the digest of its id.
    pub async fn add_session(
        &self,
        digest: &str,
        user: &str,
        csrf: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO sessions (id_sha256, user_name, csrf, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(digest)
        .bind(user)
        .bind(csrf)
        .bind(now_ms)
        .bind(expires_ms)
        .execute(pool)
        .await
        .map(drop)
        .doing("starting a session"))
    }

    /// The user, current role and CSRF token of a live session of an enabled user: a role
    /// changed or a user disabled counts at once.
    pub async fn session_caller(
        &self,
        digest: &str,
        now_ms: i64,
    ) -> Result<Option<(String, Role, String)>, StoreError> {
        let row: Option<(String, String, String)> = with_pool!(&self.pool, |pool| {
            sqlx::query_as(
                "SELECT u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.user_name \
                 WHERE s.id_sha256 = $1 AND s.expires_ms > $2 AND u.disabled = 0",
            )
            .bind(digest)
            .bind(now_ms)
            .fetch_optional(pool)
            .await
            .doing("checking a session")
        })?;
        Ok(row.and_then(|(name, role, csrf)| Some((name, role.parse().ok()?, csrf))))
    }

    /// Ends a session; also clears every expired one.
    pub async fn remove_session(&self, digest: &str, now_ms: i64) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM sessions WHERE id_sha256 = $1 OR expires_ms <= $2"
        )
        .bind(digest)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(drop)
        .doing("ending a session"))
    }

    /// Ends every session of `user` (after a password change).
    pub async fn remove_sessions_of(&self, user: &str) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM sessions WHERE user_name = $1"
        )
        .bind(user)
        .execute(pool)
        .await
        .map(drop)
        .doing("ending a user's sessions"))
    }
}

impl Store {
    /// Changes a user's role or disables/enables them; `Ok(false)` if there is no such user.
    /// A disabled user's sessions end.
    pub async fn update_user(
        &self,
        name: &str,
        role: Option<Role>,
        disabled: Option<bool>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "UPDATE users SET role = COALESCE($1, role), disabled = COALESCE($2, disabled), \
             updated_ms = $3 WHERE name = $4"
        )
        .bind(role.map(|r| r.as_str()))
        .bind(disabled.map(i64::from))
        .bind(now_ms)
        .bind(name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .doing("changing a user"))?;
        if done == 1 && disabled == Some(true) {
            self.remove_sessions_of(name).await?;
        }
        Ok(done == 1)
    }

    /// A host-wide setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT value FROM settings WHERE key = $1"
        )
        .bind(key)
        .fetch_optional(pool)
        .await
        .doing("reading a setting"))
    }

    pub async fn set_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| {
            sqlx::query(
            "INSERT INTO settings (key, value, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms"
        )
        .bind(key)
        .bind(value)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(drop)
        .doing("changing a setting")
        })
    }

    /// Records a password-reset link's token (by digest) for `user`; `Ok(false)` if there is
    /// no such user.
    pub async fn add_password_reset(
        &self,
        digest: &str,
        user: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO password_resets (token_sha256, user_name, created_ms, expires_ms) \
             SELECT $1, name, $3, $4 FROM users WHERE name = $2"
        )
        .bind(digest)
        .bind(user)
        .bind(now_ms)
        .bind(expires_ms)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .doing("recording a password reset"))?;
        Ok(done == 1)
    }

    /// The user a live reset link is for, without using it.
    pub async fn password_reset_user(
        &self,
        digest: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT user_name FROM password_resets WHERE token_sha256 = $1 AND expires_ms > $2"
        )
        .bind(digest)
        .bind(now_ms)
        .fetch_optional(pool)
        .await
        .doing("reading a password reset"))
    }

    /// Uses a reset link once: sets the password of its user, ends their sessions and removes
    /// the link (and every expired one). The user's name, or `None` if the link is not live.
    pub async fn use_password_reset(
        &self,
        digest: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let dialect = self.dialect();
        let user: Option<String> = with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting a password reset")?;
            let user: Option<String> = sqlx::query_scalar(
                "DELETE FROM password_resets WHERE token_sha256 = $1 AND expires_ms > $2 \
                 RETURNING user_name",
            )
            .bind(digest)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await
            .doing("using a password reset")?;
            if let Some(user) = &user {
                sqlx::query("UPDATE users SET password_hash = $1, updated_ms = $2 WHERE name = $3")
                    .bind(password_hash)
                    .bind(now_ms)
                    .bind(user)
                    .execute(&mut *tx)
                    .await
                    .doing("setting a password")?;
            }
            sqlx::query("DELETE FROM password_resets WHERE expires_ms <= $1")
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .doing("clearing expired resets")?;
            tx.commit().await.doing("committing a password reset")?;
            user
        });
        if let Some(user) = &user {
            self.remove_sessions_of(user).await?;
        }
        Ok(user)
    }
}

impl Store {
    /// Counts a sign-in attempt for the name with this digest and returns the attempts in its
    /// window (this one included) and when the window began. A window older than
    /// `window_ms` starts again at one. Counted in one statement, so attempts made at once
    /// (on any host of the database) each see their own count.
    pub async fn sign_in_attempt(
        &self,
        name_digest: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(u32, i64), StoreError> {
        let expired = now_ms - window_ms;
        let (attempts, since): (i64, i64) = with_pool!(&self.pool, |pool| sqlx::query_as(
            "INSERT INTO sign_in_attempts (name_sha256, attempts, window_start_ms) \
             VALUES ($1, 1, $2) ON CONFLICT (name_sha256) DO UPDATE SET \
             attempts = CASE WHEN sign_in_attempts.window_start_ms <= $3 THEN 1 \
                        ELSE sign_in_attempts.attempts + 1 END, \
             window_start_ms = CASE WHEN sign_in_attempts.window_start_ms <= $3 THEN $2 \
                        ELSE sign_in_attempts.window_start_ms END \
             RETURNING attempts, window_start_ms"
        )
        .bind(name_digest)
        .bind(now_ms)
        .bind(expired)
        .fetch_one(pool)
        .await
        .doing("counting a sign-in attempt"))?;
        if attempts == 1 {
            // A new window: clear the windows that have passed, so the table holds only the
            // names tried in the last minutes.
            with_pool!(&self.pool, |pool| sqlx::query(
                "DELETE FROM sign_in_attempts WHERE window_start_ms <= $1"
            )
            .bind(expired)
            .execute(pool)
            .await
            .map(drop)
            .doing("clearing old sign-in attempts"))?;
        }
        Ok((u32::try_from(attempts).unwrap_or(u32::MAX), since))
    }

    /// A sign-in succeeded: the name's attempts are forgotten.
    pub async fn sign_in_succeeded(&self, name_digest: &str) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM sign_in_attempts WHERE name_sha256 = $1"
        )
        .bind(name_digest)
        .execute(pool)
        .await
        .map(drop)
        .doing("forgetting sign-in attempts"))
    }

    /// The names' attempts counted now (for tests and the curious).
    pub async fn sign_in_attempt_rows(&self) -> Result<i64, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM sign_in_attempts"
        )
        .fetch_one(pool)
        .await
        .doing("counting sign-in attempts"))
    }

    /// Adds the first admin, only if no user exists: the check and the insert are one
    /// transaction (holding the table on PostgreSQL), so two set-ups at once make one admin.
    pub async fn add_first_admin(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let dialect = self.dialect();
        with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_with(dialect.begin_write())
                .await
                .doing("starting the first admin")?;
            if dialect == super::Dialect::Postgres {
                sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await
                    .doing("holding the users table")?;
            }
            let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(&mut *tx)
                .await
                .doing("counting users")?;
            if users > 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO users (name, password_hash, role, disabled, created_ms, updated_ms) \
                 VALUES ($1, $2, $3, 0, $4, $4)",
            )
            .bind(name)
            .bind(password_hash)
            .bind(Role::Admin.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .doing("adding the first admin")?;
            tx.commit().await.doing("committing the first admin")?;
            Ok(true)
        })
    }
}

impl Store {
    /// How many live sessions `user` has.
    pub async fn sessions_of(&self, user: &str, now_ms: i64) -> Result<i64, StoreError> {
        with_pool!(&self.pool, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE user_name = $1 AND expires_ms > $2"
        )
        .bind(user)
        .bind(now_ms)
        .fetch_one(pool)
        .await
        .doing("counting sessions"))
    }
}

impl Store {
    /// Removes the sessions and reset links that have expired; how many.
    pub async fn prune_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut removed = 0;
        for sql in [
            "DELETE FROM sessions WHERE expires_ms <= $1",
            "DELETE FROM password_resets WHERE expires_ms <= $1",
        ] {
            removed += with_pool!(&self.pool, |pool| sqlx::query(sql)
                .bind(now_ms)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
                .doing("removing expired sessions"))?;
        }
        Ok(removed)
    }
}
