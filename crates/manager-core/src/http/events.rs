//! Publishing (`POST …/topics/{topic}/events`, `POST …/events` for batches) and reading
//! a topic's log (`GET …/topics/{topic}/events`).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath, ApiQuery};
use picloud_shared::{ApiError, AppId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::event_input::validate_idempotency_key;
use super::topics::topic_from_path;
use super::ManagerState;
use crate::error::Error;
use crate::event_log::LoggedEvent;
use crate::publish::{Publication, PublishRequest, PublishedEvent};

/// Body of a single publish.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// Event type; `message` if absent.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Any JSON value, nested at most 64 arrays/objects deep; stored and delivered
    /// exactly as sent.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
}

/// One event of a batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchEvent {
    /// The topic.
    pub topic: String,
    /// Event type; `message` if absent.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Any JSON value, nested at most 64 arrays/objects deep.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
}

/// Body of a batch publish: all events commit together or none does.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The events, in order; they may name different topics.
    pub events: Vec<BatchEvent>,
}

/// Answer to a batch publish.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchAnswer {
    /// One entry per event, in request order.
    pub events: Vec<PublishedEvent>,
}

/// Query of a log read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Return events with seq greater than this (default 0: from the oldest retained).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// A page of a topic's log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Events in seq order.
    pub events: Vec<LoggedEvent>,
    /// The topic's latest seq when read.
    pub last_seq: i64,
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| Error::Invalid("Idempotency-Key must be visible ASCII".into()))?;
            Ok(Some(validate_idempotency_key(text)?))
        }
    }
}

fn app_id(app: &str) -> Result<AppId, ApiError> {
    // A malformed id cannot name an existing app.
    AppId::parse(app).map_err(|_| picloud_shared::access::app_not_found(app))
}

fn created<T: Serialize>(publication: &Publication, body: T) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if publication.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Publishes one event. It is durable when this answers 201.
#[utoipa::path(post, path = "/v1/apps/{app}/topics/{topic}/events", tag = "events",
    request_body = PublishBody,
    params(("app" = String, Path, description = "app id"),
           ("topic" = String, Path, description = "topic name, percent-encoded"),
           ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first answer")),
    security(("api_key" = ["pubsub:publish"])),
    responses((status = 201, body = PublishedEvent), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn publish(
    State(state): State<ManagerState>,
    ApiPath((app, topic)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PublishBody>,
) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let topic = topic_from_path(&topic)?;
    let event = state
        .limits
        .new_event(topic.as_str(), body.event_type, body.data)?;
    let publication = state
        .publisher
        .publish(PublishRequest {
            app,
            events: vec![event],
            idempotency_key: idempotency_key(&headers)?,
        })
        .await?;
    let first = publication
        .events
        .first()
        .cloned()
        .ok_or_else(ApiError::internal)?;
    Ok(created(&publication, first))
}

/// Publishes several events, of one or many topics, atomically.
#[utoipa::path(post, path = "/v1/apps/{app}/events", tag = "events", request_body = BatchBody,
    params(("app" = String, Path, description = "app id"),
           ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first answer")),
    security(("api_key" = ["pubsub:publish"])),
    responses((status = 201, body = BatchAnswer), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn publish_batch(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    state.limits.check_batch(body.events.len())?;
    let events = body
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            state
                .limits
                .new_event(&e.topic, e.event_type, e.data)
                .map_err(|error| match error {
                    Error::Invalid(message) => Error::Invalid(format!("events[{i}]: {message}")),
                    Error::TooLarge(message) => Error::TooLarge(format!("events[{i}]: {message}")),
                    other => other,
                })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let publication = state
        .publisher
        .publish(PublishRequest {
            app,
            events,
            idempotency_key: idempotency_key(&headers)?,
        })
        .await?;
    let answer = BatchAnswer {
        events: publication.events.clone(),
    };
    Ok(created(&publication, answer))
}

/// Reads a topic's log in seq order.
#[utoipa::path(get, path = "/v1/apps/{app}/topics/{topic}/events", tag = "events",
    params(("app" = String, Path, description = "app id"),
           ("topic" = String, Path, description = "topic name, percent-encoded"), ReadQuery),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = EventPage), (status = 404, body = ErrorBody)))]
pub async fn read_events(
    State(state): State<ManagerState>,
    ApiPath((app, topic)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let topic = topic_from_path(&topic)?;
    state.db.get_app(&app).await?;
    let head = state.db.get_topic(&app, topic.as_str()).await?;
    let events = state
        .db
        .read_events(
            &app,
            topic.as_str(),
            query.after.unwrap_or(0),
            query.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(EventPage {
        events,
        last_seq: head.last_seq,
    }))
}
