//! Health, readiness, metrics and the API document.
//!
//! ```no_run
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let system = client.system();
//! assert_eq!(system.health().await?.status, "ok");
//! let ready = system.ready().await.is_ok();
//! let metrics = system.metrics().await?;
//! let document = system.openapi().await?;
//! println!("ready: {ready}, {} metric bytes, API {}", metrics.len(), document["info"]["version"]);
//! # Ok(())
//! # }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{Call, Route};
use crate::{Client, Error, Result};

const HEALTHZ: Route = Route::get("/healthz");
const READYZ: Route = Route::get("/readyz");
const METRICS: Route = Route::get("/metrics");
const OPENAPI: Route = Route::get("/openapi.json");

pub(crate) const ROUTES: &[Route] = &[HEALTHZ, READYZ, METRICS, OPENAPI];

/// A health or readiness answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// `ok` or `ready`.
    pub status: String,
}

/// System routes; from [`Client::system`].
#[derive(Debug, Clone, Copy)]
pub struct System<'a> {
    client: &'a Client,
}

impl Client {
    /// Health, readiness, metrics and the API document (no key needed).
    pub fn system(&self) -> System<'_> {
        System { client: self }
    }
}

impl System<'_> {
    /// Whether the process is up (`GET /healthz`).
    pub async fn health(&self) -> Result<Status> {
        self.client.json(Call::new(&HEALTHZ, &[])).await
    }

    /// Whether the process can serve (`GET /readyz`): an [`Error::Api`] with status 503
    /// (`unavailable`) when its database does not answer or its writes fail.
    pub async fn ready(&self) -> Result<Status> {
        self.client
            .json(Call::new(&READYZ, &[]).retry(crate::http::Retry::Never))
            .await
    }

    /// Prometheus metrics in the text exposition format (`GET /metrics`).
    pub async fn metrics(&self) -> Result<String> {
        let answer = self.client.raw(Call::new(&METRICS, &[])).await?;
        String::from_utf8(answer.body.to_vec()).map_err(|_| Error::InvalidResponse {
            status: answer.status.as_u16(),
            message: "the metrics are not UTF-8".into(),
            request_id: crate::http::request_id(&answer.headers),
        })
    }

    /// The server's OpenAPI 3.1 document (`GET /openapi.json`).
    pub async fn openapi(&self) -> Result<Value> {
        self.client.json(Call::new(&OPENAPI, &[])).await
    }
}
