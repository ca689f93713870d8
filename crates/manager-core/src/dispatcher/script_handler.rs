//! One attempt of a trigger whose handler is a script: the app's script runs on the
//! executor with `event` (the body a webhook would get) and `delivery` in scope.
//! Returning is delivered; throwing, timing out or finding every worker busy is a failed
//! attempt, retried, circuit-broken and dead-lettered exactly as a webhook's. Each run
//! is recorded in the run log with its delivery id.

use std::sync::Arc;
use std::time::Instant;

use picloud_executor_core::{Executor, Run, RunOutcome};
use picloud_shared::time::now_ms;
use picloud_shared::AppId;
use serde_json::json;

use super::outbox::{AttemptRecord, ClaimedRow};
use super::webhook::{Outcome, MAX_KEPT_BODY};
use crate::db::Db;
use crate::error::Error;
use crate::run_log::{RunLog, RunRecord};
use crate::script_cache::ScriptCache;

/// What script handlers need: the pool scripts run on and the run log.
#[derive(Clone)]
pub struct ScriptHandlers {
    /// Runs the scripts.
    pub executor: Executor,
    /// Records each run.
    pub run_log: RunLog,
    /// The scripts' current versions.
    pub cache: Arc<ScriptCache>,
}

impl ScriptHandlers {
    /// Runs script `name` of the row's app for one delivery of `body` (the webhook body).
    pub(super) async fn attempt(
        &self,
        db: &Db,
        row: &ClaimedRow,
        name: &str,
        body: &[u8],
    ) -> (Outcome, AttemptRecord) {
        let started_at = now_ms();
        let clock = Instant::now();
        // Every error names the script first (the class readers without
        // deliveries:manage see is `script_failed`).
        let failed = |why: String| {
            let error = format!("script '{name}': {why}");
            let record = AttemptRecord {
                started_at,
                duration_ms: clock.elapsed().as_millis() as i64,
                status: None,
                error: Some(error),
                response_body: None,
                response_bytes: None,
            };
            (Outcome::Failed { retry_after: None }, record)
        };
        let app = match AppId::parse(&row.app_id) {
            Ok(app) => app,
            Err(e) => return failed(format!("bad app id: {}", e.0)),
        };
        let stored = match self.cache.get(db, &row.app_id, name).await {
            Ok(stored) => stored,
            Err(Error::ScriptNotFound(_)) => return failed("the app has no such script".into()),
            Err(e) => return failed(format!("cannot load it: {e}")),
        };
        let version = stored.summary.version;
        let script = match self.executor.compiled(&app, name, version, &stored.source) {
            Ok(script) => script,
            Err(e) => return failed(format!("does not compile: {e}")),
        };
        // serde_json's depth limit applies here: an event nested deeper than a script
        // could walk fails this attempt with a clear error.
        let event = match serde_json::from_slice(body) {
            Ok(event) => event,
            Err(e) => return failed(format!("the event cannot be given to it: {e}")),
        };
        let run = Run::Handler {
            event,
            delivery: json!({"id": row.id, "attempt": row.attempts}),
        };
        let outcome = self.executor.run(app, script, run, "handler").await;
        let mut record = RunRecord::of(&row.app_id, name, version, "handler", &outcome);
        record.delivery_id = Some(row.id);
        self.run_log.record(record);
        let attempt = AttemptRecord {
            started_at,
            duration_ms: clock.elapsed().as_millis() as i64,
            status: None,
            error: outcome
                .result
                .as_ref()
                .err()
                .map(|e| format!("script '{name}': {e}")),
            response_body: Some(excerpt(&outcome)),
            response_bytes: None,
        };
        let verdict = match outcome.result {
            Ok(_) => Outcome::Delivered,
            Err(_) => Outcome::Failed { retry_after: None },
        };
        (verdict, attempt)
    }
}

/// What the attempt shows of a run: its log lines, then what it returned, cut to the
/// size a webhook's response excerpt has. The run log keeps the whole run.
fn excerpt(outcome: &RunOutcome) -> String {
    let mut text = String::new();
    for line in &outcome.logs {
        text.push_str(&format!("{}: {}\n", line.level.as_str(), line.message));
    }
    if let Ok(value) = &outcome.result {
        text.push_str(&format!("=> {value}"));
    }
    picloud_shared::text::cut_to(&mut text, MAX_KEPT_BODY);
    text
}
