//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use metrics_exporter_prometheus::PrometheusHandle;
use picloud_manager_core::Db;
use picloud_shared::error::ErrorBody;
use picloud_shared::{ApiError, ErrorCode};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the system endpoints need.
#[derive(Clone)]
pub struct SystemState {
    /// For readiness.
    pub db: Db,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The OpenAPI document, rendered once when the routes are assembled.
    pub openapi: Arc<OnceLock<String>>,
}

/// A health or readiness answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// The system routes.
pub fn router() -> OpenApiRouter<SystemState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The process can serve: its database answers, and its writes are not failing (a
/// publish that failed in the database, say on a full disk, keeps this 503 until a write
/// commits again or the failure is a few seconds old).
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(state): State<SystemState>) -> Result<Json<Status>, ApiError> {
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = %e, "readiness check failed");
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the database is unreachable",
        ));
    }
    if state.db.write_health().is_failing() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "writes to the database are failing",
        ));
    }
    Ok(Json(Status { status: "ready" }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<SystemState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub async fn openapi(State(state): State<SystemState>) -> impl IntoResponse {
    let document = state.openapi.get().cloned().unwrap_or_default();
    ([(CONTENT_TYPE, "application/json")], document)
}
