-- The control plane's desired state, shared by every host on this database: connections,
-- routes and plugin settings made through the API, reconciled by each host's supervisor.
-- What a host's own file defines is not stored here.

-- Plugin versions gain who uploaded them and whether they may serve. Rows that existed before
-- were records of plugins loaded from files (source 'file'): kept, listed, never run from here.
ALTER TABLE plugins ADD COLUMN enabled BIGINT NOT NULL DEFAULT 1;
ALTER TABLE plugins ADD COLUMN source TEXT NOT NULL DEFAULT 'file';
ALTER TABLE plugins ADD COLUMN uploaded_by TEXT;

-- Per plugin name: the grants in force and the limits and config (JSON, see
-- supervisor::PluginPolicy).
CREATE TABLE plugin_policies (
    name         TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    updated_ms   BIGINT NOT NULL
);

-- Connections and routes, each a JSON document in the config file's own shape.
CREATE TABLE connections (
    name         TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
CREATE TABLE routes (
    name         TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);

-- Raised by every change above in the same transaction; hosts watch it to reconcile.
CREATE TABLE control_revision (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    revision     BIGINT NOT NULL
);
INSERT INTO control_revision (id, revision) VALUES (1, 0);
