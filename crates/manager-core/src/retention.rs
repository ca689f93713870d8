//! Retention: a background task that prunes events beyond their topic's retention and
//! idempotency keys past their lifetime. An event an undelivered outbox row or a dead
//! letter still points at is never pruned.

use std::time::Duration;

use picloud_shared::time::now_ms;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::error::Result;
use crate::on_db;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What one pruning pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Events removed from topic logs.
    pub events: u64,
    /// Idempotency keys forgotten.
    pub idempotency_keys: u64,
}

crate::db::row_struct! {
    struct RetainedTopic {
        app_id: String,
        name: String,
        last_seq: i64,
        retention_max_events: Option<i64>,
        retention_max_age_ms: Option<i64>,
    }
}

impl Db {
    /// Prunes every topic's log down to its retention as of `now` (ms), and forgets
    /// idempotency keys older than [`IDEMPOTENCY_KEY_TTL`].
    pub async fn prune(&self, now: i64) -> Result<Pruned> {
        let topics: Vec<RetainedTopic> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT app_id, name, last_seq, retention_max_events, retention_max_age_ms
                 FROM topics
                 WHERE retention_max_events IS NOT NULL OR retention_max_age_ms IS NOT NULL",
            )
            .fetch_all(pool)
            .await?
        });
        let mut pruned = Pruned::default();
        for RetainedTopic {
            app_id: app,
            name: topic,
            last_seq,
            retention_max_events: max_events,
            retention_max_age_ms: max_age_ms,
        } in topics
        {
            // Events at or below this seq are beyond the count limit ...
            let seq_cutoff = max_events.map_or(0, |n| last_seq - n);
            // ... and events published before this time are beyond the age limit.
            let time_cutoff = max_age_ms.map_or(i64::MIN, |ms| now.saturating_sub(ms));
            pruned.events += on_db!(self, pool, {
                sqlx::query(
                    "DELETE FROM topic_events
                     WHERE app_id = $1 AND topic = $2 AND (seq <= $3 OR published_at < $4)
                       AND NOT EXISTS (SELECT 1 FROM outbox o
                           WHERE o.app_id = topic_events.app_id AND o.topic = topic_events.topic
                             AND o.seq = topic_events.seq AND o.state = 'pending')
                       AND NOT EXISTS (SELECT 1 FROM dead_letters d
                           WHERE d.app_id = topic_events.app_id AND d.topic = topic_events.topic
                             AND d.seq = topic_events.seq)",
                )
                .bind(&app)
                .bind(&topic)
                .bind(seq_cutoff)
                .bind(time_cutoff)
                .execute(pool)
                .await?
                .rows_affected()
            });
        }
        let key_cutoff = now - IDEMPOTENCY_KEY_TTL.as_millis() as i64;
        pruned.idempotency_keys = on_db!(self, pool, {
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(key_cutoff)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(pruned)
    }
}

/// Prunes every `interval` until `shutdown`.
pub async fn run_retention(db: Db, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match db.prune(now_ms()).await {
            Ok(pruned) => {
                crate::metrics::events_pruned(pruned.events);
                if pruned.events > 0 {
                    tracing::debug!(events = pruned.events, "pruned events beyond retention");
                }
            }
            Err(error) => tracing::warn!(%error, "retention pass failed"),
        }
    }
}
