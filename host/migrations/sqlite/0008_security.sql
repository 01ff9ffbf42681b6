-- Sign-in attempts per name, counted before a password is checked, so parallel guesses cannot
-- pass the limit together and every host on this database sees the same count. Only the
-- SHA-256 of the name is kept: a row is the same size whatever was typed. Rows whose window
-- has passed are removed as new ones come.
CREATE TABLE sign_in_attempts (
    name_sha256     TEXT PRIMARY KEY,
    attempts        INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL
);
CREATE INDEX sign_in_attempts_by_window ON sign_in_attempts (window_start_ms);

-- Who changed what, and when: every change made through the UI, the API or the CLI, and
-- sign-ins. Never a secret (see web/ops/audit.rs). Pruned by age.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,             -- a user's name, or token:NAME
    via         TEXT NOT NULL,             -- ui | api | cli
    peer        TEXT,                      -- the address the request came from
    action      TEXT NOT NULL,             -- route.create, session.sign_in_failed, ...
    target      TEXT NOT NULL,             -- what it was done to
    detail      TEXT NOT NULL              -- JSON
);
CREATE INDEX audit_log_by_time ON audit_log (at_ms);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
CREATE INDEX audit_log_by_target ON audit_log (target, id);
