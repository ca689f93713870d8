//! The executor's metrics: names, descriptions, and the calls that record them.

use std::time::Duration;

/// Runs, by kind (`handler`, `function`, `cron`, `test`) and outcome (`ok`, `error`,
/// `timeout`, `overloaded`, `stopped`).
pub const RUNS_TOTAL: &str = "picloud_script_runs_total";
/// How long runs took, in seconds, by kind.
pub const RUN_SECONDS: &str = "picloud_script_run_seconds";
/// Runs stopped by their time limit.
pub const TIMEOUTS_TOTAL: &str = "picloud_script_timeouts_total";

/// Describes the executor's metrics to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(RUNS_TOTAL, "Script runs, by kind and outcome.");
    metrics::describe_histogram!(
        RUN_SECONDS,
        metrics::Unit::Seconds,
        "How long script runs took, by kind."
    );
    metrics::describe_counter!(TIMEOUTS_TOTAL, "Script runs stopped by their time limit.");
}

/// Counts one finished run.
pub(crate) fn run(kind: &'static str, outcome: &'static str, took: Duration) {
    metrics::counter!(RUNS_TOTAL, "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!(RUN_SECONDS, "kind" => kind).record(took.as_secs_f64());
    if outcome == "timeout" {
        metrics::counter!(TIMEOUTS_TOTAL).increment(1);
    }
}
