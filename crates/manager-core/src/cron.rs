//! The cron ticker: fires `cron` triggers on their schedules. Every node runs one; each
//! tick still fires exactly once across nodes and restarts, because firing is one
//! transaction that moves the trigger's `cron_next_at` from the due tick to the next one
//! (only one node's update can match) and adds the tick's outbox row, which a unique
//! index on (trigger, tick) also keeps single. The dispatcher then delivers it like any
//! other row: to the webhook or the script, with retries and dead letters.
//!
//! A tick's outbox row has no topic ([`CRON_TOPIC`]) and the tick's scheduled time (ms)
//! as its seq, so deliveries list it and `ordered` triggers run ticks in order.

use std::sync::Arc;
use std::time::Duration;

use picloud_shared::time::now_ms;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::{begin_write, Db};
use crate::error::{Error, Result};
use crate::on_db;
use crate::triggers::schedule::{from_stored, plan_tick, CatchUp, Schedule};

/// The topic of a cron tick's outbox row: none (no topic has an empty name).
pub const CRON_TOPIC: &str = "";

/// How often the ticker looks for due triggers: ticks fire within about this much of
/// their time.
pub const TICK_INTERVAL: Duration = Duration::from_millis(500);

crate::db::row_struct! {
    /// A cron trigger whose next tick has come.
    #[derive(Debug)]
    struct DueTrigger {
        id: String,
        app_id: String,
        cron_schedule: Option<String>,
        cron_timezone: Option<String>,
        cron_catch_up: Option<String>,
        cron_next_at: i64,
    }
}

impl DueTrigger {
    fn schedule(&self) -> Result<(Schedule, CatchUp)> {
        from_stored(
            self.cron_schedule.as_deref(),
            self.cron_timezone.as_deref(),
            self.cron_catch_up.as_deref(),
        )
        .map_err(|what| Error::Corrupt(format!("stored cron trigger '{}': {what}", self.id)))
    }
}

impl Db {
    /// Fires every enabled cron trigger whose next tick is due at `now`; how many ticks
    /// this node fired.
    pub async fn fire_due_cron(&self, now: i64) -> Result<usize> {
        let due: Vec<DueTrigger> = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT id, app_id, cron_schedule, cron_timezone, cron_catch_up, cron_next_at
                 FROM triggers
                 WHERE source_kind = 'cron' AND enabled = $1 AND cron_next_at <= $2
                 ORDER BY cron_next_at LIMIT 1000",
            )
            .bind(true)
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        let mut fired = 0;
        for trigger in due {
            let (schedule, catch_up) = match trigger.schedule() {
                Ok(found) => found,
                Err(error) => {
                    tracing::error!(trigger = %trigger.id, %error, "cron trigger skipped");
                    continue;
                }
            };
            let plan = plan_tick(&schedule, catch_up, trigger.cron_next_at, now);
            if self
                .advance_cron(&trigger, plan.next, plan.fire, now)
                .await?
            {
                crate::metrics::cron_tick(plan.fire.is_some(), plan.missed);
                if let Some(tick) = plan.fire {
                    tracing::debug!(app = %trigger.app_id, trigger = %trigger.id, tick, "cron tick");
                    fired += 1;
                }
            }
        }
        Ok(fired)
    }

    /// Moves `trigger`'s next tick from the due one to `next` and, with `fire`, adds the
    /// outbox row of that tick, in one transaction; `false` (and nothing written) when
    /// another node moved it first or the trigger changed meanwhile.
    async fn advance_cron(
        &self,
        trigger: &DueTrigger,
        next: Option<i64>,
        fire: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        let _gate = self.write_gate().await;
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let moved = sqlx::query(
                "UPDATE triggers SET cron_next_at = $1
                 WHERE id = $2 AND cron_next_at = $3 AND enabled = $4",
            )
            .bind(next)
            .bind(&trigger.id)
            .bind(trigger.cron_next_at)
            .bind(true)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved != 1 {
                return Ok(false);
            }
            if let Some(tick) = fire {
                sqlx::query(
                    "INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts,
                         next_attempt_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&trigger.app_id)
                .bind(&trigger.id)
                .bind(CRON_TOPIC)
                .bind(tick)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }
}

/// Fires due cron triggers every [`TICK_INTERVAL`] until `stop` is cancelled, waking the
/// dispatcher when it fired any.
pub async fn run_cron(db: Db, dispatch_wake: Arc<Notify>, stop: CancellationToken) {
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        match db.fire_due_cron(now_ms()).await {
            Ok(0) => {}
            Ok(_) => dispatch_wake.notify_one(),
            Err(error) => tracing::warn!(%error, "firing cron triggers failed; retrying"),
        }
    }
}
