//! Logs and metrics: the tracing subscriber and the process-wide Prometheus recorder.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The default log filter, overridden by `PICLOUD_LOG` (e.g. `debug`, `picloud=trace`),
/// or else by `RUST_LOG`.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,tower_http=info";

/// The log filter: `PICLOUD_LOG`, else `RUST_LOG`, else [`DEFAULT_LOG_FILTER`]. A set
/// variable that does not parse is an error naming it, not a silent fallback.
pub fn log_filter() -> Result<EnvFilter, String> {
    for variable in ["PICLOUD_LOG", "RUST_LOG"] {
        match std::env::var(variable) {
            Ok(value) if !value.trim().is_empty() => {
                return EnvFilter::builder()
                    .parse(&value)
                    .map_err(|e| format!("{variable}='{value}' is not a log filter: {e}"));
            }
            Ok(_) => {}
            Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("{variable} is not valid UTF-8"));
            }
        }
    }
    Ok(EnvFilter::new(DEFAULT_LOG_FILTER))
}

/// Installs the global tracing subscriber with [`log_filter`], writing to stderr.
/// Later calls do nothing.
pub fn init_tracing(format: LogFormat) -> Result<(), String> {
    let filter = log_filter()?;
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    Ok(())
}

/// The process-wide Prometheus recorder, installed on first use. All applications in
/// one process (as in tests) share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .expect("valid buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed by an embedding program; then ours only
            // renders what it records, which is nothing, rather than failing start-up.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            handle
        })
        .clone()
}

fn describe_metrics() {
    metrics::describe_counter!(
        "picloud_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    metrics::describe_counter!(
        "picloud_events_published_total",
        "Events committed to topic logs (each once, whatever its fan-out)"
    );
    metrics::describe_counter!(
        "picloud_outbox_rows_created_total",
        "Outbox rows created by publishes (one per matching trigger)"
    );
    metrics::describe_counter!(
        "picloud_broadcast_failures_total",
        "Broadcasts to live subscribers that failed after commit"
    );
    metrics::describe_counter!(
        "picloud_publish_idempotent_replays_total",
        "Publishes answered from an earlier request with the same Idempotency-Key"
    );
    metrics::describe_histogram!(
        "picloud_publish_commit_seconds",
        metrics::Unit::Seconds,
        "Time to write and commit one publish group"
    );
    metrics::describe_histogram!(
        "picloud_publish_group_requests",
        "Publish requests committed together in one transaction"
    );
    metrics::describe_counter!("picloud_events_pruned_total", "Events removed by retention");
    metrics::describe_counter!("picloud_deliveries_total", "Logical deliveries finished, by outcome (delivered, dead_lettered, failed); each once, however many attempts");
    metrics::describe_counter!(
        "picloud_delivery_retries_total",
        "Failed attempts that were scheduled for retry"
    );
    metrics::describe_counter!("picloud_dead_letters_total", "Dead letters written");
    metrics::describe_counter!(
        "picloud_delivery_panics_total",
        "Delivery attempts that panicked (a bug), each recorded as a failed attempt"
    );
    metrics::describe_counter!(
        "picloud_trigger_patterns_invalid_total",
        "Stored trigger patterns found unreadable when loading triggers (they match no event)"
    );
    metrics::describe_histogram!(
        "picloud_delivery_attempt_seconds",
        metrics::Unit::Seconds,
        "Duration of one webhook attempt"
    );
    metrics::describe_gauge!(
        "picloud_circuits_open",
        "Triggers whose circuit breaker is open or half-open (database-wide)"
    );
    metrics::describe_gauge!(
        "picloud_outbox_pending",
        "Outbox rows waiting for delivery (database-wide)"
    );
    metrics::describe_gauge!(
        "picloud_outbox_oldest_pending_age_seconds",
        "Age of the oldest undelivered outbox row (database-wide)"
    );
    metrics::describe_histogram!(
        "picloud_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to produce an HTTP response, by method and route template"
    );
    metrics::describe_gauge!(
        "picloud_connections_open",
        "Open client connections on this node (SSE streams included)"
    );
    metrics::describe_counter!(
        "picloud_connections_refused_total",
        "Connections refused or closed before their first request, by reason \
         (max_connections, max_connections_per_ip, header_too_large, header_timeout)"
    );
}
