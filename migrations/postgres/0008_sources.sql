-- Outbox sources (issue #15): an app's own PostgreSQL database with a `picloud` outbox
-- schema, whose committed rows one relay (lease_owner, until lease_until) publishes.
-- database_url is sealed under the master key like other secrets. The status columns
-- are the relay's last report, so every node can answer for the source.
CREATE TABLE sources (
    id                 TEXT PRIMARY KEY,
    app_id             TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    kind               TEXT NOT NULL CHECK (kind IN ('postgres_outbox')),
    database_url       TEXT NOT NULL,
    schema_name        TEXT NOT NULL,
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    lease_owner        TEXT,
    lease_until        BIGINT,
    connected          BOOLEAN NOT NULL DEFAULT FALSE,
    rows_waiting       BIGINT,
    oldest_waiting_ms  BIGINT,
    relayed_total      BIGINT NOT NULL DEFAULT 0,
    last_error         TEXT,
    last_error_at      BIGINT,
    status_at          BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX sources_app ON sources(app_id);

-- A source row that cannot be published (unknown topic, oversized or bad data) becomes a
-- dead letter of its source: trigger_id names the source, outbox_id the row's id in the
-- app's outbox, and payload keeps the row as JSON so nothing is lost. A row is
-- dead-lettered once, however often a relay meets it.
ALTER TABLE dead_letters ADD COLUMN payload TEXT;
CREATE UNIQUE INDEX dead_letters_source_row ON dead_letters(trigger_id, outbox_id)
    WHERE payload IS NOT NULL;
