//! `/v1/admin/session`: dashboard sign-in, who am I, sign-out.
//!
//! Signing in sets the `picloud_session` cookie (HttpOnly, SameSite=Strict, `Path=/`,
//! `Max-Age` of the session lifetime, and `Secure` when the server is configured with
//! secure cookies or the request says `X-Forwarded-Proto: https`) and returns the CSRF
//! token that every state-changing request must echo in `X-CSRF-Token`. The browser's
//! scripts never see the session secret.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::ApiJson;
use picloud_shared::time::now_ms;
use picloud_shared::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

use super::ManagerState;
use crate::admin_sessions::{session_clear_cookie, session_set_cookie, SignedIn};
use crate::admins::{dummy_hash, verify_password, Admin};

/// How dashboard sessions behave.
#[derive(Debug, Clone, Copy)]
pub struct AdminSettings {
    /// How long a session lasts after sign-in.
    pub session_ttl: Duration,
    /// Always mark the session cookie `Secure` (set this when a TLS proxy fronts PiCloud
    /// without sending `X-Forwarded-Proto`).
    pub secure_cookies: bool,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            session_ttl: crate::admin_sessions::DEFAULT_SESSION_TTL,
            secure_cookies: false,
        }
    }
}

/// Body of `POST /v1/admin/session`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The admin's email (any case).
    pub email: String,
    /// The admin's password.
    pub password: String,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A signed-in session, as the dashboard sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// Who is signed in.
    pub admin: Admin,
    /// Send it as `X-CSRF-Token` with every POST, PATCH and DELETE.
    pub csrf_token: String,
    /// When the session ends, ms since the epoch.
    pub expires_at: i64,
}

impl SessionInfo {
    fn of(signed_in: &SignedIn) -> SessionInfo {
        SessionInfo {
            admin: signed_in.admin.clone(),
            csrf_token: signed_in.csrf_token.clone(),
            expires_at: signed_in.expires_at,
        }
    }
}

/// The one answer to a wrong email or password.
fn invalid_credentials() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "invalid email or password")
}

/// Whether the session cookie must be `Secure` for this request.
fn secure(settings: &AdminSettings, headers: &HeaderMap) -> bool {
    settings.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.insert(SET_COOKIE, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Signs an admin in: sets the session cookie and returns the CSRF token.
#[utoipa::path(post, path = "/v1/admin/session", tag = "admin", request_body = SignIn,
    responses(
        (status = 200, body = SessionInfo, description = "signed in; the `picloud_session` cookie is set"),
        (status = 400, body = ErrorBody),
        (status = 401, description = "wrong email or password", body = ErrorBody),
        (status = 429, description = "locked after repeated failures; see Retry-After", body = ErrorBody)))]
pub async fn sign_in(
    State(state): State<ManagerState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let credentials = state.db.admin_credentials(&body.email).await?;
    if let Some(until) = credentials
        .as_ref()
        .and_then(|c| c.locked_until)
        .filter(|until| *until > now)
    {
        let secs = ((until - now) as u64).div_ceil(1000).max(1);
        let mut response = ApiError::new(
            ErrorCode::RateLimited,
            format!("too many failed sign-ins; try again in {secs} s"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
        return Ok(response);
    }
    // An unknown email is checked against a dummy hash, so it takes as long as a wrong
    // password and gets the same answer.
    let hash = credentials
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |c| c.password_hash.clone());
    let password = body.password;
    let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .map_err(|_| ApiError::internal())?;
    let Some(credentials) = credentials else {
        return Err(invalid_credentials());
    };
    if !matches {
        if let Some(until) = state
            .db
            .record_failed_sign_in(&credentials.admin.id, now)
            .await?
        {
            tracing::warn!(admin = %credentials.admin.id, locked_until = until, "admin locked after repeated failed sign-ins");
        }
        return Err(invalid_credentials());
    }
    state
        .db
        .reset_failed_sign_ins(&credentials.admin.id)
        .await?;
    let session = state
        .db
        .create_admin_session(&credentials.admin.id, state.admin.session_ttl)
        .await?;
    tracing::info!(admin = %credentials.admin.id, "admin signed in");
    let cookie = session_set_cookie(
        &session.secret,
        state.admin.session_ttl,
        secure(&state.admin, &headers),
    );
    let info = SessionInfo {
        admin: credentials.admin,
        csrf_token: session.csrf_token,
        expires_at: session.expires_at,
    };
    Ok(with_cookie(Json(info).into_response(), &cookie))
}

/// Who is signed in, with the session's CSRF token (the dashboard calls this on load).
#[utoipa::path(get, path = "/v1/admin/session", tag = "admin",
    security(("session" = [])),
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody)))]
pub async fn current_session(signed_in: Option<Extension<SignedIn>>) -> Result<Response, ApiError> {
    let Extension(signed_in) = signed_in.ok_or_else(ApiError::unauthorized)?;
    let mut response = Json(SessionInfo::of(&signed_in)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Signs out: ends the session and clears the cookie.
#[utoipa::path(delete, path = "/v1/admin/session", tag = "admin",
    security(("session" = [])),
    responses((status = 204, description = "signed out"), (status = 401, body = ErrorBody),
              (status = 403, description = "missing or invalid CSRF token", body = ErrorBody)))]
pub async fn sign_out(
    State(state): State<ManagerState>,
    headers: HeaderMap,
    signed_in: Option<Extension<SignedIn>>,
) -> Result<Response, ApiError> {
    let Extension(signed_in) = signed_in.ok_or_else(ApiError::unauthorized)?;
    state.db.delete_admin_session(&signed_in.session_id).await?;
    tracing::info!(admin = %signed_in.admin.id, "admin signed out");
    Ok(with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        &session_clear_cookie(secure(&state.admin, &headers)),
    ))
}
