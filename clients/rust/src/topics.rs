//! Topics: register, list, inspect, delete, and open to browsers.
//!
//! ```no_run
//! use picloud_client::topics::{AuthMode, CreateTopic, Retention};
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let topic = client
//!     .topics()
//!     .create(CreateTopic::new("chat:lobby").auth_mode(AuthMode::Public).retention(Retention {
//!         max_events: Some(1000),
//!         max_age_secs: None,
//!     }))
//!     .await?;
//! client.topics().set_external(&topic.name, true).await?;
//! for topic in client.topics().list().await?.topics {
//!     println!("{} at seq {}", topic.name, topic.last_seq);
//! }
//! # Ok(())
//! # }
//! ```

use serde::{Deserialize, Serialize};

use crate::http::{Call, Route};
use crate::{Client, Result};

const LIST: Route = Route::get("/v1/apps/{app}/topics");
const CREATE: Route = Route::post("/v1/apps/{app}/topics");
const GET: Route = Route::get("/v1/apps/{app}/topics/{topic}");
const DELETE: Route = Route::delete("/v1/apps/{app}/topics/{topic}");
const SET_EXTERNAL: Route = Route::patch("/v1/apps/{app}/topics/{topic}/external");

pub(crate) const ROUTES: &[Route] = &[LIST, CREATE, GET, DELETE, SET_EXTERNAL];

/// A topic's name: 1-200 characters of letters, digits and `. _ - : /`.
pub type TopicName = String;

/// A topic name, `PREFIX.*` or `*` (what a trigger listens to).
pub type TopicPattern = String;

crate::string_enum! {
    /// How browsers authenticate to subscribe to an external topic.
    AuthMode {
        /// Anyone may subscribe.
        Public = "public",
        /// A subscriber token listing the topic is needed (the default).
        Token = "token",
    }
}

/// How much of a topic's log is kept. `None` means no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Keep events at most this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<i64>,
    /// Keep at most this many latest events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_events: Option<i64>,
}

/// Body of `POST /v1/apps/{app}/topics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateTopic {
    /// The topic's name.
    pub name: TopicName,
    /// `token` (the default) or `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    /// Defaults to 100,000 events or 7 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

impl CreateTopic {
    /// A topic named `name` with the server's defaults.
    pub fn new(name: impl Into<String>) -> Self {
        CreateTopic {
            name: name.into(),
            ..CreateTopic::default()
        }
    }

    /// Sets how browsers authenticate.
    pub fn auth_mode(mut self, mode: AuthMode) -> Self {
        self.auth_mode = Some(mode);
        self
    }

    /// Sets what is kept.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = Some(retention);
        self
    }
}

/// Body of `PATCH /v1/apps/{app}/topics/{topic}/external`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetExternal {
    /// Whether browsers may subscribe to the topic.
    pub external_subscribable: bool,
}

/// A topic as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Topic {
    /// The topic's name.
    pub name: String,
    /// How subscribers authenticate.
    pub auth_mode: AuthMode,
    /// Whether browsers may subscribe (with `auth_mode`).
    pub external_subscribable: bool,
    /// What is kept.
    pub retention: Retention,
    /// Events currently retained in the log.
    pub event_count: i64,
    /// The seq of the latest event (0 before the first).
    pub last_seq: i64,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last change (including the last publish), ms since the epoch.
    pub updated_at: i64,
}

/// A list of topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopicList {
    /// The topics, by name.
    pub topics: Vec<Topic>,
}

/// The topic routes of an app; from [`Client::topics`].
#[derive(Debug, Clone, Copy)]
pub struct Topics<'a> {
    client: &'a Client,
}

impl Client {
    /// Topics of the client's app.
    pub fn topics(&self) -> Topics<'_> {
        Topics { client: self }
    }
}

impl Topics<'_> {
    /// Lists the app's topics (`GET /v1/apps/{app}/topics`).
    pub async fn list(&self) -> Result<TopicList> {
        let app = self.client.app()?;
        self.client.json(Call::new(&LIST, &[app])).await
    }

    /// Registers a topic, not external until flipped (`POST /v1/apps/{app}/topics`).
    pub async fn create(&self, topic: CreateTopic) -> Result<Topic> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&CREATE, &[app]).json(&topic)?)
            .await
    }

    /// Gets one topic (`GET /v1/apps/{app}/topics/{topic}`).
    pub async fn get(&self, topic: &str) -> Result<Topic> {
        let app = self.client.app()?;
        self.client.json(Call::new(&GET, &[app, topic])).await
    }

    /// Deletes a topic with its whole log and pending deliveries
    /// (`DELETE /v1/apps/{app}/topics/{topic}`).
    pub async fn delete(&self, topic: &str) -> Result<()> {
        let app = self.client.app()?;
        self.client.empty(Call::new(&DELETE, &[app, topic])).await
    }

    /// Flips whether browsers may subscribe to the topic
    /// (`PATCH /v1/apps/{app}/topics/{topic}/external`).
    pub async fn set_external(&self, topic: &str, external: bool) -> Result<Topic> {
        let app = self.client.app()?;
        let body = SetExternal {
            external_subscribable: external,
        };
        self.client
            .json(Call::new(&SET_EXTERNAL, &[app, topic]).json(&body)?)
            .await
    }
}
