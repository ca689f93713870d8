//! The realtime HTTP routes: the SSE endpoint, minting subscriber tokens and rotating
//! their signing keys. Access to the last two is checked by the route table like every
//! API-key route; the SSE endpoint judges subscriber tokens here, against each topic's
//! auth mode, except for a signed-in dashboard admin (a superuser principal), who may
//! watch any existing topic.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use picloud_shared::access::Principal;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::{bearer_token, session_cookie, ApiJson, ApiPath, ApiQuery};
use picloud_shared::realtime::{RealtimeStore, TopicAccess};
use picloud_shared::{ApiError, AppId, TopicName};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::broadcaster::Broadcaster;
use crate::connection_limits::ConnectionLimits;
use crate::error::{Error, Result};
use crate::stream::{StreamRequest, StreamTiming, Subscription};
use crate::token_authority::MintedToken;
use crate::token_authority::TokenAuthority;

/// Most topics one subscriber token may list.
pub const MAX_TOKEN_TOPICS: usize = 100;

/// Longest `sub` claim accepted.
const MAX_SUB_LEN: usize = 200;

/// Longest rotation grace accepted: 30 days.
pub const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

/// What the realtime handlers share.
#[derive(Clone)]
pub struct RealtimeState {
    /// Topics, the log and signing keys.
    pub store: Arc<dyn RealtimeStore>,
    /// This process's live channels.
    pub broadcaster: Arc<Broadcaster>,
    /// Mints and verifies subscriber tokens.
    pub tokens: Arc<TokenAuthority>,
    /// Open-stream limits.
    pub limits: ConnectionLimits,
    /// Heartbeat and token-notice timing.
    pub timing: StreamTiming,
    /// Most topics per stream.
    pub max_topics: usize,
    /// The runtime direct streams run on (see [`crate::stream_runtime`]).
    pub streams: Arc<crate::stream_runtime::StreamRuntime>,
}

/// The realtime routes with their OpenAPI descriptions.
pub fn router(state: RealtimeState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(subscribe))
        .routes(routes!(create_subscriber_token))
        .routes(routes!(rotate_keys))
        .routes(routes!(live_subscribers))
        .with_state(state)
}

/// Subscribes to topics as a Server-Sent-Events stream (see docs/realtime-protocol.md).
#[utoipa::path(get, path = "/v1/apps/{app}/realtime", tag = "realtime",
    params(
        ("app" = String, Path, description = "app id"),
        ("topic" = Vec<String>, Query, description = "a topic to subscribe to; repeat for several"),
        ("token" = Option<String>, Query, description = "subscriber token, for clients that cannot set Authorization"),
        ("last_event_id" = Option<String>, Query, description = "resume cursor, for clients that cannot set Last-Event-ID"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume cursor"),
    ),
    security((), ("subscriber_token" = [])),
    responses(
        (status = 200, description = "the event stream", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "a topic does not exist or is not external", body = ErrorBody),
        (status = 429, description = "the app's or the token subject's stream limit", body = ErrorBody),
        (status = 503, description = "the server's stream limit", body = ErrorBody)))]
