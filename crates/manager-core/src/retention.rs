//! Retention: a background task that prunes events beyond their topic's retention,
//! idempotency keys past their lifetime and finished deliveries (with their attempts)
//! past the delivery history's. An event an undelivered outbox row or a dead letter
//! still points at is never pruned, nor is a delivery still pending.

use std::time::Duration;

use picloud_shared::time::now_ms;
use tokio_util::sync::CancellationToken;

use crate::db::{push_id_list, Db};
use crate::error::Result;
use crate::on_db;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a finished delivery (delivered, failed or dead) and its attempts stay in
/// the deliveries API and the dashboard after it finished, unless the operator says
/// otherwise (`--delivery-history-days`). Without a limit the outbox and
/// `delivery_attempts` grew by a row per trigger for every event, until the disk was
/// full. Dead letters are kept until they are replayed or deleted.
pub const DEFAULT_DELIVERY_HISTORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Outbox rows one pruning step reads, and at most deletes: a large backlog of old
/// deliveries goes in short transactions rather than one long one.
const DELIVERY_PRUNE_BATCH: i64 = 1000;

/// What one pruning pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Events removed from topic logs.
    pub events: u64,
    /// Idempotency keys forgotten.
    pub idempotency_keys: u64,
    /// Finished deliveries removed from the history, with their attempts.
    pub deliveries: u64,
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
    /// Prunes every topic's log down to its retention as of `now` (ms), forgets
    /// idempotency keys older than [`IDEMPOTENCY_KEY_TTL`] and deliveries that finished
    /// longer than `delivery_history` ago (see [`DEFAULT_DELIVERY_HISTORY`]).
    pub async fn prune(&self, now: i64, delivery_history: Duration) -> Result<Pruned> {
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
        pruned.deliveries = self
            .prune_deliveries(now.saturating_sub(delivery_history.as_millis() as i64))
            .await?;
        Ok(pruned)
    }

    /// Deletes the deliveries that finished before `cutoff` (ms); their attempts go with
    /// them (`ON DELETE CASCADE`). Nothing indexes `finished_at`, and an index would
    /// cost every finished delivery a write, so this walks the outbox in id order, which
    /// is creation order: only rows created before `cutoff` can have finished before
    /// it, so the walk stops at the first row created after it. What the walk passes
    /// over and keeps (pending, or finished since) is few: retries end within days.
    async fn prune_deliveries(&self, cutoff: i64) -> Result<u64> {
        let mut after = i64::MIN;
        let mut deleted = 0;
        loop {
            let rows: Vec<(i64, String, i64, Option<i64>)> = on_db!(self, pool, {
                sqlx::query_as(
                    "SELECT id, state, created_at, finished_at FROM outbox
                     WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(DELIVERY_PRUNE_BATCH)
                .fetch_all(pool)
                .await?
            });
            let Some(&(last, ..)) = rows.last() else {
                break;
            };
            after = last;
            let done = rows.len() < DELIVERY_PRUNE_BATCH as usize
                || rows
                    .iter()
                    .any(|&(_, _, created_at, _)| created_at >= cutoff);
            let old: Vec<i64> = rows
                .into_iter()
                .filter(|(_, state, _, finished_at)| {
                    state != "pending" && finished_at.is_some_and(|at| at < cutoff)
                })
                .map(|(id, ..)| id)
                .collect();
            if !old.is_empty() {
                deleted += self.delete_deliveries(&old, cutoff).await?;
            }
            if done {
                break;
            }
        }
        Ok(deleted)
    }

    /// Deletes outbox rows `ids` that are still finished before `cutoff` (another node
    /// may have pruned or a replay changed them since they were read).
    async fn delete_deliveries(&self, ids: &[i64], cutoff: i64) -> Result<u64> {
        const DELETE_STILL_OLD: &str =
            "DELETE FROM outbox WHERE state <> 'pending' AND finished_at < ";
        let _gate = self.write_gate().await;
        Ok(match self {
            Db::Sqlite(pool, ..) => {
                let mut delete = sqlx::QueryBuilder::new(DELETE_STILL_OLD);
                delete.push_bind(cutoff).push(" AND id IN ");
                push_id_list(&mut delete, ids.iter().copied());
                delete.build().execute(pool).await?.rows_affected()
            }
            Db::Postgres(pool, ..) => {
                sqlx::query(&format!("{DELETE_STILL_OLD}$1 AND id = ANY($2)"))
                    .bind(cutoff)
                    .bind(ids)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        })
    }
}

/// Prunes every `interval` until `shutdown`, keeping finished deliveries for
/// `delivery_history`.
pub async fn run_retention(
    db: Db,
    interval: Duration,
    delivery_history: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match db.prune(now_ms(), delivery_history).await {
            Ok(pruned) => {
                crate::metrics::events_pruned(pruned.events);
                crate::metrics::deliveries_pruned(pruned.deliveries);
                if pruned.events > 0 || pruned.deliveries > 0 {
                    tracing::debug!(
                        events = pruned.events,
                        deliveries = pruned.deliveries,
                        "pruned beyond retention"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "retention pass failed"),
        }
    }
}
