//! The claim loop of one node: claim due rows (circuit probes first) under a lease, hand
//! them to the pacer, start the admitted ones on free workers, and sleep until a publish
//! wakes it, a row falls due or a worker frees up. When the other apps have nothing more
//! due, it claims ahead for the apps at their share of the workers, so their next rows
//! wait here and start as their deliveries finish. At shutdown it drains in-flight
//! deliveries within the grace period and releases the leases of the rest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use picloud_shared::time::now_ms;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::outbox::{ClaimedRow, DeliveryPlan};
use super::pacing::{self, Pacer, Wait, Waiting};
use super::scan_floor::ScanFloor;
use super::{recorder, Dispatcher};
use crate::error::Result;

/// How often the queue gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// A delivery task's result.
struct Delivery {
    app: String,
    trigger: String,
    delivered: bool,
}

/// What a claim found out when it left out apps at their share of the workers and came
/// back with fewer rows than it asked for: the other apps had nothing more due. Until
/// something could change that (a publish wakes the loop, the sleep for the next due row
/// ends, a delivery of another app finishes, a poll interval passes), a claim leaving
/// out at least these apps and triggers would come back empty, and on PostgreSQL it reads
/// every due row of the apps left out to find that out; so it is not made. (The claims
/// between, with no app at its share, take due rows of every app in due order.)
struct Dry {
    apps: Vec<String>,
    triggers: Vec<String>,
    until: tokio::time::Instant,
}

impl Dry {
    /// Whether a claim leaving out `apps` and `triggers` now would find nothing either.
    fn covers(&self, apps: &[String], triggers: &[String]) -> bool {
        tokio::time::Instant::now() < self.until
            && self.apps.iter().all(|app| apps.contains(app))
            && self
                .triggers
                .iter()
                .all(|trigger| triggers.contains(trigger))
    }
}

/// What the loop keeps from one round to the next.
struct ClaimLoop {
    dispatcher: Arc<Dispatcher>,
    /// One per worker; a delivery holds one while it runs.
    permits: Arc<Semaphore>,
    pacer: Arc<Pacer>,
    /// Claimed rows the pacer holds back, still leased.
    waiting: Waiting,
    /// Rows to hand back to the database (outbox id, due time), written once per round.
    give_back: Vec<(i64, i64)>,
    in_flight: JoinSet<Delivery>,
    /// Set while the apps not at their share are known to have nothing due.
    dry: Option<Dry>,
    /// Where scans of the pending rows start.
    floor: ScanFloor,
    /// Whether the last claim ahead found as many rows as it asked for: more may be due.
    more_ahead: bool,
}

/// What one claim round leaves for the wait that follows it.
struct Round {
    /// Workers that were free when it claimed.
    free: usize,
    /// Triggers left out of the claim (at their pacing limits, or with rows waiting).
    skipped_triggers: Vec<String>,
    /// Whether apps were left out of the claim (at their share of the workers).
    skipped_apps: bool,
    /// It claimed as many rows as it asked for: more may be due at once.
    full_batch: bool,
    /// How soon a rate-limited waiting row may start.
    next_start: Option<Duration>,
}

impl Dispatcher {
    /// Claims and delivers until `shutdown`; then stops claiming, lets in-flight deliveries
    /// finish within the grace period, and releases the leases of the rest.
    pub async fn run(self, shutdown: CancellationToken) {
        let (queue, recorder_stop) = self
            .recorder
            .lock()
            .expect("recorder lock")
            .take()
            .expect("run once");
        let recorder = tokio::spawn(recorder::record_finished(
            self.db.clone(),
            self.config.circuit,
            queue,
            recorder_stop.clone(),
        ));
        let mut claims = ClaimLoop::new(Arc::new(self));
        let this = claims.dispatcher.clone();
        tracing::info!(node = %this.config.node_id, workers = this.config.workers, "dispatcher started");
        let mut gauges = tokio::time::interval(GAUGE_INTERVAL);
        gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !shutdown.is_cancelled() {
            claims.note_all_finished();
            if gauges.tick().now_or_never().is_some() {
                this.report_queue().await;
            }
            let round = claims.claim_round().await;
            if !round.full_batch {
                claims.wait_for_work(round, &shutdown).await;
            }
        }
        claims.drain().await;
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
    async fn time_to_next_due(&self, due_from: i64) -> Duration {
        let poll = self.config.poll_interval;
        match self.db.next_due(due_from).await {
            Ok(Some(at)) if at > now_ms() => {
                let wait = at - now_ms();
                Duration::from_millis(wait.clamp(1, poll.as_millis() as i64) as u64)
            }
            _ => poll,
        }
    }

    /// When a lease taken now runs out, ms.
    fn lease_until(&self) -> i64 {
        now_ms() + self.config.lease.as_millis() as i64
    }

    /// Claims up to `free` due rows of closed circuits from `due_from` on, leaving out
    /// `skip`.
    async fn claim_due(
        &self,
        free: usize,
        lease_until: i64,
        due_from: i64,
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
                due_from,
                skip,
                skip_apps,
            )
            .await
    }
}

