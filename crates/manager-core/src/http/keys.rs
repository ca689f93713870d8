//! API keys over HTTP: app keys under `/v1/apps/{app}/keys` (instance keys or
//! `app:admin`), instance keys under `/v1/keys` (instance keys only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath};
use picloud_shared::{ApiError, AppId, Scope, ScopeSet};
use serde::{Deserialize, Serialize};

use super::ManagerState;
use crate::api_keys::{ApiKey, CreatedKey};

/// Body of `POST /v1/apps/{app}/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppKey {
    /// What the key is for.
    pub name: String,
    /// App scopes the key holds (not `instance:admin`).
    pub scopes: Vec<Scope>,
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceKey {
    /// What the key is for.
    pub name: String,
    /// Optional; if given, exactly `["instance:admin"]`.
    pub scopes: Option<Vec<Scope>>,
}

/// A created key. `key` is the secret: this response is the only time it is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKeyResponse {
    /// The key's id.
    pub id: String,
    /// The secret, to send as `Authorization: Bearer <key>`.
    pub key: String,
    /// The display prefix.
    pub prefix: String,
    /// The key's scopes.
    pub scopes: Vec<Scope>,
    /// The key's name.
    pub name: String,
    /// The owning app, `null` for instance keys.
    #[schema(value_type = Option<String>)]
    pub app: Option<AppId>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

impl From<CreatedKey> for CreatedKeyResponse {
    fn from(created: CreatedKey) -> Self {
        let CreatedKey { key, secret } = created;
        Self {
            id: key.id,
            key: secret,
            prefix: key.prefix,
            scopes: key.scopes,
            name: key.name,
            app: key.app,
            created_at: key.created_at,
        }
    }
}

/// A list of keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// The keys, newest first, revoked ones included.
    pub keys: Vec<ApiKey>,
}

/// Creates a key for an app.
#[utoipa::path(post, path = "/v1/apps/{app}/keys", tag = "keys", request_body = CreateAppKey,
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["instance:admin"]), ("api_key" = ["app:admin"])),
    responses((status = 201, body = CreatedKeyResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn create_app_key(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<CreateAppKey>,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    let app = state.db.get_app(&app).await?.id;
    let scopes: ScopeSet = body.scopes.into_iter().collect();
    let created = state.db.create_key(Some(&app), &body.name, scopes).await?;
    tracing::info!(app = %app, key_id = %created.key.id, "API key created");
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Lists an app's keys.
#[utoipa::path(get, path = "/v1/apps/{app}/keys", tag = "keys",
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["instance:admin"]), ("api_key" = ["app:admin"])),
    responses((status = 200, body = KeyList), (status = 404, body = ErrorBody)))]
pub async fn list_app_keys(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<KeyList>, ApiError> {
    state.db.get_app(&app).await?;
    Ok(Json(KeyList {
        keys: state.db.list_keys(Some(&app)).await?,
    }))
}

/// Revokes one of an app's keys. Revoking twice is harmless.
#[utoipa::path(delete, path = "/v1/apps/{app}/keys/{key_id}", tag = "keys",
    params(("app" = String, Path, description = "app id"), ("key_id" = String, Path, description = "key id")),
    security(("api_key" = ["instance:admin"]), ("api_key" = ["app:admin"])),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody)))]
pub async fn revoke_app_key(
    State(state): State<ManagerState>,
    ApiPath((app, key)): ApiPath<(String, String)>,
) -> Result<Json<ApiKey>, ApiError> {
    state.db.get_app(&app).await?;
    let revoked = state.db.revoke_key(Some(&app), &key).await?;
    state.auth.forget_key(&revoked.id);
    tracing::info!(app, key_id = %revoked.id, "API key revoked");
    Ok(Json(revoked))
}

/// Creates an instance key (`instance:admin`: manages apps and keys only).
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateInstanceKey,
    security(("api_key" = ["instance:admin"])),
    responses((status = 201, body = CreatedKeyResponse), (status = 400, body = ErrorBody)))]
pub async fn create_instance_key(
    State(state): State<ManagerState>,
    ApiJson(body): ApiJson<CreateInstanceKey>,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    let scopes: ScopeSet = match body.scopes {
        Some(scopes) => scopes.into_iter().collect(),
        None => [Scope::InstanceAdmin].into_iter().collect(),
    };
    let created = state.db.create_key(None, &body.name, scopes).await?;
    tracing::info!(key_id = %created.key.id, "instance key created");
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Lists instance keys.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    security(("api_key" = ["instance:admin"])),
    responses((status = 200, body = KeyList)))]
pub async fn list_instance_keys(
    State(state): State<ManagerState>,
) -> Result<Json<KeyList>, ApiError> {
    Ok(Json(KeyList {
        keys: state.db.list_keys(None).await?,
    }))
}

/// Revokes an instance key.
#[utoipa::path(delete, path = "/v1/keys/{key_id}", tag = "keys",
    params(("key_id" = String, Path, description = "key id")),
    security(("api_key" = ["instance:admin"])),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody)))]
pub async fn revoke_instance_key(
    State(state): State<ManagerState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<ApiKey>, ApiError> {
    let revoked = state.db.revoke_key(None, &key).await?;
    state.auth.forget_key(&revoked.id);
    tracing::info!(key_id = %revoked.id, "instance key revoked");
    Ok(Json(revoked))
}
