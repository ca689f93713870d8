//! Authentication (API keys and dashboard sessions) and route authorization.
//!
//! [`Authenticator`] turns a bearer secret into a [`Principal`], caching recent lookups
//! so the hot path costs no database round trip, and batching `last_used_at` updates so
//! requests never write. A request with no `Authorization` header but a valid
//! `picloud_session` cookie is a signed-in admin: a superuser principal, whose
//! state-changing requests must carry the session's CSRF token. [`require_access`] is the
//! middleware that applies the route access table from `picloud_shared::access` to every
//! request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt;
use picloud_shared::access::{self, Principal};
use picloud_shared::extract::bearer_token;
use picloud_shared::time::now_ms;
use picloud_shared::{ApiError, ErrorCode, ScopeSet};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::admin_sessions::{session_cookie, SignedIn, CSRF_HEADER};
use crate::api_keys::{hash_secret, looks_like_key, KEY_PREFIX};
use crate::db::Db;
use crate::error::Result;

/// How long a looked-up key is trusted before it is read again. Revocations and app
/// deletions reach every node's cache at once through the cluster feed; this bounds a
/// notice lost while a node's feed reconnects.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(10);
/// How often gathered `last_used_at` times are written.
pub const KEY_USE_FLUSH_INTERVAL: Duration = Duration::from_secs(15);
const MAX_CACHED_KEYS: usize = 10_000;

/// Authenticates API keys. One per process, shared by every request.
#[derive(Debug)]
pub struct Authenticator {
    db: Db,
    ttl: Duration,
    cache: RwLock<HashMap<[u8; 32], Cached>>,
    /// Per app id, the creation time of the app last seen in a lookup: a cached key of an
    /// earlier app with the same id (deleted, then created again) is not trusted.
    incarnations: RwLock<HashMap<String, i64>>,
    used: Mutex<HashMap<String, i64>>,
}

#[derive(Debug, Clone)]
struct Cached {
    principal: Principal,
    fetched: Instant,
    /// The creation time of the key's app when it was looked up.
    app_created_at: Option<i64>,
}

impl Authenticator {
    /// An authenticator reading keys from `db`, trusting a lookup for `ttl`.
    pub fn new(db: Db, ttl: Duration) -> Self {
        Self {
            db,
            ttl,
            cache: RwLock::default(),
            incarnations: RwLock::default(),
            used: Mutex::default(),
        }
    }

    /// The principal a key secret stands for; `None` if the secret is malformed,
    /// unknown or revoked.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>> {
        if !looks_like_key(secret) {
            return Ok(None);
        }
        let hash = hash_secret(secret);
        let cached = self
            .cache
            .read()
            .expect("key cache lock")
            .get(&hash)
            .filter(|c| c.fetched.elapsed() < self.ttl && self.is_current(c))
            .map(|c| c.principal.clone());
        let principal = match cached {
            Some(principal) => principal,
            None => {
                let Some((key, stored_hash, app_created_at)) =
                    self.db.find_active_key(&hash).await?
                else {
                    self.cache.write().expect("key cache lock").remove(&hash);
                    return Ok(None);
                };
                // The index lookup matched on the digest; confirm it without timing leaks.
                if !bool::from(stored_hash.as_slice().ct_eq(&hash[..])) {
                    return Ok(None);
                }
                let principal = Principal {
                    key_id: key.id,
                    app: key.app,
                    scopes: key.scopes.into_iter().collect::<ScopeSet>(),
                    superuser: false,
                };
                if let (Some(app), Some(created_at)) = (&principal.app, app_created_at) {
                    let mut incarnations = self.incarnations.write().expect("incarnation lock");
                    if incarnations.len() >= MAX_CACHED_KEYS {
                        incarnations.clear();
                    }
                    incarnations.insert(app.as_str().to_owned(), created_at);
                }
                let mut cache = self.cache.write().expect("key cache lock");
                if cache.len() >= MAX_CACHED_KEYS {
                    cache.clear();
                }
                cache.insert(
                    hash,
                    Cached {
                        principal: principal.clone(),
                        fetched: Instant::now(),
                        app_created_at,
                    },
                );
                principal
            }
        };
        self.used
            .lock()
            .expect("key use lock")
            .insert(principal.key_id.clone(), now_ms());
        Ok(Some(principal))
    }

    /// Whether a cached key still belongs to the app now known under its app id.
    fn is_current(&self, cached: &Cached) -> bool {
        let Some(app) = &cached.principal.app else {
            return true; // an instance key
        };
        let incarnations = self.incarnations.read().expect("incarnation lock");
        incarnations.get(app.as_str()).copied() == cached.app_created_at
    }

    /// The signed-in admin a session cookie secret stands for; `None` if it is unknown,
    /// expired or signed out. Never cached: signing out takes effect at once everywhere.
    pub async fn authenticate_session(&self, secret: &str) -> Result<Option<SignedIn>> {
        self.db.find_admin_session(secret).await
    }

    /// Drops cached lookups of key `key_id`, after it was revoked (here, or on another
    /// node: the cluster feed tells).
    pub fn forget_key(&self, key_id: &str) {
        self.cache
            .write()
            .expect("key cache lock")
            .retain(|_, c| c.principal.key_id != key_id);
    }

    /// Drops cached lookups of every key of `app`, after the app was deleted (here, or
    /// on another node: the cluster feed tells).
    pub fn forget_app(&self, app: &str) {
        self.incarnations
            .write()
            .expect("incarnation lock")
            .remove(app);
        self.cache
            .write()
            .expect("key cache lock")
            .retain(|_, c| c.principal.app.as_ref().map(|a| a.as_str()) != Some(app));
    }

    /// Writes the gathered `last_used_at` times.
    pub async fn flush_key_use(&self) -> Result<()> {
        let used: Vec<(String, i64)> =
            std::mem::take(&mut *self.used.lock().expect("key use lock"))
                .into_iter()
                .collect();
        self.db.record_key_use(&used).await
    }

    /// Flushes key-use times every [`KEY_USE_FLUSH_INTERVAL`] until `shutdown`, then once
    /// more.
    pub async fn run_key_use_flusher(self: Arc<Self>, shutdown: CancellationToken) {
        let first = tokio::time::Instant::now() + KEY_USE_FLUSH_INTERVAL;
        let mut tick = tokio::time::interval_at(first, KEY_USE_FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            if let Err(e) = self.flush_key_use().await {
                tracing::warn!(error = %e, "could not record API key use");
            }
        }
        if let Err(e) = self.flush_key_use().await {
            tracing::warn!(error = %e, "could not record API key use at shutdown");
        }
    }
}

