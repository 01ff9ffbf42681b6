-- Plugin files, content-addressed: one row per distinct file, whatever it was installed as.
CREATE TABLE plugin_files (
    sha256       TEXT PRIMARY KEY,
    size_bytes   INTEGER NOT NULL,
    content      BLOB NOT NULL,
    created_ms   INTEGER NOT NULL
);

-- Every installed version of every plugin. A name keeps all its versions; installing the same
-- file under the same name again changes nothing.
CREATE TABLE plugins (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    description  TEXT NOT NULL,
    reusable     INTEGER NOT NULL,
    wants        TEXT NOT NULL,            -- JSON array of grant patterns
    contract     TEXT NOT NULL,
    sha256       TEXT NOT NULL REFERENCES plugin_files (sha256),
    installed_ms INTEGER NOT NULL,
    UNIQUE (name, sha256)
);
CREATE INDEX plugins_by_name ON plugins (name, id);

-- Small per-plugin state (the `kv-get`/`kv-set` imports).
CREATE TABLE plugin_kv (
    plugin       TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        BLOB NOT NULL,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (plugin, key)
);

-- The embedded broker's queues. Created on first use or declared in the config.
CREATE TABLE queues (
    name                  TEXT PRIMARY KEY,
    dead_letter           TEXT,             -- NULL: `{name}.dead`
    visibility_timeout_ms INTEGER NOT NULL,
    max_deliveries        INTEGER,          -- NULL: no limit
    created_ms            INTEGER NOT NULL
);

-- The embedded broker's messages. A message is ready when visible_at_ms <= now; a consumer
-- claims it by setting leased = 1 and visible_at_ms = now + visibility timeout, so a claim
-- that is never acked comes back by itself. `deliveries` counts claims and doubles as the
-- lease token: an ack or nack names the count it was given and misses if the message was
-- claimed again since.
CREATE TABLE queue_messages (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue          TEXT NOT NULL,
    visible_at_ms  INTEGER NOT NULL,
    leased         INTEGER NOT NULL DEFAULT 0,
    deliveries     INTEGER NOT NULL DEFAULT 0,
    enqueued_ms    INTEGER NOT NULL,
    id             TEXT NOT NULL,
    topic          TEXT NOT NULL,
    msg_key        BLOB,
    headers        TEXT NOT NULL,
    content_type   TEXT,
    correlation_id TEXT,
    reply_to       TEXT,
    priority       INTEGER,
    expiration_ms  INTEGER,
    persistent     INTEGER NOT NULL,
    payload        BLOB NOT NULL,
    timestamp_ms   INTEGER NOT NULL
);
-- FIFO: claims walk a queue in seq order from its head.
CREATE INDEX queue_messages_fifo ON queue_messages (queue, seq);