pub async fn subscribe(
    State(rt): State<RealtimeState>,
    ApiPath(app): ApiPath<String>,
    RawQuery(query): RawQuery,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> Result<Response> {
    // A signed-in dashboard admin (the auth layer's superuser) watches any existing
    // topic, external or not, without a subscriber token.
    let superuser = principal.is_some_and(|Extension(p)| p.superuser);
    let mut subscription = start(
        &rt,
        &app,
        query.as_deref().unwrap_or(""),
        &headers,
        superuser,
    )
    .await?;
    // A superuser here is a dashboard session (API keys are not taken on this route):
    // the stream ends when the session does.
    if let Some(secret) = session_cookie(&headers).filter(|_| superuser) {
        subscription.end_with_session(secret.to_owned(), rt.timing.session_check);
    }
    let mut response = Body::from_stream(subscription.into_stream()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Starts a subscription from the request's path app, query and headers: everything
/// the SSE endpoint does before the first byte of the stream. Shared by the routed
/// handler and [`crate::direct_sse`].
pub(crate) async fn start(
    rt: &RealtimeState,
    app: &str,
    query: &str,
    headers: &HeaderMap,
    superuser: bool,
) -> Result<Subscription> {
    let params = SubscribeParams::parse(query, rt.max_topics)?;
    let app = AppId::parse(app).map_err(|_| Error::NotSubscribable)?;
    // Listen before reading the heads, so nothing committed in between is missed.
    let receivers = params
        .topics
        .iter()
        .map(|t| rt.broadcaster.subscribe(&app, t))
        .collect();
    let topics = params.topics.clone();
    let opened = open_stream(rt, app.clone(), params, receivers, headers, superuser).await;
    if opened.is_err() {
        rt.broadcaster.release(&app, &topics);
    }
    opened
}

/// Checks the topics and the token, takes a connection slot and opens the stream.
async fn open_stream(
    rt: &RealtimeState,
    app: AppId,
    params: SubscribeParams,
    receivers: Vec<tokio::sync::broadcast::Receiver<crate::sse::Frame>>,
    headers: &HeaderMap,
    superuser: bool,
) -> Result<Subscription> {
    let access = subscribable(rt.store.as_ref(), &app, &params.topics, superuser).await?;

    let (token_expires_at, subject) = if access.iter().any(|a| a.requires_token) {
        let token = bearer_token(headers)
            .or(params.token.as_deref())
            .ok_or(Error::Unauthorized)?;
        let claims = rt.tokens.verify(&app, token).await?;
        let covered = params
            .topics
            .iter()
            .zip(&access)
            .filter(|(_, a)| a.requires_token)
            .all(|(t, _)| claims.topics.iter().any(|c| c == t.as_str()));
        if !covered {
            tracing::debug!(app = %app, "subscriber token does not cover the topics");
            return Err(Error::Unauthorized);
        }
        (Some(claims.exp.saturating_mul(1000)), claims.sub)
    } else {
        (None, None)
    };

    let slot = rt.limits.acquire(&app, subject.as_deref())?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(params.last_event_id);
    Subscription::open(
        StreamRequest {
            app,
            topics: params.topics.into_iter().zip(access).collect(),
            receivers,
            last_event_id,
            token_expires_at,
            slot,
        },
        rt.store.clone(),
        &rt.timing,
    )
    .await
}

/// The SSE endpoint's query: repeated `topic`, and `token` / `last_event_id` for
/// clients that cannot set headers. Other parameters are ignored.
struct SubscribeParams {
    topics: Vec<TopicName>,
    token: Option<String>,
    last_event_id: Option<String>,
}

impl SubscribeParams {
    fn parse(query: &str, max_topics: usize) -> Result<SubscribeParams> {
        let mut topics = Vec::new();
        let mut token = None;
        let mut last_event_id = None;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "topic" => topics.push(
                    TopicName::parse(&value)
                        .map_err(|e| Error::Invalid(format!("topic '{value}': {}", e.0)))?,
                ),
                "token" => token = Some(value.into_owned()),
                "last_event_id" => last_event_id = Some(value.into_owned()),
                _ => {}
            }
        }
        topics.sort();
        topics.dedup();
        if topics.is_empty() {
            return Err(Error::Invalid(
                "name at least one topic: ?topic=NAME (repeat for several)".into(),
            ));
        }
        if topics.len() > max_topics {
            return Err(Error::Invalid(format!(
                "{} topics asked; a stream may have at most {max_topics}",
                topics.len()
            )));
        }
        Ok(SubscribeParams {
            topics,
            token,
            last_event_id,
        })
    }
}

/// The access facts of each topic, or the one 404 if any does not exist or is not
/// external. A superuser (a signed-in dashboard admin) may watch any existing topic,
/// internal ones too, and needs no token.
async fn subscribable(
    store: &dyn RealtimeStore,
    app: &AppId,
    topics: &[TopicName],
    superuser: bool,
) -> Result<Vec<TopicAccess>> {
    store
        .topic_access(app, topics)
        .await?
        .into_iter()
        .map(|a| match a {
            Some(a) if superuser => Ok(TopicAccess {
                requires_token: false,
                ..a
            }),
            Some(a) if a.external_subscribable => Ok(a),
            _ => Err(Error::NotSubscribable),
        })
        .collect()
}

/// Body of `POST /v1/apps/{app}/subscriber-tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The topics the token lets its holder subscribe to: registered and external.
    pub topics: Vec<String>,
    /// Lifetime in seconds, clamped to the server's range (default 1 h).
    pub ttl_secs: Option<u64>,
    /// An opaque subject (a user id, say), carried in the token.
    pub sub: Option<String>,
}

/// A minted subscriber token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The compact JWS (HS256) to hand to a browser.
    pub token: String,
    /// Expiry, ms since the epoch.
    pub expires_at: i64,
}

