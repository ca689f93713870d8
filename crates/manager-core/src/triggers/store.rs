//! Trigger storage: create, list, update, delete and rotate secrets, each change bumping
//! the app's trigger generation in the same transaction.

use std::fmt;

use picloud_shared::ids::random_id;
use picloud_shared::time::now_ms;
use picloud_shared::{AppId, TopicName};

use super::model::new_secret;
use super::schedule::from_stored;
use super::*;
use crate::db::{begin_write, Db};
use crate::error::{Error, Result};
use crate::on_db;
use crate::secret_box::Aad;

crate::db::row_struct! {
    struct TriggerRow {
        id: String,
        app_id: String,
        source_kind: String,
        source_topic: Option<String>,
        handler_kind: String,
        handler_target: String,
        retry_max_attempts: i64,
        retry_schedule_ms: Option<String>,
        ordered: bool,
        max_in_flight: Option<i64>,
        max_per_second: Option<i64>,
        enabled: bool,
        disabled_reason: Option<String>,
        circuit_state: String,
        circuit_open_until: Option<i64>,
        cron_schedule: Option<String>,
        cron_timezone: Option<String>,
        cron_catch_up: Option<String>,
        cron_next_at: Option<i64>,
        consecutive_failures: i64,
        created_at: i64,
        updated_at: i64,
    }
}

const TRIGGER_COLUMNS: &str =
    "id, app_id, source_kind, source_topic, handler_kind, handler_target, \
     retry_max_attempts, retry_schedule_ms, ordered, max_in_flight, max_per_second, enabled, \
     disabled_reason, circuit_state, circuit_open_until, cron_schedule, cron_timezone, \
     cron_catch_up, cron_next_at, consecutive_failures, created_at, updated_at";

/// A stored trigger that does not read back: logged and answered 500, never blamed on
/// the caller.
fn corrupt(id: &str, what: impl fmt::Display) -> Error {
    Error::Corrupt(format!("stored trigger '{id}' is invalid: {what}"))
}

impl TriggerRow {
    fn into_trigger(self) -> Result<Trigger> {
        let id = self.id;
        let source = match (self.source_kind.as_str(), self.source_topic) {
            ("topic", Some(topic)) => TriggerSource::Topic {
                topic: TopicPattern::parse(&topic).map_err(|e| corrupt(&id, e))?,
            },
            ("dead_letter", _) => TriggerSource::DeadLetter {},
            ("cron", _) => {
                let (schedule, catch_up) = from_stored(
                    self.cron_schedule.as_deref(),
                    self.cron_timezone.as_deref(),
                    self.cron_catch_up.as_deref(),
                )
                .map_err(|e| corrupt(&id, e))?;
                TriggerSource::Cron {
                    schedule: schedule.pattern,
                    timezone: schedule.timezone,
                    catch_up,
                }
            }
            (kind, _) => return Err(corrupt(&id, format!("source '{kind}'"))),
        };
        let handler = match self.handler_kind.as_str() {
            "webhook" => Handler::Webhook {
                url: WebhookUrl::parse(&self.handler_target).map_err(|e| corrupt(&id, e))?,
            },
            "script" => Handler::Script {
                script: TopicName::parse(&self.handler_target).map_err(|e| corrupt(&id, e.0))?,
            },
            kind => return Err(corrupt(&id, format!("handler '{kind}'"))),
        };
        let retry =
            RetryPolicy::from_stored(self.retry_max_attempts, self.retry_schedule_ms.as_deref())
                .map_err(|e| corrupt(&id, e))?;
        let circuit_state = CircuitState::parse(&self.circuit_state)
            .ok_or_else(|| corrupt(&id, format!("circuit state '{}'", self.circuit_state)))?;
        Ok(Trigger {
            app: AppId::parse(&self.app_id).map_err(|e| corrupt(&id, e))?,
            source,
            handler,
            retry,
            ordered: self.ordered,
            pacing: Pacing::from_stored(self.max_in_flight, self.max_per_second),
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            circuit_state,
            // Half-open reuses the column for when its probe started: not a time to show.
            circuit_probe_at: self
                .circuit_open_until
                .filter(|_| circuit_state == CircuitState::Open),
            next_tick_at: self.cron_next_at,
            consecutive_failures: self.consecutive_failures,
            created_at: self.created_at,
            updated_at: self.updated_at,
            id,
        })
    }
}

