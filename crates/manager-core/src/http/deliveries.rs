//! `/v1/apps/{app}/deliveries` and `/v1/apps/{app}/dead-letters`: what the dispatcher did,
//! and putting failed work back on its way.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use picloud_shared::access::Principal;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{ApiJson, ApiPath, ApiQuery};
use picloud_shared::{ApiError, AppId, Scope};
use serde::{Deserialize, Serialize};

use super::ManagerState;
use crate::deliveries::{Attempt, DeadLetter, Delivery, DeliveryFilter};
use crate::error::Error;
use crate::event_log::LoggedEvent;
use crate::publish::PublishRequest;
use crate::sources::OutboxRow;

/// Query of a delivery list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// `pending`, `delivered`, `failed` or `dead`.
    pub state: Option<String>,
    /// Only this trigger's deliveries.
    pub trigger: Option<String>,
    /// Only ids below this: the last id of the previous page.
    pub before: Option<i64>,
    /// Page size (default 50, at most 500).
    pub limit: Option<i64>,
}

/// Query of a dead-letter list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// Only this trigger's dead letters.
    pub trigger: Option<String>,
    /// Only ids below this: the last id of the previous page.
    pub before: Option<i64>,
    /// Page size (default 50, at most 500).
    pub limit: Option<i64>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    /// The deliveries.
    pub deliveries: Vec<Delivery>,
}

/// A delivery and its attempt timeline: the delivery's fields, with `attempts` the list
/// of attempts instead of their count (one key, not both).
#[derive(Debug)]
pub struct DeliveryDetail {
    /// The delivery.
    pub delivery: Delivery,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

impl Serialize for DeliveryDetail {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = match serde_json::to_value(&self.delivery) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => {
                return Err(serde::ser::Error::custom(
                    "a delivery serializes to an object",
                ))
            }
        };
        let attempts = serde_json::to_value(&self.attempts).map_err(serde::ser::Error::custom)?;
        fields.insert("attempts".to_owned(), attempts);
        fields.serialize(serializer)
    }
}

impl utoipa::PartialSchema for DeliveryDetail {
    /// [`Delivery`]'s schema with `attempts` the list of [`Attempt`]s.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, Schema};
        use utoipa::openapi::{Ref, RefOr};
        use utoipa::ToSchema;
        let mut schema = match Delivery::schema() {
            RefOr::T(Schema::Object(object)) => object,
            other => return other,
        };
        schema.description = Some("A delivery and its attempts, oldest first.".into());
        let attempts = ArrayBuilder::new()
            .items(Ref::from_schema_name(Attempt::name()))
            .description(Some("Its attempts, oldest first."))
            .build();
        schema
            .properties
            .insert("attempts".into(), RefOr::T(Schema::Array(attempts)));
        RefOr::T(Schema::Object(schema))
    }
}

impl utoipa::ToSchema for DeliveryDetail {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((Attempt::name().into(), Attempt::schema()));
        schemas.push((Delivery::name().into(), Delivery::schema()));
    }
}

/// A page of dead letters, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterList {
    /// The dead letters.
    pub dead_letters: Vec<DeadLetter>,
}

/// A dead letter and its event (if still retained).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterDetail {
    /// The dead letter.
    #[serde(flatten)]
    pub dead_letter: DeadLetter,
    /// The event it failed to deliver.
    pub event: Option<LoggedEvent>,
}

/// Body of a bulk replay.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// These dead letters; or, if absent, every dead letter not replayed yet.
    pub ids: Option<Vec<i64>>,
    /// Pace: new deliveries per second (default 10, at most 1000).
    pub per_second: Option<u32>,
}

/// How many were replayed or purged.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Count {
    /// The number.
    pub count: u64,
}

/// Whether the caller sees delivery details (error texts, response excerpts): only with
/// `deliveries:manage`; `app:read` sees statuses and error classes.
fn sees_details(principal: Option<&Principal>) -> bool {
    principal.is_some_and(|p| p.superuser || p.scopes.grants(Scope::DeliveriesManage))
}

/// Fastest pace of a bulk replay, deliveries per second.
pub const MAX_REPLAY_PER_SECOND: u32 = 1000;

/// Most dead letters one bulk replay takes.
pub const MAX_REPLAY: usize = 10_000;

/// Lists deliveries, newest first.
///
/// A finished delivery stays listed, with its attempts, for the server's delivery
/// history after it finished (`--delivery-history-days`, 30 days by default); pending
/// deliveries and dead letters are never pruned.
#[utoipa::path(get, path = "/v1/apps/{app}/deliveries", tag = "deliveries",
    params(("app" = String, Path, description = "app id"), DeliveryQuery),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<ManagerState>,
    principal: Option<Extension<Principal>>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    state.db.get_app(&app).await?;
    let filter = DeliveryFilter {
        state: query.state,
        trigger: query.trigger,
        before: query.before,
        limit: query.limit.unwrap_or(50),
    };
    let mut deliveries = state.db.list_deliveries(&app, &filter).await?;
    if !sees_details(principal.as_deref()) {
        deliveries.iter_mut().for_each(Delivery::redact);
    }
    Ok(Json(DeliveryList { deliveries }))
}