impl ClaimLoop {
    fn new(dispatcher: Arc<Dispatcher>) -> Self {
        let workers = dispatcher.config.workers;
        ClaimLoop {
            dispatcher,
            permits: Arc::new(Semaphore::new(workers)),
            pacer: Arc::new(Pacer::new(workers)),
            waiting: Waiting::default(),
            give_back: Vec::new(),
            in_flight: JoinSet::new(),
            dry: None,
            floor: ScanFloor::default(),
            more_ahead: true,
        }
    }

    /// One round: start waiting rows that may go, claim for the free workers, offer the
    /// claimed rows to the pacer, and hand back what waited too long.
    async fn claim_round(&mut self) -> Round {
        let this = self.dispatcher.clone();
        // A waiting row goes back to the database well before its lease could run out.
        let max_wait = this.config.lease / 2;
        let now = now_ms();
        self.give_back.extend(
            self.waiting
                .expired(max_wait)
                .into_iter()
                .map(|id| (id, now)),
        );
        // Waiting rows whose trigger has room again start before anything new.
        let mut next_start = self.start_ready().await;
        let free = self.permits.available_permits().min(this.config.batch_size);
        // Triggers at their limits, or with rows waiting, are left out of the claim; a
        // finished delivery may give them room again.
        let blocked = self.pacer.blocked();
        let mut skip = blocked.clone();
        skip.extend(self.waiting.triggers().cloned());
        // Apps at their share of the workers are left out too, so the claim takes the
        // due rows of the others.
        let skip_apps = self.pacer.blocked_apps();
        let mut claimed = if free == 0 {
            Vec::new()
        } else {
            let dry = self
                .dry
                .as_ref()
                .is_some_and(|dry| dry.covers(&skip_apps, &skip));
            let (claimed, due) = self.claim(free, &skip, &skip_apps, !dry).await;
            // A claim leaving out no app says nothing of the other apps' newer rows.
            if let (Some(due), false) = (due, skip_apps.is_empty()) {
                self.dry = (due < free).then(|| Dry {
                    apps: skip_apps.clone(),
                    triggers: skip.clone(),
                    until: tokio::time::Instant::now() + this.config.poll_interval,
                });
            }
            claimed
        };
        // The other apps had nothing more due: claim ahead for the apps at their share.
        let room = self
            .ahead_target()
            .saturating_sub(self.waiting.len() + claimed.len())
            .min(this.config.batch_size);
        if claimed.len() < free && !skip_apps.is_empty() && self.ahead_is_low() && room > 0 {
            let ahead = self.claim_ahead(room, &blocked).await;
            claimed.extend(ahead);
        }
        let full_batch = free > 0 && claimed.len() >= free;
        if let Some(wait) = self.offer(claimed).await {
            next_start = Some(next_start.map_or(wait, |soonest| soonest.min(wait)));
        }
        let give_back = std::mem::take(&mut self.give_back);
        if let Err(error) = self.meanwhile(this.db.defer(&give_back)).await {
            tracing::warn!(%error, "handing back waiting rows failed; their leases expire");
        }
        Round {
            free,
            skipped_triggers: skip,
            skipped_apps: !skip_apps.is_empty(),
            full_batch,
            next_start,
        }
    }

    /// Claims one probe per circuit whose cool-down is over, then (with `due`) up to
    /// `free` due rows of triggers whose circuit is closed. Returns the rows and how many
    /// due rows the second claim found, when it ran and succeeded.
    async fn claim(
        &mut self,
        free: usize,
        skip: &[String],
        skip_apps: &[String],
        due: bool,
    ) -> (Vec<ClaimedRow>, Option<usize>) {
        let this = self.dispatcher.clone();
        let probes = self
            .meanwhile(this.db.claim_probes(
                &this.config.node_id,
                this.lease_until(),
                this.config.lease,
            ))
            .await;
        let (due, found) = if due {
            let rows = self.claim_due_rows(free, skip, skip_apps).await;
            let found = rows.as_ref().ok().map(Vec::len);
            (rows, found)
        } else {
            (Ok(Vec::new()), None)
        };
        // Rows one query leased are delivered even when the other query failed: dropping
        // them would leave them idle until their lease ran out, with an attempt spent.
        let mut claimed = Vec::new();
        for rows in [probes, due] {
            match rows {
                Ok(rows) => claimed.extend(rows),
                Err(error) => tracing::warn!(%error, "claiming outbox rows failed"),
            }
        }
        (claimed, found)
    }

