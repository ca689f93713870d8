//! What the SDK needs from the rest of PiCloud, as a trait the server implements: the
//! executor does not know the control plane or the realtime layer.
//!
//! Host methods are called on an executor thread, outside the async runtime, and may
//! block until `deadline` (the run's time limit); an `Err` is thrown in the script with
//! its text.

use std::collections::BTreeMap;
use std::time::Instant;

use picloud_shared::AppId;

/// One event a script publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptEvent {
    /// The topic name.
    pub topic: String,
    /// The event type.
    pub event_type: String,
    /// The payload.
    pub data: serde_json::Value,
}

/// An outbound HTTP request from `http::request`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// An `http` or `https` URL.
    pub url: String,
    /// Request headers.
    pub headers: BTreeMap<String, String>,
    /// Request body.
    pub body: Option<String>,
}

/// The answer to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Response headers (the last value of a repeated header).
    pub headers: BTreeMap<String, String>,
    /// The body, as text (lossy UTF-8), bounded by the host.
    pub body: String,
}

/// The rest of PiCloud, as scripts of app `app` see it.
pub trait Host: Send + Sync + 'static {
    /// Publishes `events` to `app` in one transaction (log + outbox, broadcast after
    /// commit), as the HTTP API's batch publish with its `Idempotency-Key`; returns each
    /// event's seq.
    fn publish(
        &self,
        app: &AppId,
        events: Vec<ScriptEvent>,
        idempotency_key: Option<String>,
        deadline: Instant,
    ) -> Result<Vec<i64>, String>;

    /// Mints a subscriber token for `topics` of `app`, as the HTTP API does: unknown or
    /// non-external topics are an error, `ttl_secs` is clamped.
    fn subscriber_token(
        &self,
        app: &AppId,
        topics: Vec<String>,
        ttl_secs: Option<u64>,
        sub: Option<String>,
        deadline: Instant,
    ) -> Result<String, String>;

    /// Sends `request` through the server's guarded outbound client (the webhook address
    /// policy applies), waiting until `deadline` at most.
    fn http_request(&self, request: HttpRequest, deadline: Instant)
        -> Result<HttpResponse, String>;
}
