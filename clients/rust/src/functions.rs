//! Calling scripts as HTTP functions.
//!
//! ```no_run
//! use serde_json::json;
//!
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let answer = client.functions().call("checkout", json!({"cart": 7})).await?;
//! let body: serde_json::Value = answer.json()?;
//! println!("{} {}", answer.status, body);
//! let page = client.functions().get("report", &[("day", "2025-01-31")]).await?;
//! println!("{}", page.text());
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::{Body, Call, Retry, Route};
use crate::{Client, Error, Result};

const CALL_GET: Route = Route::get("/v1/apps/{app}/functions/{script}");
const CALL_POST: Route = Route::post("/v1/apps/{app}/functions/{script}");

pub(crate) const ROUTES: &[Route] = &[CALL_GET, CALL_POST];

/// What a function answered: any status in 2xx, its headers and body. A function that
/// fails answers `500`, which is an [`Error::Api`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FunctionResponse {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Bytes,
}

impl FunctionResponse {
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::InvalidResponse {
            status: self.status,
            message: format!("the function's answer is not the expected JSON: {e}"),
            request_id: crate::http::request_id(&self.headers),
        })
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Functions; from [`Client::functions`].
#[derive(Debug, Clone, Copy)]
pub struct Functions<'a> {
    client: &'a Client,
}

impl Client {
    /// The HTTP functions of the client's app.
    pub fn functions(&self) -> Functions<'_> {
        Functions { client: self }
    }
}

impl Functions<'_> {
    /// Calls script `script` with a JSON body (`POST /v1/apps/{app}/functions/{script}`).
    /// Functions are the app's code: a call is retried only where the function cannot
    /// have run.
    pub async fn call(&self, script: &str, body: impl Into<Value>) -> Result<FunctionResponse> {
        self.call_raw(
            script,
            "application/json",
            serde_json::to_vec(&body.into()).unwrap_or_default(),
        )
        .await
    }

    /// Calls script `script` with any body and content type
    /// (`POST /v1/apps/{app}/functions/{script}`).
    pub async fn call_raw(
        &self,
        script: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Result<FunctionResponse> {
        let app = self.client.app()?;
        let mut call = Call::new(&CALL_POST, &[app, script]).retry(Retry::Unsafe);
        call.body = Body::Bytes {
            content_type: Some(content_type.to_owned()),
            bytes: body.into(),
        };
        self.answer(call).await
    }

    /// Calls script `script` with a `GET` and query parameters
    /// (`GET /v1/apps/{app}/functions/{script}`).
    pub async fn get(
        &self,
        script: &str,
        query: &[(&'static str, &str)],
    ) -> Result<FunctionResponse> {
        let app = self.client.app()?;
        let mut call = Call::new(&CALL_GET, &[app, script]).retry(Retry::Unsafe);
        call.query = query.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.answer(call).await
    }

    async fn answer(&self, call: Call<'_>) -> Result<FunctionResponse> {
        let answer = self.client.raw(call).await?;
        Ok(FunctionResponse {
            status: answer.status.as_u16(),
            headers: answer.headers,
            body: answer.body,
        })
    }
}
