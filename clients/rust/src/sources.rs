//! Outbox sources: PostgreSQL outboxes PiCloud relays into topics.
//!
//! ```no_run
//! use picloud_client::sources::NewSource;
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let source = client
//!     .sources()
//!     .create(NewSource::postgres_outbox("postgres://relay:secret@db:5432/shop"))
//!     .await?;
//! let status = client.sources().get(&source.id).await?.status;
//! println!("connected: {}, relayed {}", status.connected, status.relayed_total);
//! client.sources().set_enabled(&source.id, false).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::http::{Call, Route};
use crate::{Client, Result};

const LIST: Route = Route::get("/v1/apps/{app}/sources");
const CREATE: Route = Route::post("/v1/apps/{app}/sources");
const GET: Route = Route::get("/v1/apps/{app}/sources/{source_id}");
const UPDATE: Route = Route::patch("/v1/apps/{app}/sources/{source_id}");
const DELETE: Route = Route::delete("/v1/apps/{app}/sources/{source_id}");

pub(crate) const ROUTES: &[Route] = &[LIST, CREATE, GET, UPDATE, DELETE];

crate::string_enum! {
    /// What kind of database a source reads.
    SourceKind {
        /// A PostgreSQL outbox table installed by `picloud sources install`.
        PostgresOutbox = "postgres_outbox",
    }
}

/// A new source.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSource {
    /// What it reads.
    pub kind: SourceKind,
    /// The app database's URL; its role needs USAGE on the schema and SELECT, DELETE on
    /// its outbox.
    pub database_url: String,
    /// The outbox schema (default `picloud`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

impl NewSource {
    /// A PostgreSQL outbox at `database_url`, in the default schema.
    pub fn postgres_outbox(database_url: impl Into<String>) -> Self {
        NewSource {
            kind: SourceKind::PostgresOutbox,
            database_url: database_url.into(),
            schema: None,
        }
    }
}

impl fmt::Debug for NewSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSource")
            .field("kind", &self.kind)
            .field("database_url", &"<redacted>")
            .field("schema", &self.schema)
            .finish()
    }
}

/// How a source's relay is doing, as it last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SourceStatus {
    /// Whether the relay is connected to the app's database.
    pub connected: bool,
    /// Rows relayed since the source was created.
    pub relayed_total: i64,
    /// The last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it happened, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<i64>,
    /// Age of the oldest waiting row at the last report, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_waiting_ms: Option<i64>,
    /// The node running the relay, while its lease lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_node: Option<String>,
    /// When the relay last reported, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<i64>,
    /// Rows waiting in the app's outbox at the last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_waiting: Option<i64>,
}

/// A source as the API shows it: never with the database password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Source {
    /// Id (`src_…`).
    pub id: String,
    /// What it reads.
    pub kind: SourceKind,
    /// The app database's URL without its password.
    pub database_url: String,
    /// The outbox schema in the app's database.
    pub schema: String,
    /// Whether a relay runs for it.
    pub enabled: bool,
    /// The relay's last report.
    pub status: SourceStatus,
    /// Created at, ms since the epoch.
    pub created_at: i64,
    /// Last changed at, ms since the epoch.
    pub updated_at: i64,
}

/// A list of sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SourceList {
    /// The app's sources, oldest first.
    pub sources: Vec<Source>,
}

/// A change to a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePatch {
    /// Run its relay (true) or stop it (false).
    pub enabled: bool,
}

/// Outbox sources; from [`Client::sources`].
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    client: &'a Client,
}

impl Client {
    /// Outbox sources of the client's app.
    pub fn sources(&self) -> Sources<'_> {
        Sources { client: self }
    }
}

impl Sources<'_> {
    /// Lists the app's sources with their status (`GET /v1/apps/{app}/sources`).
    pub async fn list(&self) -> Result<SourceList> {
        let app = self.client.app()?;
        self.client.json(Call::new(&LIST, &[app])).await
    }

    /// Adds an outbox source; PiCloud starts relaying it at once
    /// (`POST /v1/apps/{app}/sources`).
    pub async fn create(&self, source: NewSource) -> Result<Source> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&CREATE, &[app]).json(&source)?)
            .await
    }

    /// Gets one source with its status (`GET /v1/apps/{app}/sources/{source_id}`).
    pub async fn get(&self, id: &str) -> Result<Source> {
        let app = self.client.app()?;
        self.client.json(Call::new(&GET, &[app, id])).await
    }

    /// Enables or disables a source's relay (`PATCH /v1/apps/{app}/sources/{source_id}`).
    pub async fn set_enabled(&self, id: &str, enabled: bool) -> Result<Source> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&UPDATE, &[app, id]).json(&SourcePatch { enabled })?)
            .await
    }

    /// Deletes a source; rows still waiting in the app's outbox stay there
    /// (`DELETE /v1/apps/{app}/sources/{source_id}`).
    pub async fn delete(&self, id: &str) -> Result<()> {
        let app = self.client.app()?;
        self.client.empty(Call::new(&DELETE, &[app, id])).await
    }
}
