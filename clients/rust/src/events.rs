//! Reading a topic's event log.
//!
//! ```no_run
//! use picloud_client::events::ReadEvents;
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let mut after = 0;
//! loop {
//!     let page = client.events().read("orders", ReadEvents { after: Some(after), limit: Some(500) }).await?;
//!     for event in &page.events {
//!         println!("#{} {} {}", event.seq, event.event_type, event.data);
//!         after = event.seq;
//!     }
//!     if after >= page.last_seq || page.events.is_empty() {
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{Call, Route};
use crate::{Client, Result};

const READ: Route = Route::get("/v1/apps/{app}/topics/{topic}/events");

pub(crate) const ROUTES: &[Route] = &[READ];

/// An event as read back from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoggedEvent {
    /// The topic.
    pub topic: String,
    /// Position in the topic's log.
    pub seq: i64,
    /// Globally unique id.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The published `data`, exactly as sent.
    pub data: Value,
    /// Commit time, ms since the epoch.
    pub published_at: i64,
}

/// A page of a topic's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventPage {
    /// Events in seq order.
    pub events: Vec<LoggedEvent>,
    /// The topic's latest seq when read.
    pub last_seq: i64,
}

/// Which part of the log to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadEvents {
    /// Events with seq greater than this (default 0: from the oldest retained).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// The event log; from [`Client::events`].
#[derive(Debug, Clone, Copy)]
pub struct Events<'a> {
    client: &'a Client,
}

impl Client {
    /// The event logs of the client's app.
    pub fn events(&self) -> Events<'_> {
        Events { client: self }
    }
}

impl Events<'_> {
    /// Reads `topic`'s log in seq order (`GET /v1/apps/{app}/topics/{topic}/events`).
    pub async fn read(&self, topic: &str, page: ReadEvents) -> Result<EventPage> {
        let app = self.client.app()?;
        let call = Call::new(&READ, &[app, topic])
            .query("after", page.after)
            .query("limit", page.limit);
        self.client.json(call).await
    }
}
