//! API keys: an app's keys, and instance keys.
//!
//! ```no_run
//! use picloud_client::keys::{CreateAppKey, Scope};
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let created = client
//!     .keys()
//!     .create(CreateAppKey::new("publisher", [Scope::PubsubPublish]))
//!     .await?;
//! println!("store this secret now, it is shown once: {}", created.key);
//! client.keys().revoke(&created.id).await?;
//! # Ok(())
//! # }
//! ```

use serde::{Deserialize, Serialize};

use crate::http::{Call, Route};
use crate::{Client, Result};

const LIST_APP: Route = Route::get("/v1/apps/{app}/keys");
const CREATE_APP: Route = Route::post("/v1/apps/{app}/keys");
const REVOKE_APP: Route = Route::delete("/v1/apps/{app}/keys/{key_id}");
const LIST_INSTANCE: Route = Route::get("/v1/keys");
const CREATE_INSTANCE: Route = Route::post("/v1/keys");
const REVOKE_INSTANCE: Route = Route::delete("/v1/keys/{key_id}");

pub(crate) const ROUTES: &[Route] = &[
    LIST_APP,
    CREATE_APP,
    REVOKE_APP,
    LIST_INSTANCE,
    CREATE_INSTANCE,
    REVOKE_INSTANCE,
];

crate::string_enum! {
    /// What an API key may do.
    Scope {
        /// Manage apps and instance keys (instance keys only).
        InstanceAdmin = "instance:admin",
        /// Everything within the app.
        AppAdmin = "app:admin",
        /// Read the app's topics, events, triggers, deliveries.
        AppRead = "app:read",
        /// Publish events.
        PubsubPublish = "pubsub:publish",
        /// Mint subscriber tokens.
        PubsubToken = "pubsub:token",
        /// Manage triggers.
        TriggersManage = "triggers:manage",
        /// Retry deliveries, replay and purge dead letters.
        DeliveriesManage = "deliveries:manage",
        /// Manage scripts.
        ScriptsManage = "scripts:manage",
        /// Call key-protected functions.
        FunctionsInvoke = "functions:invoke",
    }
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApiKey {
    /// Stable id, used to revoke the key.
    pub id: String,
    /// The owning app; `None` for instance keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// What the key is for.
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last successful use, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    /// When the key was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// A list of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyList {
    /// The keys, newest first, revoked ones included.
    pub keys: Vec<ApiKey>,
}

/// A created key. `key` is the secret: this answer is the only time it is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CreatedKeyResponse {
    /// The key's id.
    pub id: String,
    /// The owning app, `None` for instance keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The key's name.
    pub name: String,
    /// The display prefix.
    pub prefix: String,
    /// The key's scopes.
    pub scopes: Vec<Scope>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// The secret, to send as `Authorization: Bearer <key>`.
    pub key: String,
}

impl std::fmt::Debug for CreatedKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKeyResponse")
            .field("id", &self.id)
            .field("app", &self.app)
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Body of `POST /v1/apps/{app}/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAppKey {
    /// What the key is for.
    pub name: String,
    /// App scopes the key holds (not `instance:admin`).
    pub scopes: Vec<Scope>,
}

impl CreateAppKey {
    /// A key named `name` with `scopes`.
    pub fn new(name: impl Into<String>, scopes: impl IntoIterator<Item = Scope>) -> Self {
        CreateAppKey {
            name: name.into(),
            scopes: scopes.into_iter().collect(),
        }
    }
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateInstanceKey {
    /// What the key is for.
    pub name: String,
    /// Optional; if given, exactly `["instance:admin"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
}

/// API keys; from [`Client::keys`].
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    client: &'a Client,
}

impl Client {
    /// API keys: the app's (`list`, `create`, `revoke`) and the instance's
    /// (`*_instance`).
    pub fn keys(&self) -> Keys<'_> {
        Keys { client: self }
    }
}

impl Keys<'_> {
    /// Lists the app's keys (`GET /v1/apps/{app}/keys`).
    pub async fn list(&self) -> Result<KeyList> {
        let app = self.client.app()?;
        self.client.json(Call::new(&LIST_APP, &[app])).await
    }

    /// Creates a key for the app (`POST /v1/apps/{app}/keys`).
    pub async fn create(&self, key: CreateAppKey) -> Result<CreatedKeyResponse> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&CREATE_APP, &[app]).json(&key)?)
            .await
    }

    /// Revokes one of the app's keys; revoking twice is harmless
    /// (`DELETE /v1/apps/{app}/keys/{key_id}`).
    pub async fn revoke(&self, key_id: &str) -> Result<ApiKey> {
        let app = self.client.app()?;
        self.client
            .json(Call::new(&REVOKE_APP, &[app, key_id]))
            .await
    }

    /// Lists instance keys (`GET /v1/keys`).
    pub async fn list_instance(&self) -> Result<KeyList> {
        self.client.json(Call::new(&LIST_INSTANCE, &[])).await
    }

    /// Creates an instance key (`POST /v1/keys`).
    pub async fn create_instance(&self, key: CreateInstanceKey) -> Result<CreatedKeyResponse> {
        self.client
            .json(Call::new(&CREATE_INSTANCE, &[]).json(&key)?)
            .await
    }

    /// Revokes an instance key (`DELETE /v1/keys/{key_id}`).
    pub async fn revoke_instance(&self, key_id: &str) -> Result<ApiKey> {
        self.client
            .json(Call::new(&REVOKE_INSTANCE, &[key_id]))
            .await
    }
}
