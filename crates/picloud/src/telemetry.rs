//! Logs and metrics: the tracing subscriber, the process-wide Prometheus recorder, and
//! the request metrics every answered request is counted in (through the router or the
//! front door).

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

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

/// Describes the metrics this crate records (HTTP and connections) and manager-core's;
/// orchestrator-core describes its own when the realtime layer starts.
fn describe_metrics() {
    metrics::describe_counter!(
        "picloud_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    picloud_manager_core::metrics::describe();
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

/// Counts every answered request by method, route template and status, and times it.
pub(crate) async fn record_http_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    record_request(&method, route, response.status(), started);
    response
}

/// Counts and times one answered request (also for streams served outside the router).
pub(crate) fn record_request(method: &Method, route: String, status: StatusCode, started: Instant) {
    metrics::counter!(
        "picloud_http_requests_total",
        "method" => method.to_string(),
        "route" => route.clone(),
        "status" => status.as_u16().to_string(),
    )
    .increment(1);
    metrics::histogram!(
        "picloud_http_request_duration_seconds",
        "method" => method.to_string(),
        "route" => route,
    )
    .record(started.elapsed().as_secs_f64());
}
