//! API-key authentication and route authorization.
//!
//! [`Authenticator`] turns a bearer secret into a [`Principal`], caching recent lookups
//! so the hot path costs no database round trip, and batching `last_used_at` updates so
//! requests never write. [`require_access`] is the middleware that applies the route
//! access table from `picloud_shared::access` to every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt;
use picloud_shared::access::{self, Principal};
use picloud_shared::time::now_ms;
use picloud_shared::{ApiError, ErrorCode, ScopeSet};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::api_keys::{hash_secret, looks_like_key};
use crate::db::Db;
use crate::error::Result;

/// How long a looked-up key is trusted before it is read again. Revocation through this
/// node takes effect at once; through another node, within this time.
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
    used: Mutex<HashMap<String, i64>>,
}

#[derive(Debug, Clone)]
struct Cached {
    principal: Principal,
    fetched: Instant,
}

impl Authenticator {
    /// An authenticator reading keys from `db`, trusting a lookup for `ttl`.
    pub fn new(db: Db, ttl: Duration) -> Self {
        Self {
            db,
            ttl,
            cache: RwLock::default(),
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
            .filter(|c| c.fetched.elapsed() < self.ttl)
            .map(|c| c.principal.clone());
        let principal = match cached {
            Some(principal) => principal,
            None => {
                let Some((key, stored_hash)) = self.db.find_active_key(&hash).await? else {
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
                };
                let mut cache = self.cache.write().expect("key cache lock");
                if cache.len() >= MAX_CACHED_KEYS {
                    cache.clear();
                }
                cache.insert(
                    hash,
                    Cached {
                        principal: principal.clone(),
                        fetched: Instant::now(),
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

    /// Drops cached lookups of key `key_id`, after it was revoked here.
    pub fn forget_key(&self, key_id: &str) {
        self.cache
            .write()
            .expect("key cache lock")
            .retain(|_, c| c.principal.key_id != key_id);
    }

    /// Drops cached lookups of every key of `app`, after the app was deleted.
    pub fn forget_app(&self, app: &str) {
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

/// The bearer secret of a request, if it sent one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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
    let Some(rule) = access::lookup(request.method().as_str(), &route) else {
        tracing::error!(method = %request.method(), route, "route has no access rule");
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this route has no access rule",
        ));
    };
    if matches!(rule, access::Access::Public | access::Access::Subscriber) {
        return Ok(request);
    }
    let principal = match bearer_token(request.headers()) {
        Some(secret) => auth.authenticate(secret).await.map_err(ApiError::from)?,
        None => None,
    };
    let params = request
        .extract_parts::<RawPathParams>()
        .await
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "no such route"))?;
    let path_app = params
        .iter()
        .find(|(name, _)| *name == "app")
        .map(|(_, value)| value.to_owned());
    rule.check(principal.as_ref(), path_app.as_deref())?;
    if let Some(principal) = principal {
        tracing::Span::current().record("key_id", principal.key_id.as_str());
        request.extensions_mut().insert(principal);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, "Bearer pk_abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("pk_abc"));
        headers.insert(AUTHORIZATION, "bearer  pk_abc ".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("pk_abc"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }
}
