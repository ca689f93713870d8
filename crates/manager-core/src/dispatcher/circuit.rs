//! The circuit breaker of each trigger: its whole state machine, in one place.
//!
//! ```text
//!            failures in a row reach CircuitPolicy::failures
//!   closed ─────────────────────────────────────────────────▶ open
//!     ▲                                                        │ cool-down over:
//!     │ probe delivered (the backlog is                        │ claim_probes moves it
//!     │ spread out at the trigger's rate)                      ▼ and claims one probe row
//!     └─────────────────────────────────────────────────── half_open
//!                 probe failed: open again, for a new cool-down ◀┘
//! ```
//!
//! - Only rows of `closed` circuits are claimed as due; an open circuit's rows wait.
//! - A half-open circuit whose probe was lost with its node (the lease ran out) is
//!   probed again; one with nothing pending closes.
//! - Any delivered attempt resets the trigger's failure streak.
//!
//! The states are stored in `triggers.circuit_state`; `circuit_open_until` holds when an
//! open circuit may be probed, or when a half-open one's probe was claimed.

use std::collections::HashSet;

use picloud_shared::time::now_ms;

use super::outbox::{ClaimedRow, Finished, Verdict, CLAIM_COLUMNS};
use crate::db::{begin_write, Db, WriteTx};
use crate::error::Result;
use crate::{on_db, on_tx};

/// When a trigger's circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive failed attempts that open the circuit.
    pub failures: u32,
    /// How long an open circuit waits before one probe delivery.
    pub cooldown: std::time::Duration,
    /// After a probe closes the circuit, the waiting backlog is spread out at the trigger's
    /// `max_per_second`, or at this rate when it has none.
    pub resume_per_second: u32,
}

impl CircuitPolicy {
    /// Five failures in a row open a circuit for 30 s; the backlog resumes at 50/s.
    pub const STANDARD: CircuitPolicy = CircuitPolicy {
        failures: 5,
        cooldown: std::time::Duration::from_secs(30),
        resume_per_second: 50,
    };
}

impl Db {
    /// Moves open circuits whose cool-down is over (and half-open ones whose probe was
    /// lost with its node) to half-open, and claims one probe row for each: the oldest
    /// pending row of the trigger, due or not. A trigger with nothing pending closes.
    /// Only the node whose UPDATE moved a circuit probes it.
    pub async fn claim_probes(
        &self,
        node: &str,
        lease_until: i64,
        lease: std::time::Duration,
    ) -> Result<Vec<ClaimedRow>> {
        let now = now_ms();
        let stale = now - lease.as_millis() as i64;
        // Almost always no circuit is due for a probe: find out with a read, so the common
        // case costs no write transaction.
        let due: Option<String> = on_db!(self, pool, {
            sqlx::query_scalar(
                "SELECT id FROM triggers
                 WHERE (circuit_state = 'open' AND circuit_open_until <= $1)
                    OR (circuit_state = 'half_open' AND circuit_open_until <= $2)
                 LIMIT 1",
            )
            .bind(now)
            .bind(stale)
            .fetch_optional(pool)
            .await?
        });
        if due.is_none() {
            return Ok(Vec::new());
        }
        let _gate = self.write_gate().await;
        let probes = on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            let triggers: Vec<String> = sqlx::query_scalar(
                "UPDATE triggers SET circuit_state = 'half_open', circuit_open_until = $1
                 WHERE enabled = $3 AND ((circuit_state = 'open' AND circuit_open_until <= $1)
                    OR (circuit_state = 'half_open' AND circuit_open_until <= $2))
                 RETURNING id",
            )
            .bind(now)
            .bind(stale)
            .bind(true)
            .fetch_all(&mut *tx)
            .await?;
            let mut probes = Vec::new();
            for trigger in &triggers {
                let probe: Option<ClaimedRow> = sqlx::query_as(&format!(
                    "UPDATE outbox SET attempts = attempts + 1, lease_until = $1, leased_by = $2,
                            updated_at = $3
                     WHERE id = (SELECT id FROM outbox
                                 WHERE trigger_id = $4 AND state = 'pending'
                                   AND (lease_until IS NULL OR lease_until < $3)
                                 ORDER BY seq, id LIMIT 1)
                     RETURNING {CLAIM_COLUMNS}"
                ))
                .bind(lease_until)
                .bind(node)
                .bind(now)
                .bind(trigger)
                .fetch_optional(&mut *tx)
                .await?;
                match probe {
                    Some(row) => probes.push(row),
                    None => {
                        sqlx::query(
                            "UPDATE triggers SET circuit_state = 'closed', circuit_open_until = NULL,
                                    consecutive_failures = 0 WHERE id = $1",
                        )
                        .bind(trigger)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            tx.commit().await?;
            probes
        });
        Ok(probes)
    }

    /// Triggers whose circuit is not closed, for the gauge.
    pub async fn open_circuits(&self) -> Result<i64> {
        let open = on_db!(self, pool, {
            sqlx::query_scalar("SELECT COUNT(*) FROM triggers WHERE circuit_state <> 'closed'")
                .fetch_one(pool)
                .await?
        });
        Ok(open)
    }
}

/// Applies one finished attempt to its trigger's circuit, inside the recorder's
/// transaction: a delivery closes a half-open circuit and resets the failure streak
/// (once per trigger and group: `reset` remembers which); a failure extends the streak,
/// opening the circuit at the threshold or re-opening a half-open one.
pub(super) async fn record<'a>(
    tx: &mut WriteTx,
    done: &'a Finished,
    policy: &CircuitPolicy,
    now: i64,
    reset: &mut HashSet<&'a str>,
) -> Result<()> {
    let trigger = done.row.trigger_id.as_str();
    if done.verdict != Verdict::Delivered {
        reset.remove(trigger);
        return count_failure(tx, trigger, policy, now).await;
    }
    if !reset.insert(trigger) {
        return Ok(()); // this trigger's streak was already reset earlier in this group
    }
    close_after_delivery(tx, trigger, policy, now).await
}

