//! manager-core's metrics — publishing, delivery, retention — in one place, so their
//! names and meanings are easy to audit. Each logical event counts once, whatever its
//! fan-out; each logical delivery once, at its end, however many attempts it took.

use std::time::Duration;

use ::metrics::{counter, gauge, histogram, Unit};

/// Describes every manager-core metric to the exporter.
pub fn describe() {
    ::metrics::describe_counter!(
        "picloud_events_published_total",
        "Events committed to topic logs (each once, whatever its fan-out)"
    );
    ::metrics::describe_counter!(
        "picloud_outbox_rows_created_total",
        "Outbox rows created by publishes (one per matching trigger)"
    );
    ::metrics::describe_counter!(
        "picloud_broadcast_failures_total",
        "Broadcasts to live subscribers that failed after commit"
    );
    ::metrics::describe_counter!(
        "picloud_publish_idempotent_replays_total",
        "Publishes answered from an earlier request with the same Idempotency-Key"
    );
    ::metrics::describe_histogram!(
        "picloud_publish_commit_seconds",
        Unit::Seconds,
        "Time to write and commit one publish group"
    );
    ::metrics::describe_histogram!(
        "picloud_publish_group_requests",
        "Publish requests committed together in one transaction"
    );
    ::metrics::describe_counter!(
        "picloud_trigger_patterns_invalid_total",
        "Stored trigger patterns found unreadable when loading triggers (they match no event)"
    );
    ::metrics::describe_counter!("picloud_events_pruned_total", "Events removed by retention");
    ::metrics::describe_counter!(
        "picloud_deliveries_pruned_total",
        "Finished deliveries (with their attempts) removed after the delivery history"
    );
    ::metrics::describe_counter!(
        "picloud_cron_ticks_total",
        "Cron ticks handled, by outcome: fired, or skipped (missed with catch_up none)"
    );
    ::metrics::describe_counter!(
        "picloud_cron_ticks_missed_total",
        "Cron ticks that went by late or unfired (no node ran at their time)"
    );
    ::metrics::describe_counter!(
        "picloud_script_run_log_dropped_total",
        "Script runs left out of the run log because its writer was behind or failing"
    );
    ::metrics::describe_counter!(
        "picloud_deliveries_total",
        "Logical deliveries finished, by outcome (delivered, dead_lettered, failed); each \
         once, however many attempts"
    );
    ::metrics::describe_counter!(
        "picloud_delivery_retries_total",
        "Failed attempts that were scheduled for retry"
    );
    ::metrics::describe_counter!("picloud_dead_letters_total", "Dead letters written");
    ::metrics::describe_counter!(
        "picloud_delivery_panics_total",
        "Delivery attempts that panicked (a bug), each recorded as a failed attempt"
    );
    ::metrics::describe_histogram!(
        "picloud_delivery_attempt_seconds",
        Unit::Seconds,
        "Duration of one webhook attempt"
    );
    ::metrics::describe_gauge!(
        "picloud_circuits_open",
        "Triggers whose circuit breaker is open or half-open (database-wide)"
    );
    ::metrics::describe_gauge!(
        "picloud_outbox_pending",
        "Outbox rows waiting for delivery (database-wide)"
    );
    ::metrics::describe_gauge!(
        "picloud_outbox_oldest_pending_age_seconds",
        "Age of the oldest undelivered outbox row (database-wide)"
    );
    ::metrics::describe_counter!(
        "picloud_source_relayed_total",
        "Rows relayed from apps' outbox sources (published, answered as repeats, or dead-lettered)"
    );
    ::metrics::describe_counter!(
        "picloud_source_dead_letters_total",
        "Outbox source rows that could not be published and became dead letters"
    );
    ::metrics::describe_counter!(
        "picloud_source_errors_total",
        "Relay passes that failed (app database unreachable, PiCloud's writes failing)"
    );
    ::metrics::describe_gauge!(
        "picloud_source_lag_rows",
        "Rows waiting in a source's outbox at its relay's last count"
    );
    ::metrics::describe_gauge!(
        "picloud_source_lag_seconds",
        Unit::Seconds,
        "Age of the oldest row waiting in a source's outbox at its relay's last count"
    );
}

/// A publish group committed: how long it took and how many requests it held.
pub fn group_committed(took: Duration, requests: usize) {
    histogram!("picloud_publish_commit_seconds").record(took.as_secs_f64());
    histogram!("picloud_publish_group_requests").record(requests as f64);
}

