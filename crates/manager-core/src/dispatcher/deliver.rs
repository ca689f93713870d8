//! One delivery: build and sign the attempt, send it, decide what follows (delivered,
//! retry after a backoff, exhausted) and hand the outcome to the recorder.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use picloud_shared::time::now_ms;
use rand::Rng;
use tracing::Instrument;

use super::outbox::{AttemptRecord, ClaimedRow, DeliveryPlan, Finished, Verdict};
use super::ssrf::check_url;
use super::webhook::{self, Outcome};
use super::Dispatcher;
use crate::error::Result;
use crate::triggers::RetryPolicy;

impl Dispatcher {
    /// Makes one attempt for a claimed row and records its outcome; whether it was
    /// delivered.
    pub(super) async fn deliver(&self, row: ClaimedRow, plan: DeliveryPlan) -> bool {
        let span = tracing::debug_span!("deliver", app = %row.app_id, trigger = %row.trigger_id,
            topic = %row.topic, seq = row.seq, attempt = row.attempts);
        match self.try_deliver(&row, &plan).instrument(span).await {
            Ok(delivered) => delivered,
            Err(error) => {
                tracing::warn!(%error, outbox_id = row.id, "recording a delivery failed; the lease will expire and it is retried");
                false
            }
        }
    }

    async fn try_deliver(&self, row: &ClaimedRow, plan: &DeliveryPlan) -> Result<bool> {
        // A panic while making the attempt (a bug) is a failed attempt like any other:
        // the row is retried and dead-lettered in the end, never stuck.
        let made = AssertUnwindSafe(self.make_attempt(row, plan))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let what = panic_message(panic.as_ref());
                tracing::error!(outbox_id = row.id, trigger = %row.trigger_id, panic = %what,
                    "a delivery attempt panicked; recording it as failed");
                crate::metrics::delivery_panicked();
                Ok(Some(failed_attempt(
                    "internal error while delivering".into(),
                )))
            });
        let Some((outcome, record)) = made? else {
            return Ok(true); // purged while pending: nothing to deliver
        };
        crate::metrics::attempt_took(record.duration_ms);

        let verdict = self.verdict(row, plan, outcome);
        let delivered = matches!(verdict, Verdict::Delivered);
        if let Some(error) = record.error.as_deref().filter(|_| !delivered) {
            // The error text never holds the URL (which may carry credentials in its
            // query) nor any signing secret.
            let retrying = matches!(verdict, Verdict::Retry { .. });
            if plan.handler_kind == "script" {
                tracing::warn!(app = %row.app_id, trigger = %row.trigger_id, topic = %row.topic,
                    seq = row.seq, attempt = row.attempts, retrying, %error,
                    "script handler attempt failed");
            } else {
                tracing::warn!(app = %row.app_id, trigger = %row.trigger_id, topic = %row.topic,
                    seq = row.seq, attempt = row.attempts, status = record.status, retrying,
                    %error, "webhook delivery attempt failed");
            }
        }
        // The recorder commits outcomes in groups; until then the lease keeps the row ours,
        // and a crash before the commit only means the row is delivered again.
        let _ = self.finished.send(Finished {
            row: row.clone(),
            attempt: record,
            verdict,
        });
        Ok(delivered)
    }

    /// What follows an attempt: done, a retry after the trigger's schedule, or (attempts
    /// used up, or the endpoint is gone) the end.
    fn verdict(&self, row: &ClaimedRow, plan: &DeliveryPlan, outcome: Outcome) -> Verdict {
        match outcome {
            Outcome::Delivered => Verdict::Delivered,
            Outcome::Gone => {
                tracing::info!(trigger = %row.trigger_id, "the endpoint answered 410 Gone; disabling the trigger");
                Verdict::Exhausted {
                    disable_reason: Some("the endpoint answered 410 Gone".into()),
                }
            }
            Outcome::Failed { retry_after } => {
                let retry = RetryPolicy::from_stored(
                    plan.retry_max_attempts,
                    plan.retry_schedule_ms.as_deref(),
                )
                .unwrap_or_else(|error| {
                    // Without a policy the row would be retried forever; the default one ends.
                    tracing::error!(%error, trigger = %row.trigger_id,
                        "stored retry policy is unreadable; using the default");
                    RetryPolicy::default()
                });
                let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX);
                match retry.delay_after(attempts) {
                    Some(delay) => Verdict::Retry {
                        next_attempt_at: now_ms()
                            + self.backoff(delay, retry_after).as_millis() as i64,
                    },
                    None => Verdict::Exhausted {
                        disable_reason: None,
                    },
                }
            }
        }
    }

    /// Makes one attempt: a signed webhook request, or a script run; `None` when there is
    /// nothing to deliver (the dead letter was purged while its delivery was pending).
    async fn make_attempt(
        &self,
        row: &ClaimedRow,
        plan: &DeliveryPlan,
    ) -> Result<Option<(Outcome, AttemptRecord)>> {
        #[cfg(feature = "testing")]
        if self.faults.panic_if.as_ref().is_some_and(|hook| hook(row)) {
            panic!("injected delivery panic");
        }
        let body = match row.dead_letter_id {
            Some(id) => match self.db.dead_letter_info(id).await? {
                Some(info) => webhook::dead_letter_body(row, plan, &info),
                None => return Ok(None),
            },
            None => webhook::event_body(row, plan),
        };
        let body = match body {
            Ok(body) => body,
            Err(error) => return Ok(Some(failed_attempt(error.to_string()))),
        };
        if plan.handler_kind == "script" {
            return Ok(Some(match &self.scripts {
                Some(scripts) => {
                    scripts
                        .attempt(&self.db, row, &plan.handler_target, &body)
                        .await
                }
                None => failed_attempt(format!(
                    "script '{}': this node does not run scripts",
                    plan.handler_target
                )),
            }));
        }
        Ok(Some(
            match check_url(&self.config.address_policy, &plan.handler_target) {
                Ok(url) => {
                    let secrets = webhook::signing_secrets(plan, now_ms());
                    webhook::attempt(&self.client, &url, row, &secrets, body).await
                }
                Err(error) => failed_attempt(error.to_string()),
            },
        ))
    }

    /// The wait before the next attempt: the schedule's delay with ±20% jitter, at least
    /// the receiver's bounded `Retry-After`, all times the configured scale.
    fn backoff(&self, scheduled: Duration, retry_after: Option<Duration>) -> Duration {
        let jitter = rand::rng().random_range(0.8..1.2);
        let mut wait = scheduled.mul_f64(jitter);
        if let Some(asked) = retry_after {
            wait = wait.max(asked.min(self.config.max_retry_after));
        }
        wait.mul_f64(self.config.backoff_scale.max(0.0))
    }
}

/// A failed attempt that never reached the network.
fn failed_attempt(error: String) -> (Outcome, AttemptRecord) {
    (
        Outcome::Failed { retry_after: None },
        AttemptRecord {
            started_at: now_ms(),
            duration_ms: 0,
            status: None,
            error: Some(error),
            response_body: None,
            response_bytes: None,
        },
    )
}

/// The text of a caught panic, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
