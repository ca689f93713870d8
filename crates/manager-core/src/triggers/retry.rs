//! How often and how late a trigger retries a failed delivery.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Most delivery attempts a trigger may make.
pub const MAX_ATTEMPTS: u32 = 50;
/// Attempts when none are given.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Longest accepted delay between two attempts: 7 days.
pub const MAX_DELAY_SECS: u64 = 7 * 24 * 3600;
/// Most entries a custom schedule may have.
pub const MAX_SCHEDULE_LEN: usize = 50;
/// The Standard Webhooks retry schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h; the last
/// delay repeats.
pub const STANDARD_SCHEDULE_SECS: [u64; 6] = [5, 300, 1_800, 7_200, 18_000, 36_000];

/// How often and when a failed delivery is retried.
///
/// `schedule_secs` always holds exactly `max_attempts - 1` delays: the delay before the
/// 2nd attempt, the 3rd, and so on. A shorter schedule (such as the default, Standard
/// Webhooks' 5 s, 5 min, 30 min, 2 h, 5 h, 10 h) is extended by repeating its last delay.
///
/// On the wire both fields are optional: `max_attempts` defaults to 8, `schedule_secs` to
/// the standard schedule. A given schedule must be non-empty, hold at most 50 delays of
/// 1 s to 7 days each, and no more than `max_attempts - 1` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "RetrySpec")]
pub struct RetryPolicy {
    /// Delivery attempts in all, 1 to 50.
    #[schema(minimum = 1, maximum = 50)]
    max_attempts: u32,
    /// Seconds to wait before each retry.
    schedule_secs: Vec<u64>,
}

/// A retry policy as a request gives it: either field may be left out (`max_attempts`
/// defaults to 8, `schedule_secs` to the standard schedule). Responses always hold both
/// (`RetryPolicy`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RetryPolicyRequest)]
pub(crate) struct RetrySpec {
    /// Delivery attempts in all, 1 to 50; 8 if absent.
    #[schema(minimum = 1, maximum = 50)]
    max_attempts: Option<u32>,
    /// Seconds to wait before each retry: 1 to 50 delays of 1 s to 7 days, at most
    /// `max_attempts - 1` of them; the standard schedule if absent.
    schedule_secs: Option<Vec<u64>>,
}

impl TryFrom<RetrySpec> for RetryPolicy {
    type Error = Error;
    fn try_from(spec: RetrySpec) -> Result<Self> {
        RetryPolicy::new(
            spec.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            spec.schedule_secs,
        )
    }
}

impl Default for RetryPolicy {
    /// 8 attempts on the standard schedule.
    fn default() -> Self {
        RetryPolicy::new(DEFAULT_MAX_ATTEMPTS, None).expect("the default policy is valid")
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts waiting `schedule_secs` between them, or the
    /// standard schedule for `None` (rules on [`RetryPolicy`]).
    pub fn new(max_attempts: u32, schedule_secs: Option<Vec<u64>>) -> Result<RetryPolicy> {
        if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(Error::Invalid(format!(
                "max_attempts must be 1 to {MAX_ATTEMPTS}, got {max_attempts}"
            )));
        }
        let retries = max_attempts as usize - 1;
        let schedule = match schedule_secs {
            None => STANDARD_SCHEDULE_SECS.to_vec(),
            Some(schedule) => {
                if schedule.is_empty() || schedule.len() > MAX_SCHEDULE_LEN {
                    return Err(Error::Invalid(format!(
                        "schedule_secs must hold 1 to {MAX_SCHEDULE_LEN} delays, got {}",
                        schedule.len()
                    )));
                }
                if let Some(bad) = schedule.iter().find(|d| !(1..=MAX_DELAY_SECS).contains(d)) {
                    return Err(Error::Invalid(format!(
                        "each delay in schedule_secs must be 1 to {MAX_DELAY_SECS} seconds, got {bad}"
                    )));
                }
                if schedule.len() > retries {
                    return Err(Error::Invalid(format!(
                        "schedule_secs has {} delays but max_attempts {max_attempts} allows at most {retries}",
                        schedule.len()
                    )));
                }
                schedule
            }
        };
        let last = *schedule.last().expect("schedules are non-empty");
        let schedule_secs = schedule
            .into_iter()
            .chain(std::iter::repeat(last))
            .take(retries)
            .collect();
        Ok(RetryPolicy {
            max_attempts,
            schedule_secs,
        })
    }

