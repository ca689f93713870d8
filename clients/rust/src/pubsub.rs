//! Publishing events and minting subscriber tokens.
//!
//! A publish is durable when it returns. Every publish carries an `Idempotency-Key`
//! (yours, or a fresh UUID when you give none), so the SDK's retries after a dropped
//! connection or a `5xx` never publish an event twice: the server answers a retry with
//! the first answer.
//!
//! ```no_run
//! use std::time::Duration;
//! use picloud_client::pubsub::{BatchEvent, Event};
//! use serde_json::json;
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let pubsub = client.pubsub();
//! let one = pubsub
//!     .publish(
//!         "orders",
//!         Event::new(json!({"id": 42}))
//!             .event_type("order.created")
//!             .idempotency_key("order-42-created"),
//!     )
//!     .await?;
//! let batch = pubsub
//!     .publish_batch(vec![
//!         BatchEvent::new("orders", json!({"id": 43})),
//!         BatchEvent::new("audit", json!("order 43")).event_type("note"),
//!     ])
//!     .await?;
//! let token = pubsub.subscriber_token(["orders"], Some(Duration::from_secs(600)), Some("user-42")).await?;
//! println!("seq {} and {} more; token until {}", one.seq, batch.events.len(), token.expires_at);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use reqwest::header::HeaderName;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{Call, Retry, Route};
use crate::{Client, Error, Result};

const PUBLISH: Route = Route::post("/v1/apps/{app}/topics/{topic}/events");
const PUBLISH_BATCH: Route = Route::post("/v1/apps/{app}/events");
const SUBSCRIBER_TOKEN: Route = Route::post("/v1/apps/{app}/subscriber-tokens");

pub(crate) const ROUTES: &[Route] = &[PUBLISH, PUBLISH_BATCH, SUBSCRIBER_TOKEN];

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Body of a single publish (`PublishBody` in the API document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishBody {
    /// Any JSON value, nested at most 64 arrays/objects deep.
    pub data: Value,
    /// Event type; `message` if absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
}

/// One event to publish: its data, and optionally its type and idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What is published.
    pub body: PublishBody,
    /// The `Idempotency-Key`: a retry with the same key returns the first answer. One is
    /// generated when `None`.
    pub idempotency_key: Option<String>,
}

impl Event {
    /// An event of type `message` holding `data`.
    pub fn new(data: impl Into<Value>) -> Self {
        Event {
            body: PublishBody {
                data: data.into(),
                event_type: None,
            },
            idempotency_key: None,
        }
    }

    /// An event holding any serializable value.
    pub fn from_serialize<T: Serialize + ?Sized>(data: &T) -> Result<Self> {
        let data = serde_json::to_value(data)
            .map_err(|e| Error::config(format!("the event data cannot be serialized: {e}")))?;
        Ok(Event::new(data))
    }

    /// Sets the event type (1-64 of `A-Z a-z 0-9 . _ : -`).
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.body.event_type = Some(event_type.into());
        self
    }

    /// Sets the idempotency key (1-255 visible ASCII characters): publishing again with
    /// it, within 24 hours, returns the first answer instead of a new event.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl From<Value> for Event {
    fn from(data: Value) -> Self {
        Event::new(data)
    }
}

impl From<PublishBody> for Event {
    fn from(body: PublishBody) -> Self {
        Event {
            body,
            idempotency_key: None,
        }
    }
}

/// What a publish of one event answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PublishedEvent {
    /// The topic.
    pub topic: String,
    /// The event's seq in its topic.
    pub seq: i64,
    /// The event's id.
    pub id: String,
    /// Commit time, ms since the epoch.
    pub published_at: i64,
    /// Outbox rows created: one per enabled trigger matching the topic.
    pub deliveries: u32,
}

/// One event of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEvent {
    /// The topic.
    pub topic: String,
    /// Event type; `message` if absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Any JSON value.
    pub data: Value,
}

impl BatchEvent {
    /// An event of type `message` on `topic`.
    pub fn new(topic: impl Into<String>, data: impl Into<Value>) -> Self {
        BatchEvent {
            topic: topic.into(),
            event_type: None,
            data: data.into(),
        }
    }

