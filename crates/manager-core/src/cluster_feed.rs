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

/// Reads a payload back: the sending node and its ranges; `None` if malformed.
pub fn parse(payload: &str) -> Option<(&str, Vec<SeqRange>)> {
    let mut lines = payload.split('\n');
    let node = lines.next()?;
    let ranges = lines
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
    Some((node, ranges))
}

/// Listens for other nodes' commits and broadcasts them here, until `stop`. Returns at
/// once on SQLite.
pub async fn run_cluster_feed(
    db: Db,
    node: String,
    broadcaster: Arc<dyn RealtimeBroadcaster>,
    stop: CancellationToken,
) {
    let Db::Postgres(pool) = &db else {
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
    let Some((from, ranges)) = parse(payload) else {
        tracing::warn!("cluster feed: malformed notification ignored");
        return;
    };
    if from == node {
        return; // this node broadcast its own commits already
    }
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
            let (node, r) = parse(p).unwrap();
            assert_eq!(node, "node_1");
            back.extend(r);
        }
        assert_eq!(back, ranges);
        assert_eq!(parse("node\nshop orders 1"), None);
        assert!(payloads("n", &[]).is_empty());
    }
}
