//! What the realtime layer needs from durable storage, as a trait `manager-core`
//! implements, so that `orchestrator-core` reads topics, the event log and its signing
//! keys without depending on the storage crate.

use async_trait::async_trait;

use crate::events::CommittedEvent;
use crate::names::{AppId, TopicName};

/// Storage results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store call failed, in storage terms: the realtime layer decides what its caller
/// is told. The store logs what is internal before it answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot serve now (unreachable, overloaded, out of space): retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The request carried something storage cannot keep (text with NUL characters).
    #[error("{0}")]
    Refused(String),
    /// The app does not exist (it was deleted meanwhile).
    #[error("app '{0}' not found")]
    AppNotFound(String),
    /// Anything else: a bug, or stored data that does not read back.
    #[error("storage failed: {0}")]
    Failed(String),
}

/// The facts about a topic that decide who may subscribe and where its log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicAccess {
    /// Outsiders may subscribe at all.
    pub external_subscribable: bool,
    /// Subscribers need a subscriber token (`auth_mode: token`); otherwise public.
    pub requires_token: bool,
    /// The seq of the newest committed event (0 when none).
    pub last_seq: i64,
}

/// The `purpose` under which subscriber-token signing keys are kept in `app_secrets`.
pub const SUBSCRIBER_TOKEN_PURPOSE: &str = "subscriber_token";

/// One HMAC key of an app, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// Key id, carried in a token's header.
    pub kid: String,
    /// The 32 secret bytes.
    pub secret: Vec<u8>,
    /// Creation time, ms since the epoch; the newest unretired key signs.
    pub created_at: i64,
    /// When the key stops verifying, ms since the epoch; `None` while it is current.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// Durable storage as the realtime layer sees it.
#[async_trait]
pub trait RealtimeStore: Send + Sync + 'static {
    /// The access facts of each named topic of `app`, in the order asked; `None` where
    /// the app or the topic does not exist.
    async fn topic_access(
        &self,
        app: &AppId,
        topics: &[TopicName],
    ) -> StoreResult<Vec<Option<TopicAccess>>>;

    /// Up to `limit` events of a topic with seq greater than `after`, in seq order.
    async fn read_log(
        &self,
        app: &AppId,
        topic: &TopicName,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<CommittedEvent>>;

    /// The oldest seq still in a topic's log, `None` if the log is empty.
    async fn log_start(&self, app: &AppId, topic: &TopicName) -> StoreResult<Option<i64>>;

    /// Every signing key of `app` for `purpose`, retired ones included.
    async fn signing_keys(&self, app: &AppId, purpose: &str) -> StoreResult<Vec<SigningKey>>;

    /// Stores `key` unless a key with its kid exists (`ON CONFLICT DO NOTHING`), so that
    /// nodes creating an app's first key at the same moment agree on one.
    async fn insert_signing_key(
        &self,
        app: &AppId,
        purpose: &str,
        key: &SigningKey,
    ) -> StoreResult<()>;

    /// In one transaction: retires every current key of `app` for `purpose` at
    /// `retire_at` (ms) and stores `key` as the new current one.
    async fn rotate_signing_key(
        &self,
        app: &AppId,
        purpose: &str,
        key: &SigningKey,
        retire_at: i64,
    ) -> StoreResult<()>;

    /// Whether the dashboard session whose cookie secret is `secret` is still signed in
    /// (neither signed out nor expired). A stream opened with a session re-checks it, so
    /// it ends with the session, on every node.
    async fn session_active(&self, secret: &str) -> StoreResult<bool>;
}
