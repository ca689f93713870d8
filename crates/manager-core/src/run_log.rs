//! The run log: the last runs of each app's scripts — when, how long, how it ended, the
//! error and what the script logged — so an author can see why a function answered 500
//! or a handler failed. Runs are recorded off the request path: [`RunLog::record`] never
//! waits, and a background writer stores them in batches and trims each app's log to its
//! newest runs. When the writer falls behind, runs are dropped and counted
//! (`picloud_script_run_log_dropped_total`), never queued without bound.

use std::collections::BTreeSet;
use std::time::Duration;

use picloud_executor_core::sandbox::LogLine;
use picloud_executor_core::RunOutcome;
use picloud_shared::time::now_ms;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::{begin_write, Db};
use crate::error::{Error, Result};
use crate::on_db;

/// Runs waiting for the writer before more are dropped.
const QUEUE: usize = 4096;
/// Most runs stored in one transaction.
const BATCH: usize = 512;
/// Runs per INSERT statement (12 values each, well under both databases' limits).
const RUNS_PER_INSERT: usize = 128;
/// How long the first run of a batch waits for others before the batch is stored.
const GATHER: Duration = Duration::from_millis(100);

/// One line a script logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunLogLine {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// What it said.
    pub message: String,
}

/// A finished run, as it is recorded.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The app.
    pub app: String,
    /// The script's name.
    pub script: String,
    /// The version that ran.
    pub version: i64,
    /// How it ran: `function`, `handler`, `cron` or `test`.
    pub kind: &'static str,
    /// When it started, ms since the epoch.
    pub started_at: i64,
    /// How long it ran, in microseconds.
    pub duration_us: i64,
    /// `ok`, `error`, `timeout`, `overloaded` or `stopped`.
    pub outcome: &'static str,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// What it logged.
    pub logs: Vec<RunLogLine>,
    /// Lines logged over the limit, not kept.
    pub dropped_logs: i64,
    /// The HTTP request that ran a function.
    pub request_id: Option<String>,
    /// The delivery that ran a handler.
    pub delivery_id: Option<i64>,
}

impl RunRecord {
    /// The record of `outcome`, a `kind` run of version `version` of `script`.
    pub fn of(
        app: &str,
        script: &str,
        version: i64,
        kind: &'static str,
        outcome: &RunOutcome,
    ) -> RunRecord {
        let took = outcome.took;
        RunRecord {
            app: app.to_owned(),
            script: script.to_owned(),
            version,
            kind,
            started_at: now_ms() - took.as_millis() as i64,
            duration_us: i64::try_from(took.as_micros()).unwrap_or(i64::MAX),
            outcome: match &outcome.result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            },
            error: outcome.result.as_ref().err().map(ToString::to_string),
            logs: outcome.logs.iter().map(RunLogLine::from).collect(),
            dropped_logs: outcome.dropped_logs as i64,
            request_id: None,
            delivery_id: None,
        }
    }
}

impl From<&LogLine> for RunLogLine {
    fn from(line: &LogLine) -> RunLogLine {
        RunLogLine {
            at_ms: line.at_ms,
            level: line.level.as_str().to_owned(),
            message: line.message.clone(),
        }
    }
}

/// A run as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScriptRun {
    /// The run's id: later runs have larger ids.
    pub id: i64,
    /// The script's name.
    pub script: String,
    /// The version that ran.
    pub version: i64,
    /// How it ran: `function`, `handler`, `cron` or `test`.
    pub kind: String,
    /// When it started, ms since the epoch.
    pub started_at: i64,
    /// How long it ran, in microseconds (0 for a run refused before it started).
    pub duration_us: i64,
    /// `ok`, `error`, `timeout`, `overloaded` or `stopped`.
    pub outcome: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// What it logged, in order.
    pub logs: Vec<RunLogLine>,
    /// Lines logged over the limit, not kept.
    pub dropped_logs: i64,
    /// The `x-request-id` of the HTTP request that ran a function.
    pub request_id: Option<String>,
    /// The delivery that ran a trigger handler.
    pub delivery_id: Option<i64>,
}

crate::db::row_struct! {
    struct RunRow {
        id: i64,
        script: String,
        version: i64,
        kind: String,
        started_at: i64,
        duration_us: i64,
        outcome: String,
        error: Option<String>,
        logs: String,
        dropped_logs: i64,
        request_id: Option<String>,
        delivery_id: Option<i64>,
    }
}

impl RunRow {
    fn into_run(self) -> Result<ScriptRun> {
        let logs = serde_json::from_str(&self.logs)
            .map_err(|e| Error::Corrupt(format!("script run {} logs: {e}", self.id)))?;
        Ok(ScriptRun {
            id: self.id,
            script: self.script,
            version: self.version,
            kind: self.kind,
            started_at: self.started_at,
            duration_us: self.duration_us,
            outcome: self.outcome,
            error: self.error,
            logs,
            dropped_logs: self.dropped_logs,
            request_id: self.request_id,
            delivery_id: self.delivery_id,
        })
    }
}

