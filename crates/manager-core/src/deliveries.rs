//! Deliveries (outbox rows seen from the API) with their attempt history, and dead
//! letters: listing, inspecting, retrying, replaying (paced) and purging.

use picloud_shared::time::now_ms;
use serde::Serialize;

use crate::db::{begin_write, push_id_list, Db};
use crate::error::{Error, Result};
use crate::event_log::LoggedEvent;
use crate::on_db;

/// Most rows one list returns.
pub const MAX_PAGE: i64 = 500;

crate::db::row_struct! {
    /// One delivery: an event (or a dead letter) on its way to one trigger.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
    pub struct Delivery {
        /// Outbox id (the `webhook-id` is `msg_<id>`).
        pub id: i64,
        /// The trigger.
        pub trigger_id: String,
        /// The event's topic.
        pub topic: String,
        /// The event's seq.
        pub seq: i64,
        /// Set when this delivers a dead letter to a `dead_letter` trigger.
        pub dead_letter_id: Option<i64>,
        /// `pending`, `delivered`, `failed` (a dead-letter delivery that gave up) or `dead`.
        pub state: String,
        /// Attempts made (including one in flight).
        pub attempts: i64,
        /// When the next attempt is due, ms.
        pub next_attempt_at: i64,
        /// The last HTTP status.
        pub last_status: Option<i64>,
        /// The last error.
        pub last_error: Option<String>,
        /// Created, ms.
        pub created_at: i64,
        /// Finished (delivered, failed or dead), ms.
        pub finished_at: Option<i64>,
    }
}

crate::db::row_struct! {
    /// One attempt of a delivery.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
    pub struct Attempt {
        /// 1 for the first attempt.
        pub attempt: i64,
        /// Start, ms.
        pub started_at: i64,
        /// Duration, ms.
        pub duration_ms: i64,
        /// HTTP status, if a response came.
        pub status_code: Option<i64>,
        /// What went wrong; without `deliveries:manage` only its class (`http_status`,
        /// `timeout`, `connect_failed`, `refused_address`, `request_failed`, `script_failed`,
        /// `delivery_failed`).
        pub error: Option<String>,
        /// The first KiB of the response body, kept only for JSON and plain-text answers;
        /// shown only with `deliveries:manage`.
        pub response_body: Option<String>,
        /// The response body's size in bytes: as the receiver declared it, or as read when
        /// it ended within 64 KiB; `null` when unknown or no response came. Shown to every
        /// reader.
        pub response_bytes: Option<i64>,
    }
}

crate::db::row_struct! {
    /// A dead letter: a delivery whose attempts were exhausted.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
    pub struct DeadLetter {
        /// Id.
        pub id: i64,
        /// The outbox row that died.
        pub outbox_id: i64,
        /// Its trigger.
        pub trigger_id: String,
        /// The event's topic.
        pub topic: String,
        /// The event's seq.
        pub seq: i64,
        /// Attempts made.
        pub attempts: i64,
        /// The last error.
        pub last_error: Option<String>,
        /// The last HTTP status.
        pub last_status: Option<i64>,
        /// Dead-lettered at, ms.
        pub created_at: i64,
        /// Last replayed at, ms.
        pub replayed_at: Option<i64>,
        /// For a row of an outbox source that could not be published (`trigger_id` names
        /// the source, `outbox_id` the row): the row as JSON text (`topic`, `type`, `data`,
        /// `idempotency_key`). Absent for deliveries.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub payload: Option<String>,
    }
}

/// The coarse class of a stored delivery error: what callers without
/// `deliveries:manage` see instead of the error text. The full text (a receiver's answer,
/// why a connection failed) would let anyone who can read an app use its webhooks as a
/// read or port-scan oracle on whatever the URLs point at.
pub fn error_class(error: &str) -> &'static str {
    if error.starts_with("HTTP ") {
        "http_status"
    } else if error.starts_with("timed out") {
        "timeout"
    } else if error.starts_with("connection failed") {
        "connect_failed"
    } else if error.contains("refused address") || error.contains("only to refused") {
        "refused_address"
    } else if error.starts_with("request failed") {
        "request_failed"
    } else if error.starts_with("script ") {
        "script_failed"
    } else {
        "delivery_failed"
    }
}

fn classify(error: &mut Option<String>) {
    if let Some(text) = error {
        *text = error_class(text).to_owned();
    }
}