/// One delivery with its attempts.
#[utoipa::path(get, path = "/v1/apps/{app}/deliveries/{delivery_id}", tag = "deliveries",
    params(("app" = String, Path, description = "app id"), ("delivery_id" = i64, Path, description = "delivery id")),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = DeliveryDetail), (status = 404, body = ErrorBody)))]
pub async fn get_delivery(
    State(state): State<ManagerState>,
    principal: Option<Extension<Principal>>,
    ApiPath((app, id)): ApiPath<(String, i64)>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    state.db.get_app(&app).await?;
    let (mut delivery, mut attempts) = state.db.get_delivery(&app, id).await?;
    if !sees_details(principal.as_deref()) {
        delivery.redact();
        attempts.iter_mut().for_each(Attempt::redact);
    }
    Ok(Json(DeliveryDetail { delivery, attempts }))
}

/// Sends a failed or dead delivery again, with a fresh attempt budget.
#[utoipa::path(post, path = "/v1/apps/{app}/deliveries/{delivery_id}/retry", tag = "deliveries",
    params(("app" = String, Path, description = "app id"), ("delivery_id" = i64, Path, description = "delivery id")),
    security(("api_key" = ["deliveries:manage"])),
    responses((status = 200, body = Delivery), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retry_delivery(
    State(state): State<ManagerState>,
    ApiPath((app, id)): ApiPath<(String, i64)>,
) -> Result<Json<Delivery>, ApiError> {
    state.db.get_app(&app).await?;
    let delivery = state.db.retry_delivery(&app, id).await?;
    state.dispatch_wake.notify_one();
    Ok(Json(delivery))
}

/// Lists dead letters.
#[utoipa::path(get, path = "/v1/apps/{app}/dead-letters", tag = "dead letters",
    params(("app" = String, Path, description = "app id"), DeadLetterQuery),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = DeadLetterList)))]
pub async fn list_dead_letters(
    State(state): State<ManagerState>,
    principal: Option<Extension<Principal>>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeadLetterQuery>,
) -> Result<Json<DeadLetterList>, ApiError> {
    state.db.get_app(&app).await?;
    let mut dead_letters = state
        .db
        .list_dead_letters(
            &app,
            query.trigger.as_deref(),
            query.before,
            query.limit.unwrap_or(50),
        )
        .await?;
    if !sees_details(principal.as_deref()) {
        dead_letters.iter_mut().for_each(DeadLetter::redact);
    }
    Ok(Json(DeadLetterList { dead_letters }))
}

/// One dead letter with its event.
#[utoipa::path(get, path = "/v1/apps/{app}/dead-letters/{dead_letter_id}", tag = "dead letters",
    params(("app" = String, Path, description = "app id"), ("dead_letter_id" = i64, Path, description = "dead letter id")),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = DeadLetterDetail), (status = 404, body = ErrorBody)))]
pub async fn get_dead_letter(
    State(state): State<ManagerState>,
    principal: Option<Extension<Principal>>,
    ApiPath((app, id)): ApiPath<(String, i64)>,
) -> Result<Json<DeadLetterDetail>, ApiError> {
    state.db.get_app(&app).await?;
    let (mut dead_letter, event) = state.db.get_dead_letter(&app, id).await?;
    if !sees_details(principal.as_deref()) {
        dead_letter.redact();
    }
    Ok(Json(DeadLetterDetail { dead_letter, event }))
}

/// Replays one dead letter now.
#[utoipa::path(post, path = "/v1/apps/{app}/dead-letters/{dead_letter_id}/replay", tag = "dead letters",
    params(("app" = String, Path, description = "app id"), ("dead_letter_id" = i64, Path, description = "dead letter id")),
    security(("api_key" = ["deliveries:manage"])),
    responses((status = 200, body = Count), (status = 404, body = ErrorBody)))]
pub async fn replay_dead_letter(
    State(state): State<ManagerState>,
    ApiPath((app, id)): ApiPath<(String, i64)>,
) -> Result<Json<Count>, ApiError> {
    let app = state.db.get_app(&app).await?.id;
    let (dead_letter, _) = state.db.get_dead_letter(app.as_str(), id).await?;
    if dead_letter.payload.is_some() {
        let request = source_row_request(&state, &app, &dead_letter)?;
        republish_source_row(&state, &app, dead_letter.id, request).await?;
        return Ok(Json(Count { count: 1 }));
    }
    let count = state.db.replay_dead_letters(app.as_str(), &[id], 1).await?;
    if count == 0 {
        return Err(Error::DeadLetterNotFound(id.to_string()).into());
    }
    state.dispatch_wake.notify_one();
    Ok(Json(Count { count }))
}

