//! Realtime across nodes on PostgreSQL: every publish transaction also sends a
//! `NOTIFY` naming the seq ranges it committed (delivered by PostgreSQL only if, and
//! when, the transaction commits), and every node listens, reads those events from the
//! log and hands them to its own broadcaster. SQLite serves one node and needs none of
//! this.
//!
//! A notification lost to a dropped listener connection costs no event: a subscriber
//! that sees the next seq after a gap reads the gap from the log.

use std::sync::Arc;
use std::time::Duration;

use picloud_shared::events::RealtimeBroadcaster;
use picloud_shared::realtime::RealtimeStore;
use picloud_shared::{AppId, TopicName};
use tokio_util::sync::CancellationToken;

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
    /// A topic (or, with no topic, a whole app) stopped being subscribable: end its
    /// streams.
    Closed {
        /// The app.
        app: String,
        /// The topic; `None` for every topic of the app.
        topic: Option<String>,
    },
}

/// The payload announcing that `topic` of `app` (every topic when `None`) is no
/// longer subscribable: `node`, then `!close app [topic]`.
pub fn closed_payload(node: &str, app: &str, topic: Option<&str>) -> String {
    match topic {
        Some(topic) => format!("{node}\n!close {app} {topic}"),
        None => format!("{node}\n!close {app}"),
    }
}

/// Reads a payload back: the sending node and what it announces; `None` if malformed.
pub fn parse(payload: &str) -> Option<(&str, Announcement)> {
    let mut lines = payload.split('\n');
    let node = lines.next()?;
    let rest: Vec<&str> = lines.collect();
    if let [close] = rest.as_slice() {
        if let Some(target) = close.strip_prefix("!close ") {
            let mut f = target.split(' ');
            let app = f.next()?.to_owned();
            let topic = f.next().map(str::to_owned);
            return f
                .next()
                .is_none()
                .then_some((node, Announcement::Closed { app, topic }));
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

/// On PostgreSQL, tells the other nodes that `topic` of `app` (every topic when `None`)
/// is no longer subscribable, so they end its streams too. Nothing to do on SQLite.
pub async fn announce_closed(db: &Db, node: &str, app: &str, topic: Option<&str>) {
    let Db::Postgres(pool, _) = db else {
        return;
    };
    let sent = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(closed_payload(node, app, topic))
        .execute(pool)
        .await;
    if let Err(error) = sent {
        tracing::warn!(%error, app, "could not tell other nodes to end the streams");
    }
}

/// Listens for other nodes' commits and broadcasts them here, until `stop`. Returns at
/// once on SQLite.
pub async fn run_cluster_feed(
    db: Db,
    node: String,
    broadcaster: Arc<dyn RealtimeBroadcaster>,
    stop: CancellationToken,
) {
    let Db::Postgres(pool, _) = &db else {
        return;
    };
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
        loop {
            let notification = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.recv() => n,
            };
            match notification {
                Ok(n) => relay(&db, &node, n.payload(), broadcaster.as_ref()).await,
                Err(error) => {
                    tracing::warn!(%error, "cluster feed: connection lost; reconnecting");
                    break;
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

async fn relay(db: &Db, node: &str, payload: &str, broadcaster: &dyn RealtimeBroadcaster) {
    let Some((from, announcement)) = parse(payload) else {
        tracing::warn!("cluster feed: malformed notification ignored");
        return;
    };
    if from == node {
        return; // this node acted on its own changes already
    }
    let ranges = match announcement {
        Announcement::Committed(ranges) => ranges,
        Announcement::Closed { app, topic } => {
            let Ok(app) = AppId::parse(&app) else { return };
            match topic.map(|t| TopicName::parse(&t)) {
                Some(Ok(topic)) => broadcaster.close_topic(&app, &topic),
                Some(Err(_)) => {}
                None => broadcaster.close_app(&app),
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
        let closed = |topic: Option<&str>| Announcement::Closed {
            app: "shop".into(),
            topic: topic.map(str::to_owned),
        };
        assert_eq!(
            parse(&closed_payload("n", "shop", Some("a:b"))),
            Some(("n", closed(Some("a:b"))))
        );
        assert_eq!(
            parse(&closed_payload("n", "shop", None)),
            Some(("n", closed(None)))
        );
        assert_eq!(back, ranges);
        assert_eq!(parse("node\nshop orders 1"), None);
        assert!(payloads("n", &[]).is_empty());
    }
}
