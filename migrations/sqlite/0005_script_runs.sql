-- The run log (issue #14): each app's last script runs, trimmed to the newest
-- PICLOUD_SCRIPT_RUN_LOG per app by the writer that stores them. Runs outlive a script's
-- versions but not its app, and are deleted with the script.
CREATE TABLE script_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    script       TEXT NOT NULL,
    version      BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    duration_us  BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT,
    logs         TEXT NOT NULL,
    dropped_logs BIGINT NOT NULL,
    request_id   TEXT,
    delivery_id  BIGINT
);

CREATE INDEX script_runs_by_script ON script_runs (app_id, script, id);
CREATE INDEX script_runs_by_app ON script_runs (app_id, id);