impl Delivery {
    /// Keeps only the class of the last error (for callers without `deliveries:manage`).
    pub fn redact(&mut self) {
        classify(&mut self.last_error);
    }
}

impl Attempt {
    /// Keeps only the class of the error and drops the response excerpt (for callers
    /// without `deliveries:manage`).
    pub fn redact(&mut self) {
        classify(&mut self.error);
        self.response_body = None;
    }
}

impl DeadLetter {
    /// Keeps only the class of the last error (for callers without `deliveries:manage`).
    pub fn redact(&mut self) {
        classify(&mut self.last_error);
    }
}

/// Filters for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this state.
    pub state: Option<String>,
    /// Only this trigger.
    pub trigger: Option<String>,
    /// Only ids below this (pagination: pass the last id of the previous page).
    pub before: Option<i64>,
    /// Page size.
    pub limit: i64,
}

const DELIVERY_COLUMNS: &str = "id, trigger_id, topic, seq, dead_letter_id, state, attempts,
    next_attempt_at, last_status, last_error, created_at, finished_at";
const DEAD_LETTER_COLUMNS: &str = "id, outbox_id, trigger_id, topic, seq, attempts, last_error,
    last_status, created_at, replayed_at, payload";

/// The states a delivery can be in.
pub const DELIVERY_STATES: [&str; 4] = ["pending", "delivered", "failed", "dead"];

