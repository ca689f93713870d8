//! Per-trigger pacing on this node: at most `max_in_flight` deliveries at once and at most
//! `max_per_second` started per second, so an endpoint coming back after an outage (or
//! receiving a replay) gets its backlog at a pace it chose, not all at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::triggers::Pacing;

/// How long a row held back by a full in-flight window waits before it is due again.
pub const IN_FLIGHT_RETRY: Duration = Duration::from_millis(10);

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

    /// Starts a delivery to `trigger` if its limits allow; otherwise says how long to wait.
    pub fn admit(&self, trigger: &str, limits: Pacing) -> Result<(), Duration> {
        let now = Instant::now();
        let mut triggers = self.triggers.lock().expect("pacer lock");
        let pace = triggers.entry(trigger.to_owned()).or_insert(Pace {
            limits,
            in_flight: 0,
            next_start: now,
        });
        pace.limits = limits;
        if pace.next_start > now {
            return Err(pace.next_start - now);
        }
        if limits
            .max_in_flight
            .is_some_and(|max| pace.in_flight >= max)
        {
            return Err(IN_FLIGHT_RETRY);
        }
        pace.in_flight += 1;
        if let Some(rate) = limits.max_per_second {
            pace.next_start = pace.next_start.max(now) + Duration::from_secs(1) / rate.max(1);
        }
        Ok(())
    }

    /// A delivery to `trigger` finished.
    pub fn finished(&self, trigger: &str) {
        if let Some(pace) = self.triggers.lock().expect("pacer lock").get_mut(trigger) {
            pace.in_flight = pace.in_flight.saturating_sub(1);
        }
    }
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
        assert_eq!(pacer.admit("t", limits), Err(IN_FLIGHT_RETRY));
        assert_eq!(pacer.blocked(), ["t"]);
        assert!(
            pacer.admit("other", limits).is_ok(),
            "triggers are paced separately"
        );
        pacer.finished("t");
        assert!(pacer.admit("t", limits).is_ok());
    }

    #[test]
    fn rate_limit_spaces_starts() {
        let pacer = Pacer::default();
        let limits = Pacing {
            max_in_flight: None,
            max_per_second: Some(10),
        };
        assert!(pacer.admit("t", limits).is_ok());
        let wait = pacer.admit("t", limits).unwrap_err();
        assert!(
            wait > Duration::from_millis(50) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(pacer.blocked(), ["t"]);
    }
}
