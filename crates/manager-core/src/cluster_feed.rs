//! Realtime across nodes on PostgreSQL: every publish transaction also sends a
//! `NOTIFY` naming the seq ranges it committed (delivered by PostgreSQL only if, and
//! when, the transaction commits), and every node listens, reads those events from the
//! log and hands them to its own broadcaster. SQLite serves one node and needs none of
//! this.
//!
//! A notification lost to a dropped listener connection costs no event: once listening
//! again, the feed re-reads the head of every topic this node has subscribers for and
//! broadcasts it, and a subscriber that sees a seq after a gap reads the gap from the
//! log.
//!
//! Changes that end access go the same way, sent inside the transaction that makes
//! them ([`FeedNotify`]): a topic closed to subscribers, a revoked key, a deleted app.
//! Every node, the sender included, acts on them; acting twice is harmless.

use std::sync::Arc;
use std::time::Duration;

use picloud_shared::events::RealtimeBroadcaster;
use picloud_shared::realtime::RealtimeStore;
use picloud_shared::{AppId, TopicName};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::db::Db;

/// The PostgreSQL channel publish transactions notify on.
pub const CHANNEL: &str = "picloud_events";

/// PostgreSQL refuses payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;

/// The seqs `first..=last` of one topic, committed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqRange {
    /// The app.
    pub app: String,
    /// The topic.
    pub topic: String,
    /// First seq committed.
    pub first: i64,
    /// Last seq committed.
    pub last: i64,
}