    /// Sets the event type.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }
}

/// Body of a batch publish: all events commit together or none does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchBody {
    /// The events, in order; they may name different topics.
    pub events: Vec<BatchEvent>,
}

/// Answer to a batch publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchAnswer {
    /// One entry per event, in request order.
    pub events: Vec<PublishedEvent>,
}

/// Body of `POST /v1/apps/{app}/subscriber-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The topics the token lets its holder subscribe to: registered and external.
    pub topics: Vec<String>,
    /// Lifetime in seconds, clamped to the server's range (default 1 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// An opaque subject (a user id, say), carried in the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// A minted subscriber token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenResponse {
    /// The compact JWS (HS256) to hand to a browser or a [`crate::realtime`] consumer.
    pub token: String,
    /// Expiry, ms since the epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Publishing and tokens; from [`Client::pubsub`].
#[derive(Debug, Clone, Copy)]
pub struct PubSub<'a> {
    client: &'a Client,
}

impl Client {
    /// Publishing and subscriber tokens for the client's app.
    pub fn pubsub(&self) -> PubSub<'_> {
        PubSub { client: self }
    }
}

/// The key to send: the caller's, or a fresh one so that retries stay idempotent.
fn key_or_fresh(key: Option<String>) -> String {
    key.unwrap_or_else(|| format!("sdk-{}", uuid::Uuid::new_v4()))
}

impl PubSub<'_> {
    /// Publishes one event to `topic` (`POST /v1/apps/{app}/topics/{topic}/events`).
    pub async fn publish(&self, topic: &str, event: impl Into<Event>) -> Result<PublishedEvent> {
        let app = self.client.app()?;
        let event = event.into();
        let call = Call::new(&PUBLISH, &[app, topic])
            .json(&event.body)?
            .header(IDEMPOTENCY_KEY, key_or_fresh(event.idempotency_key))
            .retry(Retry::Idempotent);
        self.client.json(call).await
    }

    /// Publishes several events, of one or many topics, atomically
    /// (`POST /v1/apps/{app}/events`), under a generated idempotency key.
    pub async fn publish_batch(
        &self,
        events: impl IntoIterator<Item = BatchEvent>,
    ) -> Result<BatchAnswer> {
        self.publish_batch_with_key(events, None).await
    }

    /// Like [`PubSub::publish_batch`], with your idempotency key: publishing the same
    /// batch again with it returns the first answer.
    pub async fn publish_batch_with_key(
        &self,
        events: impl IntoIterator<Item = BatchEvent>,
        idempotency_key: Option<String>,
    ) -> Result<BatchAnswer> {
        let app = self.client.app()?;
        let body = BatchBody {
            events: events.into_iter().collect(),
        };
        let call = Call::new(&PUBLISH_BATCH, &[app])
            .json(&body)?
            .header(IDEMPOTENCY_KEY, key_or_fresh(idempotency_key))
            .retry(Retry::Idempotent);
        self.client.json(call).await
    }

    /// Mints a subscriber token for `topics` (`POST /v1/apps/{app}/subscriber-tokens`),
    /// like the scripts' `pubsub::subscriber_token(topics, ttl_secs, sub)`. The key needs
    /// `pubsub:token`; the topics must be registered and external. `ttl` is clamped to
    /// the server's range (10 s to 24 h by default; 1 h when `None`).
    pub async fn subscriber_token<I, S>(
        &self,
        topics: I,
        ttl: Option<Duration>,
        sub: Option<&str>,
    ) -> Result<TokenResponse>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let request = TokenRequest {
            topics: topics.into_iter().map(Into::into).collect(),
            ttl_secs: ttl.map(|ttl| ttl.as_secs()),
            sub: sub.map(str::to_owned),
        };
        self.subscriber_token_for(&request).await
    }

    /// Mints a subscriber token from a full [`TokenRequest`].
    pub async fn subscriber_token_for(&self, request: &TokenRequest) -> Result<TokenResponse> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&SUBSCRIBER_TOKEN, &[app]).json(request)?)
            .await
    }
}
