-- Daemons made through the API: documents like routes'.
CREATE TABLE daemons (
    name         TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);

-- Restarts an operator asked for: a unit's generation rises and every host starts it anew
-- (a daemon marked failed runs again, its failures forgotten).
CREATE TABLE unit_restarts (
    name          TEXT PRIMARY KEY,
    generation    BIGINT NOT NULL,
    restarted_by  TEXT NOT NULL,
    restarted_ms  BIGINT NOT NULL
);

-- Which host runs a daemon that runs on one host at a time: taken by one, renewed while it
-- runs, released when it stops, and taken over by another host once it has expired.
CREATE TABLE daemon_leases (
    name          TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    expires_ms    BIGINT NOT NULL
);
