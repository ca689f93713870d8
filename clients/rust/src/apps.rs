//! Apps: create, list, get, delete (instance keys with `instance:admin`).
//!
//! ```no_run
//! use picloud_client::apps::CreateApp;
//!
//! # async fn run(admin: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let app = admin.apps().create(CreateApp::new("shop").name("The shop")).await?;
//! for app in admin.apps().list().await?.apps {
//!     println!("{} ({})", app.id, app.name);
//! }
//! admin.apps().delete(&app.id).await?;
//! # Ok(())
//! # }
//! ```

use serde::{Deserialize, Serialize};

use crate::http::{Call, Route};
use crate::{Client, Result};

const LIST: Route = Route::get("/v1/apps");
const CREATE: Route = Route::post("/v1/apps");
const GET: Route = Route::get("/v1/apps/{app}");
const DELETE: Route = Route::delete("/v1/apps/{app}");

pub(crate) const ROUTES: &[Route] = &[LIST, CREATE, GET, DELETE];

/// An app's slug: 2-63 of `a-z 0-9 -`, starting with a letter.
pub type AppId = String;

/// An app as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct App {
    /// The app's slug, used in every URL under `/v1/apps/{app}`.
    pub id: AppId,
    /// A display name.
    pub name: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
}

/// A list of apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppList {
    /// The apps, by id.
    pub apps: Vec<App>,
}

/// Body of `POST /v1/apps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateApp {
    /// The app's slug.
    pub id: AppId,
    /// A display name; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl CreateApp {
    /// An app with id `id`.
    pub fn new(id: impl Into<String>) -> Self {
        CreateApp {
            id: id.into(),
            name: None,
        }
    }

    /// Sets the display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// App administration; from [`Client::apps`].
#[derive(Debug, Clone, Copy)]
pub struct Apps<'a> {
    client: &'a Client,
}

impl Client {
    /// App administration (needs an instance key).
    pub fn apps(&self) -> Apps<'_> {
        Apps { client: self }
    }
}

impl Apps<'_> {
    /// Lists every app (`GET /v1/apps`).
    pub async fn list(&self) -> Result<AppList> {
        self.client.json(Call::new(&LIST, &[])).await
    }

    /// Creates an app (`POST /v1/apps`).
    pub async fn create(&self, app: CreateApp) -> Result<App> {
        self.client.json(Call::new(&CREATE, &[]).json(&app)?).await
    }

    /// Gets one app (`GET /v1/apps/{app}`); an app key with `app:read` may read its own.
    pub async fn get(&self, app: &str) -> Result<App> {
        self.client.json(Call::new(&GET, &[app])).await
    }

    /// Deletes an app and everything it owns (`DELETE /v1/apps/{app}`).
    pub async fn delete(&self, app: &str) -> Result<()> {
        self.client.empty(Call::new(&DELETE, &[app])).await
    }
}
