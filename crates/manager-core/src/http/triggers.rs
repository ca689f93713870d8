//! `/v1/apps/{app}/triggers`: create, list, get, change and delete an app's triggers,
//! and reveal or rotate their signing secrets (`app:read` to look, `triggers:manage` for
//! the rest). Secrets appear only in the create, reveal and rotate responses.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath};
use picloud_shared::ApiError;
use serde::Serialize;

use super::ManagerState;
use crate::dispatcher::ssrf::check_webhook_host;
use crate::error::Error;
use crate::triggers::{CreatedTrigger, Handler, NewTrigger, RotatedSecret, Trigger, TriggerPatch};

/// A list of triggers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriggerList {
    /// The app's triggers, oldest first.
    pub triggers: Vec<Trigger>,
}

/// A trigger's signing secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriggerSecret {
    /// `whsec_` and base64 of 32 bytes.
    pub secret: String,
}

/// Lists an app's triggers.
#[utoipa::path(get, path = "/v1/apps/{app}/triggers", tag = "triggers",
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = TriggerList), (status = 404, body = ErrorBody)))]
pub async fn list_triggers(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<TriggerList>, ApiError> {
    state.db.get_app(&app).await?;
    Ok(Json(TriggerList {
        triggers: state.db.list_triggers(&app).await?,
    }))
}

/// Refuses a handler no delivery could reach: a webhook URL with a refused or
/// unresolvable host, or a script the app does not have.
async fn check_handler(state: &ManagerState, app: &str, handler: &Handler) -> Result<(), ApiError> {
    match handler {
        Handler::Webhook { url } => check_webhook_host(&state.webhook_policy, url.as_str()).await?,
        Handler::Script { script } => match state.db.get_script(app, script.as_str()).await {
            Err(Error::ScriptNotFound(_)) => {
                return Err(ApiError::invalid(format!(
                    "handler: the app has no script '{script}'; save it first"
                )))
            }
            other => drop(other?),
        },
    }
    Ok(())
}

/// Creates a trigger. The response holds its signing secret. A webhook URL whose host is
/// a refused address (loopback, private, link-local, reserved: the delivery-time SSRF
/// policy), resolves to one, or does not resolve within 2 s is refused with 400.
#[utoipa::path(post, path = "/v1/apps/{app}/triggers", tag = "triggers", request_body = NewTrigger,
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 201, body = CreatedTrigger), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn create_trigger(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<NewTrigger>,
) -> Result<(StatusCode, Json<CreatedTrigger>), ApiError> {
    let app = state.db.get_app(&app).await?.id;
    check_handler(&state, app.as_str(), &body.handler).await?;
    let created = state.db.create_trigger(&app, body).await?;
    tracing::info!(app = %app, trigger_id = %created.trigger.id, "trigger created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Gets one trigger.
#[utoipa::path(get, path = "/v1/apps/{app}/triggers/{trigger_id}", tag = "triggers",
    params(("app" = String, Path, description = "app id"),
           ("trigger_id" = String, Path, description = "trigger id")),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = Trigger), (status = 404, body = ErrorBody)))]
pub async fn get_trigger(
    State(state): State<ManagerState>,
    ApiPath((app, trigger)): ApiPath<(String, String)>,
) -> Result<Json<Trigger>, ApiError> {
    state.db.get_app(&app).await?;
    Ok(Json(state.db.get_trigger(&app, &trigger).await?))
}

/// Changes a trigger: only the fields given change. Enabling clears `disabled_reason`. A
/// new webhook URL is checked as at creation.
#[utoipa::path(patch, path = "/v1/apps/{app}/triggers/{trigger_id}", tag = "triggers",
    request_body = TriggerPatch,
    params(("app" = String, Path, description = "app id"),
           ("trigger_id" = String, Path, description = "trigger id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 200, body = Trigger), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn update_trigger(
    State(state): State<ManagerState>,
    ApiPath((app, trigger)): ApiPath<(String, String)>,
    ApiJson(patch): ApiJson<TriggerPatch>,
) -> Result<Json<Trigger>, ApiError> {
    state.db.get_app(&app).await?;
    if let Some(handler) = &patch.handler {
        check_handler(&state, &app, handler).await?;
    }
    let updated = state.db.update_trigger(&app, &trigger, patch).await?;
    tracing::info!(app, trigger_id = %updated.id, "trigger updated");
    Ok(Json(updated))
}

/// Deletes a trigger and its pending deliveries.
#[utoipa::path(delete, path = "/v1/apps/{app}/triggers/{trigger_id}", tag = "triggers",
    params(("app" = String, Path, description = "app id"),
           ("trigger_id" = String, Path, description = "trigger id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_trigger(
    State(state): State<ManagerState>,
    ApiPath((app, trigger)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.db.get_app(&app).await?;
    state.db.delete_trigger(&app, &trigger).await?;
    tracing::info!(app, trigger_id = %trigger, "trigger deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Reveals a trigger's current signing secret.
#[utoipa::path(get, path = "/v1/apps/{app}/triggers/{trigger_id}/secret", tag = "triggers",
    params(("app" = String, Path, description = "app id"),
           ("trigger_id" = String, Path, description = "trigger id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 200, body = TriggerSecret), (status = 404, body = ErrorBody)))]
pub async fn reveal_trigger_secret(
    State(state): State<ManagerState>,
    ApiPath((app, trigger)): ApiPath<(String, String)>,
) -> Result<Json<TriggerSecret>, ApiError> {
    state.db.get_app(&app).await?;
    let secret = state.db.trigger_secret(&app, &trigger).await?;
    Ok(Json(TriggerSecret { secret }))
}

/// Replaces a trigger's signing secret. The old one keeps signing alongside it for 24 hours.
#[utoipa::path(post, path = "/v1/apps/{app}/triggers/{trigger_id}/secret/rotate", tag = "triggers",
    params(("app" = String, Path, description = "app id"),
           ("trigger_id" = String, Path, description = "trigger id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 200, body = RotatedSecret), (status = 404, body = ErrorBody)))]
pub async fn rotate_trigger_secret(
    State(state): State<ManagerState>,
    ApiPath((app, trigger)): ApiPath<(String, String)>,
) -> Result<Json<RotatedSecret>, ApiError> {
    state.db.get_app(&app).await?;
    let rotated = state.db.rotate_trigger_secret(&app, &trigger).await?;
    tracing::info!(app, trigger_id = %trigger, "trigger secret rotated");
    Ok(Json(rotated))
}