impl Db {
    /// Deliveries of `app`, newest first.
    pub async fn list_deliveries(
        &self,
        app: &str,
        filter: &DeliveryFilter,
    ) -> Result<Vec<Delivery>> {
        if let Some(state) = &filter.state {
            if !DELIVERY_STATES.contains(&state.as_str()) {
                return Err(Error::Invalid(format!(
                    "state must be one of {}",
                    DELIVERY_STATES.join(", ")
                )));
            }
        }
        let rows = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox
                 WHERE app_id = $1 AND ($2 IS NULL OR state = $2) AND ($3 IS NULL OR trigger_id = $3)
                   AND id < $4
                 ORDER BY id DESC LIMIT $5"
            ))
            .bind(app)
            .bind(filter.state.as_deref())
            .bind(filter.trigger.as_deref())
            .bind(filter.before.unwrap_or(i64::MAX))
            .bind(filter.limit.clamp(1, MAX_PAGE))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// One delivery with its attempts, oldest first.
    pub async fn get_delivery(&self, app: &str, id: i64) -> Result<(Delivery, Vec<Attempt>)> {
        let (delivery, attempts) = on_db!(self, pool, {
            let delivery: Option<Delivery> = sqlx::query_as(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE app_id = $1 AND id = $2"
            ))
            .bind(app)
            .bind(id)
            .fetch_optional(pool)
            .await?;
            let attempts: Vec<Attempt> = sqlx::query_as(
                "SELECT attempt, started_at, duration_ms, status_code, error, response_body,
                        response_bytes
                 FROM delivery_attempts WHERE app_id = $1 AND outbox_id = $2 ORDER BY attempt, id",
            )
            .bind(app)
            .bind(id)
            .fetch_all(pool)
            .await?;
            (delivery, attempts)
        });
        let delivery = delivery.ok_or_else(|| Error::DeliveryNotFound(id.to_string()))?;
        Ok((delivery, attempts))
    }

    /// Sends a finished-unsuccessfully delivery (`failed` or `dead`) again with a fresh
    /// attempt budget.
    pub async fn retry_delivery(&self, app: &str, id: i64) -> Result<Delivery> {
        let now = now_ms();
        let updated = on_db!(self, pool, {
            sqlx::query(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $3,
                        lease_until = NULL, leased_by = NULL, updated_at = $3, finished_at = NULL
                 WHERE app_id = $1 AND id = $2 AND state IN ('failed', 'dead')",
            )
            .bind(app)
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let (delivery, _) = self.get_delivery(app, id).await?;
        if updated == 0 {
            return Err(Error::Invalid(format!(
                "delivery {id} is {}; only failed or dead deliveries can be retried",
                delivery.state
            )));
        }
        Ok(delivery)
    }

    /// Dead letters of `app`, newest first, optionally of one trigger.
    pub async fn list_dead_letters(
        &self,
        app: &str,
        trigger: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>> {
        let rows = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters
                 WHERE app_id = $1 AND ($2 IS NULL OR trigger_id = $2) AND id < $3
                 ORDER BY id DESC LIMIT $4"
            ))
            .bind(app)
            .bind(trigger)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit.clamp(1, MAX_PAGE))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// One dead letter and its event, if the event is still in the log.
    pub async fn get_dead_letter(
        &self,
        app: &str,
        id: i64,
    ) -> Result<(DeadLetter, Option<LoggedEvent>)> {
        let dead_letter: Option<DeadLetter> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE app_id = $1 AND id = $2"
            ))
            .bind(app)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let dead_letter = dead_letter.ok_or_else(|| Error::DeadLetterNotFound(id.to_string()))?;
        let event = self
            .read_events(app, &dead_letter.topic, dead_letter.seq - 1, 1)
            .await?
            .into_iter()
            .find(|e| e.seq == dead_letter.seq);
        Ok((dead_letter, event))
    }

    /// Replays dead letters: each gets a new pending delivery to its trigger. Deliveries
    /// are spaced `1 / per_second` apart, so replaying thousands after an outage does not
    /// hit the endpoint all at once. Returns the number replayed; unknown ids are skipped.
    pub async fn replay_dead_letters(
        &self,
        app: &str,
        ids: &[i64],
        per_second: u32,
    ) -> Result<u64> {
        let now = now_ms();
        let spacing_ms = 1000.0 / f64::from(per_second.max(1));
        let mut replayed = 0u64;
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            for id in ids {
                let due = now + (replayed as f64 * spacing_ms) as i64;
                let inserted = sqlx::query(
                    "INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts,
                                         next_attempt_at, created_at, updated_at)
                     SELECT d.app_id, d.trigger_id, d.topic, d.seq, 'pending', 0, $3, $4, $4
                     FROM dead_letters d JOIN triggers t ON t.id = d.trigger_id
                     WHERE d.app_id = $1 AND d.id = $2",
                )
                .bind(app)
                .bind(*id)
                .bind(due)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    sqlx::query(
                        "UPDATE dead_letters SET replayed_at = $3 WHERE app_id = $1 AND id = $2",
                    )
                    .bind(app)
                    .bind(*id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    replayed += 1;
                }
            }
            tx.commit().await?;
        });
        Ok(replayed)
    }

    /// Marks dead letter `id` replayed now.
    pub async fn mark_dead_letter_replayed(&self, app: &str, id: i64) -> Result<()> {
        on_db!(self, pool, {
            sqlx::query("UPDATE dead_letters SET replayed_at = $3 WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(id)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The dead letters among `ids` that are an outbox source's refused rows (those
    /// with a `payload`), oldest first; other and unknown ids are left out.
    pub async fn source_dead_letters(&self, app: &str, ids: &[i64]) -> Result<Vec<DeadLetter>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(1000) {
            let rows: Vec<DeadLetter> = on_db!(self, pool, {
                let mut query = sqlx::QueryBuilder::new(format!(
                    "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters
                     WHERE payload IS NOT NULL AND app_id = "
                ));
                query.push_bind(app).push(" AND id IN ");
                push_id_list(&mut query, chunk.iter().copied());
                query.push(" ORDER BY id");
                query.build_query_as().fetch_all(pool).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// Ids of the app's delivery dead letters not replayed yet, oldest first (for
    /// "replay all"; an outbox source's dead letters are replayed one at a time).
    pub async fn unreplayed_dead_letter_ids(&self, app: &str, limit: i64) -> Result<Vec<i64>> {
        let ids = on_db!(self, pool, {
            sqlx::query_scalar(
                "SELECT id FROM dead_letters
                 WHERE app_id = $1 AND replayed_at IS NULL AND payload IS NULL
                 ORDER BY id LIMIT $2",
            )
            .bind(app)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(ids)
    }

    /// Deletes one dead letter, or all of the app's when `id` is `None`. Returns how many.
    pub async fn purge_dead_letters(&self, app: &str, id: Option<i64>) -> Result<u64> {
        let deleted = on_db!(self, pool, {
            sqlx::query("DELETE FROM dead_letters WHERE app_id = $1 AND ($2 IS NULL OR id = $2)")
                .bind(app)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if deleted == 0 {
            if let Some(id) = id {
                return Err(Error::DeadLetterNotFound(id.to_string()));
            }
        }
        Ok(deleted)
    }
}
