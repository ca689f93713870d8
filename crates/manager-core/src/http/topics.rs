//! `/v1/apps/{app}/topics`: registering, listing, deleting topics and flipping whether
//! outsiders may subscribe.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath};
use picloud_shared::{ApiError, TopicName};
use serde::{Deserialize, Serialize};

use super::ManagerState;
use crate::error::Error;
use crate::topics::{AuthMode, NewTopic, Retention, Topic};

/// Body of `POST /v1/apps/{app}/topics`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    /// 1-200 characters of letters, digits and `. _ - : /`.
    pub name: TopicName,
    /// `token` (default) or `public`.
    pub auth_mode: Option<AuthMode>,
    /// Defaults to 100,000 events or 7 days.
    pub retention: Option<Retention>,
}

/// Body of `PATCH /v1/apps/{app}/topics/{topic}/external`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetExternal {
    /// Whether browsers may subscribe to the topic.
    pub external_subscribable: bool,
}

/// A list of topics.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopicList {
    /// The topics, by name.
    pub topics: Vec<Topic>,
}

/// Validates a topic name taken from the path.
pub(crate) fn topic_from_path(topic: &str) -> Result<TopicName, ApiError> {
    TopicName::parse(topic).map_err(|e| ApiError::from(Error::Invalid(e.0)))
}

/// Lists the app's topics.
#[utoipa::path(get, path = "/v1/apps/{app}/topics", tag = "topics",
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = TopicList), (status = 404, body = ErrorBody)))]
pub async fn list_topics(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<TopicList>, ApiError> {
    state.db.get_app(&app).await?;
    Ok(Json(TopicList {
        topics: state.db.list_topics(&app).await?,
    }))
}

/// Registers a topic (not external until flipped).
#[utoipa::path(post, path = "/v1/apps/{app}/topics", tag = "topics", request_body = CreateTopic,
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["app:admin"])),
    responses((status = 201, body = Topic), (status = 400, body = ErrorBody),
              (status = 409, description = "already registered", body = ErrorBody)))]
pub async fn create_topic(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<CreateTopic>,
) -> Result<(StatusCode, Json<Topic>), ApiError> {
    let topic = state
        .db
        .create_topic(
            &app,
            NewTopic {
                name: body.name,
                auth_mode: body.auth_mode.unwrap_or_default(),
                retention: body.retention.unwrap_or_default(),
            },
        )
        .await?;
    tracing::info!(app, topic = %topic.name, "topic created");
    Ok((StatusCode::CREATED, Json(topic)))
}

/// Gets one topic.
#[utoipa::path(get, path = "/v1/apps/{app}/topics/{topic}", tag = "topics",
    params(("app" = String, Path, description = "app id"), ("topic" = String, Path, description = "topic name, percent-encoded")),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = Topic), (status = 404, body = ErrorBody)))]
pub async fn get_topic(
    State(state): State<ManagerState>,
    ApiPath((app, topic)): ApiPath<(String, String)>,
) -> Result<Json<Topic>, ApiError> {
    let topic = topic_from_path(&topic)?;
    state.db.get_app(&app).await?;
    Ok(Json(state.db.get_topic(&app, topic.as_str()).await?))
}

/// Deletes a topic with its whole log and pending deliveries.
#[utoipa::path(delete, path = "/v1/apps/{app}/topics/{topic}", tag = "topics",
    params(("app" = String, Path, description = "app id"), ("topic" = String, Path, description = "topic name, percent-encoded")),
    security(("api_key" = ["app:admin"])),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_topic(
    State(state): State<ManagerState>,
    ApiPath((app, topic)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let topic = topic_from_path(&topic)?;
    state.db.get_app(&app).await?;
    state.db.delete_topic(&app, topic.as_str()).await?;
    state.close_streams(&app, Some(&topic));
    tracing::info!(app, %topic, "topic deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Flips whether browsers may subscribe to the topic.
#[utoipa::path(patch, path = "/v1/apps/{app}/topics/{topic}/external", tag = "topics",
    request_body = SetExternal,
    params(("app" = String, Path, description = "app id"), ("topic" = String, Path, description = "topic name, percent-encoded")),
    security(("api_key" = ["app:admin"])),
    responses((status = 200, body = Topic), (status = 404, body = ErrorBody)))]
pub async fn set_external(
    State(state): State<ManagerState>,
    ApiPath((app, topic)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetExternal>,
) -> Result<Json<Topic>, ApiError> {
    let topic = topic_from_path(&topic)?;
    state.db.get_app(&app).await?;
    let updated = state
        .db
        .set_topic_external(&app, topic.as_str(), body.external_subscribable)
        .await?;
    if !body.external_subscribable {
        state.close_streams(&app, Some(&topic));
    }
    tracing::info!(app, %topic, external = body.external_subscribable, "topic external flag changed");
    Ok(Json(updated))
}
