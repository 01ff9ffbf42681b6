-- Signed-in sessions (the admin UI's): only the SHA-256 of a session id is kept, with the
-- CSRF token every change made through the session must present.
CREATE TABLE sessions (
    id_sha256     TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf          TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_name);
