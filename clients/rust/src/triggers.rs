//! Triggers: what fires (a topic, dead letters, a cron schedule) and where it delivers (a
//! signed webhook or a script), with their signing secrets.
//!
//! ```no_run
//! use picloud_client::triggers::{Handler, NewTrigger, TriggerPatch, TriggerSource};
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let created = client
//!     .triggers()
//!     .create(NewTrigger::new(
//!         TriggerSource::topic("orders.*"),
//!         Handler::webhook("https://hooks.example.com/picloud"),
//!     ))
//!     .await?;
//! // Hand this to the receiver, which checks deliveries with `webhooks::verify`.
//! let secret = created.secret;
//! let rotated = client.triggers().rotate_secret(&created.trigger.id).await?;
//! println!("old secret {secret} signs too until {}", rotated.previous_secret_expires_at);
//! client
//!     .triggers()
//!     .update(&created.trigger.id, TriggerPatch { enabled: Some(false), ..TriggerPatch::default() })
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::http::{Call, Route};
use crate::{Client, Result};

const LIST: Route = Route::get("/v1/apps/{app}/triggers");
const CREATE: Route = Route::post("/v1/apps/{app}/triggers");
const GET: Route = Route::get("/v1/apps/{app}/triggers/{trigger_id}");
const UPDATE: Route = Route::patch("/v1/apps/{app}/triggers/{trigger_id}");
const DELETE: Route = Route::delete("/v1/apps/{app}/triggers/{trigger_id}");
const SECRET: Route = Route::get("/v1/apps/{app}/triggers/{trigger_id}/secret");
const ROTATE_SECRET: Route = Route::post("/v1/apps/{app}/triggers/{trigger_id}/secret/rotate");

pub(crate) const ROUTES: &[Route] = &[LIST, CREATE, GET, UPDATE, DELETE, SECRET, ROTATE_SECRET];

/// A cron pattern: five fields (minute first), or six with seconds first.
pub type CronPattern = String;

/// An IANA time zone name, such as `Europe/Helsinki`.
pub type TimeZoneName = String;

/// A webhook endpoint URL.
pub type WebhookUrl = String;

crate::string_enum! {
    /// What a cron trigger does about ticks that passed while no node was running.
    CatchUp {
        /// Fire once for them all (the default).
        One = "one",
        /// Skip them.
        None = "none",
    }
}

crate::string_enum! {
    /// A trigger's circuit breaker, maintained by the dispatcher.
    CircuitState {
        /// Deliveries flow.
        Closed = "closed",
        /// Deliveries wait for a probe.
        Open = "open",
        /// A probe delivery is being tried.
        HalfOpen = "half_open",
    }
}

/// What fires a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TriggerSource {
    /// Events published to topics matching `topic`.
    Topic {
        /// A topic name, `PREFIX.*` or `*`.
        topic: crate::topics::TopicPattern,
    },
    /// The app's dead letters (deliveries that ran out of attempts).
    DeadLetter,
    /// A schedule: each tick fires once, whatever the number of nodes.
    Cron {
        /// The cron pattern.
        schedule: CronPattern,
        /// The IANA time zone the pattern is read in; `UTC` if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<TimeZoneName>,
        /// What to do about missed ticks; `one` if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        catch_up: Option<CatchUp>,
    },
    /// A kind this version of the SDK does not know (from a newer server).
    #[serde(other)]
    Unknown,
}

impl TriggerSource {
    /// Events of topics matching `pattern` (a name, `PREFIX.*` or `*`).
    pub fn topic(pattern: impl Into<String>) -> Self {
        TriggerSource::Topic {
            topic: pattern.into(),
        }
    }

    /// A cron schedule in UTC.
    pub fn cron(schedule: impl Into<String>) -> Self {
        TriggerSource::Cron {
            schedule: schedule.into(),
            timezone: None,
            catch_up: None,
        }
    }
}

/// Where a trigger delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Handler {
    /// An HTTP `POST` signed per Standard Webhooks with the trigger's secret.
    Webhook {
        /// The endpoint.
        url: WebhookUrl,
    },
    /// A script of the app.
    Script {
        /// The script's name.
        script: String,
    },
    /// A kind this version of the SDK does not know (from a newer server).
    #[serde(other)]
    Unknown,
}

impl Handler {
    /// A webhook to `url`.
    pub fn webhook(url: impl Into<String>) -> Self {
        Handler::Webhook { url: url.into() }
    }

    /// The app's script `name`.
    pub fn script(name: impl Into<String>) -> Self {
        Handler::Script {
            script: name.into(),
        }
    }
}

/// How hard one node may push deliveries at a trigger's endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pacing {
    /// Most deliveries in flight at once; `None` for no limit beyond the node's workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Most deliveries started per second; `None` for no rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_second: Option<u32>,
}

/// How often and when a failed delivery is retried, as the server answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Delivery attempts in all, 1 to 50.
    pub max_attempts: u32,
    /// Seconds to wait before each retry (`max_attempts - 1` of them).
    pub schedule_secs: Vec<u64>,
}

/// A retry policy as a request gives it: either field may be left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicyRequest {
    /// Delivery attempts in all, 1 to 50; 8 if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Seconds to wait before each retry; the standard schedule if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_secs: Option<Vec<u64>>,
}

