-- PiCloud schema, PostgreSQL flavour. Mirrors migrations/sqlite/0001_initial.sql column
-- for column: times are integer milliseconds since the epoch, payloads are bytes.

CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE apps (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- bumped in the same transaction as any change to the app's triggers, so every
    -- node's in-memory trigger index knows when to reload
    trigger_generation  BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    app_id        TEXT REFERENCES apps(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    secret_hash   BYTEA NOT NULL UNIQUE,
    scopes        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_app ON api_keys(app_id);

CREATE TABLE topics (
    app_id                 TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    external_subscribable  BOOLEAN NOT NULL DEFAULT FALSE,
    auth_mode              TEXT NOT NULL DEFAULT 'token' CHECK (auth_mode IN ('public', 'token')),
    retention_max_events   BIGINT,
    retention_max_age_ms   BIGINT,
    last_seq               BIGINT NOT NULL DEFAULT 0,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    PRIMARY KEY (app_id, name)
);

-- The only copy of an event. Outbox rows and dead letters point at it by (app, topic,
-- seq). Only the primary key is indexed: every extra index costs each publish a b-tree
-- insert. `id` is a time-ordered UUIDv7, unique by construction.
CREATE TABLE topic_events (
    app_id           TEXT NOT NULL,
    topic            TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    id               TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          BYTEA NOT NULL,
    published_at     BIGINT NOT NULL,
    idempotency_key  TEXT,
    PRIMARY KEY (app_id, topic, seq),
    FOREIGN KEY (app_id, topic) REFERENCES topics(app_id, name) ON DELETE CASCADE
);

-- A retried publish with a known key returns the stored response and writes nothing.
CREATE TABLE idempotency_keys (
    app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    response    BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
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
    previous_secret_until     BIGINT,
    retry_max_attempts        BIGINT NOT NULL,
    retry_schedule_ms         TEXT,
    ordered                   BOOLEAN NOT NULL DEFAULT FALSE,
    enabled                   BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason           TEXT,
    max_in_flight             BIGINT,
    max_per_second            BIGINT,
    circuit_state             TEXT NOT NULL DEFAULT 'closed',
    consecutive_failures      BIGINT NOT NULL DEFAULT 0,
    circuit_open_until        BIGINT,
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL
);
CREATE INDEX triggers_app ON triggers(app_id, source_kind);

CREATE TABLE dead_letters (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id       TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    outbox_id    BIGINT NOT NULL,
    trigger_id   TEXT NOT NULL,
    topic        TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    attempts     BIGINT NOT NULL,
    last_error   TEXT,
    last_status  BIGINT,
    created_at   BIGINT NOT NULL,
    replayed_at  BIGINT
);
CREATE INDEX dead_letters_app ON dead_letters(app_id, id);
CREATE INDEX dead_letters_event ON dead_letters(app_id, topic, seq);

-- One row per (trigger, event) delivery. For dead_letter triggers, dead_letter_id names
-- the dead letter being delivered and (topic, seq) its event.
CREATE TABLE outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id           TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    trigger_id       TEXT NOT NULL REFERENCES triggers(id) ON DELETE CASCADE,
    topic            TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    dead_letter_id   BIGINT REFERENCES dead_letters(id) ON DELETE CASCADE,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    leased_by        TEXT,
    last_error       TEXT,
    last_status      BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_trigger ON outbox(trigger_id, state, topic, seq);
CREATE INDEX outbox_event ON outbox(app_id, topic, seq);
CREATE INDEX outbox_app ON outbox(app_id, id);

CREATE TABLE delivery_attempts (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id      BIGINT NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
    app_id         TEXT NOT NULL,
    attempt        BIGINT NOT NULL,
    started_at     BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    status_code    BIGINT,
    error          TEXT,
    response_body  TEXT
);
CREATE INDEX delivery_attempts_outbox ON delivery_attempts(outbox_id, attempt);
CREATE INDEX delivery_attempts_started ON delivery_attempts(started_at);

CREATE TABLE app_secrets (
    app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    kid         TEXT NOT NULL,
    secret      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT,
    PRIMARY KEY (app_id, purpose, kid)
);
