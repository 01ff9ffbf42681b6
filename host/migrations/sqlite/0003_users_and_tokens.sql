-- People who sign in: argon2id password hashes (PHC strings), one role each.
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,            -- admin | operator | viewer
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);

-- API tokens for services (and the one the host keeps for its own CLI, `local`): only the
-- SHA-256 of a token is kept. A revoked token stays listed, with when.
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    local         INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    revoked_ms    INTEGER
);
CREATE INDEX api_tokens_by_name ON api_tokens (name);
