-- The configuration operators edit in the console, one row per published version (a
-- rollback publishes an earlier document again), and what each broker instance runs.

CREATE TABLE config_versions (
    version  BIGINT PRIMARY KEY,
    document TEXT NOT NULL,
    author   TEXT NOT NULL,
    note     TEXT NOT NULL,
    at       BIGINT NOT NULL
);

CREATE TABLE config_instances (
    instance TEXT PRIMARY KEY,
    version  BIGINT NOT NULL,
    problem  TEXT NOT NULL,
    seen     BIGINT NOT NULL
);

-- The console's audit view lists the newest rows first.
CREATE INDEX audit_recent ON audit (at DESC, seq DESC);