impl Db {
    /// Stores `runs` in one transaction, `RUNS_PER_INSERT` to a statement, then trims
    /// each of their apps' logs to the newest `keep_per_app` runs. Runs of an app
    /// deleted meanwhile are dropped, not an error for the batch.
    pub async fn record_script_runs(&self, runs: &[RunRecord], keep_per_app: i64) -> Result<()> {
        let logs = runs
            .iter()
            .map(|run| serde_json::to_string(&run.logs))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Corrupt(format!("script run logs: {e}")))?;
        let apps: BTreeSet<&str> = runs.iter().map(|r| r.app.as_str()).collect();
        let _gate = self.write_gate().await;
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let mut live = BTreeSet::new();
            for app in apps {
                let found: Option<(String,)> = sqlx::query_as("SELECT id FROM apps WHERE id = $1")
                    .bind(app)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_some() {
                    live.insert(app);
                }
            }
            let kept: Vec<(&RunRecord, &String)> = runs
                .iter()
                .zip(&logs)
                .filter(|(run, _)| live.contains(run.app.as_str()))
                .collect();
            for chunk in kept.chunks(RUNS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO script_runs (app_id, script, version, kind, started_at,
                         duration_us, outcome, error, logs, dropped_logs, request_id,
                         delivery_id) ",
                );
                insert.push_values(chunk, |mut values, (run, logs)| {
                    values
                        .push_bind(run.app.as_str())
                        .push_bind(run.script.as_str())
                        .push_bind(run.version)
                        .push_bind(run.kind)
                        .push_bind(run.started_at)
                        .push_bind(run.duration_us)
                        .push_bind(run.outcome)
                        .push_bind(run.error.as_deref())
                        .push_bind(logs.as_str())
                        .push_bind(run.dropped_logs)
                        .push_bind(run.request_id.as_deref())
                        .push_bind(run.delivery_id);
                });
                insert.build().execute(&mut *tx).await?;
            }
            for app in live {
                sqlx::query(
                    "DELETE FROM script_runs WHERE app_id = $1 AND id <= (
                         SELECT id FROM script_runs WHERE app_id = $1
                         ORDER BY id DESC LIMIT 1 OFFSET $2)",
                )
                .bind(app)
                .bind(keep_per_app)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The newest runs of script `name` of `app`, newest first: at most `limit`, and
    /// only runs older than `before` (a run id) when it is given.
    pub async fn list_script_runs(
        &self,
        app: &str,
        name: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ScriptRun>> {
        let rows: Vec<RunRow> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT id, script, version, kind, started_at, duration_us, outcome, error,
                     logs, dropped_logs, request_id, delivery_id
                 FROM script_runs WHERE app_id = $1 AND script = $2 AND id < $3
                 ORDER BY id DESC LIMIT $4",
            )
            .bind(app)
            .bind(name)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(RunRow::into_run).collect()
    }
}

/// Where runs are recorded: a handle on the background writer.
#[derive(Debug, Clone)]
pub struct RunLog {
    queue: mpsc::Sender<RunRecord>,
}

impl RunLog {
    /// Starts the writer, keeping the newest `keep_per_app` runs of each app; it stores
    /// what is queued and stops once `stop` is cancelled.
    pub fn spawn(db: Db, keep_per_app: u32, stop: CancellationToken) -> (RunLog, JoinHandle<()>) {
        let (queue, runs) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write(db, runs, i64::from(keep_per_app), stop));
        (RunLog { queue }, writer)
    }

    /// Records `run` without waiting; when the writer is behind, the run is dropped and
    /// counted.
    pub fn record(&self, run: RunRecord) {
        if self.queue.try_send(run).is_err() {
            crate::metrics::script_run_dropped();
        }
    }
}

/// The writer: takes what is queued, up to [`BATCH`] runs gathered over [`GATHER`], and
/// stores it.
async fn write(db: Db, mut runs: mpsc::Receiver<RunRecord>, keep: i64, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let received = tokio::select! {
            received = runs.recv_many(&mut batch, BATCH) => received,
            () = stop.cancelled() => {
                // Store what was queued before the stop, then end.
                runs.close();
                runs.recv_many(&mut batch, QUEUE).await
            }
        };
        if received == 0 {
            return;
        }
        // Runs are diagnostics: letting them gather for a moment makes one transaction
        // (one fsync) carry many, and leaves the write path to publishes and deliveries.
        if batch.len() < BATCH {
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                () = stop.cancelled() => {}
            }
        }
        while batch.len() < BATCH {
            match runs.try_recv() {
                Ok(run) => batch.push(run),
                Err(_) => break,
            }
        }
        if let Err(error) = store(&db, &batch, keep).await {
            tracing::warn!(%error, runs = batch.len(), "script runs not recorded");
            for _ in &batch {
                crate::metrics::script_run_dropped();
            }
        }
        batch.clear();
    }
}

/// Stores `batch`, trying once more after a short pause (a busy or restarting database).
async fn store(db: &Db, batch: &[RunRecord], keep: i64) -> Result<()> {
    match db.record_script_runs(batch, keep).await {
        Ok(()) => Ok(()),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            db.record_script_runs(batch, keep).await
        }
    }
}
