//! What cluster notices mean for this node's live streams: events other nodes committed
//! are read from the log and broadcast here; a topic closed or an app deleted ends its
//! streams here too. The transport (PostgreSQL `NOTIFY`) is manager-core's; the notices
//! are `picloud_shared::cluster`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use picloud_shared::cluster::{names, Notice, NoticeHandler, SeqRange};
use picloud_shared::events::RealtimeBroadcaster;
use picloud_shared::realtime::RealtimeStore;
use picloud_shared::{AppId, TopicName};

use crate::broadcaster::Broadcaster;

/// Relays other nodes' commits and access changes to this node's broadcaster.
pub struct ClusterRelay {
    store: Arc<dyn RealtimeStore>,
    broadcaster: Arc<Broadcaster>,
}

impl ClusterRelay {
    /// A relay reading from `store` and broadcasting on `broadcaster`.
    pub fn new(store: Arc<dyn RealtimeStore>, broadcaster: Arc<Broadcaster>) -> Self {
        ClusterRelay { store, broadcaster }
    }

    /// Reads each range from the log (if anyone here listens to its topic) and
    /// broadcasts it.
    async fn relay(&self, ranges: &[SeqRange]) {
        for range in ranges {
            let Some((app, topic)) = names(&range.app, &range.topic) else {
                continue;
            };
            if !self.broadcaster.wants(&app, &topic) {
                continue;
            }
            let mut after = range.first - 1;
            while after < range.last {
                let limit = (range.last - after) as usize;
                match self.store.read_log(&app, &topic, after, limit).await {
                    Ok(events) if !events.is_empty() => {
                        after = events.last().map_or(range.last, |e| e.seq);
                        let events: Vec<_> =
                            events.into_iter().filter(|e| e.seq <= range.last).collect();
                        self.broadcast(&events);
                    }
                    // Pruned already, or the read failed: subscribers read the log themselves.
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "cluster relay: log read failed");
                        break;
                    }
                }
            }
        }
    }

    /// Broadcasts the latest event of every topic this node has subscribers for. A
    /// subscriber that has it skips it; one behind sees the gap and reads it from the log.
    async fn catch_up(&self) {
        let mut by_app: HashMap<AppId, Vec<TopicName>> = HashMap::new();
        for (app, topic) in self.broadcaster.live_topics() {
            by_app.entry(app).or_default().push(topic);
        }
        for (app, topics) in by_app {
            let heads = match self.store.topic_access(&app, &topics).await {
                Ok(heads) => heads,
                Err(error) => {
                    tracing::warn!(%error, "cluster relay: catch-up read failed");
                    continue;
                }
            };
            for (topic, head) in topics.iter().zip(heads) {
                let Some(head) = head.filter(|h| h.last_seq > 0) else {
                    continue;
                };
                match self.store.read_log(&app, topic, head.last_seq - 1, 1).await {
                    Ok(events) => self.broadcast(&events),
                    Err(error) => {
                        tracing::warn!(%error, "cluster relay: catch-up read failed")
                    }
                }
            }
        }
    }

    fn broadcast(&self, events: &[picloud_shared::events::CommittedEvent]) {
        if let Err(error) = self.broadcaster.broadcast(events) {
            tracing::warn!(%error, "cluster relay: broadcast failed");
        }
    }
}

#[async_trait]
impl NoticeHandler for ClusterRelay {
    async fn handle(&self, notice: &Notice, own: bool) {
        match notice {
            // This node broadcast its own commits already.
            Notice::Committed(_) if own => {}
            Notice::Committed(ranges) => self.relay(ranges).await,
            Notice::TopicClosed { app, topic } => {
                if let Some((app, topic)) = names(app, topic) {
                    self.broadcaster.close_topic(&app, &topic);
                }
            }
            Notice::AppDeleted { app } => {
                if let Ok(app) = AppId::parse(app) {
                    self.broadcaster.close_app(&app);
                }
            }
            Notice::KeyRevoked { .. } | Notice::ScriptChanged { .. } => {}
        }
    }

    /// Notices were lost while the transport reconnected.
    async fn reconnected(&self) {
        self.catch_up().await;
    }
}
