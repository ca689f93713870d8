-- Triggers may run a script instead of calling a webhook (issue #14): handler_kind
-- takes 'script', and handler_url becomes handler_target (a webhook's URL or a
-- script's name); source_kind also takes 'cron' for scheduled triggers. SQLite cannot
-- alter a CHECK constraint, so the table is rebuilt the way SQLite documents. Db::migrate
-- runs migrations with foreign keys off, so dropping the old table does not cascade
-- into the outbox rows that reference it, and checks every foreign key afterwards.
CREATE TABLE triggers_new (
    id                        TEXT PRIMARY KEY,
    app_id                    TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    source_kind               TEXT NOT NULL
                              CHECK (source_kind IN ('topic', 'dead_letter', 'cron')),
    source_topic              TEXT,
    handler_kind              TEXT NOT NULL CHECK (handler_kind IN ('webhook', 'script')),
    handler_target            TEXT NOT NULL,
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

INSERT INTO triggers_new (id, app_id, source_kind, source_topic, handler_kind,
    handler_target, secret, previous_secret, previous_secret_until, retry_max_attempts,
    retry_schedule_ms, ordered, enabled, disabled_reason, max_in_flight, max_per_second,
    circuit_state, consecutive_failures, circuit_open_until, created_at, updated_at)
SELECT id, app_id, source_kind, source_topic, handler_kind,
    handler_url, secret, previous_secret, previous_secret_until, retry_max_attempts,
    retry_schedule_ms, ordered, enabled, disabled_reason, max_in_flight, max_per_second,
    circuit_state, consecutive_failures, circuit_open_until, created_at, updated_at
FROM triggers;

DROP TABLE triggers;
ALTER TABLE triggers_new RENAME TO triggers;
CREATE INDEX triggers_app ON triggers(app_id, source_kind);
