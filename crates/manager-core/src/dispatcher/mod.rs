//! The dispatcher: delivers outbox rows to their triggers' webhooks.
//!
//! One loop per node claims due rows in batches under a lease (counting the attempt at
//! claim time), delivers them concurrently up to a worker limit, and records each outcome:
//! delivered; retry after exponential backoff with jitter (or the receiver's
//! `Retry-After`); or, with attempts exhausted, a dead letter that fans out to the app's
//! `dead_letter` triggers in the same transaction. It wakes at once when a publish
//! commits and polls as a fallback. Delivery is at-least-once: a row whose lease expires
//! (its node died) is claimed again, and `webhook-id` lets receivers drop duplicates.
//!
//! - [`outbox`]: the queries.
//! - [`webhook`]: one signed attempt and its classification.
//! - [`signing`]: Standard Webhooks signatures.
//! - [`ssrf`]: which addresses webhooks may reach.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use picloud_shared::time::now_ms;
use rand::Rng;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::db::Db;
use crate::error::Result;
use crate::metrics::AttemptEnd;
use crate::triggers::RetryPolicy;

/// Most attempts recorded in one transaction.
const RECORD_GROUP: usize = 512;

/// How often the queue gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

pub mod outbox;
pub mod pacing;
pub mod signing;
pub mod ssrf;
pub mod webhook;

pub use outbox::CircuitPolicy;
use outbox::{AttemptRecord, ClaimedRow, DeliveryPlan, Finished, Verdict};
use pacing::{Pacer, Wait, Waiting};
use ssrf::{check_url, webhook_client, AddressPolicy};
use webhook::Outcome;

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// This node's name in `leased_by`.
    pub node_id: String,
    /// Most deliveries in flight at once.
    pub workers: usize,
    /// Most rows claimed per round trip.
    pub batch_size: usize,
    /// How long a claim is exclusive; must exceed the request timeout.
    pub lease: Duration,
    /// Longest sleep between claims when not woken.
    pub poll_interval: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Factor on every retry delay (tests run with a small one).
    pub backoff_scale: f64,
    /// Upper bound on a receiver's `Retry-After`.
    pub max_retry_after: Duration,
    /// How long in-flight deliveries may finish at shutdown.
    pub shutdown_grace: Duration,
    /// Which addresses webhooks may reach.
    pub address_policy: Arc<AddressPolicy>,
    /// When a trigger's circuit opens and how long it stays open before a probe.
    pub circuit: CircuitPolicy,
}

/// A test's choice of rows (feature `testing`).
#[cfg(feature = "testing")]
pub type RowPredicate = Arc<dyn Fn(&ClaimedRow) -> bool + Send + Sync>;

/// Faults a test can inject into the dispatcher, to show what it does when code that
/// should not fail does (feature `testing` only).
#[cfg(feature = "testing")]
#[derive(Clone, Default)]
pub struct Faults {
    /// A delivery attempt of a row this returns `true` for panics.
    pub panic_if: Option<RowPredicate>,
    /// This many of the next due-row claims fail (after the probe claim ran).
    pub failing_due_claims: Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(feature = "testing")]
impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("panic_if", &self.panic_if.is_some())
            .field("failing_due_claims", &self.failing_due_claims)
            .finish()
    }
}

/// Most rows claimed per round trip.
pub const CLAIM_BATCH: usize = 128;

/// The longest `Retry-After` a receiver is granted.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl DispatcherConfig {
    /// Settings for this crate's tests: quick polls and tiny backoffs, webhooks to
    /// loopback allowed. The server's settings come from its flags
    /// (`picloud serve --help`), where every default is written.
    #[cfg(feature = "testing")]
    pub fn for_tests() -> Self {
        Self {
            node_id: picloud_shared::ids::random_id("node"),
            workers: 16,
            batch_size: CLAIM_BATCH,
            lease: Duration::from_secs(90),
            poll_interval: Duration::from_millis(20),
            request_timeout: Duration::from_secs(5),
            backoff_scale: 0.001,
            max_retry_after: MAX_RETRY_AFTER,
            shutdown_grace: Duration::from_secs(5),
            address_policy: Arc::new(AddressPolicy::new(true, Vec::new())),
            circuit: CircuitPolicy::STANDARD,
        }
    }
}

