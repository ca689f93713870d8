//! The subscriber-token authority: each app's HMAC signing keys (created on first use,
//! rotated on request, cached in memory), minting tokens for app code and verifying the
//! tokens subscribers present.
//!
//! Rotation reaches other nodes without a message bus: a node that meets an unknown kid
//! reloads the app's keys (at most once a second per app), and every cached key
//! set is reloaded after [`TokenConfig::cache_ttl`], which is how other nodes learn that
//! a previous key's grace period was cut.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picloud_shared::ids::{random_bytes, random_id};
use picloud_shared::realtime::{RealtimeStore, SigningKey, StoreError, SUBSCRIBER_TOKEN_PURPOSE};
use picloud_shared::time::now_ms;
use picloud_shared::{AppId, TopicName};

use crate::error::{Error, Result};
use crate::subscriber_token::{self, Rejected, TokenClaims};

/// The kid of every app's first key. Fixed, so that nodes creating it at the same
/// moment insert the same row and agree.
const FIRST_KID: &str = "k1";

/// A cache miss on an unknown kid reloads an app's keys at most this often.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Token lifetimes and key handling.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Shortest TTL a token gets, whatever is asked.
    pub ttl_min: Duration,
    /// Longest TTL a token gets.
    pub ttl_max: Duration,
    /// The TTL when none is asked.
    pub ttl_default: Duration,
    /// How long tokens signed with a rotated-out key stay valid, unless the rotation
    /// names another grace.
    pub rotation_grace: Duration,
    /// How long a node trusts its cached keys of an app before reloading them.
    pub cache_ttl: Duration,
}

/// How long a node trusts its cached keys of an app before reloading them, unless
/// configured otherwise: how soon other nodes learn of a rotation.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(10);

/// A freshly minted token.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The compact JWS.
    pub token: String,
    /// Its expiry, ms since the epoch.
    pub expires_at: i64,
}

/// The outcome of a key rotation.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The new signing key's id.
    pub kid: String,
    /// Until when tokens signed with the previous keys verify, ms since the epoch.
    pub previous_valid_until: i64,
}

struct CachedKeys {
    keys: Arc<[SigningKey]>,
    loaded: Instant,
}

/// Mints and verifies subscriber tokens; one per process.
pub struct TokenAuthority {
    store: Arc<dyn RealtimeStore>,
    config: TokenConfig,
    cache: Mutex<HashMap<AppId, CachedKeys>>,
}

