-- Plugin files, content-addressed: one row per distinct file, whatever it was installed as.
CREATE TABLE plugin_files (
    sha256       TEXT PRIMARY KEY,
    size_bytes   BIGINT NOT NULL,
    content      BYTEA NOT NULL,
    created_ms   BIGINT NOT NULL
);

-- Every installed version of every plugin. A name keeps all its versions; installing the same
-- file under the same name again changes nothing.
CREATE TABLE plugins (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    description  TEXT NOT NULL,
    reusable     BIGINT NOT NULL,
    wants        TEXT NOT NULL,            -- JSON array of grant patterns
    contract     TEXT NOT NULL,
    sha256       TEXT NOT NULL REFERENCES plugin_files (sha256),
    installed_ms BIGINT NOT NULL,
    UNIQUE (name, sha256)
);
CREATE INDEX plugins_by_name ON plugins (name, id);

-- Small per-plugin state (the `kv-get`/`kv-set` imports).
CREATE TABLE plugin_kv (
    plugin       TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        BYTEA NOT NULL,
    updated_ms   BIGINT NOT NULL,
    PRIMARY KEY (plugin, key)
);

-- The embedded broker's queues. Created on first use or declared in the config.
CREATE TABLE queues (
    name                  TEXT PRIMARY KEY,
    dead_letter           TEXT,             -- NULL: `{name}.dead`
    visibility_timeout_ms BIGINT NOT NULL,
    max_deliveries        BIGINT,          -- NULL: no limit
    created_ms            BIGINT NOT NULL
);

-- The embedded broker's messages. A message is ready when visible_at_ms <= now; a consumer
-- claims it by setting leased = 1 and visible_at_ms = now + visibility timeout, so a claim
-- that is never acked comes back by itself. `deliveries` counts claims and doubles as the
-- lease token: an ack or nack names the count it was given and misses if the message was
-- claimed again since.
CREATE TABLE queue_messages (
    seq            BIGSERIAL PRIMARY KEY,
    queue          TEXT NOT NULL,
    visible_at_ms  BIGINT NOT NULL,
    leased         BIGINT NOT NULL DEFAULT 0,
    deliveries     BIGINT NOT NULL DEFAULT 0,
    enqueued_ms    BIGINT NOT NULL,
    id             TEXT NOT NULL,
    topic          TEXT NOT NULL,
    msg_key        BYTEA,
    headers        TEXT NOT NULL,
    content_type   TEXT,
    correlation_id TEXT,
    reply_to       TEXT,
    priority       BIGINT,
    expiration_ms  BIGINT,
    persistent     BIGINT NOT NULL,
    payload        BYTEA NOT NULL,
    timestamp_ms   BIGINT NOT NULL
);
-- FIFO: claims walk a queue in seq order from its head.
CREATE INDEX queue_messages_fifo ON queue_messages (queue, seq);
