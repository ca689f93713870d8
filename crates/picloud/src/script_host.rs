//! The [`Host`] scripts reach PiCloud through: the publish writer (the same path and
//! checks as the HTTP API), the realtime layer's token minting, and the guarded outbound
//! client webhooks use. Its methods are called on executor threads and wait on the
//! server's runtime, never past the run's deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::StreamExt;
use picloud_executor_core::{Host, HttpRequest, HttpResponse, ScriptEvent};
use picloud_manager_core::dispatcher::ssrf::{check_url, webhook_client, AddressPolicy};
use picloud_manager_core::http::event_input::{validate_idempotency_key, PublishLimits};
use picloud_manager_core::publish::{PublishRequest, Publisher};
use picloud_orchestrator_core::realtime_api::{mint_subscriber_token, RealtimeState};
use picloud_shared::AppId;

/// Largest response body `http::request` reads; the rest is cut.
pub const MAX_HTTP_RESPONSE_BYTES: usize = 1024 * 1024;

/// Longest any one `http::request` may take, whatever the script asks.
const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// What scripts of every app reach PiCloud through.
pub struct ScriptHost {
    runtime: tokio::runtime::Handle,
    publisher: Publisher,
    limits: PublishLimits,
    realtime: RealtimeState,
    policy: Arc<AddressPolicy>,
    http: reqwest::Client,
}

impl ScriptHost {
    /// A host on the current runtime.
    pub fn new(
        publisher: Publisher,
        limits: PublishLimits,
        realtime: RealtimeState,
        policy: Arc<AddressPolicy>,
    ) -> Self {
        ScriptHost {
            runtime: tokio::runtime::Handle::current(),
            http: webhook_client(policy.clone(), MAX_HTTP_TIMEOUT),
            publisher,
            limits,
            realtime,
            policy,
        }
    }

    /// Runs `work` on the server's runtime from an executor thread, giving up at
    /// `deadline`.
    fn wait<T>(
        &self,
        deadline: Instant,
        what: &str,
        work: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        self.runtime.block_on(async {
            match tokio::time::timeout_at(deadline.into(), work).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "{what} did not finish within the script's time limit"
                )),
            }
        })
    }
}

impl Host for ScriptHost {
    fn publish(
        &self,
        app: &AppId,
        events: Vec<ScriptEvent>,
        idempotency_key: Option<String>,
        deadline: Instant,
    ) -> Result<Vec<i64>, String> {
        self.limits
            .check_batch(events.len())
            .map_err(|e| e.to_string())?;
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let data = serde_json::value::to_raw_value(&event.data)
                    .map_err(|e| format!("events[{i}]: data: {e}"))?;
                self.limits
                    .new_event(&event.topic, Some(event.event_type), data)
                    .map_err(|e| format!("events[{i}]: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let idempotency_key = idempotency_key
            .map(|key| validate_idempotency_key(&key))
            .transpose()
            .map_err(|e| e.to_string())?;
        let request = PublishRequest {
            app: app.clone(),
            events,
            idempotency_key,
        };
        self.wait(deadline, "publishing", async {
            let publication = self
                .publisher
                .publish(request)
                .await
                .map_err(|e| picloud_shared::ApiError::from(e).message)?;
            Ok(publication.events.iter().map(|e| e.seq).collect())
        })
    }

    fn subscriber_token(
        &self,
        app: &AppId,
        topics: Vec<String>,
        ttl_secs: Option<u64>,
        sub: Option<String>,
        deadline: Instant,
    ) -> Result<String, String> {
        self.wait(deadline, "minting a token", async {
            let ttl = ttl_secs.map(Duration::from_secs);
            mint_subscriber_token(&self.realtime, app, &topics, ttl, sub)
                .await
                .map(|minted| minted.token)
                .map_err(|e| e.message)
        })
    }

    fn http_request(
        &self,
        request: HttpRequest,
        deadline: Instant,
    ) -> Result<HttpResponse, String> {
        let url = check_url(&self.policy, &request.url).map_err(|e| e.to_string())?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| format!("'{}' is not an HTTP method", request.method))?;
        let mut outgoing = self.http.request(method, url);
        for (name, value) in &request.headers {
            outgoing = outgoing.header(name, value);
        }
        if let Some(body) = request.body {
            outgoing = outgoing.body(body);
        }
        self.wait(deadline, "the request", async move {
            let response = outgoing.send().await.map_err(describe)?;
            let status = response.status().as_u16();
            let mut headers = BTreeMap::new();
            for (name, value) in response.headers() {
                if let Ok(value) = value.to_str() {
                    headers.insert(name.as_str().to_owned(), value.to_owned());
                }
            }
            let mut body = BytesMut::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(describe)?;
                let room = MAX_HTTP_RESPONSE_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() == MAX_HTTP_RESPONSE_BYTES {
                    break;
                }
            }
            Ok(HttpResponse {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        })
    }
}

/// A request error without the URL (which may carry credentials).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    if error.is_timeout() {
        "the request timed out".to_owned()
    } else if error.is_connect() {
        format!("could not connect: {error}")
    } else {
        format!("the request failed: {error}")
    }
}
