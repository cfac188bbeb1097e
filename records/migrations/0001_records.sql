-- The broker's durable records. Numbers and subjects are never stored in clear: `key`
-- columns hold keyed hashes, `sealed` columns values encrypted by the broker.

CREATE TABLE persons (
    id       TEXT PRIMARY KEY,
    version  BIGINT NOT NULL,
    claims   JSONB NOT NULL,
    updated  BIGINT NOT NULL
);

CREATE TABLE citizen_ids (
    person_id TEXT NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    pos       SMALLINT NOT NULL,
    sealed    TEXT NOT NULL,
    level     SMALLINT NOT NULL,
    source    TEXT NOT NULL,
    at        BIGINT NOT NULL,
    active    BOOLEAN NOT NULL,
    PRIMARY KEY (person_id, key)
);
-- One person per number: what makes "check, then bind" safe between broker instances.
CREATE UNIQUE INDEX citizen_ids_one_active ON citizen_ids (key) WHERE active;

CREATE TABLE ways_in (
    key            TEXT PRIMARY KEY,
    person_id      TEXT NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    pos            SMALLINT NOT NULL,
    connector      TEXT NOT NULL,
    sealed_subject TEXT NOT NULL,
    at             BIGINT NOT NULL
);
CREATE INDEX ways_in_person ON ways_in (person_id);

CREATE TABLE consents (
    person_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scopes    TEXT[] NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (person_id, client_id)
);

CREATE TABLE settings (
    name    TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    value   JSONB NOT NULL
);

CREATE TABLE audit (
    id        TEXT PRIMARY KEY,
    seq       BIGSERIAL NOT NULL,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    event     TEXT NOT NULL,
    source    TEXT NOT NULL,
    reference TEXT NOT NULL,
    detail    JSONB NOT NULL
);
CREATE INDEX audit_reference ON audit (reference, at, seq);

CREATE TABLE activity (
    id        TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    connector TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX activity_person ON activity (person_id, at DESC);
CREATE INDEX activity_at ON activity (at);

CREATE TABLE reviews (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    key       TEXT NOT NULL,
    holder    TEXT NOT NULL,
    other     TEXT NOT NULL,
    created   BIGINT NOT NULL,
    action    TEXT,
    closed_by TEXT,
    closed_at BIGINT
);
CREATE INDEX reviews_open ON reviews (created) WHERE closed_at IS NULL;