/// Middleware: authenticates the request's key and applies the route's access rule from
/// the table in `picloud_shared::access`. Routes missing from the table are refused.
/// On success the [`Principal`] is left in the request extensions for handlers.
pub async fn require_access(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&auth, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn authorize(auth: &Authenticator, mut request: Request) -> Result<Request, ApiError> {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    // HEAD is answered by the GET handler, so it needs what GET needs.
    let method = match request.method().as_str() {
        "HEAD" => "GET",
        other => other,
    };
    let Some(rule) = access::lookup(method, &route) else {
        tracing::error!(method = %request.method(), route, "route has no access rule");
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this route has no access rule",
        ));
    };
    match rule {
        access::Access::Public => return Ok(request),
        // The `Authorization` header here carries a subscriber token, never an API key;
        // a signed-in admin may watch any topic, so the session is passed on if valid,
        // and its absence never fails the request.
        access::Access::Subscriber => {
            if let Some(signed_in) = signed_in_admin(auth, request.headers()).await? {
                insert_admin(&mut request, signed_in);
            }
            return Ok(request);
        }
        // Only an API key is ours to check; any other Authorization (the app's own
        // session token, say) is for the script.
        access::Access::Function => {
            let key = bearer_token(request.headers()).filter(|t| t.starts_with(KEY_PREFIX));
            let Some(secret) = key else {
                return Ok(request);
            };
            let principal = auth.authenticate(secret).await.map_err(ApiError::from)?;
            let principal = principal.ok_or_else(ApiError::unauthorized)?;
            rule.check(Some(&principal), path_app(&mut request).await?.as_deref())?;
            tracing::Span::current().record("key_id", principal.key_id.as_str());
            request.extensions_mut().insert(principal);
            return Ok(request);
        }
        _ => {}
    }
    let (principal, signed_in) = if request.headers().contains_key(AUTHORIZATION) {
        let principal = match bearer_token(request.headers()) {
            Some(secret) => auth.authenticate(secret).await.map_err(ApiError::from)?,
            None => None,
        };
        (principal, None)
    } else {
        match signed_in_admin(auth, request.headers()).await? {
            Some(signed_in) => {
                if !is_safe(request.method()) {
                    let presented = request
                        .headers()
                        .get(CSRF_HEADER)
                        .and_then(|v| v.to_str().ok());
                    if !signed_in.csrf_matches(presented) {
                        return Err(ApiError::new(
                            ErrorCode::Forbidden,
                            "missing or invalid CSRF token",
                        ));
                    }
                }
                (Some(Principal::admin(&signed_in.admin.id)), Some(signed_in))
            }
            None => (None, None),
        }
    };
    let path_app = path_app(&mut request).await?;
    rule.check(principal.as_ref(), path_app.as_deref())?;
    if let Some(signed_in) = signed_in {
        insert_admin(&mut request, signed_in);
    } else if let Some(principal) = principal {
        tracing::Span::current().record("key_id", principal.key_id.as_str());
        request.extensions_mut().insert(principal);
    }
    Ok(request)
}

/// The `{app}` of the matched route's path, if it has one.
async fn path_app(request: &mut Request) -> Result<Option<String>, ApiError> {
    let params = request
        .extract_parts::<RawPathParams>()
        .await
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "no such route"))?;
    Ok(params
        .iter()
        .find(|(name, _)| *name == "app")
        .map(|(_, value)| value.to_owned()))
}

/// The admin a request's session cookie signs in, if any.
async fn signed_in_admin(
    auth: &Authenticator,
    headers: &HeaderMap,
) -> Result<Option<SignedIn>, ApiError> {
    match session_cookie(headers) {
        Some(secret) => Ok(auth.authenticate_session(secret).await?),
        None => Ok(None),
    }
}

/// Leaves a signed-in admin's superuser [`Principal`] and [`SignedIn`] for handlers.
fn insert_admin(request: &mut Request, signed_in: SignedIn) {
    tracing::Span::current().record("key_id", signed_in.admin.id.as_str());
    request
        .extensions_mut()
        .insert(Principal::admin(&signed_in.admin.id));
    request.extensions_mut().insert(signed_in);
}

/// Methods that change nothing, which need no CSRF token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