/// The publish that replays a dead letter of an outbox source: its row again, under the
/// key it would have had, so a row replayed twice is still published once. A row that
/// still cannot be published (say, an invalid topic name) is a 400 saying why.
fn source_row_request(
    state: &ManagerState,
    app: &AppId,
    dead_letter: &DeadLetter,
) -> Result<PublishRequest, ApiError> {
    let payload = dead_letter.payload.as_deref().unwrap_or_default();
    let row = OutboxRow::from_payload(dead_letter.outbox_id, payload)?;
    row.publish_request(&state.limits, app, &dead_letter.trigger_id)
        .map_err(|why| {
            ApiError::invalid(format!(
                "dead letter {}: the row still cannot be published: {why}",
                dead_letter.id
            ))
        })
}

/// Publishes a source's row again ([`source_row_request`]) and marks its dead letter
/// replayed.
async fn republish_source_row(
    state: &ManagerState,
    app: &AppId,
    dead_letter: i64,
    request: PublishRequest,
) -> Result<(), ApiError> {
    state.publisher.publish(request).await?;
    state
        .db
        .mark_dead_letter_replayed(app.as_str(), dead_letter)
        .await?;
    Ok(())
}

/// Replays a selection of dead letters (or every one not replayed yet), paced. A
/// selection may hold an outbox source's dead letters: their rows are published again
/// (at once, not paced), and if one still cannot be published the request is a 400 and
/// nothing is replayed. Without a selection, only deliveries are replayed: a source's
/// refused rows usually need fixing first, so replay those by id.
#[utoipa::path(post, path = "/v1/apps/{app}/dead-letters/replay", tag = "dead letters",
    request_body = ReplayBody,
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["deliveries:manage"])),
    responses((status = 200, body = Count), (status = 400, body = ErrorBody)))]
pub async fn replay_dead_letters(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<Json<Count>, ApiError> {
    let app = state.db.get_app(&app).await?.id;
    let per_second = body.per_second.unwrap_or(10);
    if !(1..=MAX_REPLAY_PER_SECOND).contains(&per_second) {
        return Err(
            Error::Invalid(format!("per_second must be 1 to {MAX_REPLAY_PER_SECOND}")).into(),
        );
    }
    let (ids, source_rows) = match body.ids {
        Some(ids) if ids.len() > MAX_REPLAY => {
            return Err(
                Error::TooLarge(format!("at most {MAX_REPLAY} dead letters per replay")).into(),
            )
        }
        Some(ids) => {
            // Every selected source row is checked before anything is replayed.
            let source_rows = state
                .db
                .source_dead_letters(app.as_str(), &ids)
                .await?
                .iter()
                .map(|dead_letter| {
                    Ok((
                        dead_letter.id,
                        source_row_request(&state, &app, dead_letter)?,
                    ))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            (ids, source_rows)
        }
        None => {
            let ids = state
                .db
                .unreplayed_dead_letter_ids(app.as_str(), MAX_REPLAY as i64)
                .await?;
            (ids, Vec::new())
        }
    };
    let mut count = state
        .db
        .replay_dead_letters(app.as_str(), &ids, per_second)
        .await?;
    state.dispatch_wake.notify_one();
    for (dead_letter, request) in source_rows {
        republish_source_row(&state, &app, dead_letter, request).await?;
        count += 1;
    }
    Ok(Json(Count { count }))
}

/// Purges one dead letter.
#[utoipa::path(delete, path = "/v1/apps/{app}/dead-letters/{dead_letter_id}", tag = "dead letters",
    params(("app" = String, Path, description = "app id"), ("dead_letter_id" = i64, Path, description = "dead letter id")),
    security(("api_key" = ["deliveries:manage"])),
    responses((status = 204, description = "purged"), (status = 404, body = ErrorBody)))]
pub async fn purge_dead_letter(
    State(state): State<ManagerState>,
    ApiPath((app, id)): ApiPath<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    state.db.get_app(&app).await?;
    state.db.purge_dead_letters(&app, Some(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Purges every dead letter of the app.
#[utoipa::path(delete, path = "/v1/apps/{app}/dead-letters", tag = "dead letters",
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["deliveries:manage"])),
    responses((status = 200, body = Count)))]
pub async fn purge_dead_letters(
    State(state): State<ManagerState>,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<Count>, ApiError> {
    state.db.get_app(&app).await?;
    let count = state.db.purge_dead_letters(&app, None).await?;
    Ok(Json(Count { count }))
}
