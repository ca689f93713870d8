//! `/v1/apps/{app}/scripts`: saving (each save a new version, compiled first: a script
//! that does not compile is refused with its line and column, and nothing is stored),
//! reading, listing versions, restoring one, deleting.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath};
use picloud_shared::ApiError;
use serde::{Deserialize, Serialize};

use super::ManagerState;
use crate::error::Error;
use crate::scripts::{script_name, FunctionAccess, Script, ScriptSummary, ScriptVersion};

/// Body of `PUT /v1/apps/{app}/scripts/{script}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveScript {
    /// The Rhai source (at most 256 KiB).
    pub source: String,
    /// Who may call it as an HTTP function; unchanged when absent (`key` for a new
    /// script).
    pub access: Option<FunctionAccess>,
}

/// A list of scripts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScriptList {
    /// The scripts, by name.
    pub scripts: Vec<ScriptSummary>,
}

/// A script's versions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScriptVersionList {
    /// The versions, newest first.
    pub versions: Vec<ScriptVersion>,
}

impl ManagerState {
    /// Compiles `source`, then saves it as the next version of `name`. The caller has
    /// checked that the app exists (so a missing app is a 404 before any compile error).
    async fn compile_and_save(
        &self,
        app: &str,
        name: &str,
        source: &str,
        access: Option<FunctionAccess>,
    ) -> Result<Script, ApiError> {
        let name = script_name(name)?;
        self.scripts.compile(source).map_err(Error::ScriptCompile)?;
        let script = self.db.save_script(app, &name, source, access).await?;
        tracing::info!(app, script = %name, version = script.summary.version, "script saved");
        Ok(script)
    }
}

/// Lists the app's scripts.
#[utoipa::path(get, path = "/v1/apps/{app}/scripts", tag = "scripts",
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["scripts:manage"])),
    responses((status = 200, body = ScriptList), (status = 404, body = ErrorBody)))]
pub async fn list_scripts(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<ScriptList>, ApiError> {
    state.db.get_app(&app).await?;
    Ok(Json(ScriptList {
        scripts: state.db.list_scripts(&app).await?,
    }))
}

/// Saves a script: compiles it, then stores it as its next version.
#[utoipa::path(put, path = "/v1/apps/{app}/scripts/{script}", tag = "scripts",
    request_body = SaveScript,
    params(("app" = String, Path, description = "app id"),
           ("script" = String, Path, description = "script name (topic-name rules)")),
    security(("api_key" = ["scripts:manage"])),
    responses((status = 200, body = Script),
              (status = 400, description = "does not compile (`line`, `column`) or a bad name",
               body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn save_script(
    State(state): State<ManagerState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SaveScript>,
) -> Result<Json<Script>, ApiError> {
    state.db.get_app(&app).await?;
    let script = state
        .compile_and_save(&app, &name, &body.source, body.access)
        .await?;
    Ok(Json(script))
}

/// Gets a script with the source of its current version.
#[utoipa::path(get, path = "/v1/apps/{app}/scripts/{script}", tag = "scripts",
    params(("app" = String, Path, description = "app id"),
           ("script" = String, Path, description = "script name")),
    security(("api_key" = ["scripts:manage"])),
    responses((status = 200, body = Script), (status = 404, body = ErrorBody)))]
pub async fn get_script(
    State(state): State<ManagerState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> Result<Json<Script>, ApiError> {
    state.db.get_app(&app).await?;
    Ok(Json(state.db.get_script(&app, &name).await?))
}

/// Deletes a script with all its versions.
#[utoipa::path(delete, path = "/v1/apps/{app}/scripts/{script}", tag = "scripts",
    params(("app" = String, Path, description = "app id"),
           ("script" = String, Path, description = "script name")),
    security(("api_key" = ["scripts:manage"])),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_script(
    State(state): State<ManagerState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.db.get_app(&app).await?;
    state.db.delete_script(&app, &name).await?;
    tracing::info!(app, script = name, "script deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a script's saved versions, newest first.
#[utoipa::path(get, path = "/v1/apps/{app}/scripts/{script}/versions", tag = "scripts",
    params(("app" = String, Path, description = "app id"),
           ("script" = String, Path, description = "script name")),
    security(("api_key" = ["scripts:manage"])),
    responses((status = 200, body = ScriptVersionList), (status = 404, body = ErrorBody)))]
pub async fn list_script_versions(
    State(state): State<ManagerState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> Result<Json<ScriptVersionList>, ApiError> {
    state.db.get_app(&app).await?;
    Ok(Json(ScriptVersionList {
        versions: state.db.list_script_versions(&app, &name).await?,
    }))
}

/// Restores a saved version: saves its source again as the newest version.
#[utoipa::path(post, path = "/v1/apps/{app}/scripts/{script}/versions/{version}/restore",
    tag = "scripts",
    params(("app" = String, Path, description = "app id"),
           ("script" = String, Path, description = "script name"),
           ("version" = i64, Path, description = "the version to restore")),
    security(("api_key" = ["scripts:manage"])),
    responses((status = 200, body = Script), (status = 404, body = ErrorBody)))]
pub async fn restore_script_version(
    State(state): State<ManagerState>,
    ApiPath((app, name, version)): ApiPath<(String, String, i64)>,
) -> Result<Json<Script>, ApiError> {
    state.db.get_app(&app).await?;
    let old = state.db.get_script_version(&app, &name, version).await?;
    let script = state
        .compile_and_save(&app, &name, &old.source, None)
        .await?;
    Ok(Json(script))
}