/// Publishes committed `events` events.
pub fn events_published(events: u64) {
    counter!("picloud_events_published_total").increment(events);
}

/// Publishes created `rows` outbox rows (one per matching trigger).
pub fn outbox_rows_created(rows: u64) {
    counter!("picloud_outbox_rows_created_total").increment(rows);
}

/// Committed events could not be handed to live subscribers.
pub fn broadcast_failed() {
    counter!("picloud_broadcast_failures_total").increment(1);
}

/// A publish was answered from the earlier request with its `Idempotency-Key`.
pub fn idempotent_replay() {
    counter!("picloud_publish_idempotent_replays_total").increment(1);
}

/// A stored trigger pattern did not parse when an app's triggers were loaded.
pub fn trigger_pattern_invalid() {
    counter!("picloud_trigger_patterns_invalid_total").increment(1);
}

/// A cron trigger's due tick was handled: fired or skipped, and whether ticks were
/// missed.
pub fn cron_tick(fired: bool, missed: bool) {
    let outcome = if fired { "fired" } else { "skipped" };
    counter!("picloud_cron_ticks_total", "outcome" => outcome).increment(1);
    if missed {
        counter!("picloud_cron_ticks_missed_total").increment(1);
    }
}

/// A script run was left out of the run log.
pub fn script_run_dropped() {
    counter!("picloud_script_run_log_dropped_total").increment(1);
}

/// Retention removed `events` events.
pub fn events_pruned(events: u64) {
    counter!("picloud_events_pruned_total").increment(events);
}

/// Retention removed `deliveries` finished deliveries.
pub fn deliveries_pruned(deliveries: u64) {
    counter!("picloud_deliveries_pruned_total").increment(deliveries);
}

/// A delivery attempt panicked and was recorded as failed.
pub fn delivery_panicked() {
    counter!("picloud_delivery_panics_total").increment(1);
}

/// One webhook attempt took `millis`.
pub fn attempt_took(millis: i64) {
    histogram!("picloud_delivery_attempt_seconds").record(millis as f64 / 1000.0);
}

/// How a recorded attempt ended, for [`attempt_recorded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Delivered: the delivery is done.
    Delivered,
    /// Failed and scheduled again: the delivery goes on.
    Retrying,
    /// Out of attempts: an event delivery became a dead letter.
    DeadLettered,
    /// Out of attempts: a dead-letter delivery ended (it is never dead-lettered again).
    Failed,
}

/// Counts one recorded attempt: a finished delivery once, by outcome; a retry as such.
pub fn attempt_recorded(end: AttemptEnd) {
    let outcome = match end {
        AttemptEnd::Retrying => {
            counter!("picloud_delivery_retries_total").increment(1);
            return;
        }
        AttemptEnd::Delivered => "delivered",
        AttemptEnd::DeadLettered => {
            counter!("picloud_dead_letters_total").increment(1);
            "dead_lettered"
        }
        AttemptEnd::Failed => "failed",
    };
    counter!("picloud_deliveries_total", "outcome" => outcome).increment(1);
}

/// The delivery queue, database-wide: pending rows, the oldest one's age, and circuits
/// not closed. Each is `None` when it could not be read (the gauge keeps its value).
pub fn queue(pending: Option<(i64, Duration)>, circuits_open: Option<i64>) {
    if let Some((pending, oldest_age)) = pending {
        gauge!("picloud_outbox_pending").set(pending as f64);
        gauge!("picloud_outbox_oldest_pending_age_seconds").set(oldest_age.as_secs_f64());
    }
    if let Some(open) = circuits_open {
        gauge!("picloud_circuits_open").set(open as f64);
    }
}

/// Rows of source `source` relayed.
pub fn source_relayed(source: &str, rows: u64) {
    counter!("picloud_source_relayed_total", "source" => source.to_owned()).increment(rows);
}

/// Source rows dead-lettered.
pub fn source_dead_letters(rows: usize) {
    counter!("picloud_source_dead_letters_total").increment(rows as u64);
}

/// A relay pass of source `source` that failed.
pub fn source_error(source: &str) {
    counter!("picloud_source_errors_total", "source" => source.to_owned()).increment(1);
}

/// Source `source`'s backlog at its relay's last count.
pub fn source_lag(source: &str, rows: i64, oldest: Duration) {
    gauge!("picloud_source_lag_rows", "source" => source.to_owned()).set(rows as f64);
    gauge!("picloud_source_lag_seconds", "source" => source.to_owned()).set(oldest.as_secs_f64());
}
