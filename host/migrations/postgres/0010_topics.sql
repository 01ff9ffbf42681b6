-- The embedded broker's topic exchanges: an exchange exists once declared (the host's events
-- exchange, or one a subscription binds to); a message sent to `exchange/routing-key` goes to
-- every queue bound with a pattern the key matches (AMQP's rules: `*` one word, `#` any).
-- Names are stored as `connection:name`, as queues are.
CREATE TABLE embedded_exchanges (
    name         TEXT PRIMARY KEY,
    created_ms   BIGINT NOT NULL
);

CREATE TABLE embedded_bindings (
    exchange     TEXT NOT NULL,
    queue        TEXT NOT NULL,
    pattern      TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (exchange, queue, pattern)
);

-- Subscriptions made through the API: documents like routes'.
CREATE TABLE subscriptions (
    name         TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
