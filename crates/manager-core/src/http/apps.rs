//! `/v1/apps`: create, list, get and delete apps (instance keys; `app:read` may get its
//! own app).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath};
use picloud_shared::{ApiError, AppId};
use serde::{Deserialize, Serialize};

use super::ManagerState;
use crate::apps::App;

/// Body of `POST /v1/apps`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// The app's slug: 2-63 of `a-z 0-9 -`, starting with a letter.
    pub id: AppId,
    /// A display name; defaults to the id.
    pub name: Option<String>,
}

/// A list of apps.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppList {
    /// The apps, by id.
    pub apps: Vec<App>,
}

/// Creates an app.
#[utoipa::path(post, path = "/v1/apps", tag = "apps", request_body = CreateApp,
    security(("api_key" = ["instance:admin"])),
    responses((status = 201, body = App), (status = 400, body = ErrorBody),
              (status = 409, description = "the id is taken", body = ErrorBody)))]
pub async fn create_app(
    State(state): State<ManagerState>,
    ApiJson(body): ApiJson<CreateApp>,
) -> Result<(StatusCode, Json<App>), ApiError> {
    let name = body.name.unwrap_or_else(|| body.id.to_string());
    let app = state.db.create_app(&body.id, &name).await?;
    tracing::info!(app = %app.id, "app created");
    Ok((StatusCode::CREATED, Json(app)))
}

/// Lists every app.
#[utoipa::path(get, path = "/v1/apps", tag = "apps",
    security(("api_key" = ["instance:admin"])),
    responses((status = 200, body = AppList)))]
pub async fn list_apps(State(state): State<ManagerState>) -> Result<Json<AppList>, ApiError> {
    Ok(Json(AppList {
        apps: state.db.list_apps().await?,
    }))
}

/// Gets one app.
#[utoipa::path(get, path = "/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["instance:admin"]), ("api_key" = ["app:read"])),
    responses((status = 200, body = App), (status = 404, body = ErrorBody)))]
pub async fn get_app(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<App>, ApiError> {
    Ok(Json(state.db.get_app(&app).await?))
}

/// Deletes an app and everything it owns.
#[utoipa::path(delete, path = "/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["instance:admin"])),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_app(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.db.delete_app(&app).await?;
    state.auth.forget_app(&app);
    state.close_streams(&app, None);
    tracing::info!(app, "app deleted");
    Ok(StatusCode::NO_CONTENT)
}
