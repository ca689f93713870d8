//! The realtime metrics, in one place so their names and meanings are easy to audit.
//! Hot-path counters are resolved once and cached.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram, Counter};

/// Describes every realtime metric to the exporter.
pub fn describe() {
    metrics::describe_gauge!("picloud_realtime_streams", "Open SSE streams on this node.");
    metrics::describe_gauge!(
        "picloud_realtime_streams_catching_up",
        "Open SSE streams currently reading the log instead of the live channel."
    );
    metrics::describe_gauge!(
        "picloud_realtime_channels",
        "Live per-topic broadcast channels on this node."
    );
    metrics::describe_counter!(
        "picloud_realtime_events_broadcast_total",
        "Committed events handed to live channels (once per event, whatever the fan-out)."
    );
    metrics::describe_counter!(
        "picloud_realtime_deliveries_total",
        "Event frames sent to subscribers (once per event per stream)."
    );
    metrics::describe_counter!(
        "picloud_realtime_resumes_total",
        "Streams resumed from a cursor without loss."
    );
    metrics::describe_counter!(
        "picloud_realtime_resets_total",
        "Reset frames sent, by reason (cursor_expired, cursor_invalid)."
    );
    metrics::describe_counter!(
        "picloud_realtime_catchups_total",
        "Times a stream fell back to the log (resume, lag or gap)."
    );
    metrics::describe_histogram!(
        "picloud_realtime_lag_events",
        "How many events behind a stream was when it fell back to the log."
    );
    metrics::describe_counter!(
        "picloud_realtime_streams_refused_total",
        "Streams refused by the connection limits, by limit (app, server)."
    );
}

/// One event frame sent to one stream.
pub fn delivered() {
    delivered_many(1);
}

/// Event frames sent to `n` streams (a topic's fan-out counts each frame's at once).
pub fn delivered_many(n: u64) {
    static DELIVERIES: OnceLock<Counter> = OnceLock::new();
    DELIVERIES
        .get_or_init(|| counter!("picloud_realtime_deliveries_total"))
        .increment(n);
}

/// A stream was `events` behind when it turned to the log.
pub fn lag(events: i64) {
    histogram!("picloud_realtime_lag_events").record(events.max(0) as f64);
}

/// A stream resumed from its cursor with nothing lost.
pub fn resumed() {
    counter!("picloud_realtime_resumes_total").increment(1);
}

/// A reset frame went out.
pub fn reset(reason: &'static str) {
    counter!("picloud_realtime_resets_total", "reason" => reason).increment(1);
}

/// A stream turned to the log.
pub fn catch_up_started() {
    counter!("picloud_realtime_catchups_total").increment(1);
    gauge!("picloud_realtime_streams_catching_up").increment(1.0);
}

/// A stream is back on the live channel (or closed while catching up).
pub fn catch_up_ended() {
    gauge!("picloud_realtime_streams_catching_up").decrement(1.0);
}
