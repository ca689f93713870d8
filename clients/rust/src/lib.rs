//! The Rust server SDK of [PiCloud](https://example.invalid/picloud), a self-hosted
//! realtime pub/sub server: publish events, manage topics, triggers, scripts and keys,
//! consume realtime streams with resumable cursors, and verify webhook deliveries.
//!
//! Async on tokio and reqwest (rustls). One [`Client`] holds one connection pool; clone
//! it freely.
//!
//! ```no_run
//! use picloud_client::{pubsub::Event, Client};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), picloud_client::Error> {
//! let client = Client::builder()
//!     .base_url("http://127.0.0.1:8080")
//!     .app("shop")
//!     .api_key("pk_...")
//!     .build()?;
//! let published = client
//!     .pubsub()
//!     .publish("orders", Event::new(json!({"id": 42})).event_type("order.created"))
//!     .await?;
//! println!("orders #{} is {}", published.seq, published.id);
//! # Ok(())
//! # }
//! ```
//!
//! Modules by route group: [`pubsub`] (publish, batches, subscriber tokens), [`events`]
//! (read a topic's log), [`topics`], [`triggers`], [`deliveries`], [`dead_letters`],
//! [`keys`], [`functions`], [`scripts`], [`sources`], [`apps`], [`realtime`] (a
//! resumable stream consumer), [`admin`] (dashboard sessions, stats), [`system`]
//! (health, metrics, the API document); [`webhooks`] verifies deliveries; [`error`]
//! holds the one [`Error`] type.
//!
//! Failed requests are retried with jittered exponential backoff on connection errors,
//! `429` (honouring `Retry-After`) and `5xx` where a retry cannot do anything twice:
//! reads and idempotent writes (`GET`, `PUT`, `PATCH`, `DELETE`), and publishes, which
//! always carry an idempotency key (one is generated when the caller gives none). Other
//! `POST`s are retried only when the server cannot have acted on them (no connection was
//! made, or it answered `429` or `503`).

#![warn(missing_docs)]

#[macro_use]
mod macros;

pub mod admin;
pub mod apps;
mod client;
pub mod dead_letters;
pub mod deliveries;
pub mod error;
pub mod events;
pub mod functions;
mod http;
pub mod keys;
pub mod pubsub;
pub mod realtime;
pub mod scripts;
pub mod sources;
mod sse;
pub mod system;
pub mod topics;
pub mod triggers;
pub mod webhooks;

pub use client::{Client, ClientBuilder, USER_AGENT};
pub use error::{ApiError, Error, ErrorCode, Result};
#[doc(hidden)]
pub use http::Route;

use serde::de::DeserializeOwned;

use crate::http::{Answer, Call};

/// Every route of the API this crate calls, as `(method, path template)`: the test
/// against `docs/openapi.json` checks it is exactly the document's set.
#[doc(hidden)]
pub fn routes() -> Vec<Route> {
    [
        admin::ROUTES,
        apps::ROUTES,
        dead_letters::ROUTES,
        deliveries::ROUTES,
        events::ROUTES,
        functions::ROUTES,
        keys::ROUTES,
        pubsub::ROUTES,
        realtime::ROUTES,
        scripts::ROUTES,
        sources::ROUTES,
        system::ROUTES,
        topics::ROUTES,
        triggers::ROUTES,
    ]
    .concat()
}

impl Client {
    /// Sends `call` and decodes its JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        self.inner.send(call).await?.json()
    }

    /// Sends `call` and ignores its (empty) answer.
    pub(crate) async fn empty(&self, call: Call<'_>) -> Result<()> {
        self.inner.send(call).await.map(drop)
    }

    /// Sends `call` and returns its raw answer.
    pub(crate) async fn raw(&self, call: Call<'_>) -> Result<Answer> {
        self.inner.send(call).await
    }
}