    /// Whether fewer than half of [`ClaimLoop::ahead_target`] rows wait here while more
    /// may be due: a claim ahead keeps the workers of apps at their share busy. (Half:
    /// the claim takes as long as many deliveries, and the rows still waiting must last
    /// until it is back.)
    fn ahead_is_low(&self) -> bool {
        self.more_ahead && self.waiting.len() < self.ahead_target() / 2
    }

    /// How many rows claims ahead keep waiting on this node: twice its workers, at most
    /// two claims' batches. Under load a claim round lasts as long as the workers take
    /// to deliver a batch or more: with fewer rows waiting, they ran out before it was
    /// back.
    fn ahead_target(&self) -> usize {
        let config = &self.dispatcher.config;
        2 * config.workers.min(config.batch_size)
    }

    /// Claims up to `limit` due rows of every app, leaving out only the triggers at their
    /// limits (`blocked`). An app at its share of the workers starts its rows as its
    /// deliveries finish, each at once, instead of after a claim's round trips: without
    /// this its in-flight deliveries all finished while the next claim ran, and the
    /// workers stood idle. Run only when the other apps have nothing more due, so what
    /// is claimed ahead never holds back another app's rows.
    async fn claim_ahead(&mut self, limit: usize, blocked: &[String]) -> Vec<ClaimedRow> {
        match self.claim_due_rows(limit, blocked, &[]).await {
            Ok(rows) => {
                self.more_ahead = rows.len() == limit;
                rows
            }
            Err(error) => {
                tracing::warn!(%error, "claiming outbox rows failed");
                self.more_ahead = false;
                Vec::new()
            }
        }
    }

    /// Claims up to `limit` due rows under a new lease, from the scan floor on, leaving
    /// out the triggers `skip` and the apps `skip_apps`; waiting rows start meanwhile.
    async fn claim_due_rows(
        &mut self,
        limit: usize,
        skip: &[String],
        skip_apps: &[String],
    ) -> Result<Vec<ClaimedRow>> {
        let this = self.dispatcher.clone();
        let from = self.floor.current(&this.db).await;
        self.meanwhile(this.claim_due(limit, this.lease_until(), from, skip, skip_apps))
            .await
    }