/// The payloads announcing `ranges` from node `node`: the node id on the first line,
/// then one `app topic first last` line per range, split to fit PostgreSQL's limit.
pub fn payloads(node: &str, ranges: &[SeqRange]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for r in ranges {
        let line = format!("\n{} {} {} {}", r.app, r.topic, r.first, r.last);
        if !current.is_empty() && current.len() + line.len() > MAX_PAYLOAD {
            out.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(node);
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// What a notification announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// Events committed.
    Committed(Vec<SeqRange>),
    /// A topic stopped being subscribable (made internal or deleted): end its streams.
    Closed {
        /// The app.
        app: String,
        /// The topic.
        topic: String,
    },
    /// An API key was revoked: forget it.
    KeyRevoked {
        /// The key's id.
        key_id: String,
    },
    /// An app was deleted: end its streams and forget its keys.
    AppDeleted {
        /// The app.
        app: String,
    },
}

/// What announcements made by database changes give as their sender: no node skips them.
const DATABASE_SENDER: &str = "db";

/// The payload announcing that `topic` of `app` is no longer subscribable.
pub fn closed_payload(app: &str, topic: &str) -> String {
    format!("{DATABASE_SENDER}\n!close {app} {topic}")
}

/// The payload announcing that key `key_id` was revoked.
pub fn key_revoked_payload(key_id: &str) -> String {
    format!("{DATABASE_SENDER}\n!key-revoked {key_id}")
}

/// The payload announcing that `app` was deleted.
pub fn app_deleted_payload(app: &str) -> String {
    format!("{DATABASE_SENDER}\n!app-deleted {app}")
}

/// Reads a payload back: the sending node and what it announces; `None` if malformed.
pub fn parse(payload: &str) -> Option<(&str, Announcement)> {
    let mut lines = payload.split('\n');
    let node = lines.next()?;
    let rest: Vec<&str> = lines.collect();
    if let [notice] = rest.as_slice() {
        if let Some(notice) = notice.strip_prefix('!') {
            let fields: Vec<&str> = notice.split(' ').collect();
            let announcement = match fields.as_slice() {
                ["close", app, topic] => Announcement::Closed {
                    app: (*app).to_owned(),
                    topic: (*topic).to_owned(),
                },
                ["key-revoked", key_id] => Announcement::KeyRevoked {
                    key_id: (*key_id).to_owned(),
                },
                ["app-deleted", app] => Announcement::AppDeleted {
                    app: (*app).to_owned(),
                },
                _ => return None,
            };
            return Some((node, announcement));
        }
    }
    let ranges = rest
        .into_iter()
        .map(|line| {
            let mut f = line.split(' ');
            let range = SeqRange {
                app: f.next()?.to_owned(),
                topic: f.next()?.to_owned(),
                first: f.next()?.parse().ok()?,
                last: f.next()?.parse().ok()?,
            };
            f.next().is_none().then_some(range)
        })
        .collect::<Option<Vec<_>>>()?;
    Some((node, Announcement::Committed(ranges)))
}

/// Sends a cluster-feed payload inside a transaction, so other nodes get it only if,
/// and when, the transaction commits. A no-op on SQLite, which serves one node.
pub(crate) trait FeedNotify {
    /// Queues `payload` on [`CHANNEL`].
    fn notify_feed(
        &mut self,
        payload: String,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
}

impl FeedNotify for sqlx::SqliteConnection {
    async fn notify_feed(&mut self, _payload: String) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

impl FeedNotify for sqlx::PgConnection {
    async fn notify_feed(&mut self, payload: String) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(self)
            .await
            .map(drop)
    }
}

/// Listens for other nodes' commits and broadcasts them here, until `stop`. Returns at
/// once on SQLite.
pub async fn run_cluster_feed(
    db: Db,
    node: String,
    broadcaster: Arc<dyn RealtimeBroadcaster>,
    auth: Arc<Authenticator>,
    stop: CancellationToken,
) {
    let Db::Postgres(pool, _) = &db else {
        return;
    };
    let mut reconnecting = false;
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cluster feed: cannot connect; retrying");
                if pause(&stop).await {
                    return;
                }
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "cluster feed: LISTEN failed; retrying");
            if pause(&stop).await {
                return;
            }
            continue;
        }
        if reconnecting {
            // Listening again: what was committed meanwhile was announced to no one here.
            catch_up(&db, broadcaster.as_ref()).await;
        }
        reconnecting = true;
        loop {
            // `try_recv`, not `recv`: `recv` reconnects by itself and would hide the loss.
            let notification = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match notification {
                Ok(Some(n)) => relay(&db, &node, n.payload(), broadcaster.as_ref(), &auth).await,
                Ok(None) => {
                    tracing::warn!("cluster feed: connection lost; reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "cluster feed: connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Broadcasts the latest event of every topic this node has subscribers for. A
/// subscriber that has it skips it; one behind sees the gap and reads it from the log.
async fn catch_up(db: &Db, broadcaster: &dyn RealtimeBroadcaster) {
    let mut by_app: std::collections::HashMap<AppId, Vec<TopicName>> = Default::default();
    for (app, topic) in broadcaster.live_topics() {
        by_app.entry(app).or_default().push(topic);
    }
    for (app, topics) in by_app {
        let heads = match db.topic_access(&app, &topics).await {
            Ok(heads) => heads,
            Err(error) => {
                tracing::warn!(error = %error.message, "cluster feed: catch-up read failed");
                continue;
            }
        };
        for (topic, head) in topics.iter().zip(heads) {
            let Some(head) = head.filter(|h| h.last_seq > 0) else {
                continue;
            };
            match db.read_log(&app, topic, head.last_seq - 1, 1).await {
                Ok(events) => {
                    if let Err(error) = broadcaster.broadcast(&events) {
                        tracing::warn!(%error, "cluster feed: broadcast failed");
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error.message, "cluster feed: catch-up read failed")
                }
            }
        }
    }
}

/// Waits a moment before a retry; true if stopped meanwhile.
async fn pause(stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(Duration::from_secs(1)) => false,
    }
}

async fn relay(
    db: &Db,
    node: &str,
    payload: &str,
    broadcaster: &dyn RealtimeBroadcaster,
    auth: &Authenticator,
) {
    let Some((from, announcement)) = parse(payload) else {
        tracing::warn!("cluster feed: malformed notification ignored");
        return;
    };
    let ranges = match announcement {
        // This node broadcast its own commits already.
        Announcement::Committed(_) if from == node => return,
        Announcement::Committed(ranges) => ranges,
        Announcement::Closed { app, topic } => {
            if let (Ok(app), Ok(topic)) = (AppId::parse(&app), TopicName::parse(&topic)) {
                broadcaster.close_topic(&app, &topic);
            }
            return;
        }
        Announcement::KeyRevoked { key_id } => {
            auth.forget_key(&key_id);
            return;
        }
        Announcement::AppDeleted { app } => {
            auth.forget_app(&app);
            if let Ok(app) = AppId::parse(&app) {
                broadcaster.close_app(&app);
            }
            return;
        }
    };
    for range in ranges {
        let (Ok(app), Ok(topic)) = (AppId::parse(&range.app), TopicName::parse(&range.topic))
        else {
            continue;
        };
        if !broadcaster.wants(&app, &topic) {
            continue;
        }
        let mut after = range.first - 1;
        while after < range.last {
            let limit = (range.last - after) as usize;
            match db.read_log(&app, &topic, after, limit).await {
                Ok(events) if !events.is_empty() => {
                    after = events.last().map_or(range.last, |e| e.seq);
                    let events: Vec<_> =
                        events.into_iter().filter(|e| e.seq <= range.last).collect();
                    if let Err(error) = broadcaster.broadcast(&events) {
                        tracing::warn!(%error, "cluster feed: broadcast failed");
                    }
                }
                // Pruned already, or the read failed: subscribers read the log themselves.
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(error = %error.message, "cluster feed: log read failed");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_fit() {
        let ranges: Vec<SeqRange> = (0..200)
            .map(|i| SeqRange {
                app: "shop".into(),
                topic: format!("orders:{i}:{}", "x".repeat(50)),
                first: i,
                last: i + 5,
            })
            .collect();
        let chunks = payloads("node_1", &ranges);
        assert!(chunks.len() > 1);
        let mut back = Vec::new();
        for p in &chunks {
            assert!(p.len() < 8000);
            let (node, Announcement::Committed(r)) = parse(p).unwrap() else {
                panic!("not ranges")
            };
            assert_eq!(node, "node_1");
            back.extend(r);
        }
        let closed = Announcement::Closed {
            app: "shop".into(),
            topic: "a:b".into(),
        };
        assert_eq!(
            parse(&closed_payload("shop", "a:b")),
            Some((DATABASE_SENDER, closed))
        );
        let revoked = Announcement::KeyRevoked {
            key_id: "key_1".into(),
        };
        assert_eq!(
            parse(&key_revoked_payload("key_1")),
            Some((DATABASE_SENDER, revoked))
        );
        let deleted = Announcement::AppDeleted { app: "shop".into() };
        assert_eq!(
            parse(&app_deleted_payload("shop")),
            Some((DATABASE_SENDER, deleted))
        );
        assert_eq!(parse("n\n!close shop"), None);
        assert_eq!(back, ranges);
        assert_eq!(parse("node\nshop orders 1"), None);
        assert!(payloads("n", &[]).is_empty());
    }
}
