-- Routes, subscriptions and daemons are one noun, units, kept in one table: a name is
-- unique among them all, and what differs is the kind and the spec.
CREATE TABLE units (
    name         TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('route', 'subscription', 'daemon')),
    spec         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
-- Names two kinds shared before (the hosts refused the later ones) keep the first kind's.
INSERT INTO units (name, kind, spec, created_ms, updated_ms)
    SELECT name, 'route', spec, created_ms, updated_ms FROM routes;
INSERT INTO units (name, kind, spec, created_ms, updated_ms)
    SELECT name, 'subscription', spec, created_ms, updated_ms FROM subscriptions
    WHERE name NOT IN (SELECT name FROM units);
INSERT INTO units (name, kind, spec, created_ms, updated_ms)
    SELECT name, 'daemon', spec, created_ms, updated_ms FROM daemons
    WHERE name NOT IN (SELECT name FROM units);
DROP TABLE routes;
DROP TABLE subscriptions;
DROP TABLE daemons;