/// A delivered attempt: a successful probe closes the circuit, and the backlog that
/// built up while it was open is spread out at the trigger's rate (or the resume rate),
/// so the endpoint coming back is not hit by all of it at once. The streak resets.
async fn close_after_delivery(
    tx: &mut WriteTx,
    trigger: &str,
    policy: &CircuitPolicy,
    now: i64,
) -> Result<()> {
    on_tx!(tx, conn, {
        let closed: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE triggers SET consecutive_failures = 0, circuit_state = 'closed',
                    circuit_open_until = NULL
             WHERE id = $1 AND circuit_state = 'half_open'
             RETURNING max_per_second",
        )
        .bind(trigger)
        .fetch_optional(&mut **conn)
        .await?;
        if let Some(rate) = closed {
            let rate = rate.unwrap_or(i64::from(policy.resume_per_second)).max(1);
            sqlx::query(
                "UPDATE outbox SET next_attempt_at = $2 + r.rank * $3
                 FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY next_attempt_at, id) AS rank
                       FROM outbox WHERE trigger_id = $1 AND state = 'pending'
                         AND lease_until IS NULL) AS r
                 WHERE outbox.id = r.id",
            )
            .bind(trigger)
            .bind(now)
            .bind((1000 / rate).max(1))
            .execute(&mut **conn)
            .await?;
        }
        sqlx::query(
            "UPDATE triggers SET consecutive_failures = 0
             WHERE id = $1 AND consecutive_failures <> 0",
        )
        .bind(trigger)
        .execute(&mut **conn)
        .await?;
    });
    Ok(())
}

/// A failed attempt: the streak grows; a closed circuit opens when it reaches the
/// threshold, a half-open one (its probe failed) opens again at once.
async fn count_failure(
    tx: &mut WriteTx,
    trigger: &str,
    policy: &CircuitPolicy,
    now: i64,
) -> Result<()> {
    on_tx!(tx, conn, {
        sqlx::query(
            "UPDATE triggers SET consecutive_failures = consecutive_failures + 1,
               circuit_state = CASE
                 WHEN circuit_state = 'half_open'
                   OR (circuit_state = 'closed' AND consecutive_failures + 1 >= $2)
                 THEN 'open' ELSE circuit_state END,
               circuit_open_until = CASE
                 WHEN circuit_state = 'half_open'
                   OR (circuit_state = 'closed' AND consecutive_failures + 1 >= $2)
                 THEN $3 ELSE circuit_open_until END
             WHERE id = $1",
        )
        .bind(trigger)
        .bind(i64::from(policy.failures))
        .bind(now + policy.cooldown.as_millis() as i64)
        .execute(&mut **conn)
        .await?;
    });
    Ok(())
}
