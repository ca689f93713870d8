//! `/v1/apps/{app}/sources`: an app's outbox sources — add, list, get, enable or
//! disable, delete (`app:admin` throughout: a source names a database and its
//! credentials). The database URL's password is taken in and never given back.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath};
use picloud_shared::ApiError;
use serde::{Deserialize, Serialize};

use super::ManagerState;
use crate::sources::address::checked_options;
use crate::sources::app_schema::{schema_name, DEFAULT_SCHEMA};
use crate::sources::{check_database_url, Source, SourceKind};

/// A new source.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    /// What it reads: `postgres_outbox`.
    pub kind: SourceKind,
    /// The app database's URL (`postgres://relay:password@host:5432/db`): the role
    /// needs USAGE on the schema and SELECT, DELETE on its outbox (docs/sources.md).
    pub database_url: String,
    /// The outbox schema `picloud sources install` created (default `picloud`).
    #[serde(default)]
    pub schema: Option<String>,
}

/// A change to a source.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePatch {
    /// Run its relay (true) or stop it (false).
    pub enabled: bool,
}

/// A list of sources.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceList {
    /// The app's sources, oldest first.
    pub sources: Vec<Source>,
}

/// Adds an outbox source to an app. PiCloud starts relaying it at once (within a second
/// or so); its status tells whether the relay could connect.
#[utoipa::path(post, path = "/v1/apps/{app}/sources", tag = "sources", request_body = NewSource,
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["app:admin"])),
    responses((status = 201, body = Source), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn create_source(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<NewSource>,
) -> Result<(StatusCode, Json<Source>), ApiError> {
    let app = state.db.get_app(&app).await?.id;
    check_database_url(&body.database_url)?;
    checked_options(&state.source_policy, &body.database_url).await?;
    let schema = schema_name(body.schema.as_deref().unwrap_or(DEFAULT_SCHEMA))?;
    let source = state
        .db
        .create_source(app.as_str(), body.kind, &body.database_url, schema)
        .await?;
    tracing::info!(app = %app, source = %source.id, "source created");
    Ok((StatusCode::CREATED, Json(source)))
}

/// Lists an app's sources with their status.
#[utoipa::path(get, path = "/v1/apps/{app}/sources", tag = "sources",
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["app:admin"])),
    responses((status = 200, body = SourceList), (status = 404, body = ErrorBody)))]
pub async fn list_sources(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<SourceList>, ApiError> {
    state.db.get_app(&app).await?;
    Ok(Json(SourceList {
        sources: state.db.list_sources(&app).await?,
    }))
}

/// Gets one source with its status.
#[utoipa::path(get, path = "/v1/apps/{app}/sources/{source_id}", tag = "sources",
    params(("app" = String, Path, description = "app id"),
           ("source_id" = String, Path, description = "source id")),
    security(("api_key" = ["app:admin"])),
    responses((status = 200, body = Source), (status = 404, body = ErrorBody)))]
pub async fn get_source(
    State(state): State<ManagerState>,
    ApiPath((app, source)): ApiPath<(String, String)>,
) -> Result<Json<Source>, ApiError> {
    state.db.get_app(&app).await?;
    Ok(Json(state.db.get_source(&app, &source).await?))
}

/// Enables or disables a source's relay.
#[utoipa::path(patch, path = "/v1/apps/{app}/sources/{source_id}", tag = "sources",
    request_body = SourcePatch,
    params(("app" = String, Path, description = "app id"),
           ("source_id" = String, Path, description = "source id")),
    security(("api_key" = ["app:admin"])),
    responses((status = 200, body = Source), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn update_source(
    State(state): State<ManagerState>,
    ApiPath((app, source)): ApiPath<(String, String)>,
    ApiJson(patch): ApiJson<SourcePatch>,
) -> Result<Json<Source>, ApiError> {
    state.db.get_app(&app).await?;
    let source = state
        .db
        .set_source_enabled(&app, &source, patch.enabled)
        .await?;
    tracing::info!(app, source = %source.id, enabled = source.enabled, "source updated");
    Ok(Json(source))
}

/// Deletes a source. Rows still waiting in the app's outbox stay there.
#[utoipa::path(delete, path = "/v1/apps/{app}/sources/{source_id}", tag = "sources",
    params(("app" = String, Path, description = "app id"),
           ("source_id" = String, Path, description = "source id")),
    security(("api_key" = ["app:admin"])),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_source(
    State(state): State<ManagerState>,
    ApiPath((app, source)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.db.get_app(&app).await?;
    state.db.delete_source(&app, &source).await?;
    tracing::info!(app, source, "source deleted");
    Ok(StatusCode::NO_CONTENT)
}