/// The delivery loop of one node.
pub struct Dispatcher {
    db: Db,
    config: DispatcherConfig,
    client: reqwest::Client,
    wake: Arc<Notify>,
    finished: mpsc::UnboundedSender<Finished>,
    recorder: std::sync::Mutex<Option<(mpsc::UnboundedReceiver<Finished>, CancellationToken)>>,
    /// Faults tests inject (feature `testing`).
    #[cfg(feature = "testing")]
    faults: Faults,
}

impl Dispatcher {
    /// A dispatcher on `db`, woken through `wake` when publishes commit outbox rows.
    pub fn new(db: Db, config: DispatcherConfig, wake: Arc<Notify>) -> Self {
        let client = webhook_client(config.address_policy.clone(), config.request_timeout);
        let (finished, queue) = mpsc::unbounded_channel();
        Self {
            db,
            config,
            client,
            wake,
            finished,
            recorder: std::sync::Mutex::new(Some((queue, CancellationToken::new()))),
            #[cfg(feature = "testing")]
            faults: Faults::default(),
        }
    }

    /// This dispatcher with `faults` injected (feature `testing` only).
    #[cfg(feature = "testing")]
    pub fn with_faults(self, faults: Faults) -> Self {
        Self { faults, ..self }
    }

    /// Claims and delivers until `shutdown`; then stops claiming, lets in-flight deliveries
    /// finish within the grace period, and releases the leases of the rest.
    pub async fn run(self, shutdown: CancellationToken) {
        let (queue, recorder_stop) = self
            .recorder
            .lock()
            .expect("recorder lock")
            .take()
            .expect("run once");
        let recorder = tokio::spawn(record_finished(
            self.db.clone(),
            self.config.circuit,
            queue,
            recorder_stop.clone(),
        ));
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.config.workers));
        let pacer = Arc::new(Pacer::new(this.config.workers));
        let mut waiting = Waiting::default();
        // Rows to hand back to the database (outbox id, due time), written once per round.
        let mut give_back: Vec<(i64, i64)> = Vec::new();
        let mut in_flight = JoinSet::new();
        tracing::info!(node = %this.config.node_id, workers = this.config.workers, "dispatcher started");
        let mut gauges = tokio::time::interval(GAUGE_INTERVAL);
        gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // A waiting row goes back to the database well before its lease could run out.
        let max_wait = this.config.lease / 2;
        while !shutdown.is_cancelled() {
            while let Some(done) = in_flight.try_join_next() {
                note_finished(done, &mut waiting, &mut give_back);
            }
            if gauges.tick().now_or_never().is_some() {
                this.report_queue().await;
            }
            let now = now_ms();
            give_back.extend(waiting.expired(max_wait).into_iter().map(|id| (id, now)));
            // Waiting rows whose trigger has room again start before anything new.
            let mut next_start = this
                .start_ready(&mut waiting, &mut in_flight, &permits, &pacer)
                .await;
            let free = permits.available_permits().min(this.config.batch_size);
            // Triggers at their limits, or with rows waiting, are left out of the claim; a
            // finished delivery may give them room again.
            let mut skip = pacer.blocked();
            skip.extend(waiting.triggers().cloned());
            // Apps at their share of the workers are left out too, so the claim takes the
            // due rows of the others.
            let skip_apps = pacer.blocked_apps();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                let lease_until = now_ms() + this.config.lease.as_millis() as i64;
                // One probe per circuit whose cool-down is over, then the due rows of
                // triggers whose circuit is closed.
                let probes = this
                    .db
                    .claim_probes(&this.config.node_id, lease_until, this.config.lease)
                    .await;
                let due = this.claim_due(free, lease_until, &skip, &skip_apps).await;
                // Rows one query leased are delivered even when the other query failed:
                // dropping them would leave them idle until their lease ran out, with an
                // attempt spent.
                let mut claimed = Vec::new();
                for rows in [probes, due] {
                    match rows {
                        Ok(rows) => claimed.extend(rows),
                        Err(error) => tracing::warn!(%error, "claiming outbox rows failed"),
                    }
                }
                claimed
            };
            let full_batch = free > 0 && claimed.len() == free;
            let mut plans = match this.db.delivery_plans(&claimed).await {
                Ok(plans) => plans,
                Err(error) => {
                    // The leases expire and the rows are claimed again.
                    tracing::warn!(%error, "loading deliveries failed");
                    HashMap::new()
                }
            };
            for row in claimed {
                // A row without a plan lost its trigger, and was deleted with it.
                let Some(plan) = plans.remove(&row.id) else {
                    continue;
                };
                match waiting.offer(&pacer, row, plan) {
                    Ok((row, plan)) => {
                        this.start(&mut in_flight, &permits, &pacer, row, plan)
                            .await;
                    }
                    Err(Wait::For(wait)) => {
                        next_start = Some(next_start.map_or(wait, |soonest| soonest.min(wait)));
                    }
                    Err(Wait::ForSlot) => {}
                }
            }
            if let Err(error) = this.db.defer(&give_back).await {
                tracing::warn!(%error, "handing back waiting rows failed; their leases expire");
            }
            give_back.clear();
            if full_batch {
                continue;
            }
            // The next claim round: when a row falls due, or a trigger skipped for its
            // rate may start again.
            let mut sleep = this.time_to_next_due().await;
            if let Some(soonest) = pacer.soonest_start() {
                sleep = sleep.min(soonest.max(Duration::from_millis(1)));
            }
            let claim_at = tokio::time::Instant::now() + sleep;
            // Until then, waiting rows start as the pacer lets them, with no claim round.
            loop {
                let start_in = next_start.map(|wait| wait.max(Duration::from_millis(1)));
                tokio::select! {
                    _ = this.wake.notified() => break,
                    _ = tokio::time::sleep_until(claim_at) => break,
                    _ = shutdown.cancelled() => break,
                    // A finished delivery frees a worker, or a slot of a paced trigger.
                    Some(done) = in_flight.join_next(),
                        if free == 0 || !skip.is_empty() || !waiting.is_empty() => {
                        let trigger = note_finished(done, &mut waiting, &mut give_back);
                        // Claim again for freed workers, for rows to hand back, and for a
                        // trigger with nothing waiting here (its rows are in the database).
                        if free == 0
                            || !give_back.is_empty()
                            || trigger.is_none_or(|trigger| !waiting.has(&trigger))
                        {
                            break;
                        }
                        next_start = this
                            .start_ready(&mut waiting, &mut in_flight, &permits, &pacer)
                            .await;
                    }
                    _ = tokio::time::sleep(start_in.unwrap_or_default()), if start_in.is_some() => {
                        next_start = this
                            .start_ready(&mut waiting, &mut in_flight, &permits, &pacer)
                            .await;
                    }
                }
            }
        }
        let drained = tokio::time::timeout(this.config.shutdown_grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
        }
        recorder_stop.cancel();
        if let Err(error) = recorder.await {
            tracing::warn!(%error, "delivery recorder ended abnormally");
        }
        match this.db.release_leases(&this.config.node_id).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "released leases of unfinished deliveries"),
            Err(error) => {
                tracing::warn!(%error, "could not release leases; they expire on their own")
            }
        }
        tracing::info!("dispatcher stopped");
    }

    /// Starts the waiting rows the pacer lets start now (as many as workers are free);
    /// returns how soon a rate-limited one may start.
    async fn start_ready(
        self: &Arc<Self>,
        waiting: &mut Waiting,
        in_flight: &mut JoinSet<(String, bool)>,
        permits: &Arc<Semaphore>,
        pacer: &Arc<Pacer>,
    ) -> Option<Duration> {
        let (ready, soonest) = waiting.ready(pacer, permits.available_permits());
        for (row, plan) in ready {
            self.start(in_flight, permits, pacer, row, plan).await;
        }
        soonest
    }

    /// Claims up to `free` due rows of closed circuits, leaving out `skip`.
    async fn claim_due(
        &self,
        free: usize,
        lease_until: i64,
        skip: &[String],
        skip_apps: &[String],
    ) -> Result<Vec<ClaimedRow>> {
        #[cfg(feature = "testing")]
        {
            use std::sync::atomic::Ordering;
            let failing = &self.faults.failing_due_claims;
            if failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(crate::error::Error::Invalid(
                    "injected claim failure".into(),
                ));
            }
        }
        self.db
            .claim_due(
                &self.config.node_id,
                free as i64,
                lease_until,
                skip,
                skip_apps,
            )
            .await
    }

    /// Spawns the delivery of a row the pacer admitted.
    async fn start(
        self: &Arc<Self>,
        in_flight: &mut JoinSet<(String, bool)>,
        permits: &Arc<Semaphore>,
        pacer: &Arc<Pacer>,
        row: ClaimedRow,
        plan: DeliveryPlan,
    ) {
        // Never more rows are started than permits are free: this does not wait.
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let this = self.clone();
        let trigger = row.trigger_id.clone();
        // The trigger's in-flight slot is given back when the task ends, however it ends.
        let slot = pacing::Slot::held(pacer.clone(), trigger.clone(), row.app_id.clone());
        in_flight.spawn(async move {
            let delivered = this.deliver(row, plan).await;
            drop((slot, permit));
            (trigger, delivered)
        });
    }

    /// Sets the queue gauges: pending rows and the age of the oldest (database-wide, so
    /// every node reports the same values).
    async fn report_queue(&self) {
        let pending = self.db.outbox_depth().await.ok().map(|(pending, oldest)| {
            let age = oldest.map_or(0, |created| (now_ms() - created).max(0));
            (pending, Duration::from_millis(age as u64))
        });
        crate::metrics::queue(pending, self.db.open_circuits().await.ok());
    }

    /// How long to sleep when not woken: until the next pending row falls due, at most the
    /// poll interval. Rows already due were left by the last claim on purpose (an open
    /// circuit, an ordered trigger's unfinished head, another node's lease), so they wait
    /// for the poll rather than spin the loop.
    async fn time_to_next_due(&self) -> Duration {
        let poll = self.config.poll_interval;
        match self.db.next_due().await {
            Ok(Some(at)) if at > now_ms() => {
                let wait = at - now_ms();
                Duration::from_millis(wait.clamp(1, poll.as_millis() as i64) as u64)
            }
            _ => poll,
        }
    }

    /// Makes one attempt for a claimed row and records its outcome; whether it was
    /// delivered.
    async fn deliver(&self, row: ClaimedRow, plan: DeliveryPlan) -> bool {
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
        let retry =
            RetryPolicy::from_stored(plan.retry_max_attempts, plan.retry_schedule_ms.as_deref())
                .unwrap_or_else(|error| {
                    // Without a policy the row would be retried forever; the default one ends.
                    tracing::error!(%error, trigger = %row.trigger_id,
                "stored retry policy is unreadable; using the default");
                    RetryPolicy::default()
                });
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

        let verdict = match outcome {
            Outcome::Delivered => Verdict::Delivered,
            Outcome::Gone => {
                tracing::info!(trigger = %row.trigger_id, "the endpoint answered 410 Gone; disabling the trigger");
                Verdict::Exhausted {
                    disable_reason: Some("the endpoint answered 410 Gone".into()),
                }
            }
            Outcome::Failed { retry_after } => {
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
        };
        let delivered = matches!(verdict, Verdict::Delivered);
        if let Some(error) = record.error.as_deref().filter(|_| !delivered) {
            // The error text never holds the URL (which may carry credentials in its
            // query) nor any signing secret.
            tracing::warn!(app = %row.app_id, trigger = %row.trigger_id, topic = %row.topic,
                seq = row.seq, attempt = row.attempts, status = record.status,
                retrying = matches!(verdict, Verdict::Retry { .. }), %error,
                "webhook delivery attempt failed");
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
}

impl Dispatcher {
    /// Builds, signs and sends one attempt; `None` when there is nothing to deliver (the
    /// dead letter was purged while its delivery was pending).
    async fn make_attempt(
        &self,
        row: &ClaimedRow,
        plan: &DeliveryPlan,
    ) -> Result<Option<(Outcome, AttemptRecord)>> {
        #[cfg(feature = "testing")]
        if self.faults.panic_if.as_ref().is_some_and(|hook| hook(row)) {
            panic!("injected delivery panic");
        }
        let prepared = match row.dead_letter_id {
            Some(id) => match self.db.dead_letter_info(id).await? {
                Some(info) => webhook::dead_letter_body(row, plan, &info),
                None => return Ok(None),
            },
            None => webhook::event_body(row, plan),
        }
        .and_then(|body| {
            Ok((
                check_url(&self.config.address_policy, &plan.handler_url)?,
                body,
            ))
        });
        Ok(Some(match prepared {
            Ok((url, body)) => {
                let secrets = webhook::signing_secrets(plan, now_ms());
                webhook::attempt(&self.client, &url, row, &secrets, body).await
            }
            Err(error) => failed_attempt(error.to_string()),
        }))
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

/// Commits finished attempts in groups until `stop`, then the rest, and counts them.
async fn record_finished(
    db: Db,
    circuit: CircuitPolicy,
    mut queue: mpsc::UnboundedReceiver<Finished>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            finished = queue.recv() => finished,
            _ = stop.cancelled() => queue.try_recv().ok(),
        };
        let Some(first) = first else { break };
        let mut group = vec![first];
        while group.len() < RECORD_GROUP {
            match queue.try_recv() {
                Ok(finished) => group.push(finished),
                Err(_) => break,
            }
        }
        match db.record_finished(&group, &circuit).await {
            Ok(_) => group.iter().for_each(count),
            Err(error) => tracing::warn!(%error, attempts = group.len(),
                "recording delivery outcomes failed; the leases expire and the rows are retried"),
        }
    }
}

/// Notes a finished delivery task and returns its trigger: when the delivery failed, the
/// rows waiting for that trigger go back to the database, where the circuit breaker
/// decides when they are tried.
fn note_finished(
    done: std::result::Result<(String, bool), tokio::task::JoinError>,
    waiting: &mut Waiting,
    give_back: &mut Vec<(i64, i64)>,
) -> Option<String> {
    let (trigger, delivered) = done.ok()?;
    if !delivered {
        let now = now_ms();
        give_back.extend(waiting.take(&trigger).into_iter().map(|id| (id, now)));
    }
    Some(trigger)
}

/// Counts one recorded attempt: each logical delivery once, at its end.
fn count(finished: &Finished) {
    crate::metrics::attempt_recorded(match (&finished.verdict, finished.row.dead_letter_id) {
        (Verdict::Delivered, _) => AttemptEnd::Delivered,
        (Verdict::Retry { .. }, _) => AttemptEnd::Retrying,
        (Verdict::Exhausted { .. }, Some(_)) => AttemptEnd::Failed,
        (Verdict::Exhausted { .. }, None) => AttemptEnd::DeadLettered,
    });
}

impl Dispatcher {
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
