//! The dispatcher's queries: claiming due outbox rows under a lease, loading what a
//! delivery needs, and recording each outcome (delivered, retry later, dead letter).
//! The circuit breaker's statements are in [`circuit`].

use std::collections::{HashMap, HashSet};

use picloud_shared::time::now_ms;

use super::circuit::{self, CircuitPolicy};
use crate::db::{begin_write, column, push_id_list, Db, WriteTx};
use crate::error::Result;
use crate::secret_box::Aad;
use crate::{on_db, on_tx};

crate::db::row_struct! {
    /// An outbox row claimed by this node. `attempts` already counts the attempt about to be
    /// made (it is incremented at claim time, so a crash mid-delivery still uses one up).
    #[derive(Debug, Clone)]
    pub struct ClaimedRow {
        /// Outbox id; `webhook-id` is derived from it, so it is stable across retries.
        pub id: i64,
        /// The app.
        pub app_id: String,
        /// The trigger to deliver to.
        pub trigger_id: String,
        /// The event's topic.
        pub topic: String,
        /// The event's seq.
        pub seq: i64,
        /// Set when this row delivers a dead letter to a `dead_letter` trigger.
        pub dead_letter_id: Option<i64>,
        /// Attempts including this one.
        pub attempts: i64,
    }
}

crate::db::row_struct! {
    /// Everything needed to make one delivery attempt.
    #[derive(Debug, Clone)]
    pub struct DeliveryPlan {
        /// The outbox row this plan is for.
        pub outbox_id: i64,
        /// The trigger's stored pacing: most in flight.
        pub max_in_flight: Option<i64>,
        /// The trigger's stored pacing: most started per second.
        pub max_per_second: Option<i64>,
        /// `webhook` or `script`.
        pub handler_kind: String,
        /// The webhook's URL, or the script's name.
        pub handler_target: String,
        /// The current signing secret.
        pub secret: String,
        /// The previous secret, while it is still honoured after a rotation.
        pub previous_secret: Option<String>,
        /// Until when the previous secret is honoured, ms.
        pub previous_secret_until: Option<i64>,
        /// The trigger's attempt budget.
        pub retry_max_attempts: i64,
        /// The trigger's delays in ms (JSON list), `None` for the default schedule.
        pub retry_schedule_ms: Option<String>,
        /// The event id, if the event still exists.
        pub event_id: Option<String>,
        /// The event type.
        pub event_type: Option<String>,
        /// The event data (raw JSON).
        pub payload: Option<Vec<u8>>,
        /// The event's commit time.
        pub published_at: Option<i64>,
    }
}

/// Queues dead letter `$4` (of app `$1`, event `$2`#`$3`) for each of the app's
/// enabled `dead_letter` triggers (`$6` = true), due at `$5`: run in the transaction that
/// writes the dead letter, so every dead letter is delivered to them once.
pub(crate) const FAN_OUT_DEAD_LETTER: &str =
    "INSERT INTO outbox (app_id, trigger_id, topic, seq, dead_letter_id, state,
                         attempts, next_attempt_at, created_at, updated_at)
     SELECT app_id, id, $2, $3, $4, 'pending', 0, $5, $5, $5 FROM triggers
     WHERE app_id = $1 AND source_kind = 'dead_letter' AND enabled = $6";

crate::db::row_struct! {
    /// A dead letter as delivered to `dead_letter` triggers.
    #[derive(Debug, Clone, serde::Serialize)]
    pub struct DeadLetterInfo {
        /// Dead letter id.
        pub id: i64,
        /// The trigger whose deliveries were exhausted.
        pub trigger_id: String,
        /// Attempts made.
        pub attempts: i64,
        /// The last error.
        pub last_error: Option<String>,
        /// The last HTTP status, if any.
        pub last_status: Option<i64>,
        /// When it was dead-lettered, ms.
        pub created_at: i64,
        /// For a row of an outbox source that PiCloud refused: the row as JSON text. The
        /// delivery carries it as the event (`{"source_row": …}`).
        #[serde(skip)]
        pub payload: Option<String>,
    }
}

