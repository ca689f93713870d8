//! Committed events and the broadcaster trait through which the durable core tells the
//! realtime layer about them.
//!
//! `manager-core` calls [`RealtimeBroadcaster`] after a publish commits; the in-process
//! implementation lives in `orchestrator-core`, and cluster mode swaps in another one,
//! so the core never depends on the realtime crate.

use bytes::Bytes;

use crate::names::{AppId, TopicName};

/// An event that is durably stored in its topic's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEvent {
    /// The owning app.
    pub app: AppId,
    /// The topic.
    pub topic: TopicName,
    /// Position in the topic's log: gap-free, increasing in commit order.
    pub seq: i64,
    /// Globally unique event id.
    pub id: String,
    /// The event type (`message` unless the publisher named one).
    pub event_type: String,
    /// The event's `data`, as the publisher's raw JSON text.
    pub data: Bytes,
    /// Commit time, ms since the epoch.
    pub published_at: i64,
}

/// Why a broadcast failed. Never fails a publish: subscribers recover from the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("broadcast failed: {0}")]
pub struct BroadcastError(pub String);

/// Hands committed events to live subscribers. Called only after commit, in commit
/// order per topic; must not block (it runs on the publish path).
pub trait RealtimeBroadcaster: Send + Sync + 'static {
    /// Delivers `events` (possibly of several apps and topics) to live subscribers.
    fn broadcast(&self, events: &[CommittedEvent]) -> Result<(), BroadcastError>;

    /// Ends every live stream of the topic: it was deleted or is no longer external, so
    /// its subscribers must reconnect and be judged again.
    fn close_topic(&self, _app: &AppId, _topic: &TopicName) {}

    /// Ends every live stream of the app: it was deleted.
    fn close_app(&self, _app: &AppId) {}
}

/// A broadcaster with no subscribers, for processes that serve no realtime traffic.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopBroadcaster;

impl RealtimeBroadcaster for NoopBroadcaster {
    fn broadcast(&self, _events: &[CommittedEvent]) -> Result<(), BroadcastError> {
        Ok(())
    }
}