    /// Awaits `work`, a database round trip of the loop, while starting waiting rows as
    /// deliveries finish: a worker freed during a claim starts its next row at once, not
    /// when the claim is done (a claim round's round trips took as long as a delivery,
    /// and the workers freed meanwhile stood idle).
    async fn meanwhile<T>(&mut self, work: impl std::future::Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                done = &mut work => return done,
                Some(done) = self.in_flight.join_next(), if !self.waiting.is_empty() => {
                    self.note_finished(done);
                    self.start_ready().await;
                }
            }
        }
    }

    /// Offers claimed rows to the pacer and starts those it admits; returns how soon a
    /// rate-limited one may start.
    async fn offer(&mut self, claimed: Vec<ClaimedRow>) -> Option<Duration> {
        let this = self.dispatcher.clone();
        let mut plans = match self.meanwhile(this.db.delivery_plans(&claimed)).await {
            Ok(plans) => plans,
            Err(error) => {
                // The leases expire and the rows are claimed again.
                tracing::warn!(%error, "loading deliveries failed");
                HashMap::new()
            }
        };
        let mut next_start: Option<Duration> = None;
        for row in claimed {
            // A row without a plan lost its trigger, and was deleted with it.
            let Some(plan) = plans.remove(&row.id) else {
                continue;
            };
            let worker_free = self.permits.available_permits() > 0;
            match self.waiting.offer(&self.pacer, row, plan, worker_free) {
                Ok((row, plan)) => self.start(row, plan).await,
                Err(Wait::For(wait)) => {
                    next_start = Some(next_start.map_or(wait, |soonest| soonest.min(wait)));
                }
                Err(Wait::ForSlot) => {}
            }
        }
        next_start
    }

    /// Sleeps until the next claim round: a publish wakes it, a row falls due, a trigger
    /// skipped for its rate may start again, a paced trigger's delivery finishes, or
    /// (with workers busy or an app at its share) enough deliveries finish to be worth a
    /// claim. Meanwhile waiting rows start as the pacer lets them.
    async fn wait_for_work(&mut self, round: Round, shutdown: &CancellationToken) {
        let this = self.dispatcher.clone();
        let Round {
            free,
            skipped_triggers,
            skipped_apps,
            mut next_start,
            ..
        } = round;
        // Claiming after every finished delivery would cost a write transaction per
        // delivery: with workers busy (or an app at its share) the loop waits for a
        // batch of them, never more than are in flight.
        let batch = self.refill_at().min(self.in_flight.len()).max(1);
        let mut finished = 0;
        let from = self.floor.current(&this.db).await;
        let mut sleep = self.meanwhile(this.time_to_next_due(from)).await;
        if let Some(soonest) = self.pacer.soonest_start() {
            sleep = sleep.min(soonest.max(Duration::from_millis(1)));
        }
        let claim_at = tokio::time::Instant::now() + sleep;
        // Only finished deliveries of the apps left out keep what the claim found dry.
        let mut by_finishes = false;
        loop {
            let start_in = next_start.map(|wait| wait.max(Duration::from_millis(1)));
            let watch_finishes = free == 0
                || skipped_apps
                || !skipped_triggers.is_empty()
                || !self.waiting.is_empty();
            tokio::select! {
                _ = this.wake.notified() => break,
                _ = tokio::time::sleep_until(claim_at) => break,
                _ = shutdown.cancelled() => break,
                // A finished delivery frees a worker, or a slot of a paced trigger.
                Some(done) = self.in_flight.join_next(), if watch_finishes => {
                    let trigger = self.note_finished(done);
                    finished += 1;
                    // Claim again for rows to hand back, for a paced trigger with nothing
                    // waiting here (its rows are in the database), and for a batch of
                    // freed workers.
                    let paced_freed = trigger.is_some_and(|trigger| {
                        skipped_triggers.contains(&trigger) && !self.waiting.has(&trigger)
                    });
                    let ahead_low = skipped_apps && self.ahead_is_low();
                    if !self.give_back.is_empty() || paced_freed || ahead_low || finished >= batch {
                        by_finishes = true;
                        break;
                    }
                    next_start = self.start_ready().await;
                }
                _ = tokio::time::sleep(start_in.unwrap_or_default()), if start_in.is_some() => {
                    next_start = self.start_ready().await;
                }
            }
        }
        if !by_finishes {
            self.dry = None;
            self.more_ahead = true;
        }
    }

    /// How many finished deliveries bring on a claim while workers are busy: a quarter
    /// of the workers, so a busy node claims in batches.
    fn refill_at(&self) -> usize {
        (self.dispatcher.config.workers / 4).clamp(1, self.dispatcher.config.batch_size)
    }

    /// Starts the waiting rows the pacer lets start now (as many as workers are free);
    /// returns how soon a rate-limited one may start.
    async fn start_ready(&mut self) -> Option<Duration> {
        let (ready, soonest) = self
            .waiting
            .ready(&self.pacer, self.permits.available_permits());
        for (row, plan) in ready {
            self.start(row, plan).await;
        }
        soonest
    }

    /// Spawns the delivery of a row the pacer admitted.
    async fn start(&mut self, row: ClaimedRow, plan: DeliveryPlan) {
        // Never more rows are started than permits are free: this does not wait.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let this = self.dispatcher.clone();
        let trigger = row.trigger_id.clone();
        // The trigger's in-flight slot is given back when the task ends, however it ends.
        let slot = pacing::Slot::held(self.pacer.clone(), trigger.clone(), row.app_id.clone());
        let app = row.app_id.clone();
        self.in_flight.spawn(async move {
            let delivered = this.deliver(row, plan).await;
            drop((slot, permit));
            Delivery {
                app,
                trigger,
                delivered,
            }
        });
    }

    /// Notes every delivery task that has finished, without waiting.
    fn note_all_finished(&mut self) {
        while let Some(done) = self.in_flight.try_join_next() {
            self.note_finished(done);
        }
    }

    /// Notes a finished delivery task and returns its trigger: when the delivery failed,
    /// the rows waiting for that trigger go back to the database, where the circuit
    /// breaker decides when they are tried. A delivery of an app the last claim did not
    /// leave out may have made more of its rows claimable (an ordered trigger's next
    /// row, a closed circuit), so the next claim is made.
    fn note_finished(
        &mut self,
        done: std::result::Result<Delivery, tokio::task::JoinError>,
    ) -> Option<String> {
        let Ok(Delivery {
            app,
            trigger,
            delivered,
        }) = done
        else {
            self.dry = None;
            return None;
        };
        if self
            .dry
            .as_ref()
            .is_some_and(|dry| !dry.apps.contains(&app))
        {
            self.dry = None;
        }
        if !delivered {
            let now = now_ms();
            self.give_back
                .extend(self.waiting.take(&trigger).into_iter().map(|id| (id, now)));
        }
        Some(trigger)
    }

    /// Lets in-flight deliveries finish within the shutdown grace period, then aborts
    /// the rest (their leases are released by the caller).
    async fn drain(&mut self) {
        let grace = self.dispatcher.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            while self.in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.in_flight.abort_all();
            while self.in_flight.join_next().await.is_some() {}
        }
    }
}