/// What one attempt produced, as recorded in `delivery_attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// When the request started, ms.
    pub started_at: i64,
    /// How long it took, ms.
    pub duration_ms: i64,
    /// The HTTP status, if a response came.
    pub status: Option<i64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// A bounded prefix of the response body.
    pub response_body: Option<String>,
    /// The response body's size in bytes, when known.
    pub response_bytes: Option<i64>,
}

/// What the dispatcher decided after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Delivered,
    /// Failed; try again then.
    Retry {
        /// When the next attempt is due, ms.
        next_attempt_at: i64,
    },
    /// Failed for the last time; with a reason, the trigger is disabled too (410 Gone).
    Exhausted {
        /// Why the trigger gets disabled, if it does.
        disable_reason: Option<String>,
    },
}

/// One finished attempt, waiting to be recorded.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The claimed row.
    pub row: ClaimedRow,
    /// What happened.
    pub attempt: AttemptRecord,
    /// What follows.
    pub verdict: Verdict,
}

pub(super) const CLAIM_COLUMNS: &str =
    "id, app_id, trigger_id, topic, seq, dead_letter_id, attempts";

impl Db {
    /// Claims up to `limit` due rows of enabled triggers for `node` until `lease_until`,
    /// counting the attempt now. For `ordered` triggers only each topic's oldest pending
    /// row is due, so events reach them strictly in seq order and a failing head holds
    /// back that trigger's topic only. PostgreSQL skips rows other nodes hold
    /// (`FOR UPDATE SKIP LOCKED`); SQLite has one writer. A row whose lease expired (its
    /// node died) is due again. Rows due before `due_from` (the dispatcher's scan floor:
    /// none is pending there) are not looked at.
    pub async fn claim_due(
        &self,
        node: &str,
        limit: i64,
        lease_until: i64,
        due_from: i64,
        skip_triggers: &[String],
        skip_apps: &[String],
    ) -> Result<Vec<ClaimedRow>> {
        let now = now_ms();
        // Triggers at their pacing limits and apps at their share of the workers on this
        // node are left for later: on PostgreSQL as two arrays (one statement text, one
        // cached plan), on SQLite as NOT IN lists.
        let skip = match self {
            Db::Sqlite(..) => {
                let not_in = |column: &str, first: usize, values: &[String]| {
                    if values.is_empty() {
                        return String::new();
                    }
                    let params: Vec<String> = (0..values.len())
                        .map(|i| format!("${}", first + i))
                        .collect();
                    format!("AND {column} NOT IN ({})", params.join(", "))
                };
                format!(
                    "{} {}",
                    not_in("o.trigger_id", 8, skip_triggers),
                    not_in("o.app_id", 8 + skip_triggers.len(), skip_apps)
                )
            }
            Db::Postgres(..) => "AND o.trigger_id <> ALL($8) AND o.app_id <> ALL($9)".to_owned(),
        };
        // For an `ordered` trigger only the head of each topic is due: a row waits while an
        // earlier event of its topic is still pending (in flight or failing) for the trigger.
        // The triggers are excluded with NOT IN rather than joined: PostgreSQL rarely has
        // statistics for the small triggers table, and without them it guessed that a
        // join kept 1 row in 200 and sorted the whole backlog for every claim (20 ms a
        // claim at 20,000 pending rows) instead of reading the first rows of an index in
        // this order (under 1 ms; `outbox_pending_order` on PostgreSQL, `outbox_due` with
        // its rowid on SQLite).
        let due = format!(
            "SELECT o.id FROM outbox o
             WHERE o.state = 'pending' AND o.next_attempt_at <= $3 AND o.next_attempt_at >= $7
               AND (o.lease_until IS NULL OR o.lease_until < $3)
               AND o.trigger_id NOT IN (
                   SELECT id FROM triggers WHERE enabled <> $5 OR circuit_state <> 'closed')
               {skip}
               AND (o.trigger_id NOT IN (SELECT id FROM triggers WHERE ordered <> $6)
                    OR NOT EXISTS (
                   SELECT 1 FROM outbox p
                   WHERE p.trigger_id = o.trigger_id AND p.state = 'pending'
                     AND p.topic = o.topic AND p.seq < o.seq))
             ORDER BY o.next_attempt_at, o.id LIMIT $4"
        );
        let claim = |lock: &str| {
            format!(
                "UPDATE outbox SET attempts = attempts + 1, lease_until = $1, leased_by = $2,
                        updated_at = $3
                 WHERE id IN ({due}{lock}) RETURNING {CLAIM_COLUMNS}"
            )
        };
        let _gate = self.write_gate().await;
        let lock = match self {
            Db::Sqlite(..) => "",
            Db::Postgres(..) => " FOR UPDATE OF o SKIP LOCKED",
        };
        let sql = claim(lock);
        macro_rules! claim_query {
            () => {
                sqlx::query_as(&sql)
                    .bind(lease_until)
                    .bind(node)
                    .bind(now)
                    .bind(limit)
                    .bind(true)
                    .bind(false)
                    .bind(due_from)
            };
        }
        let rows = match self {
            Db::Sqlite(pool, ..) => {
                let mut query = claim_query!();
                for value in skip_triggers.iter().chain(skip_apps) {
                    query = query.bind(value);
                }
                query.fetch_all(pool).await?
            }
            Db::Postgres(pool, ..) => {
                claim_query!()
                    .bind(skip_triggers)
                    .bind(skip_apps)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// The earliest time a pending row is due, if any, looking only from `due_from` (the
    /// dispatcher's scan floor; `i64::MIN` for every row).
    pub async fn next_due(&self, due_from: i64) -> Result<Option<i64>> {
        let next = on_db!(self, pool, {
            sqlx::query_scalar(
                "SELECT MIN(next_attempt_at) FROM outbox
                 WHERE state = 'pending' AND next_attempt_at >= $1",
            )
            .bind(due_from)
            .fetch_one(pool)
            .await?
        });
        Ok(next)
    }

    /// Pending rows and the creation time of the oldest, for the queue gauges.
    pub async fn outbox_depth(&self) -> Result<(i64, Option<i64>)> {
        let depth = on_db!(self, pool, {
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending'")
                .fetch_one(pool)
                .await?
        });
        Ok(depth)
    }

    /// Loads, in one query, the trigger and event each claimed row delivers, keyed by
    /// outbox id. A row whose trigger was deleted is absent.
    pub async fn delivery_plans(&self, rows: &[ClaimedRow]) -> Result<HashMap<i64, DeliveryPlan>> {
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        let plans: Vec<DeliveryPlan> = match self {
            // SQLite has no arrays: the ids as an IN list.
            Db::Sqlite(pool, ..) => {
                let mut query = sqlx::QueryBuilder::new(PLANS);
                query.push("IN ");
                push_id_list(&mut query, rows.iter().map(|row| row.id));
                query.build_query_as().fetch_all(pool).await?
            }
            // One array: one statement text and plan whatever the number of rows.
            Db::Postgres(pool, ..) => {
                sqlx::query_as(&format!("{PLANS}= ANY($1)"))
                    .bind(column(rows, |row| row.id))
                    .fetch_all(pool)
                    .await?
            }
        };
        // Secrets are stored sealed for their trigger: open them for this delivery.
        let key = self.master_key()?;
        let triggers: HashMap<i64, &str> = rows
            .iter()
            .map(|row| (row.id, row.trigger_id.as_str()))
            .collect();
        plans
            .into_iter()
            .map(|mut plan| {
                let trigger = triggers.get(&plan.outbox_id).copied().unwrap_or_default();
                let aad = Aad::trigger_secret(trigger);
                plan.secret = key.open_text(&aad, &plan.secret)?;
                if let Some(previous) = &plan.previous_secret {
                    plan.previous_secret = Some(key.open_text(&aad, previous)?);
                }
                Ok((plan.outbox_id, plan))
            })
            .collect()
    }

    /// The dead letter a `dead_letter` delivery carries.
    pub async fn dead_letter_info(&self, id: i64) -> Result<Option<DeadLetterInfo>> {
        let info = on_db!(self, pool, {
            sqlx::query_as(
                "SELECT id, trigger_id, attempts, last_error, last_status, created_at, payload
                 FROM dead_letters WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(info)
    }

    /// Records finished attempts, all in one transaction (group commit: one fsync for
    /// many deliveries). The `delivery_attempts` rows and the outbox rows' new states are
    /// two set-based statements for the whole group; then each attempt's trigger circuit
    /// breaker (`circuit::record`, a statement per trigger when all went well). An
    /// exhausted event delivery also writes its dead letter and one outbox row per
    /// enabled `dead_letter` trigger of the app; an exhausted `dead_letter` delivery ends
    /// as `failed` and creates nothing (the recursion stop). Returns, per attempt, the
    /// dead letter written, if any.
    pub async fn record_finished(
        &self,
        finished: &[Finished],
        policy: &CircuitPolicy,
    ) -> Result<Vec<Option<i64>>> {
        let _gate = self.write_gate().await;
        let now = now_ms();
        let mut dead_letters = Vec::with_capacity(finished.len());
        // Triggers whose failure streak this group already reset: further successes in a
        // row change nothing, so they cost no statement.
        let mut reset = HashSet::new();
        let mut tx = self.begin_write_tx().await?;
        // A 410 disables its trigger and bumps its app's trigger generation. API changes
        // to triggers lock the app row, then the trigger row; so the app rows are taken
        // here first too, before any trigger row below: on PostgreSQL the two never wait
        // for each other in a cycle (a deadlock).
        for app in disabling_apps(finished) {
            on_tx!(&mut tx, conn, {
                let _app_exists = crate::triggers::bump_generation!(*conn, app);
            });
        }
        for group in finished.chunks(RECORD_STATEMENT_ROWS) {
            record_attempts(&mut tx, group, now).await?;
        }
        for done in finished {
            circuit::record(&mut tx, done, policy, now, &mut reset).await?;
            dead_letters.push(end_exhausted(&mut tx, done, now).await?);
        }
        tx.commit().await?;
        Ok(dead_letters)
    }

    /// Hands claimed rows back unsent because their trigger is at its pacing limit: each
    /// is due again at the given time (ms), and the attempt it counted is given back.
    pub async fn defer(&self, rows: &[(i64, i64)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let _gate = self.write_gate().await;
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            for (id, due) in rows {
                sqlx::query(
                    "UPDATE outbox SET lease_until = NULL, leased_by = NULL,
                            attempts = attempts - 1, next_attempt_at = $2
                     WHERE id = $1",
                )
                .bind(*id)
                .bind(*due)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Gives back this node's leases on rows it did not finish (graceful shutdown), so
    /// other nodes or the next start can claim them at once. The attempt they counted is
    /// given back too.
    pub async fn release_leases(&self, node: &str) -> Result<u64> {
        let released = on_db!(self, pool, {
            sqlx::query(
                "UPDATE outbox SET lease_until = NULL, leased_by = NULL, attempts = attempts - 1
                 WHERE leased_by = $1 AND state = 'pending'",
            )
            .bind(node)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(released)
    }
}

/// The apps whose triggers a group disables (a 410), sorted, each once.
fn disabling_apps(finished: &[Finished]) -> Vec<&str> {
    let mut apps: Vec<&str> = finished
        .iter()
        .filter(|f| {
            matches!(
                &f.verdict,
                Verdict::Exhausted {
                    disable_reason: Some(_)
                }
            )
        })
        .map(|f| f.row.app_id.as_str())
        .collect();
    apps.sort_unstable();
    apps.dedup();
    apps
}

/// Most attempts written by one statement: 9 bound values each stay far below SQLite's
/// 32,766 and PostgreSQL's 65,535 parameters.
const RECORD_STATEMENT_ROWS: usize = 1000;

/// Writes the attempts' `delivery_attempts` rows and their outbox rows' new states: one
/// multi-row INSERT and one UPDATE, whatever the group's size (a statement per attempt
/// made PostgreSQL's round trips the dispatcher's bound). PostgreSQL gets the group as
/// arrays, so each statement has one text and one cached plan; a VALUES list of the
/// group's length was a new text for nearly every group, parsed and planned again.
async fn record_attempts(tx: &mut WriteTx, group: &[Finished], now: i64) -> Result<()> {
    match tx {
        WriteTx::Sqlite(conn) => record_attempts_as_values(conn, group, now).await,
        WriteTx::Postgres(conn) => record_attempts_as_arrays(conn, group, now).await,
    }
}

/// [`record_attempts`] on SQLite, which has no arrays: VALUES lists.
async fn record_attempts_as_values(
    conn: &mut sqlx::SqliteConnection,
    group: &[Finished],
    now: i64,
) -> Result<()> {
    let mut insert = sqlx::QueryBuilder::new(
        "INSERT INTO delivery_attempts
         (outbox_id, app_id, attempt, started_at, duration_ms, status_code, error,
          response_body, response_bytes) ",
    );
    insert.push_values(group, |mut values, done| {
        let Finished { row, attempt, .. } = done;
        values
            .push_bind(row.id)
            .push_bind(&row.app_id)
            .push_bind(row.attempts)
            .push_bind(attempt.started_at)
            .push_bind(attempt.duration_ms)
            .push_bind(attempt.status)
            .push_bind(attempt.error.as_deref())
            .push_bind(attempt.response_body.as_deref())
            .push_bind(attempt.response_bytes);
    });
    insert.build().execute(&mut *conn).await?;

    let mut update = sqlx::QueryBuilder::new(
        "WITH done (id, state, next_attempt_at, last_status, last_error, finished_at) AS (",
    );
    update.push_values(group, |mut values, done| {
        let (state, next_attempt_at, finished_at) = outbox_state(done, now);
        values
            .push_bind(done.row.id)
            .push_bind(state)
            .push_bind(next_attempt_at)
            .push_bind(done.attempt.status)
            .push_bind(done.attempt.error.as_deref())
            .push_bind(finished_at);
    });
    update.push(") ");
    update.push(UPDATE_FROM_DONE);
    update.push_bind(now);
    update.push(" FROM done WHERE outbox.id = done.id");
    update.build().execute(&mut *conn).await?;
    Ok(())
}

/// [`record_attempts`] on PostgreSQL: each column of the group one array parameter.
async fn record_attempts_as_arrays(
    conn: &mut sqlx::PgConnection,
    group: &[Finished],
    now: i64,
) -> Result<()> {
    let ids = column(group, |done| done.row.id);
    let statuses = column(group, |done| done.attempt.status);
    let errors = column(group, |done| done.attempt.error.as_deref());
    sqlx::query(
        "INSERT INTO delivery_attempts
         (outbox_id, app_id, attempt, started_at, duration_ms, status_code, error,
          response_body, response_bytes)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[],
                              $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::bigint[])",
    )
    .bind(&ids)
    .bind(column(group, |done| done.row.app_id.as_str()))
    .bind(column(group, |done| done.row.attempts))
    .bind(column(group, |done| done.attempt.started_at))
    .bind(column(group, |done| done.attempt.duration_ms))
    .bind(&statuses)
    .bind(&errors)
    .bind(column(group, |done| done.attempt.response_body.as_deref()))
    .bind(column(group, |done| done.attempt.response_bytes))
    .execute(&mut *conn)
    .await?;

    let states = column(group, |done| outbox_state(done, now));
    sqlx::query(&format!(
        "WITH done AS (
             SELECT * FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                                  $6::text[], $7::bigint[])
                 AS done (id, state, next_attempt_at, last_status, last_error, finished_at))
         {UPDATE_FROM_DONE}$1 FROM done WHERE outbox.id = done.id"
    ))
    .bind(now)
    .bind(&ids)
    .bind(column(&states, |state| state.0))
    .bind(column(&states, |state| state.1))
    .bind(&statuses)
    .bind(&errors)
    .bind(column(&states, |state| state.2))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The outbox rows' new states from a `done` table of (id, state, next_attempt_at,
/// last_status, last_error, finished_at); `updated_at` is bound right after it.
const UPDATE_FROM_DONE: &str = "UPDATE outbox SET state = done.state,
        next_attempt_at = COALESCE(done.next_attempt_at, outbox.next_attempt_at),
        lease_until = NULL, leased_by = NULL, last_status = done.last_status,
        last_error = done.last_error, finished_at = done.finished_at, updated_at = ";

/// An attempt's outbox row afterwards: its state, when it is due again (a retry) and
/// when it finished (otherwise).
fn outbox_state(done: &Finished, now: i64) -> (&'static str, Option<i64>, Option<i64>) {
    match &done.verdict {
        Verdict::Delivered => ("delivered", None, Some(now)),
        Verdict::Retry { next_attempt_at } => ("pending", Some(*next_attempt_at), None),
        Verdict::Exhausted { .. } if done.row.dead_letter_id.is_some() => {
            ("failed", None, Some(now))
        }
        Verdict::Exhausted { .. } => ("dead", None, Some(now)),
    }
}

/// What a delivery needs of the claimed row `o`, its trigger and its event; the
/// statement ends with `WHERE o.id ` and the ids.
const PLANS: &str = "SELECT o.id AS outbox_id, t.max_in_flight, t.max_per_second,
        t.handler_kind, t.handler_target, t.secret, t.previous_secret,
        t.previous_secret_until, t.retry_max_attempts, t.retry_schedule_ms,
        e.id AS event_id, e.event_type, e.payload, e.published_at
 FROM outbox o
 JOIN triggers t ON t.id = o.trigger_id
 LEFT JOIN topic_events e ON e.app_id = o.app_id AND e.topic = o.topic AND e.seq = o.seq
 WHERE o.id ";

/// What an exhausted attempt leaves behind: a 410 disables its trigger; an event
/// delivery becomes a dead letter, fanned out to the app's `dead_letter` triggers in the
/// same transaction. Returns the dead letter's id.
async fn end_exhausted(tx: &mut WriteTx, done: &Finished, now: i64) -> Result<Option<i64>> {
    let Finished {
        row,
        attempt,
        verdict,
    } = done;
    let Verdict::Exhausted { disable_reason } = verdict else {
        return Ok(None);
    };
    on_tx!(tx, conn, {
        if let Some(reason) = disable_reason {
            // The app's generation was bumped at the start of the transaction.
            sqlx::query(
                "UPDATE triggers SET enabled = $2, disabled_reason = $3, updated_at = $4
                 WHERE id = $1",
            )
            .bind(&row.trigger_id)
            .bind(false)
            .bind(reason)
            .bind(now)
            .execute(&mut **conn)
            .await?;
        }
        if row.dead_letter_id.is_some() {
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dead_letters (app_id, outbox_id, trigger_id, topic, seq, attempts,
                                       last_error, last_status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&row.app_id)
        .bind(row.id)
        .bind(&row.trigger_id)
        .bind(&row.topic)
        .bind(row.seq)
        .bind(row.attempts)
        .bind(attempt.error.as_deref())
        .bind(attempt.status)
        .bind(now)
        .fetch_one(&mut **conn)
        .await?;
        sqlx::query(FAN_OUT_DEAD_LETTER)
            .bind(&row.app_id)
            .bind(&row.topic)
            .bind(row.seq)
            .bind(id)
            .bind(now)
            .bind(true)
            .execute(&mut **conn)
            .await?;
        Ok(Some(id))
    })
}
