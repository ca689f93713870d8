-- PiCloud schema, SQLite flavour. Mirrors migrations/postgres/0001_initial.sql column
-- for column: times are integer milliseconds since the epoch, payloads are bytes.

CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE apps (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- bumped in the same transaction as any change to the app's triggers, so every
    -- node's in-memory trigger index knows when to reload
    trigger_generation  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    app_id        TEXT REFERENCES apps(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    secret_hash   BLOB NOT NULL UNIQUE,
    scopes        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX api_keys_app ON api_keys(app_id);

CREATE TABLE topics (
    app_id                 TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    external_subscribable  BOOLEAN NOT NULL DEFAULT FALSE,
    auth_mode              TEXT NOT NULL DEFAULT 'token' CHECK (auth_mode IN ('public', 'token')),
    retention_max_events   INTEGER,
    retention_max_age_ms   INTEGER,
    last_seq               INTEGER NOT NULL DEFAULT 0,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    PRIMARY KEY (app_id, name)
);

-- The only copy of an event. Outbox rows and dead letters point at it by (app, topic,
-- seq). Only the primary key is indexed: every extra index costs each publish a b-tree
-- insert. `id` is a time-ordered UUIDv7, unique by construction.
CREATE TABLE topic_events (
    app_id           TEXT NOT NULL,
    topic            TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    id               TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          BLOB NOT NULL,
    published_at     INTEGER NOT NULL,
    idempotency_key  TEXT,
    PRIMARY KEY (app_id, topic, seq),
    FOREIGN KEY (app_id, topic) REFERENCES topics(app_id, name) ON DELETE CASCADE
);

-- A retried publish with a known key returns the stored response and writes nothing.
CREATE TABLE idempotency_keys (
    app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    response    BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (app_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);

CREATE TABLE triggers (
    id                        TEXT PRIMARY KEY,
    app_id                    TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    source_kind               TEXT NOT NULL CHECK (source_kind IN ('topic', 'dead_letter')),
    source_topic              TEXT,
    handler_kind              TEXT NOT NULL CHECK (handler_kind IN ('webhook')),
    handler_url               TEXT NOT NULL,
    secret                    TEXT NOT NULL,
    previous_secret           TEXT,
    previous_secret_until     INTEGER,
    retry_max_attempts        INTEGER NOT NULL,
    retry_schedule_ms         TEXT,
    ordered                   BOOLEAN NOT NULL DEFAULT FALSE,
    enabled                   BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason           TEXT,
    max_in_flight             INTEGER,
    max_per_second            INTEGER,
    circuit_state             TEXT NOT NULL DEFAULT 'closed',
    consecutive_failures      INTEGER NOT NULL DEFAULT 0,
    circuit_open_until        INTEGER,
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL
);
CREATE INDEX triggers_app ON triggers(app_id, source_kind);

CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    outbox_id    INTEGER NOT NULL,
    trigger_id   TEXT NOT NULL,
    topic        TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    last_error   TEXT,
    last_status  INTEGER,
    created_at   INTEGER NOT NULL,
    replayed_at  INTEGER
);
CREATE INDEX dead_letters_app ON dead_letters(app_id, id);
CREATE INDEX dead_letters_event ON dead_letters(app_id, topic, seq);

-- One row per (trigger, event) delivery. For dead_letter triggers, dead_letter_id names
-- the dead letter being delivered and (topic, seq) its event.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id           TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    trigger_id       TEXT NOT NULL REFERENCES triggers(id) ON DELETE CASCADE,
    topic            TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    dead_letter_id   INTEGER REFERENCES dead_letters(id) ON DELETE CASCADE,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    leased_by        TEXT,
    last_error       TEXT,
    last_status      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_trigger ON outbox(trigger_id, state, topic, seq);
CREATE INDEX outbox_event ON outbox(app_id, topic, seq);
CREATE INDEX outbox_app ON outbox(app_id, id);

CREATE TABLE delivery_attempts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id      INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
    app_id         TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    status_code    INTEGER,
    error          TEXT,
    response_body  TEXT
);
CREATE INDEX delivery_attempts_outbox ON delivery_attempts(outbox_id, attempt);
CREATE INDEX delivery_attempts_started ON delivery_attempts(started_at);

CREATE TABLE app_secrets (
    app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    kid         TEXT NOT NULL,
    secret      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER,
    PRIMARY KEY (app_id, purpose, kid)
);
