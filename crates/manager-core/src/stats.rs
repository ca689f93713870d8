//! The counters behind the dashboard's overview charts, read from the database so they
//! cover every node of a cluster: events published, delivery attempts that succeeded or
//! failed, new dead letters, and the outbox backlog, per app.
//!
//! A sampler keeps a [`StatsCursor`] and asks [`Db::stats_since`] what happened after it;
//! each call is four small grouped queries (index ranges on primary keys, the topics
//! table, and the pending rows' index: `outbox_due` on SQLite, `outbox_pending_order` on
//! PostgreSQL).

use std::collections::HashMap;

use crate::db::Db;
use crate::error::Result;
use crate::on_db;

/// Where the previous sample stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsCursor {
    /// Per app, the sum of its topics' `last_seq`: events ever published to existing topics.
    pub published: HashMap<String, i64>,
    /// The newest `delivery_attempts` id counted.
    pub last_attempt_id: i64,
    /// The newest `dead_letters` id counted.
    pub last_dead_letter_id: i64,
}

/// What happened in one app since a cursor, and its backlog now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsDelta {
    /// Events published (a deleted topic takes its events out of the sum; never below 0).
    pub published: i64,
    /// Delivery attempts answered with a 2xx.
    pub deliveries_ok: i64,
    /// Delivery attempts that failed (an error status, a timeout, a refused connection).
    pub deliveries_failed: i64,
    /// Dead letters written.
    pub dead_letters: i64,
    /// Outbox rows waiting for delivery now.
    pub outbox_pending: i64,
}

/// Per app: published totals; attempts (max id, ok, all); dead letters (max id, count);
/// pending outbox rows.
type Rows = (
    Vec<(String, i64)>,
    Vec<(String, i64, i64, i64)>,
    Vec<(String, i64, i64)>,
    Vec<(String, i64)>,
);

impl Db {
    /// What happened in each app after `cursor` (with `None`, only the backlog and the
    /// returned cursor are meaningful) and the cursor to pass next time. Apps with
    /// nothing to report are absent.
    pub async fn stats_since(
        &self,
        cursor: Option<&StatsCursor>,
    ) -> Result<(StatsCursor, HashMap<String, StatsDelta>)> {
        let empty = StatsCursor::default();
        let from = cursor.unwrap_or(&empty);
        let (published, attempts, dead, pending): Rows = on_db!(self, pool, {
            let published = sqlx::query_as(
                "SELECT app_id, CAST(SUM(last_seq) AS BIGINT) FROM topics GROUP BY app_id",
            )
            .fetch_all(pool)
            .await?;
            let attempts = sqlx::query_as(
                "SELECT app_id, CAST(MAX(id) AS BIGINT),
                        CAST(SUM(CASE WHEN error IS NULL AND status_code >= 200
                                      AND status_code < 300 THEN 1 ELSE 0 END) AS BIGINT),
                        CAST(COUNT(*) AS BIGINT)
                 FROM delivery_attempts WHERE id > $1 GROUP BY app_id",
            )
            .bind(from.last_attempt_id)
            .fetch_all(pool)
            .await?;
            let dead = sqlx::query_as(
                "SELECT app_id, CAST(MAX(id) AS BIGINT), CAST(COUNT(*) AS BIGINT)
                 FROM dead_letters WHERE id > $1 GROUP BY app_id",
            )
            .bind(from.last_dead_letter_id)
            .fetch_all(pool)
            .await?;
            let pending = sqlx::query_as(
                "SELECT app_id, CAST(COUNT(*) AS BIGINT) FROM outbox
                 WHERE state = 'pending' GROUP BY app_id",
            )
            .fetch_all(pool)
            .await?;
            (published, attempts, dead, pending)
        });
        let mut deltas: HashMap<String, StatsDelta> = HashMap::new();
        let mut next = StatsCursor {
            published: HashMap::with_capacity(published.len()),
            last_attempt_id: from.last_attempt_id,
            last_dead_letter_id: from.last_dead_letter_id,
        };
        for (app, total) in published {
            if let Some(before) = cursor.map(|c| c.published.get(&app).copied().unwrap_or(0)) {
                let published = (total - before).max(0);
                if published > 0 {
                    deltas.entry(app.clone()).or_default().published = published;
                }
            }
            next.published.insert(app, total);
        }
        for (app, max_id, ok, all) in attempts {
            next.last_attempt_id = next.last_attempt_id.max(max_id);
            if cursor.is_some() {
                let delta = deltas.entry(app).or_default();
                delta.deliveries_ok = ok;
                delta.deliveries_failed = all - ok;
            }
        }
        for (app, max_id, count) in dead {
            next.last_dead_letter_id = next.last_dead_letter_id.max(max_id);
            if cursor.is_some() {
                deltas.entry(app).or_default().dead_letters = count;
            }
        }
        for (app, count) in pending {
            deltas.entry(app).or_default().outbox_pending = count;
        }
        Ok((next, deltas))
    }
}
