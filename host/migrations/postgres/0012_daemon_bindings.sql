-- The events patterns each daemon has taken from (`connection:exchange/pattern`): each has
-- a queue of the daemon's own bound to the exchange, recorded here before it is bound so
-- that stopping the daemon unbinds every one, on whichever host it ran and after restarts.
CREATE TABLE daemon_bindings (
    daemon     TEXT NOT NULL,
    source     TEXT NOT NULL,
    bound_ms   BIGINT NOT NULL,
    PRIMARY KEY (daemon, source)
);
