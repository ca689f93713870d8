//! Per-trigger pacing on this node: at most `max_in_flight` deliveries at once and at most
//! `max_per_second` started per second, so an endpoint coming back after an outage (or
//! receiving a replay) gets its backlog at a pace it chose, not all at once.
//!
//! Rows claimed for a trigger at its limits wait in [`Waiting`], still leased, and start
//! as slots free up, rather than going back to the database with one write each.

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

/// The pacing state of every trigger this node delivers to.
#[derive(Debug, Default)]
pub struct Pacer {
    triggers: Mutex<HashMap<String, Pace>>,
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

    /// Starts a delivery to `trigger` if its limits allow; otherwise says what to wait for.
    pub fn admit(&self, trigger: &str, limits: Pacing) -> Result<(), Wait> {
        let now = Instant::now();
        let mut triggers = self.triggers.lock().expect("pacer lock");
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
    fn finished(&self, trigger: &str) {
        let mut triggers = self
            .triggers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pace) = triggers.get_mut(trigger) {
            pace.in_flight = pace.in_flight.saturating_sub(1);
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
}

impl Slot {
    /// Takes over the slot [`Pacer::admit`] gave a delivery to `trigger`.
    pub fn held(pacer: Arc<Pacer>, trigger: String) -> Slot {
        Slot { pacer, trigger }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pacer.finished(&self.trigger);
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
}

impl Waiting {
    /// Whether no row waits.
    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }

    /// Whether rows of `trigger` wait.
    pub fn has(&self, trigger: &str) -> bool {
        self.triggers.contains_key(trigger)
    }

    /// The triggers with waiting rows.
    pub fn triggers(&self) -> impl Iterator<Item = &String> {
        self.triggers.keys()
    }

    /// Starts `row` through `pacer` if its trigger has room and no older row waits;
    /// otherwise keeps it. Returns the row to deliver now, or what it waits for.
    pub fn offer(
        &mut self,
        pacer: &Pacer,
        row: ClaimedRow,
        plan: DeliveryPlan,
    ) -> Result<(ClaimedRow, DeliveryPlan), Wait> {
        let wait = if self.has(&row.trigger_id) {
            Wait::ForSlot
        } else {
            match pacer.admit(&row.trigger_id, limits(&plan)) {
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

    /// The waiting rows `pacer` lets start now, at most `max`, oldest first per trigger;
    /// and the soonest a rate-limited trigger may start another.
    pub fn ready(
        &mut self,
        pacer: &Pacer,
        mut max: usize,
    ) -> (Vec<(ClaimedRow, DeliveryPlan)>, Option<Duration>) {
        let mut ready = Vec::new();
        let mut soonest: Option<Duration> = None;
        for (trigger, queue) in self.triggers.iter_mut() {
            while max > 0 {
                let Some(front) = queue.front() else { break };
                match pacer.admit(trigger, limits(&front.plan)) {
                    Ok(()) => {
                        let held = queue.pop_front().expect("front exists");
                        ready.push((held.row, held.plan));
                        max -= 1;
                    }
                    Err(Wait::For(wait)) => {
                        soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                        break;
                    }
                    Err(Wait::ForSlot) => break,
                }
            }
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
    use super::*;

    #[test]
    fn in_flight_window() {
        let pacer = Pacer::default();
        let limits = Pacing {
            max_in_flight: Some(2),
            max_per_second: None,
        };
        assert!(pacer.admit("t", limits).is_ok());
        assert!(pacer.admit("t", limits).is_ok());
        assert_eq!(pacer.admit("t", limits), Err(Wait::ForSlot));
        assert_eq!(pacer.blocked(), ["t"]);
        assert!(
            pacer.admit("other", limits).is_ok(),
            "triggers are paced separately"
        );
        let pacer = Arc::new(pacer);
        drop(Slot::held(pacer.clone(), "t".into()));
        assert!(pacer.admit("t", limits).is_ok());
    }

    #[test]
    fn a_panicking_delivery_gives_its_slot_back() {
        let pacer = Arc::new(Pacer::default());
        let limits = Pacing {
            max_in_flight: Some(1),
            max_per_second: None,
        };
        assert!(pacer.admit("t", limits).is_ok());
        let slot = Slot::held(pacer.clone(), "t".into());
        let delivery = std::thread::spawn(move || {
            let _slot = slot;
            panic!("delivery bug");
        });
        assert!(delivery.join().is_err());
        assert!(pacer.admit("t", limits).is_ok(), "the slot came back");
    }

    #[test]
    fn rate_limit_spaces_starts() {
        let pacer = Pacer::default();
        let limits = Pacing {
            max_in_flight: None,
            max_per_second: Some(10),
        };
        assert!(pacer.admit("t", limits).is_ok());
        let Err(Wait::For(wait)) = pacer.admit("t", limits) else {
            panic!("not rate limited")
        };
        assert!(
            wait > Duration::from_millis(50) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(pacer.blocked(), ["t"]);
    }
}
