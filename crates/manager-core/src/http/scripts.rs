//! `/v1/apps/{app}/scripts`: saving (each save a new version, compiled first: a script
//! that does not compile is refused with its line and column, and nothing is stored),
//! reading, listing versions, restoring one, deleting. A save's body is JSON or the bare
//! source as `text/plain`.

use axum::extract::{FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::Json;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath, ApiQuery};
use picloud_shared::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

use super::ManagerState;
use crate::error::Error;
use crate::run_log::ScriptRun;
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

/// A save's body: JSON ([`SaveScript`]), or the bare source as `text/plain` (which
/// leaves the access setting as it is).
pub struct SaveBody(pub SaveScript);

impl<S: Send + Sync> FromRequest<S> for SaveBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_text = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/plain")
            });
        if !is_text {
            let ApiJson(body) = ApiJson::from_request(request, state).await?;
            return Ok(SaveBody(body));
        }
        let source = String::from_request(request, state)
            .await
            .map_err(|rejection| {
                let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ErrorCode::PayloadTooLarge
                } else {
                    ErrorCode::InvalidRequest
                };
                ApiError::new(code, rejection.body_text())
            })?;
        Ok(SaveBody(SaveScript {
            source,
            access: None,
        }))
    }
}

/// Query of a run list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// Only runs below this id: the last id of the previous page.
    pub before: Option<i64>,
    /// Page size (default 50, at most 1000).
    pub limit: Option<i64>,
}

/// A page of a script's runs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScriptRunList {
    /// The runs, newest first.
    pub runs: Vec<ScriptRun>,
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
        self.script_cache.forget(app, name.as_str());
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
    request_body(description = "JSON, or the bare source as text/plain (access unchanged)",
        content((SaveScript = "application/json"), (String = "text/plain"))),
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
    SaveBody(body): SaveBody,
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
    state.script_cache.forget(&app, &name);
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

/// Lists a script's last runs, newest first: how each went, its error and what it
/// logged. The log keeps each app's newest runs (`PICLOUD_SCRIPT_RUN_LOG`), and a run
/// shows up moments after it ends.
#[utoipa::path(get, path = "/v1/apps/{app}/scripts/{script}/runs", tag = "scripts",
    params(("app" = String, Path, description = "app id"),
           ("script" = String, Path, description = "script name"), RunQuery),
    security(("api_key" = ["scripts:manage"])),
    responses((status = 200, body = ScriptRunList), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_script_runs(
    State(state): State<ManagerState>,
    ApiPath((app, name)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<RunQuery>,
) -> Result<Json<ScriptRunList>, ApiError> {
    state.db.get_app(&app).await?;
    state.db.get_script(&app, &name).await?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(ScriptRunList {
        runs: state
            .db
            .list_script_runs(&app, &name, query.before, limit)
            .await?,
    }))
}