/// Mints a subscriber token for `topics` of `app` with the API's rules: 1 to 32 topic
/// names, each registered and external; `sub` at most 256 characters; `ttl` clamped to
/// the configured range. The route and scripts' `pubsub::subscriber_token` both mint here.
pub async fn mint_subscriber_token(
    rt: &RealtimeState,
    app: &AppId,
    topics: &[String],
    ttl: Option<Duration>,
    sub: Option<String>,
) -> Result<MintedToken, ApiError> {
    if topics.is_empty() || topics.len() > MAX_TOKEN_TOPICS {
        return Err(ApiError::invalid(format!(
            "topics must list 1 to {MAX_TOKEN_TOPICS} topics"
        )));
    }
    if sub
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_SUB_LEN)
    {
        return Err(ApiError::invalid(format!(
            "sub must be at most {MAX_SUB_LEN} characters"
        )));
    }
    let mut topics = topics
        .iter()
        .map(|t| {
            TopicName::parse(t).map_err(|e| ApiError::invalid(format!("topic '{t}': {}", e.0)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    topics.sort();
    topics.dedup();
    let external = rt.broadcaster.external_topics();
    if !external.all_external(app, &topics) {
        let generation = external.generation();
        let access = rt
            .store
            .topic_access(app, &topics)
            .await
            .map_err(Error::Store)?;
        if let Some((topic, _)) = topics
            .iter()
            .zip(&access)
            .find(|(_, a)| !a.is_some_and(|a| a.external_subscribable))
        {
            return Err(ApiError::invalid(format!(
                "topic '{topic}' is not registered as external_subscribable"
            )));
        }
        external.remember(generation, app, &topics);
    }
    Ok(rt.tokens.mint(app, &topics, ttl, sub).await?)
}

/// Mints a subscriber token (`pubsub::subscriber_token`) for the app's browsers.
#[utoipa::path(post, path = "/v1/apps/{app}/subscriber-tokens", tag = "realtime",
    request_body = TokenRequest,
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["pubsub:token"])),
    responses((status = 201, body = TokenResponse),
              (status = 400, description = "a topic is unregistered or not external", body = ErrorBody)))]
pub async fn create_subscriber_token(
    State(rt): State<RealtimeState>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    let app = AppId::parse(&app).map_err(|e| ApiError::invalid(e.0))?;
    let ttl = body.ttl_secs.map(Duration::from_secs);
    let minted = mint_subscriber_token(&rt, &app, &body.topics, ttl, body.sub).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token: minted.token,
            expires_at: minted.expires_at,
        }),
    ))
}

/// Query of the rotation route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RotateParams {
    /// How long tokens signed with the previous key stay valid, in seconds (default:
    /// the server's grace). 0 ends them at once.
    pub grace_secs: Option<u64>,
}

/// The result of a rotation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedKey {
    /// The new signing key's id.
    pub kid: String,
    /// Until when tokens signed with earlier keys verify, ms since the epoch.
    pub previous_valid_until: i64,
}

/// Rotates the app's subscriber-token signing key.
#[utoipa::path(post, path = "/v1/apps/{app}/realtime/keys/rotate", tag = "realtime",
    params(("app" = String, Path, description = "app id"), RotateParams),
    security(("api_key" = ["app:admin"])),
    responses((status = 200, body = RotatedKey), (status = 400, body = ErrorBody)))]
pub async fn rotate_keys(
    State(rt): State<RealtimeState>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(params): ApiQuery<RotateParams>,
) -> Result<Json<RotatedKey>, ApiError> {
    let app = AppId::parse(&app).map_err(|e| ApiError::invalid(e.0))?;
    if params.grace_secs.is_some_and(|g| g > MAX_GRACE_SECS) {
        return Err(ApiError::invalid(format!(
            "grace_secs must be at most {MAX_GRACE_SECS}"
        )));
    }
    let rotation = rt
        .tokens
        .rotate(&app, params.grace_secs.map(Duration::from_secs))
        .await?;
    Ok(Json(RotatedKey {
        kid: rotation.kid,
        previous_valid_until: rotation.previous_valid_until,
    }))
}

/// Live subscribers of an app on this node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveSubscribers {
    /// Open streams of the app.
    pub streams: usize,
    /// Per topic with at least one listener: how many streams listen to it.
    pub topics: Vec<TopicSubscribers>,
}

/// One topic's live subscriber count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopicSubscribers {
    /// The topic.
    pub topic: String,
    /// Streams listening to it.
    pub subscribers: usize,
}

/// Who is listening now, on this node (each node of a cluster counts its own).
#[utoipa::path(get, path = "/v1/apps/{app}/realtime/subscribers", tag = "realtime",
    params(("app" = String, Path, description = "app id")),
    security(("api_key" = ["app:read"])),
    responses((status = 200, body = LiveSubscribers)))]
pub async fn live_subscribers(
    State(rt): State<RealtimeState>,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<LiveSubscribers>, ApiError> {
    let app = AppId::parse(&app).map_err(|e| ApiError::invalid(e.0))?;
    let topics = rt
        .broadcaster
        .subscriber_counts(&app)
        .into_iter()
        .map(|(topic, subscribers)| TopicSubscribers {
            topic: topic.to_string(),
            subscribers,
        })
        .collect();
    Ok(Json(LiveSubscribers {
        streams: rt.limits.open_streams(&app),
        topics,
    }))
}
