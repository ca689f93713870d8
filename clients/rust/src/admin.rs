//! Dashboard admin sessions and the overview statistics.
//!
//! These routes take a dashboard admin's session (an email and password), not an API
//! key: [`Admin::sign_in`] returns an [`AdminSession`] that carries the session cookie
//! and CSRF token to the other calls.
//!
//! ```no_run
//! # async fn run(client: picloud_client::Client) -> Result<(), picloud_client::Error> {
//! let session = client.admin().sign_in("admin@example.com", "correct horse").await?;
//! println!("signed in as {}", session.info().admin.email);
//! let stats = session.stats(Some("shop")).await?;
//! let published: i64 = stats.samples.iter().map(|s| s.publishes).sum();
//! println!("{published} events in the last {} s", stats.window_secs);
//! session.sign_out().await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use reqwest::header::SET_COOKIE;
use serde::{Deserialize, Serialize};

use crate::http::{Auth, Call, Retry, Route};
use crate::{Client, Error, Result};

const SIGN_IN: Route = Route::post("/v1/admin/session");
const CURRENT: Route = Route::get("/v1/admin/session");
const SIGN_OUT: Route = Route::delete("/v1/admin/session");
const STATS: Route = Route::get("/v1/admin/stats");

pub(crate) const ROUTES: &[Route] = &[SIGN_IN, CURRENT, SIGN_OUT, STATS];

const SESSION_COOKIE: &str = "picloud_session";

/// Body of `POST /v1/admin/session`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignIn {
    /// The admin's email (any case).
    pub email: String,
    /// The admin's password.
    pub password: String,
}

impl fmt::Debug for SignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignIn")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An admin account as listed: never its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AdminAccount {
    /// Stable id.
    pub id: String,
    /// The sign-in email, lower-cased.
    pub email: String,
}

/// A signed-in session, as the dashboard sees it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Who is signed in.
    pub admin: AdminAccount,
    /// Sent as `X-CSRF-Token` with every write.
    pub csrf_token: String,
    /// When the session ends, ms since the epoch.
    pub expires_at: i64,
}

impl fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionInfo")
            .field("admin", &self.admin)
            .field("csrf_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One sample: what happened during the interval that ended at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sample {
    /// End of the interval, ms since the epoch.
    pub at: i64,
    /// Events published (all nodes).
    pub publishes: i64,
    /// Webhook delivery attempts answered with a 2xx (all nodes).
    pub deliveries_ok: i64,
    /// Webhook delivery attempts that failed (all nodes).
    pub deliveries_failed: i64,
    /// Dead letters written (all nodes).
    pub dead_letters: i64,
    /// Open SSE streams on this node at `at`.
    pub sse_streams: i64,
    /// Outbox rows waiting for delivery at `at` (all nodes).
    pub outbox_pending: i64,
}

/// The overview series (`GET /v1/admin/stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatsSeries {
    /// The app the series is for; `None` for the whole instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Seconds each sample covers; divide counts by it for rates.
    pub interval_secs: u64,
    /// Seconds of history kept.
    pub window_secs: u64,
    /// Oldest first.
    pub samples: Vec<Sample>,
}

/// Dashboard sessions; from [`Client::admin`].
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a> {
    client: &'a Client,
}

impl Client {
    /// Dashboard admin sessions and statistics.
    pub fn admin(&self) -> Admin<'_> {
        Admin { client: self }
    }
}

impl Admin<'_> {
    /// Signs an admin in (`POST /v1/admin/session`).
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<AdminSession> {
        let body = SignIn {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        let answer = self
            .client
            .raw(Call::new(&SIGN_IN, &[]).json(&body)?.retry(Retry::Unsafe))
            .await?;
        let info: SessionInfo = answer.json()?;
        let cookie = answer
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| value.split(';').next())
            .find(|pair| pair.trim_start().starts_with(&format!("{SESSION_COOKIE}=")))
            .map(|pair| pair.trim().to_owned())
            .ok_or_else(|| Error::InvalidResponse {
                status: answer.status.as_u16(),
                message: format!("the sign-in answer set no {SESSION_COOKIE} cookie"),
                request_id: crate::http::request_id(&answer.headers),
            })?;
        Ok(AdminSession {
            client: self.client.clone(),
            cookie,
            info,
        })
    }
}

/// A signed-in dashboard session: its cookie and CSRF token, never shown in `Debug`.
#[derive(Clone)]
pub struct AdminSession {
    client: Client,
    cookie: String,
    info: SessionInfo,
}

impl fmt::Debug for AdminSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminSession")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl AdminSession {
    /// What the sign-in answered.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    fn auth(&self) -> Auth {
        Auth::Session {
            cookie: self.cookie.clone(),
            csrf: self.info.csrf_token.clone(),
        }
    }

    /// Who is signed in, with the session's CSRF token (`GET /v1/admin/session`).
    pub async fn current(&self) -> Result<SessionInfo> {
        self.client
            .json(Call::new(&CURRENT, &[]).auth(self.auth()))
            .await
    }

    /// The overview series over the last hour, of one app or (with `None`) the whole
    /// instance (`GET /v1/admin/stats`).
    pub async fn stats(&self, app: Option<&str>) -> Result<StatsSeries> {
        self.client
            .json(Call::new(&STATS, &[]).query("app", app).auth(self.auth()))
            .await
    }

    /// Signs out: ends the session (`DELETE /v1/admin/session`).
    pub async fn sign_out(self) -> Result<()> {
        self.client
            .empty(Call::new(&SIGN_OUT, &[]).auth(self.auth()))
            .await
    }
}
