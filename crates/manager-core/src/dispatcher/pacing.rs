//! Per-trigger pacing on this node: at most `max_in_flight` deliveries at once and at most
//! `max_per_second` started per second, so an endpoint coming back after an outage (or
//! receiving a replay) gets its backlog at a pace it chose, not all at once.
//!
//! Rows claimed for a trigger at its limits wait in [`Waiting`], still leased, and start
//! as slots free up, rather than going back to the database with one write each.
//!
//! The pacer also shares the node's workers fairly between apps: an app may have at most
//! `workers / (apps in flight + 1)` deliveries in flight (at least one), counting itself,
//! so one app's slow endpoints (a tarpit holding every request until the timeout) can
//! take only its share and always leave room for an app that shows up next. Rows over
//! their app's share wait like rows over their trigger's window, and waiting rows start
//! round-robin across triggers (and so across apps).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::dispatcher::outbox::{ClaimedRow, DeliveryPlan};
use crate::triggers::Pacing;

/// Why a delivery may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The in-flight window is full: wait for a delivery to finish.
    ForSlot,
    /// The rate limit: the next start is this far away.
    For(Duration),
}

/// The pacing state of every trigger and app this node delivers to. Locks: `triggers`
/// before `apps`, never the other way round.
#[derive(Debug)]
pub struct Pacer {
    triggers: Mutex<HashMap<String, Pace>>,
    /// Deliveries in flight per app (apps with none are absent).
    apps: Mutex<HashMap<String, u32>>,
    /// The node's worker limit, shared between apps.
    workers: usize,
}

impl Default for Pacer {
    /// A pacer with no worker limit to share (only trigger limits apply).
    fn default() -> Self {
        Pacer::new(usize::MAX)
    }
}

/// The most deliveries `app` may have in flight: an equal share of `workers` between the
/// apps in flight, itself included, and one more app.
fn app_share(apps: &HashMap<String, u32>, app: &str, workers: usize) -> u32 {
    let active = apps.len() + usize::from(!apps.contains_key(app));
    u32::try_from((workers / (active + 1)).max(1)).unwrap_or(u32::MAX)
}

#[derive(Debug)]
struct Pace {
    limits: Pacing,
    in_flight: u32,
    /// The earliest time the next delivery may start (rate limit).
    next_start: Instant,
}

impl Pace {
    fn blocked(&self, now: Instant) -> bool {
        self.limits
            .max_in_flight
            .is_some_and(|max| self.in_flight >= max)
            || self.next_start > now
    }
}

impl Pacer {
    /// A pacer sharing `workers` between apps.
    pub fn new(workers: usize) -> Pacer {
        Pacer {
            triggers: Mutex::default(),
            apps: Mutex::default(),
            workers,
        }
    }

    /// Apps at their share of the workers, to leave out of the next claim.
    pub fn blocked_apps(&self) -> Vec<String> {
        let apps = self.apps.lock().expect("pacer lock");
        apps.iter()
            .filter(|(app, in_flight)| **in_flight >= app_share(&apps, app, self.workers))
            .map(|(app, _)| app.clone())
            .collect()
    }

