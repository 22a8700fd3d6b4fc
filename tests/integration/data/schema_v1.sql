-- The state file schema released as version 1 (ess-sidecar 0.1.0), kept to test upgrades.
CREATE TABLE events (
    version     INTEGER PRIMARY KEY,
    time        REAL    NOT NULL,
    scope_kind  INTEGER NOT NULL,
    scope_id    TEXT    NOT NULL,
    previous    INTEGER NOT NULL,
    state       INTEGER NOT NULL,
    cause       INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    breaker     TEXT    NOT NULL,
    reason_code INTEGER,            -- NULL: the transition carried no trigger reason
    directives  TEXT    NOT NULL,   -- Directive values, comma-separated, in order
    forced      INTEGER NOT NULL,
    rearm_at    REAL
);
CREATE INDEX events_by_scope ON events (scope_kind, scope_id, version);
CREATE INDEX events_by_time ON events (time);

-- The latched state: the latest transition of every scope that is not ARMED.
-- The foreign key makes pruning a latched event fail loudly instead of losing a trip.
CREATE TABLE scopes (
    scope_kind INTEGER NOT NULL,
    scope_id   TEXT    NOT NULL,
    version    INTEGER NOT NULL REFERENCES events (version),
    PRIMARY KEY (scope_kind, scope_id)
);

CREATE TABLE executors (
    executor_id TEXT PRIMARY KEY,
    scope_kind  INTEGER NOT NULL,
    scope_id    TEXT    NOT NULL,
    ttl_s       REAL    NOT NULL
);

-- One row. last_version outlives pruning, so versions are never reused; pruned_through is
-- the highest version ever pruned: history at or below it has holes.
CREATE TABLE meta (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    last_version   INTEGER NOT NULL,
    pruned_through INTEGER NOT NULL
);
INSERT INTO meta (id, last_version, pruned_through) VALUES (1, 0, 0);
