//! The seam between nodes: the notices one node sends the others, their wire format,
//! and the trait that acts on them.
//!
//! As centrifuge separates its Broker (moving data) from its Controller (node control),
//! the transport and the meaning live apart: manager-core sends notices inside the
//! transactions they describe and receives them (PostgreSQL `NOTIFY` / `LISTEN`, its
//! `cluster_feed`), while each [`NoticeHandler`] decides what a notice means for its own
//! state: orchestrator-core's relay for live streams, manager-core's authenticator for
//! its key cache.
//!
//! A payload is a sender line, then one line per item:
//!
//! ```text
//! node_4f…                 committed events, sent by the node that committed them:
//! shop orders 41 57        one `app topic first_seq last_seq` line per range
//!
//! db                       an access change (one per payload), acted on by every node,
//! !close shop orders       the sender too: a topic stopped being subscribable,
//! !key-revoked key_0123…   a key was revoked,
//! !app-deleted shop        an app was deleted,
//! !script-changed shop x   script x was saved, restored or deleted
//! ```

use async_trait::async_trait;

use crate::names::{AppId, TopicName};

/// Longest payload: PostgreSQL refuses `NOTIFY` payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;

/// The sender line of access changes, which come from a transaction, not a node.
pub const DATABASE_SENDER: &str = "db";

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

/// What one node tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Events committed: read them from the log.
    Committed(Vec<SeqRange>),
    /// A topic stopped being subscribable (made internal or deleted): end its streams.
    TopicClosed {
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
    /// An app was deleted: forget its keys and end its streams.
    AppDeleted {
        /// The app.
        app: String,
    },
    /// A script was saved, restored or deleted: forget its cached version.
    ScriptChanged {
        /// The app.
        app: String,
        /// The script's name.
        script: String,
    },
}

/// Acts on notices from the cluster. Every handler sees every notice; `own` says the
/// notice was sent by this node (its own commits need no relaying).
#[async_trait]
pub trait NoticeHandler: Send + Sync + 'static {
    /// Acts on one notice.
    async fn handle(&self, notice: &Notice, own: bool);

    /// The transport lost notices (its connection dropped) and is receiving again:
    /// catch up on what may have been missed.
    async fn reconnected(&self) {}
}

/// The payloads announcing `ranges` committed by node `node`, each under the size limit.
pub fn committed_payloads(node: &str, ranges: &[SeqRange]) -> Vec<String> {
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

/// The payload announcing that `topic` of `app` stopped being subscribable.
pub fn topic_closed_payload(app: &str, topic: &str) -> String {
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

/// The payload announcing that script `script` of `app` changed.
pub fn script_changed_payload(app: &str, script: &str) -> String {
    format!("{DATABASE_SENDER}\n!script-changed {app} {script}")
}

/// Reads a payload back: the sender and the notice; `None` if malformed.
pub fn parse(payload: &str) -> Option<(&str, Notice)> {
    let mut lines = payload.split('\n');
    let sender = lines.next()?;
    let rest: Vec<&str> = lines.collect();
    if let [line] = rest.as_slice() {
        if let Some(access) = line.strip_prefix('!') {
            let notice = match access.split(' ').collect::<Vec<_>>().as_slice() {
                ["close", app, topic] => Notice::TopicClosed {
                    app: (*app).to_owned(),
                    topic: (*topic).to_owned(),
                },
                ["key-revoked", key_id] => Notice::KeyRevoked {
                    key_id: (*key_id).to_owned(),
                },
                ["app-deleted", app] => Notice::AppDeleted {
                    app: (*app).to_owned(),
                },
                ["script-changed", app, script] => Notice::ScriptChanged {
                    app: (*app).to_owned(),
                    script: (*script).to_owned(),
                },
                _ => return None,
            };
            return Some((sender, notice));
        }
    }
    let ranges = rest
        .into_iter()
        .map(|line| {
            let mut fields = line.split(' ');
            let range = SeqRange {
                app: fields.next()?.to_owned(),
                topic: fields.next()?.to_owned(),
                first: fields.next()?.parse().ok()?,
                last: fields.next()?.parse().ok()?,
            };
            fields.next().is_none().then_some(range)
        })
        .collect::<Option<Vec<_>>>()?;
    Some((sender, Notice::Committed(ranges)))
}

/// The app and topic a notice names, validated; `None` if either no longer parses.
pub fn names(app: &str, topic: &str) -> Option<(AppId, TopicName)> {
    Some((AppId::parse(app).ok()?, TopicName::parse(topic).ok()?))
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
        let chunks = committed_payloads("node_1", &ranges);
        assert!(chunks.len() > 1);
        let mut back = Vec::new();
        for p in &chunks {
            assert!(p.len() < 8000);
            let (node, Notice::Committed(r)) = parse(p).unwrap() else {
                panic!("not ranges")
            };
            assert_eq!(node, "node_1");
            back.extend(r);
        }
        assert_eq!(back, ranges);
        let closed = Notice::TopicClosed {
            app: "shop".into(),
            topic: "a:b".into(),
        };
        let revoked = Notice::KeyRevoked {
            key_id: "key_1".into(),
        };
        let deleted = Notice::AppDeleted { app: "shop".into() };
        let changed = Notice::ScriptChanged {
            app: "shop".into(),
            script: "mint:token".into(),
        };
        for (payload, notice) in [
            (script_changed_payload("shop", "mint:token"), changed),
            (topic_closed_payload("shop", "a:b"), closed),
            (key_revoked_payload("key_1"), revoked),
            (app_deleted_payload("shop"), deleted),
        ] {
            assert_eq!(parse(&payload), Some((DATABASE_SENDER, notice)));
        }
        assert_eq!(parse("n\n!close shop"), None);
        assert_eq!(parse("node\nshop orders 1"), None);
        assert!(committed_payloads("n", &[]).is_empty());
    }
}