    /// Triggers that may not start another delivery now, to leave out of the next claim.
    pub fn blocked(&self) -> Vec<String> {
        let now = Instant::now();
        let mut triggers = self.triggers.lock().expect("pacer lock");
        triggers.retain(|_, pace| pace.in_flight > 0 || pace.next_start > now);
        triggers
            .iter()
            .filter(|(_, pace)| pace.blocked(now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Starts a delivery to `trigger` of `app` if the trigger's limits and the app's
    /// share of the workers allow; otherwise says what to wait for.
    pub fn admit(&self, trigger: &str, app: &str, limits: Pacing) -> Result<(), Wait> {
        let now = Instant::now();
        let mut triggers = self.triggers.lock().expect("pacer lock");
        let mut apps = self.apps.lock().expect("pacer lock");
        if apps.get(app).copied().unwrap_or(0) >= app_share(&apps, app, self.workers) {
            return Err(Wait::ForSlot);
        }
        let pace = triggers.entry(trigger.to_owned()).or_insert(Pace {
            limits,
            in_flight: 0,
            next_start: now,
        });
        pace.limits = limits;
        if limits
            .max_in_flight
            .is_some_and(|max| pace.in_flight >= max)
        {
            return Err(Wait::ForSlot);
        }
        if pace.next_start > now {
            return Err(Wait::For(pace.next_start - now));
        }
        pace.in_flight += 1;
        *apps.entry(app.to_owned()).or_default() += 1;
        if let Some(rate) = limits.max_per_second {
            pace.next_start = pace.next_start.max(now) + Duration::from_secs(1) / rate.max(1);
        }
        Ok(())
    }

    /// How soon the soonest trigger held back by its rate may start again.
    pub fn soonest_start(&self) -> Option<Duration> {
        let now = Instant::now();
        let triggers = self.triggers.lock().expect("pacer lock");
        triggers
            .values()
            .filter(|pace| pace.next_start > now)
            .map(|pace| pace.next_start - now)
            .min()
    }

    /// A delivery to `trigger` finished. Runs in [`Slot`]'s `drop`, possibly while a
    /// panic unwinds, so a poisoned lock is used rather than panicked on.
    fn finished(&self, trigger: &str, app: &str) {
        let mut triggers = self
            .triggers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pace) = triggers.get_mut(trigger) {
            pace.in_flight = pace.in_flight.saturating_sub(1);
        }
        let mut apps = self
            .apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(in_flight) = apps.get_mut(app) {
            *in_flight = in_flight.saturating_sub(1);
            if *in_flight == 0 {
                apps.remove(app);
            }
        }
    }
}

/// The in-flight slot of a delivery the pacer admitted, given back when this drops: when
/// the delivery finishes, panics or is aborted, so a trigger's window never shrinks for
/// good.
#[derive(Debug)]
pub struct Slot {
    pacer: Arc<Pacer>,
    trigger: String,
    app: String,
}

impl Slot {
    /// Takes over the slot [`Pacer::admit`] gave a delivery to `trigger` of `app`.
    pub fn held(pacer: Arc<Pacer>, trigger: String, app: String) -> Slot {
        Slot {
            pacer,
            trigger,
            app,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pacer.finished(&self.trigger, &self.app);
    }
}

/// A row claimed for a paced trigger, waiting for the pacer to let it start.
#[derive(Debug)]
struct Held {
    row: ClaimedRow,
    plan: DeliveryPlan,
    since: Instant,
}

/// The rows this node holds for paced triggers, oldest first per trigger. A trigger with
/// waiting rows is left out of claims until they have started, so at most one claim's
/// worth waits per trigger.
#[derive(Debug, Default)]
pub struct Waiting {
    triggers: HashMap<String, VecDeque<Held>>,
    /// The trigger [`Waiting::ready`] started a row of last: the next call begins after it.
    cursor: String,
}

impl Waiting {
    /// Whether no row waits.
    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }

    /// How many rows wait.
    pub fn len(&self) -> usize {
        self.triggers.values().map(VecDeque::len).sum()
    }

    /// Whether rows of `trigger` wait.
    pub fn has(&self, trigger: &str) -> bool {
        self.triggers.contains_key(trigger)
    }

    /// The triggers with waiting rows.
    pub fn triggers(&self) -> impl Iterator<Item = &String> {
        self.triggers.keys()
    }

    /// Starts `row` through `pacer` if a worker is free, its trigger has room and no
    /// older row waits; otherwise keeps it. Returns the row to deliver now, or what it
    /// waits for. (Without a free worker the row waits here: starting it would hold up
    /// the claim loop until a delivery finished.)
    pub fn offer(
        &mut self,
        pacer: &Pacer,
        row: ClaimedRow,
        plan: DeliveryPlan,
        worker_free: bool,
    ) -> Result<(ClaimedRow, DeliveryPlan), Wait> {
        let wait = if !worker_free || self.has(&row.trigger_id) {
            Wait::ForSlot
        } else {
            match pacer.admit(&row.trigger_id, &row.app_id, limits(&plan)) {
                Ok(()) => return Ok((row, plan)),
                Err(wait) => wait,
            }
        };
        self.triggers
            .entry(row.trigger_id.clone())
            .or_default()
            .push_back(Held {
                row,
                plan,
                since: Instant::now(),
            });
        Err(wait)
    }

    /// The waiting rows `pacer` lets start now, at most `max`, oldest first per trigger
    /// and round-robin across triggers (one row per trigger per pass, so no trigger or
    /// app goes first every time); and the soonest a rate-limited trigger may start
    /// another.
    pub fn ready(
        &mut self,
        pacer: &Pacer,
        mut max: usize,
    ) -> (Vec<(ClaimedRow, DeliveryPlan)>, Option<Duration>) {
        let mut ready = Vec::new();
        let mut soonest: Option<Duration> = None;
        let mut open: Vec<String> = self.triggers.keys().cloned().collect();
        open.sort_unstable();
        // Begin after the trigger the previous call started last.
        let first = open.partition_point(|trigger| *trigger <= self.cursor);
        open.rotate_left(first);
        while max > 0 && !open.is_empty() {
            let mut still_open = Vec::with_capacity(open.len());
            for trigger in open {
                if max == 0 {
                    break;
                }
                let queue = self.triggers.get_mut(&trigger).expect("listed");
                let Some(front) = queue.front() else { continue };
                match pacer.admit(&trigger, &front.row.app_id, limits(&front.plan)) {
                    Ok(()) => {
                        let held = queue.pop_front().expect("front exists");
                        ready.push((held.row, held.plan));
                        max -= 1;
                        if !queue.is_empty() {
                            still_open.push(trigger.clone());
                        }
                        self.cursor = trigger;
                    }
                    Err(Wait::For(wait)) => {
                        soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                    }
                    Err(Wait::ForSlot) => {}
                }
            }
            open = still_open;
        }
        self.triggers.retain(|_, queue| !queue.is_empty());
        (ready, soonest)
    }

    /// Takes out every row of `trigger` (its delivery just failed: the circuit breaker
    /// decides about the rest, from the database). Returns their outbox ids.
    pub fn take(&mut self, trigger: &str) -> Vec<i64> {
        self.triggers
            .remove(trigger)
            .map(|queue| queue.into_iter().map(|held| held.row.id).collect())
            .unwrap_or_default()
    }

    /// Takes out every row that waited longer than `max_wait` (its lease must not run
    /// out here). Returns their outbox ids.
    pub fn expired(&mut self, max_wait: Duration) -> Vec<i64> {
        let mut ids = Vec::new();
        for queue in self.triggers.values_mut() {
            while queue
                .front()
                .is_some_and(|held| held.since.elapsed() > max_wait)
            {
                ids.push(queue.pop_front().expect("front exists").row.id);
            }
        }
        self.triggers.retain(|_, queue| !queue.is_empty());
        ids
    }
}

fn limits(plan: &DeliveryPlan) -> Pacing {
    Pacing::from_stored(plan.max_in_flight, plan.max_per_second)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{plan, row};
    use super::*;

    #[test]
    fn a_row_offered_with_no_worker_free_waits_without_taking_a_slot() {
        let pacer = Pacer::default();
        let mut waiting = Waiting::default();
        let mut one_at_a_time = plan("{}");
        one_at_a_time.max_in_flight = Some(1);
        let offered = waiting.offer(&pacer, row(), one_at_a_time, false);
        assert!(matches!(offered, Err(Wait::ForSlot)));
        assert_eq!(waiting.len(), 1);
        // The trigger's one slot is still free: the row starts when a worker is.
        let (ready, _) = waiting.ready(&pacer, 1);
        assert_eq!(ready.len(), 1, "the kept row took no slot of its trigger");
        assert!(waiting.is_empty());
    }

    #[test]
    fn in_flight_window() {
        let pacer = Pacer::default();
        let limits = Pacing {
            max_in_flight: Some(2),
            max_per_second: None,
        };
        assert!(pacer.admit("t", "a", limits).is_ok());
        assert!(pacer.admit("t", "a", limits).is_ok());
        assert_eq!(pacer.admit("t", "a", limits), Err(Wait::ForSlot));
        assert_eq!(pacer.blocked(), ["t"]);
        assert!(
            pacer.admit("other", "a", limits).is_ok(),
            "triggers are paced separately"
        );
        let pacer = Arc::new(pacer);
        drop(Slot::held(pacer.clone(), "t".into(), "a".into()));
        assert!(pacer.admit("t", "a", limits).is_ok());
    }

    #[test]
    fn apps_share_the_workers() {
        let pacer = Pacer::new(8);
        let open = Pacing::default();
        // Alone, an app may use half the workers: the rest waits for whoever comes next.
        for n in 0..4 {
            assert!(pacer.admit(&format!("a{n}"), "a", open).is_ok());
        }
        assert_eq!(pacer.admit("a4", "a", open), Err(Wait::ForSlot));
        assert_eq!(pacer.blocked_apps(), ["a"]);
        // A second app gets a third of them; the first waits until it is back under that.
        assert!(pacer.admit("b0", "b", open).is_ok());
        assert!(pacer.admit("b1", "b", open).is_ok());
        assert_eq!(pacer.admit("b2", "b", open), Err(Wait::ForSlot));
        pacer.finished("a0", "a");
        assert_eq!(pacer.admit("a0", "a", open), Err(Wait::ForSlot));
        pacer.finished("a1", "a");
        pacer.finished("a2", "a");
        assert!(pacer.admit("a0", "a", open).is_ok());
    }

    #[test]
    fn a_panicking_delivery_gives_its_slot_back() {
        let pacer = Arc::new(Pacer::default());
        let limits = Pacing {
            max_in_flight: Some(1),
            max_per_second: None,
        };
        assert!(pacer.admit("t", "a", limits).is_ok());
        let slot = Slot::held(pacer.clone(), "t".into(), "a".into());
        let delivery = std::thread::spawn(move || {
            let _slot = slot;
            panic!("delivery bug");
        });
        assert!(delivery.join().is_err());
        assert!(pacer.admit("t", "a", limits).is_ok(), "the slot came back");
    }

    #[test]
    fn rate_limit_spaces_starts() {
        let pacer = Pacer::default();
        let limits = Pacing {
            max_in_flight: None,
            max_per_second: Some(10),
        };
        assert!(pacer.admit("t", "a", limits).is_ok());
        let Err(Wait::For(wait)) = pacer.admit("t", "a", limits) else {
            panic!("not rate limited")
        };
        assert!(
            wait > Duration::from_millis(50) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(pacer.blocked(), ["t"]);
    }
}