/// The stored form of a trigger's configurable columns.
struct ConfigColumns<'a> {
    source_kind: &'static str,
    source_topic: Option<&'a str>,
    handler_kind: &'static str,
    handler_target: &'a str,
    retry_max_attempts: i64,
    retry_schedule_ms: String,
    cron_schedule: Option<&'a str>,
    cron_timezone: Option<&'static str>,
    cron_catch_up: Option<&'static str>,
}

impl<'a> ConfigColumns<'a> {
    fn of(trigger: &'a Trigger) -> Self {
        let (source_kind, source_topic) = match &trigger.source {
            TriggerSource::Topic { topic } => ("topic", Some(topic.as_str())),
            TriggerSource::DeadLetter {} => ("dead_letter", None),
            TriggerSource::Cron { .. } => ("cron", None),
        };
        let (cron_schedule, cron_timezone, cron_catch_up) = match &trigger.source {
            TriggerSource::Cron {
                schedule,
                timezone,
                catch_up,
            } => (
                Some(schedule.as_str()),
                Some(timezone.as_str()),
                Some(catch_up.as_str()),
            ),
            _ => (None, None, None),
        };
        let (handler_kind, handler_target) = trigger.handler.stored();
        let schedule_ms: Vec<u64> = trigger
            .retry
            .schedule_secs()
            .iter()
            .map(|secs| secs * 1000)
            .collect();
        ConfigColumns {
            source_kind,
            source_topic,
            handler_kind,
            handler_target,
            retry_max_attempts: i64::from(trigger.retry.max_attempts()),
            retry_schedule_ms: serde_json::to_string(&schedule_ms).expect("a list of numbers"),
            cron_schedule,
            cron_timezone,
            cron_catch_up,
        }
    }
}

/// Bumps `$app`'s trigger generation inside transaction `$tx`, evaluating to whether the
/// app exists. Every change to triggers runs this first, in its own transaction; on
/// PostgreSQL the row lock it takes also serializes concurrent changes to one app.
macro_rules! bump_generation {
    ($tx:expr, $app:expr) => {
        sqlx::query("UPDATE apps SET trigger_generation = trigger_generation + 1 WHERE id = $1")
            .bind($app)
            .execute(&mut *$tx)
            .await?
            .rows_affected()
            == 1
    };
}
pub(crate) use bump_generation;

/// The enabled topic triggers of an app (`$1`, with `$2` bound to `true`), oldest first:
/// what the publish path matches events against.
pub(crate) const ENABLED_TOPIC_TRIGGERS: &str = "SELECT id, source_topic FROM triggers
     WHERE app_id = $1 AND source_kind = 'topic' AND enabled = $2
       AND source_topic IS NOT NULL
     ORDER BY created_at, id";

