//! The transport of cluster notices on PostgreSQL (the notices and their format are
//! `picloud_shared::cluster`): sending them inside the transaction they describe, and a
//! listener that hands every notice received to the node's handlers. SQLite serves one
//! node and needs none of this.
//!
//! `NOTIFY` is delivered by PostgreSQL only if, and when, the sending transaction commits.
//! A notice lost to a dropped listener connection is caught up on: once listening again,
//! the feed tells every handler ([`NoticeHandler::reconnected`]).

use std::sync::Arc;
use std::time::Duration;

use picloud_shared::cluster::{self, Notice, NoticeHandler};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::db::Db;

/// The PostgreSQL channel notices travel on.
pub const CHANNEL: &str = "picloud_events";

/// Sends a cluster notice inside a transaction, so other nodes get it only if, and when,
/// the transaction commits. A no-op on SQLite, which serves one node.
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

/// The authenticator forgets revoked keys and deleted apps on every node.
#[async_trait::async_trait]
impl NoticeHandler for Authenticator {
    async fn handle(&self, notice: &Notice, _own: bool) {
        match notice {
            Notice::KeyRevoked { key_id } => self.forget_key(key_id),
            Notice::AppDeleted { app } => self.forget_app(app),
            Notice::Committed(_) | Notice::TopicClosed { .. } | Notice::ScriptChanged { .. } => {}
        }
    }
}

/// Listens for notices and hands each to every handler, until `stop`. `node` is this
/// node's id, to tell its own notices. Returns at once on SQLite.
pub async fn run_cluster_feed(
    db: Db,
    node: String,
    handlers: Vec<Arc<dyn NoticeHandler>>,
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
            // Listening again: what was sent meanwhile reached no one here.
            for handler in &handlers {
                handler.reconnected().await;
            }
        }
        reconnecting = true;
        loop {
            // `try_recv`, not `recv`: `recv` reconnects by itself and would hide the loss.
            let notification = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match notification {
                Ok(Some(n)) => match cluster::parse(n.payload()) {
                    Some((sender, notice)) => {
                        for handler in &handlers {
                            handler.handle(&notice, sender == node).await;
                        }
                    }
                    None => tracing::warn!("cluster feed: malformed notification ignored"),
                },
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

/// Waits a moment before a retry; true if stopped meanwhile.
async fn pause(stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(Duration::from_secs(1)) => false,
    }
}
