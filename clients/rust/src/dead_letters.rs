//! Dead letters: deliveries whose attempts ran out; inspect, replay, purge.
//!
//! ```no_run
//! use picloud_client::dead_letters::{ListDeadLetters, ReplayBody};
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let letters = client.dead_letters().list(ListDeadLetters::default()).await?;
//! if let Some(first) = letters.dead_letters.first() {
//!     let detail = client.dead_letters().get(first.id).await?;
//!     println!("{} #{}: {:?}", detail.dead_letter.topic, detail.dead_letter.seq, detail.event);
//!     client.dead_letters().replay(first.id).await?;
//! }
//! let replayed = client.dead_letters().replay_many(ReplayBody { ids: None, per_second: Some(50) }).await?;
//! println!("{} replaying", replayed.count);
//! # Ok(())
//! # }
//! ```

use serde::{Deserialize, Serialize};

use crate::events::LoggedEvent;
use crate::http::{Call, Route};
use crate::{Client, Result};

const LIST: Route = Route::get("/v1/apps/{app}/dead-letters");
const PURGE_ALL: Route = Route::delete("/v1/apps/{app}/dead-letters");
const REPLAY_MANY: Route = Route::post("/v1/apps/{app}/dead-letters/replay");
const GET: Route = Route::get("/v1/apps/{app}/dead-letters/{dead_letter_id}");
const PURGE: Route = Route::delete("/v1/apps/{app}/dead-letters/{dead_letter_id}");
const REPLAY: Route = Route::post("/v1/apps/{app}/dead-letters/{dead_letter_id}/replay");

pub(crate) const ROUTES: &[Route] = &[LIST, PURGE_ALL, REPLAY_MANY, GET, PURGE, REPLAY];

/// A dead letter: a delivery whose attempts were exhausted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Id.
    pub id: i64,
    /// Its trigger (or, for an outbox source's row, the source).
    pub trigger_id: String,
    /// The outbox row that died.
    pub outbox_id: i64,
    /// The event's topic.
    pub topic: String,
    /// The event's seq.
    pub seq: i64,
    /// Attempts made.
    pub attempts: i64,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    /// For a row of an outbox source that could not be published: the row as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Dead-lettered at, ms.
    pub created_at: i64,
    /// Last replayed at, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_at: Option<i64>,
}

/// A dead letter and its event (if still retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetterDetail {
    /// The dead letter.
    #[serde(flatten)]
    pub dead_letter: DeadLetter,
    /// The event it failed to deliver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<LoggedEvent>,
}

/// A page of dead letters, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetterList {
    /// The dead letters.
    pub dead_letters: Vec<DeadLetter>,
}

/// How many were replayed or purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Count {
    /// The number.
    pub count: u64,
}

/// Body of a bulk replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayBody {
    /// These dead letters; or, if `None`, every dead letter not replayed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<i64>>,
    /// Pace: new deliveries per second (default 10, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListDeadLetters {
    /// Only this trigger's.
    pub trigger: Option<String>,
    /// Only ids below this: the last id of the previous page.
    pub before: Option<i64>,
    /// Page size (default 50, at most 500).
    pub limit: Option<i64>,
}

/// Dead letters; from [`Client::dead_letters`].
#[derive(Debug, Clone, Copy)]
pub struct DeadLetters<'a> {
    client: &'a Client,
}

impl Client {
    /// Dead letters of the client's app.
    pub fn dead_letters(&self) -> DeadLetters<'_> {
        DeadLetters { client: self }
    }
}

impl DeadLetters<'_> {
    /// Lists dead letters, newest first (`GET /v1/apps/{app}/dead-letters`).
    pub async fn list(&self, filter: ListDeadLetters) -> Result<DeadLetterList> {
        let app = self.client.app()?;
        let call = Call::new(&LIST, &[app])
            .query("trigger", filter.trigger)
            .query("before", filter.before)
            .query("limit", filter.limit);
        self.client.json(call).await
    }

    /// One dead letter with its event (`GET /v1/apps/{app}/dead-letters/{dead_letter_id}`).
    pub async fn get(&self, id: i64) -> Result<DeadLetterDetail> {
        let app = self.client.app()?;
        let id = id.to_string();
        self.client.json(Call::new(&GET, &[app, &id])).await
    }

    /// Replays one dead letter now
    /// (`POST /v1/apps/{app}/dead-letters/{dead_letter_id}/replay`).
    pub async fn replay(&self, id: i64) -> Result<Count> {
        let app = self.client.app()?;
        let id = id.to_string();
        self.client.json(Call::new(&REPLAY, &[app, &id])).await
    }

    /// Replays a selection of dead letters, or every one not replayed yet, paced
    /// (`POST /v1/apps/{app}/dead-letters/replay`).
    pub async fn replay_many(&self, selection: ReplayBody) -> Result<Count> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&REPLAY_MANY, &[app]).json(&selection)?)
            .await
    }

    /// Purges one dead letter (`DELETE /v1/apps/{app}/dead-letters/{dead_letter_id}`).
    pub async fn purge(&self, id: i64) -> Result<()> {
        let app = self.client.app()?;
        let id = id.to_string();
        self.client.empty(Call::new(&PURGE, &[app, &id])).await
    }

    /// Purges every dead letter of the app (`DELETE /v1/apps/{app}/dead-letters`).
    pub async fn purge_all(&self) -> Result<Count> {
        let app = self.client.app()?;
        self.client.json(Call::new(&PURGE_ALL, &[app])).await
    }
}