impl Db {
    /// Creates a trigger for `app` with a fresh signing secret.
    pub async fn create_trigger(&self, app: &AppId, new: NewTrigger) -> Result<CreatedTrigger> {
        let now = now_ms();
        let next_tick_at = new.source.schedule().and_then(|s| s.next_after(now));
        let trigger = Trigger {
            id: random_id("trg"),
            app: app.clone(),
            source: new.source,
            handler: new.handler,
            retry: new.retry,
            ordered: new.ordered,
            pacing: new.pacing,
            enabled: new.enabled,
            disabled_reason: None,
            circuit_state: CircuitState::Closed,
            consecutive_failures: 0,
            circuit_probe_at: None,
            next_tick_at,
            created_at: now,
            updated_at: now,
        };
        let secret = new_secret();
        let sealed = self
            .master_key()?
            .seal(&Aad::trigger_secret(&trigger.id), secret.as_bytes());
        let c = ConfigColumns::of(&trigger);
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            if !bump_generation!(tx, app.as_str()) {
                return Err(Error::AppNotFound(app.to_string()));
            }
            sqlx::query(
                "INSERT INTO triggers (id, app_id, source_kind, source_topic, handler_kind,
                     handler_target, secret, retry_max_attempts, retry_schedule_ms, ordered,
                     enabled, circuit_state, created_at, updated_at, max_in_flight, max_per_second,
                     cron_schedule, cron_timezone, cron_catch_up, cron_next_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15,
                     $16, $17, $18, $19)",
            )
            .bind(&trigger.id)
            .bind(app.as_str())
            .bind(c.source_kind)
            .bind(c.source_topic)
            .bind(c.handler_kind)
            .bind(c.handler_target)
            .bind(&sealed)
            .bind(c.retry_max_attempts)
            .bind(&c.retry_schedule_ms)
            .bind(trigger.ordered)
            .bind(trigger.enabled)
            .bind(trigger.circuit_state.as_str())
            .bind(now)
            .bind(trigger.pacing.max_in_flight.map(i64::from))
            .bind(trigger.pacing.max_per_second.map(i64::from))
            .bind(c.cron_schedule)
            .bind(c.cron_timezone)
            .bind(c.cron_catch_up)
            .bind(trigger.next_tick_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(CreatedTrigger { trigger, secret })
    }

