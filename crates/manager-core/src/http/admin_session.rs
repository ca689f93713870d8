//! `/v1/admin/session`: dashboard sign-in, who am I, sign-out.
//!
//! Signing in sets the `picloud_session` cookie (HttpOnly, SameSite=Strict, `Path=/`,
//! `Max-Age` of the session lifetime, and `Secure` when the server is configured with
//! secure cookies or the request says `X-Forwarded-Proto: https`) and returns the CSRF
//! token that every state-changing request must echo in `X-CSRF-Token`. The browser's
//! scripts never see the session secret.
//!
//! A sign-in passes, in order: the per-address rate limit ([`SignInThrottle`], keyed by
//! the TCP peer in the request's `ConnectInfo<SocketAddr>` extension; one shared bucket
//! when it is absent), a turn at the [`PasswordGate`] (bounded argon2 work), the
//! account's lockout, counted before the password is checked ([`Db::claim_sign_in`]),
//! and only then the password check. An unknown email goes through the same steps, its
//! lockout kept in memory ([`UnknownAdmins`]) and its password checked against a dummy
//! hash, so it gets the same answers as an account's.
//!
//! [`Db::claim_sign_in`]: crate::Db::claim_sign_in

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::ApiJson;
use picloud_shared::names::check_printable;
use picloud_shared::time::now_ms;
use picloud_shared::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

use super::ManagerState;
use crate::admin_sessions::{session_clear_cookie, session_set_cookie, SignedIn};
use crate::admins::{dummy_hash, verify_password, Admin, SignInClaim};
use crate::error::Error;
use crate::password_gate::PasswordGate;
use crate::sign_in_throttle::SignInThrottle;
use crate::unknown_admins::UnknownAdmins;

/// How dashboard sessions behave.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// How long a session lasts after sign-in.
    pub session_ttl: Duration,
    /// Always mark the session cookie `Secure` (set this when a TLS proxy fronts PiCloud
    /// without sending `X-Forwarded-Proto`).
    pub secure_cookies: bool,
    /// What bounds sign-in attempts, shared by every request of this server.
    pub guard: Arc<SignInGuard>,
}

/// The state that bounds sign-in attempts: the argon2 gate, the per-address rate limit
/// and the lockouts of unknown emails.
#[derive(Debug)]
pub struct SignInGuard {
    /// Every password check and hash of the server runs here.
    pub passwords: PasswordGate,
    /// Sign-in attempts per client address.
    pub per_address: SignInThrottle,
    /// Failure counts of emails no admin has.
    pub unknown: UnknownAdmins,
}

impl SignInGuard {
    /// A guard allowing `per_address_per_minute` sign-in attempts per client address per
    /// minute, with one password check per core at a time.
    pub fn new(per_address_per_minute: u32) -> Self {
        SignInGuard {
            passwords: PasswordGate::per_core(),
            per_address: SignInThrottle::new(per_address_per_minute),
            unknown: UnknownAdmins::default(),
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

/// An error answer with `Retry-After: secs` (at least 1).
fn retry_later(code: ErrorCode, message: String, secs: u64) -> Response {
    let mut response = ApiError::new(code, message).into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

/// The answer to an attempt at an account (or unknown email) locked until `until`.
fn locked(until: i64, now: i64) -> Response {
    let secs = (until.saturating_sub(now).max(0) as u64).div_ceil(1000);
    retry_later(
        ErrorCode::RateLimited,
        format!("too many failed sign-ins; try again in {} s", secs.max(1)),
        secs,
    )
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
        (status = 429, description = "too many attempts from this address, or too many failed sign-ins for this email; see Retry-After", body = ErrorBody),
        (status = 503, description = "too many password checks running; see Retry-After", body = ErrorBody)))]
pub async fn sign_in(
    State(state): State<ManagerState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let guard = &state.admin.guard;
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    if let Err(wait) = guard.per_address.take(peer, Instant::now()) {
        let secs = wait.as_secs_f64().ceil() as u64;
        return Ok(retry_later(
            ErrorCode::RateLimited,
            format!(
                "too many sign-in attempts from this address; try again in {} s",
                secs.max(1)
            ),
            secs,
        ));
    }
    check_printable("email", &body.email).map_err(|e| ApiError::invalid(e.0))?;
    let turn = match guard.passwords.admit().await {
        Ok(turn) => turn,
        Err(Error::Busy) => {
            return Ok(retry_later(
                ErrorCode::Unavailable,
                Error::Busy.to_string(),
                1,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let now = now_ms();
    let credentials = match state.db.claim_sign_in(&body.email, now).await? {
        SignInClaim::Check(credentials) => Some(credentials),
        SignInClaim::Locked(until) => return Ok(locked(until, now)),
        SignInClaim::Unknown => {
            let email = body.email.trim().to_lowercase();
            if let Err(until) = guard.unknown.claim(&email, now) {
                return Ok(locked(until, now));
            }
            None
        }
    };
    // An unknown email is checked against a dummy hash, so it takes as long as a wrong
    // password and gets the same answer.
    let hash = credentials
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |c| c.password_hash.clone());
    let password = body.password;
    let matches = turn.run(move || verify_password(&hash, &password)).await?;
    let Some(credentials) = credentials else {
        return Err(invalid_credentials());
    };
    if !matches {
        if let Some(until) = credentials.locked_until {
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
