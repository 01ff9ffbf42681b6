-- The outbox: messages that must not be lost, committed here first (with the work that made
-- them) and sent by a relay. A row is `pending` until its broker confirms it, then `sent`
-- (kept a while, then pruned by age), or `dead` when its destination refuses it for good.
-- Rows of one destination and ordering key (a message's key; none for a message without one)
-- are sent in seq order. A relay claims rows by writing its name and a deadline; a claim
-- past its deadline is free again, so a dead relay's rows come back.
CREATE TABLE outbox (
    seq            BIGSERIAL PRIMARY KEY,
    destination    TEXT NOT NULL,            -- connection:address
    order_key      TEXT,                     -- hex of the message's key; NULL: no order kept
    origin         TEXT NOT NULL,            -- route:NAME, api, cli, ...
    state          TEXT NOT NULL,            -- pending | sent | dead
    due_ms         BIGINT NOT NULL,         -- not sent before this (a retry's backoff)
    attempts       BIGINT NOT NULL DEFAULT 0,
    claimed_by     TEXT,
    claim_until_ms BIGINT NOT NULL DEFAULT 0,
    last_error     TEXT,
    created_ms     BIGINT NOT NULL,
    done_ms        BIGINT,                  -- when it was sent or dead-lettered
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
CREATE INDEX outbox_pending ON outbox (state, seq);
-- What holds a key back (a live claim, a retry's wait) is found through these, among the
-- pending rows only, so a claim costs the same whatever the backlog behind it.
CREATE INDEX outbox_claimed ON outbox (claim_until_ms) WHERE state = 'pending';
CREATE INDEX outbox_waiting ON outbox (due_ms) WHERE state = 'pending';
CREATE INDEX outbox_done ON outbox (state, done_ms);

-- The inbox: the ids of the messages a unit has handled, so a message delivered twice (at
-- least once) is handled once. Pruned by age.
CREATE TABLE inbox (
    unit         TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    handled_ms   BIGINT NOT NULL,
    PRIMARY KEY (unit, message_id)
);
CREATE INDEX inbox_by_age ON inbox (handled_ms);
