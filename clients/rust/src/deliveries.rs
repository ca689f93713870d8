//! Deliveries: events (or dead letters) on their way to triggers, and their attempts.
//!
//! ```no_run
//! use picloud_client::deliveries::{DeliveryState, ListDeliveries};
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let dead = client
//!     .deliveries()
//!     .list(ListDeliveries { state: Some(DeliveryState::Dead), ..ListDeliveries::default() })
//!     .await?;
//! for delivery in dead.deliveries {
//!     let detail = client.deliveries().get(delivery.id).await?;
//!     println!("{} failed {} times: {:?}", detail.id, detail.attempts.len(), detail.last_error);
//!     client.deliveries().retry(delivery.id).await?;
//! }
//! # Ok(())
//! # }
//! ```

use serde::{Deserialize, Serialize};

use crate::http::{Call, Route};
use crate::{Client, Result};

const LIST: Route = Route::get("/v1/apps/{app}/deliveries");
const GET: Route = Route::get("/v1/apps/{app}/deliveries/{delivery_id}");
const RETRY: Route = Route::post("/v1/apps/{app}/deliveries/{delivery_id}/retry");

pub(crate) const ROUTES: &[Route] = &[LIST, GET, RETRY];

crate::string_enum! {
    /// Where a delivery is.
    DeliveryState {
        /// Waiting for its next attempt, or in flight.
        Pending = "pending",
        /// Delivered.
        Delivered = "delivered",
        /// A dead-letter delivery that gave up.
        Failed = "failed",
        /// Out of attempts: dead-lettered.
        Dead = "dead",
    }
}

/// One delivery: an event (or a dead letter) on its way to one trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Delivery {
    /// Outbox id (the `webhook-id` is `msg_<id>`).
    pub id: i64,
    /// The trigger.
    pub trigger_id: String,
    /// The event's topic.
    pub topic: String,
    /// The event's seq.
    pub seq: i64,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made (including one in flight).
    pub attempts: i64,
    /// When the next attempt is due, ms.
    pub next_attempt_at: i64,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    /// Set when this delivers a dead letter to a `dead_letter` trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_id: Option<i64>,
    /// Created, ms.
    pub created_at: i64,
    /// Finished (delivered, failed or dead), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first attempt.
    pub attempt: i64,
    /// Start, ms.
    pub started_at: i64,
    /// Duration, ms.
    pub duration_ms: i64,
    /// HTTP status, if a response came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,
    /// What went wrong (only its class without `deliveries:manage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first KiB of the response body (with `deliveries:manage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// The response body's size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<i64>,
}

/// A delivery and its attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeliveryDetail {
    /// Outbox id (the `webhook-id` is `msg_<id>`).
    pub id: i64,
    /// The trigger.
    pub trigger_id: String,
    /// The event's topic.
    pub topic: String,
    /// The event's seq.
    pub seq: i64,
    /// Where it is.
    pub state: DeliveryState,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due, ms.
    pub next_attempt_at: i64,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    /// Set when this delivers a dead letter to a `dead_letter` trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_id: Option<i64>,
    /// Created, ms.
    pub created_at: i64,
    /// Finished (delivered, failed or dead), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeliveryList {
    /// The deliveries.
    pub deliveries: Vec<Delivery>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListDeliveries {
    /// Only those in this state.
    pub state: Option<DeliveryState>,
    /// Only this trigger's.
    pub trigger: Option<String>,
    /// Only ids below this: the last id of the previous page.
    pub before: Option<i64>,
    /// Page size (default 50, at most 500).
    pub limit: Option<i64>,
}

/// Deliveries; from [`Client::deliveries`].
#[derive(Debug, Clone, Copy)]
pub struct Deliveries<'a> {
    client: &'a Client,
}

impl Client {
    /// Deliveries of the client's app.
    pub fn deliveries(&self) -> Deliveries<'_> {
        Deliveries { client: self }
    }
}

impl Deliveries<'_> {
    /// Lists deliveries, newest first (`GET /v1/apps/{app}/deliveries`).
    pub async fn list(&self, filter: ListDeliveries) -> Result<DeliveryList> {
        let app = self.client.app()?;
        let call = Call::new(&LIST, &[app])
            .query("state", filter.state)
            .query("trigger", filter.trigger)
            .query("before", filter.before)
            .query("limit", filter.limit);
        self.client.json(call).await
    }

    /// One delivery with its attempts (`GET /v1/apps/{app}/deliveries/{delivery_id}`).
    pub async fn get(&self, id: i64) -> Result<DeliveryDetail> {
        let app = self.client.app()?;
        let id = id.to_string();
        self.client.json(Call::new(&GET, &[app, &id])).await
    }

    /// Sends a failed or dead delivery again, with a fresh attempt budget
    /// (`POST /v1/apps/{app}/deliveries/{delivery_id}/retry`).
    pub async fn retry(&self, id: i64) -> Result<Delivery> {
        let app = self.client.app()?;
        let id = id.to_string();
        self.client.json(Call::new(&RETRY, &[app, &id])).await
    }
}