    /// The policy as stored in `triggers.retry_max_attempts` and `retry_schedule_ms` (a
    /// JSON list of milliseconds).
    pub fn from_stored(max_attempts: i64, schedule_ms: Option<&str>) -> Result<RetryPolicy> {
        let max_attempts = u32::try_from(max_attempts).map_err(|_| {
            Error::Invalid(format!("stored max_attempts {max_attempts} is invalid"))
        })?;
        let schedule = schedule_ms
            .map(serde_json::from_str::<Vec<u64>>)
            .transpose()
            .map_err(|e| Error::Invalid(format!("stored retry schedule is invalid: {e}")))?
            .filter(|ms| !ms.is_empty())
            .map(|ms| ms.into_iter().map(|ms| (ms / 1000).max(1)).collect());
        RetryPolicy::new(max_attempts, schedule)
    }

    /// Delivery attempts in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Seconds to wait before each retry; `max_attempts - 1` entries.
    pub fn schedule_secs(&self) -> &[u64] {
        &self.schedule_secs
    }

    /// How long to wait after `attempts` failed attempts (counting from 1) before the
    /// next one; `None` once attempts are exhausted.
    pub fn delay_after(&self, attempts: u32) -> Option<Duration> {
        let index = (attempts as usize).checked_sub(1)?;
        self.schedule_secs
            .get(index)
            .map(|secs| Duration::from_secs(*secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retry_follows_standard_webhooks() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 8);
        assert_eq!(
            policy.schedule_secs(),
            [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
        );
        assert_eq!(policy.delay_after(1), Some(Duration::from_secs(5)));
        assert_eq!(policy.delay_after(7), Some(Duration::from_secs(36_000)));
        assert_eq!(policy.delay_after(8), None);
        assert_eq!(policy.delay_after(0), None);
        assert_eq!(RetryPolicy::new(3, None).unwrap().schedule_secs(), [5, 300]);
        assert!(RetryPolicy::new(1, None)
            .unwrap()
            .schedule_secs()
            .is_empty());
    }

    #[test]
    fn custom_schedules_repeat_their_last_delay() {
        let policy = RetryPolicy::new(5, Some(vec![1, 10])).unwrap();
        assert_eq!(policy.schedule_secs(), [1, 10, 10, 10]);
    }

    #[test]
    fn retry_rules() {
        assert!(RetryPolicy::new(0, None).is_err());
        assert!(RetryPolicy::new(51, None).is_err());
        assert!(RetryPolicy::new(50, None).is_ok());
        assert!(RetryPolicy::new(3, Some(vec![])).is_err());
        assert!(RetryPolicy::new(3, Some(vec![0])).is_err());
        assert!(RetryPolicy::new(3, Some(vec![MAX_DELAY_SECS + 1])).is_err());
        assert!(RetryPolicy::new(3, Some(vec![MAX_DELAY_SECS])).is_ok());
        assert!(RetryPolicy::new(3, Some(vec![1, 2, 3])).is_err());
        assert!(RetryPolicy::new(1, Some(vec![1])).is_err());
        assert!(RetryPolicy::new(50, Some(vec![1; 51])).is_err());
    }

    #[test]
    fn retry_wire_form() {
        let policy: RetryPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(policy, RetryPolicy::default());
        let policy: RetryPolicy =
            serde_json::from_str(r#"{"max_attempts": 3, "schedule_secs": [2]}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&policy).unwrap(),
            serde_json::json!({"max_attempts": 3, "schedule_secs": [2, 2]})
        );
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"max_attempts": 0}"#).is_err());
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"attempts": 3}"#).is_err());
    }
}
