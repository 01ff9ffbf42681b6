-- Units an operator stopped: not run on any host on this database until started again. An
-- operational switch beside the definitions, so it holds for routes of a host's file too.
CREATE TABLE stopped_units (
    name         TEXT PRIMARY KEY,
    stopped_by   TEXT NOT NULL,
    stopped_ms   INTEGER NOT NULL
);