    /// The triggers of `app`, oldest first.
    pub async fn list_triggers(&self, app: &str) -> Result<Vec<Trigger>> {
        let rows: Vec<TriggerRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = $1 ORDER BY created_at, id"
            ))
            .bind(app)
            .fetch_all(pool)
            .await?
        });
        if rows.is_empty() {
            self.get_app(app).await?;
        }
        rows.into_iter().map(TriggerRow::into_trigger).collect()
    }

    /// One trigger of `app`; [`Error::TriggerNotFound`] if `app` has none with this id.
    pub async fn get_trigger(&self, app: &str, id: &str) -> Result<Trigger> {
        let row: Option<TriggerRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = $1 AND id = $2"
            ))
            .bind(app)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        match row {
            Some(row) => row.into_trigger(),
            None => Err(self.trigger_not_found(app, id).await),
        }
    }

    /// Applies `patch` to a trigger of `app` and returns the result. An empty patch
    /// changes nothing.
    pub async fn update_trigger(
        &self,
        app: &str,
        id: &str,
        patch: TriggerPatch,
    ) -> Result<Trigger> {
        if patch.is_empty() {
            return self.get_trigger(app, id).await;
        }
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            if !bump_generation!(tx, app) {
                return Err(Error::AppNotFound(app.to_owned()));
            }
            let row: Option<TriggerRow> = sqlx::query_as(&format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = $1 AND id = $2"
            ))
            .bind(app)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(Error::TriggerNotFound(id.to_owned()));
            };
            let mut trigger = row.into_trigger()?;
            let before = (trigger.source.clone(), trigger.enabled);
            patch.apply(&mut trigger);
            let now = now_ms();
            trigger.updated_at = now.max(trigger.updated_at);
            // A new schedule, or one turned back on, counts from now: ticks that went by
            // while it was off are not "missed".
            if (trigger.source.clone(), trigger.enabled) != before {
                trigger.next_tick_at = trigger.source.schedule().and_then(|s| s.next_after(now));
            }
            let c = ConfigColumns::of(&trigger);
            sqlx::query(
                "UPDATE triggers SET source_kind = $1, source_topic = $2, handler_kind = $3,
                     handler_target = $4, retry_max_attempts = $5, retry_schedule_ms = $6,
                     ordered = $7, enabled = $8, disabled_reason = $9, updated_at = $10,
                     max_in_flight = $13, max_per_second = $14, cron_schedule = $15,
                     cron_timezone = $16, cron_catch_up = $17, cron_next_at = $18
                 WHERE app_id = $11 AND id = $12",
            )
            .bind(c.source_kind)
            .bind(c.source_topic)
            .bind(c.handler_kind)
            .bind(c.handler_target)
            .bind(c.retry_max_attempts)
            .bind(&c.retry_schedule_ms)
            .bind(trigger.ordered)
            .bind(trigger.enabled)
            .bind(trigger.disabled_reason.as_deref())
            .bind(trigger.updated_at)
            .bind(app)
            .bind(id)
            .bind(trigger.pacing.max_in_flight.map(i64::from))
            .bind(trigger.pacing.max_per_second.map(i64::from))
            .bind(c.cron_schedule)
            .bind(c.cron_timezone)
            .bind(c.cron_catch_up)
            .bind(trigger.next_tick_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(trigger)
        })
    }

    /// Deletes a trigger of `app`, with its pending deliveries.
    pub async fn delete_trigger(&self, app: &str, id: &str) -> Result<()> {
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            if !bump_generation!(tx, app) {
                return Err(Error::AppNotFound(app.to_owned()));
            }
            let deleted = sqlx::query("DELETE FROM triggers WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(Error::TriggerNotFound(id.to_owned()));
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The current signing secret of a trigger of `app`.
    pub async fn trigger_secret(&self, app: &str, id: &str) -> Result<String> {
        let secret: Option<String> = on_db!(self, pool, {
            sqlx::query_scalar("SELECT secret FROM triggers WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        match secret {
            Some(secret) => self
                .master_key()?
                .open_text(&Aad::trigger_secret(id), &secret),
            None => Err(self.trigger_not_found(app, id).await),
        }
    }

    /// Replaces a trigger's signing secret with a fresh one. The old secret becomes the
    /// previous secret, which keeps signing for [`PREVIOUS_SECRET_GRACE_MS`] so receivers
    /// can switch without dropping deliveries.
    pub async fn rotate_trigger_secret(&self, app: &str, id: &str) -> Result<RotatedSecret> {
        let secret = new_secret();
        let sealed = self
            .master_key()?
            .seal(&Aad::trigger_secret(id), secret.as_bytes());
        let now = now_ms();
        let previous_until = now + PREVIOUS_SECRET_GRACE_MS;
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            if !bump_generation!(tx, app) {
                return Err(Error::AppNotFound(app.to_owned()));
            }
            let rotated = sqlx::query(
                "UPDATE triggers SET previous_secret = secret, previous_secret_until = $1,
                     secret = $2, updated_at = $3
                 WHERE app_id = $4 AND id = $5",
            )
            .bind(previous_until)
            .bind(&sealed)
            .bind(now)
            .bind(app)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if rotated == 0 {
                return Err(Error::TriggerNotFound(id.to_owned()));
            }
            tx.commit().await?;
        });
        Ok(RotatedSecret {
            secret,
            previous_secret_expires_at: previous_until,
        })
    }

    /// `app`'s trigger generation, bumped by every change to its triggers. A cache of
    /// the app's triggers reads this first and reloads when it moved.
    pub async fn trigger_generation(&self, app: &str) -> Result<i64> {
        let generation: Option<i64> = on_db!(self, pool, {
            sqlx::query_scalar("SELECT trigger_generation FROM apps WHERE id = $1")
                .bind(app)
                .fetch_optional(pool)
                .await?
        });
        generation.ok_or_else(|| Error::AppNotFound(app.to_owned()))
    }

    /// The id and pattern of every enabled topic trigger of `app`, oldest first: what
    /// the publish path matches events against. Empty for an unknown app.
    pub async fn enabled_topic_triggers(&self, app: &str) -> Result<Vec<(String, TopicPattern)>> {
        let rows: Vec<(String, String)> = on_db!(self, pool, {
            sqlx::query_as(ENABLED_TOPIC_TRIGGERS)
                .bind(app)
                .bind(true)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, topic)| match TopicPattern::parse(&topic) {
                Ok(pattern) => Ok((id, pattern)),
                Err(e) => Err(corrupt(&id, e)),
            })
            .collect()
    }

    /// The error for a trigger id `app` does not have: [`Error::AppNotFound`] if the app
    /// itself is missing, else [`Error::TriggerNotFound`].
    async fn trigger_not_found(&self, app: &str, id: &str) -> Error {
        match self.get_app(app).await {
            Ok(_) => Error::TriggerNotFound(id.to_owned()),
            Err(e) => e,
        }
    }
}