impl TokenAuthority {
    /// An authority over the keys in `store`.
    pub fn new(store: Arc<dyn RealtimeStore>, config: TokenConfig) -> Self {
        TokenAuthority {
            store,
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// Mints a token for `topics` of `app`, with `ttl` clamped to the configured range
    /// (the default when `None`). Checking that the topics may be subscribed to is the
    /// caller's job.
    pub async fn mint(
        &self,
        app: &AppId,
        topics: &[TopicName],
        ttl: Option<Duration>,
        sub: Option<String>,
    ) -> Result<MintedToken> {
        let ttl = ttl
            .unwrap_or(self.config.ttl_default)
            .clamp(self.config.ttl_min, self.config.ttl_max);
        let key = self.signing_key(app).await?;
        let now = now_ms() / 1000;
        let exp = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let claims = TokenClaims {
            app: app.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            iat: now,
            nbf: Some(now),
            exp,
            sub,
        };
        Ok(MintedToken {
            token: subscriber_token::sign(&claims, &key.kid, &key.secret),
            expires_at: exp.saturating_mul(1000),
        })
    }

    /// Verifies a token presented for `app`. Every failure is [`Error::Unauthorized`];
    /// the reason goes to the debug log only.
    pub async fn verify(&self, app: &AppId, token: &str) -> Result<TokenClaims> {
        match self.check(app, token).await {
            Ok(claims) => Ok(claims),
            Err(CheckError::Store(e)) => Err(e),
            Err(CheckError::Rejected(reason)) => {
                tracing::debug!(app = %app, %reason, "subscriber token refused");
                Err(Error::Unauthorized)
            }
        }
    }

    async fn check(&self, app: &AppId, token: &str) -> Result<TokenClaims, CheckError> {
        let unverified = subscriber_token::parse(token)?;
        let now = now_ms();
        let mut keys = self.keys(app, false).await?;
        if usable(&keys, &unverified.kid, now).is_none() {
            keys = self.reload_after_miss(app).await?;
        }
        let key = usable(&keys, &unverified.kid, now).ok_or(Rejected::UnknownKey)?;
        let max_lifetime = i64::try_from(self.config.ttl_max.as_secs()).unwrap_or(i64::MAX);
        Ok(unverified.verify(&key.secret, app.as_str(), now / 1000, max_lifetime)?)
    }

    /// Adds a new signing key for `app`; tokens signed with the previous keys stay valid
    /// for `grace` (the configured grace when `None`; zero ends them at once).
    pub async fn rotate(&self, app: &AppId, grace: Option<Duration>) -> Result<Rotation> {
        let now = now_ms();
        let grace = grace.unwrap_or(self.config.rotation_grace);
        let retire_at = now + grace.as_millis() as i64;
        let key = new_key(random_id("k"), now);
        self.store
            .rotate_signing_key(app, SUBSCRIBER_TOKEN_PURPOSE, &key, retire_at)
            .await?;
        self.keys(app, true).await?;
        tracing::info!(app = %app, kid = %key.kid, grace_secs = grace.as_secs(), "subscriber-token key rotated");
        Ok(Rotation {
            kid: key.kid,
            previous_valid_until: retire_at,
        })
    }

    /// The key new tokens are signed with: the newest current one, created if the app
    /// has none yet.
    async fn signing_key(&self, app: &AppId) -> Result<SigningKey> {
        let keys = self.keys(app, false).await?;
        if let Some(key) = current(&keys) {
            return Ok(key.clone());
        }
        let first = new_key(FIRST_KID.to_owned(), now_ms());
        self.store
            .insert_signing_key(app, SUBSCRIBER_TOKEN_PURPOSE, &first)
            .await?;
        // Read back: a concurrent first use on another node may have won the insert.
        let keys = self.keys(app, true).await?;
        current(&keys).cloned().ok_or_else(|| {
            Error::Store(StoreError::Failed(format!(
                "app '{app}' has no current signing key after one was stored"
            )))
        })
    }

    async fn keys(&self, app: &AppId, reload: bool) -> Result<Arc<[SigningKey]>> {
        if !reload {
            let cache = self.cache.lock().expect("key cache lock");
            if let Some(cached) = cache.get(app) {
                if cached.loaded.elapsed() < self.config.cache_ttl {
                    return Ok(cached.keys.clone());
                }
            }
        }
        let keys: Arc<[SigningKey]> = self
            .store
            .signing_keys(app, SUBSCRIBER_TOKEN_PURPOSE)
            .await?
            .into();
        self.cache.lock().expect("key cache lock").insert(
            app.clone(),
            CachedKeys {
                keys: keys.clone(),
                loaded: Instant::now(),
            },
        );
        Ok(keys)
    }

    /// Reloads an app's keys because a token named a kid this node does not know (a
    /// rotation on another node, or a forgery). Reloads happen at most once per
    /// [`MISS_RELOAD_INTERVAL`] per app: a miss soon after a load waits for the interval
    /// rather than being refused, so a fresh key is never turned away, and a flood of
    /// made-up kids costs the database one query a second.
    async fn reload_after_miss(&self, app: &AppId) -> Result<Arc<[SigningKey]>> {
        let since_load = {
            let cache = self.cache.lock().expect("key cache lock");
            cache.get(app).map(|c| c.loaded.elapsed())
        };
        if let Some(since_load) = since_load {
            if since_load < MISS_RELOAD_INTERVAL {
                tokio::time::sleep(MISS_RELOAD_INTERVAL - since_load).await;
                // Another request may have reloaded while this one waited.
                let cache = self.cache.lock().expect("key cache lock");
                if let Some(cached) = cache.get(app) {
                    if cached.loaded.elapsed() < MISS_RELOAD_INTERVAL {
                        return Ok(cached.keys.clone());
                    }
                }
            }
        }
        self.keys(app, true).await
    }
}

enum CheckError {
    Store(Error),
    Rejected(Rejected),
}

impl From<Error> for CheckError {
    fn from(e: Error) -> Self {
        CheckError::Store(e)
    }
}

impl From<Rejected> for CheckError {
    fn from(r: Rejected) -> Self {
        CheckError::Rejected(r)
    }
}

fn new_key(kid: String, now: i64) -> SigningKey {
    SigningKey {
        kid,
        secret: random_bytes::<32>().to_vec(),
        created_at: now,
        retired_at: None,
    }
}

/// The newest key that is not retired.
fn current(keys: &[SigningKey]) -> Option<&SigningKey> {
    keys.iter()
        .filter(|k| k.retired_at.is_none())
        .max_by_key(|k| (k.created_at, k.kid.as_str()))
}

/// The key with `kid`, if it still verifies at `now`.
fn usable<'a>(keys: &'a [SigningKey], kid: &str, now: i64) -> Option<&'a SigningKey> {
    keys.iter()
        .find(|k| k.kid == kid && k.retired_at.is_none_or(|at| now < at))
}
