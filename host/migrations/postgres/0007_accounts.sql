-- Host-wide settings an admin changes in the UI (`registration`: whether people may register
-- themselves as viewers).
CREATE TABLE settings (
    key          TEXT PRIMARY KEY,
    value        TEXT NOT NULL,
    updated_ms   BIGINT NOT NULL
);

-- One-time password-reset links an admin issues: only the SHA-256 of the link's token is kept.
CREATE TABLE password_resets (
    token_sha256 TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL
);