/// A new trigger (body of `POST /v1/apps/{app}/triggers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTrigger {
    /// What fires it.
    pub source: TriggerSource,
    /// Where it delivers.
    pub handler: Handler,
    /// Whether it fires; `true` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Deliver one topic's events one at a time, in order; `false` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
    /// Limits on how hard deliveries hit the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing: Option<Pacing>,
    /// How failed deliveries are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicyRequest>,
}

impl NewTrigger {
    /// A trigger from `source` to `handler` with the server's defaults.
    pub fn new(source: TriggerSource, handler: Handler) -> Self {
        NewTrigger {
            source,
            handler,
            enabled: None,
            ordered: None,
            pacing: None,
            retry: None,
        }
    }
}

/// A change to a trigger: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerPatch {
    /// Enable or disable; enabling clears `disabled_reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A new handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<Handler>,
    /// Turn in-order delivery on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
    /// New pacing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing: Option<Pacing>,
    /// A new retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicyRequest>,
    /// A new source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TriggerSource>,
}

/// A trigger as the API shows it; never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Trigger {
    /// `trg_` and 32 hex characters.
    pub id: String,
    /// The owning app.
    pub app: String,
    /// What fires it.
    pub source: TriggerSource,
    /// Where it delivers.
    pub handler: Handler,
    /// Whether it fires.
    pub enabled: bool,
    /// Whether deliveries of one topic go out one at a time, in seq order.
    pub ordered: bool,
    /// Limits on how hard deliveries hit the endpoint.
    pub pacing: Pacing,
    /// How failed deliveries are retried.
    pub retry: RetryPolicy,
    /// The circuit breaker's state.
    pub circuit_state: CircuitState,
    /// While the circuit is open: when one probe delivery is tried, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_probe_at: Option<i64>,
    /// Failed deliveries in a row.
    pub consecutive_failures: i64,
    /// Why the server disabled it, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// A `cron` trigger's next tick, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_tick_at: Option<i64>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last change, ms since the epoch.
    pub updated_at: i64,
}

/// A list of triggers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TriggerList {
    /// The app's triggers, oldest first.
    pub triggers: Vec<Trigger>,
}

/// A new trigger and its signing secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CreatedTrigger {
    /// The stored trigger.
    #[serde(flatten)]
    pub trigger: Trigger,
    /// The signing secret, `whsec_` and base64. Also available later through
    /// [`Triggers::secret`].
    pub secret: String,
}

impl fmt::Debug for CreatedTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedTrigger")
            .field("trigger", &self.trigger)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A trigger's signing secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TriggerSecret {
    /// `whsec_` and base64 of 32 bytes.
    pub secret: String,
}

impl fmt::Debug for TriggerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TriggerSecret")
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A rotated signing secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RotatedSecret {
    /// The new secret, used to sign from now on.
    pub secret: String,
    /// Until when (ms since the epoch) deliveries are also signed with the old secret.
    pub previous_secret_expires_at: i64,
}

impl fmt::Debug for RotatedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatedSecret")
            .field("secret", &"<redacted>")
            .field(
                "previous_secret_expires_at",
                &self.previous_secret_expires_at,
            )
            .finish()
    }
}

/// Triggers; from [`Client::triggers`].
#[derive(Debug, Clone, Copy)]
pub struct Triggers<'a> {
    client: &'a Client,
}

impl Client {
    /// Triggers of the client's app.
    pub fn triggers(&self) -> Triggers<'_> {
        Triggers { client: self }
    }
}

impl Triggers<'_> {
    /// Lists the app's triggers (`GET /v1/apps/{app}/triggers`).
    pub async fn list(&self) -> Result<TriggerList> {
        let app = self.client.app()?;
        self.client.json(Call::new(&LIST, &[app])).await
    }

    /// Creates a trigger; the answer holds its signing secret
    /// (`POST /v1/apps/{app}/triggers`).
    pub async fn create(&self, trigger: NewTrigger) -> Result<CreatedTrigger> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&CREATE, &[app]).json(&trigger)?)
            .await
    }

    /// Gets one trigger (`GET /v1/apps/{app}/triggers/{trigger_id}`).
    pub async fn get(&self, id: &str) -> Result<Trigger> {
        let app = self.client.app()?;
        self.client.json(Call::new(&GET, &[app, id])).await
    }

    /// Changes a trigger (`PATCH /v1/apps/{app}/triggers/{trigger_id}`).
    pub async fn update(&self, id: &str, patch: TriggerPatch) -> Result<Trigger> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&UPDATE, &[app, id]).json(&patch)?)
            .await
    }

    /// Deletes a trigger and its pending deliveries
    /// (`DELETE /v1/apps/{app}/triggers/{trigger_id}`).
    pub async fn delete(&self, id: &str) -> Result<()> {
        let app = self.client.app()?;
        self.client.empty(Call::new(&DELETE, &[app, id])).await
    }

    /// Reveals a trigger's current signing secret
    /// (`GET /v1/apps/{app}/triggers/{trigger_id}/secret`).
    pub async fn secret(&self, id: &str) -> Result<TriggerSecret> {
        let app = self.client.app()?;
        self.client.json(Call::new(&SECRET, &[app, id])).await
    }

    /// Replaces a trigger's signing secret; the old one keeps signing alongside it for 24
    /// hours (`POST /v1/apps/{app}/triggers/{trigger_id}/secret/rotate`).
    pub async fn rotate_secret(&self, id: &str) -> Result<RotatedSecret> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&ROTATE_SECRET, &[app, id]))
            .await
    }
}
