//! Cron schedules: when a `cron` trigger fires. A schedule is a cron pattern (five
//! fields, or six with seconds first) read in an IANA time zone, so "0 9 * * MON-FRI" in
//! Europe/Berlin fires at nine in Berlin, summer and winter.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest accepted pattern.
const MAX_PATTERN_LEN: usize = 200;

/// A cron pattern: `minute hour day-of-month month day-of-week`, or with seconds first;
/// lists, ranges, steps, names (`MON`, `JAN`) and `@daily`-style nicknames.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronPattern {
    text: String,
    /// Boxed: a parsed pattern is large, and triggers of other sources carry none.
    cron: Box<Cron>,
}

impl CronPattern {
    /// Parses `text`; an error says what is wrong with it.
    pub fn parse(text: &str) -> Result<CronPattern> {
        let invalid = |why: String| Error::Invalid(format!("schedule '{text}': {why}"));
        if text.len() > MAX_PATTERN_LEN {
            return Err(invalid(format!("longer than {MAX_PATTERN_LEN} characters")));
        }
        let cron = Cron::from_str(text).map_err(|e| invalid(e.to_string()))?;
        Ok(CronPattern {
            text: text.trim().to_owned(),
            cron: Box::new(cron),
        })
    }

    /// The pattern as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for CronPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronPattern {}

impl TryFrom<String> for CronPattern {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<CronPattern> for String {
    fn from(value: CronPattern) -> String {
        value.text
    }
}

impl utoipa::PartialSchema for CronPattern {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_PATTERN_LEN))
            .examples(["*/5 * * * *"])
            .into()
    }
}

impl utoipa::ToSchema for CronPattern {}

/// An IANA time zone name (`UTC`, `Europe/Berlin`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(Tz);

impl TimeZoneName {
    /// Coordinated Universal Time, the default.
    pub const UTC: TimeZoneName = TimeZoneName(Tz::UTC);

    /// Parses an IANA name.
    pub fn parse(name: &str) -> Result<TimeZoneName> {
        Tz::from_str(name).map(TimeZoneName).map_err(|_| {
            Error::Invalid(format!(
                "timezone '{name}' is not an IANA time zone name such as UTC or Europe/Berlin"
            ))
        })
    }

    /// The name.
    pub fn as_str(&self) -> &'static str {
        self.0.name()
    }
}

impl Default for TimeZoneName {
    fn default() -> Self {
        TimeZoneName::UTC
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<TimeZoneName> for String {
    fn from(value: TimeZoneName) -> String {
        value.as_str().to_owned()
    }
}

impl utoipa::PartialSchema for TimeZoneName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .examples(["UTC", "Europe/Berlin"])
            .default(Some("UTC".into()))
            .into()
    }
}

impl utoipa::ToSchema for TimeZoneName {}

/// What a cron trigger does about ticks that passed while no node was running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Fire once for them all (the latest), then keep to the schedule.
    #[default]
    One,
    /// Skip them: fire only ticks that are on time.
    None,
}

impl CatchUp {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::One => "one",
            CatchUp::None => "none",
        }
    }

    /// Parses the stored form.
    pub fn parse(value: &str) -> Option<CatchUp> {
        [CatchUp::One, CatchUp::None]
            .into_iter()
            .find(|c| c.as_str() == value)
    }
}

/// How late a tick may fire and still be on time (not "missed").
pub const ON_TIME_MS: i64 = 30_000;

/// A schedule: a pattern in a time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The pattern.
    pub pattern: CronPattern,
    /// The zone it is read in.
    pub timezone: TimeZoneName,
}

impl Schedule {
    /// The first tick strictly after `after` (ms since the epoch), or `None` when the
    /// pattern has no later tick.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let at = self.at(after)?;
        self.pattern
            .cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The latest tick at or before `at` (ms since the epoch), if any.
    pub fn latest_at_or_before(&self, at: i64) -> Option<i64> {
        let at = self.at(at)?;
        self.pattern
            .cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// `ms` as a time in the schedule's zone, cut to the whole second (patterns name
    /// seconds at most; the fraction would be carried into every tick found from it).
    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        let whole_second = ms - ms.rem_euclid(1000);
        let utc: DateTime<Utc> = Utc.timestamp_millis_opt(whole_second).single()?;
        Some(utc.with_timezone(&self.timezone.0))
    }
}

/// A cron source read back from its stored columns (`cron_schedule`, `cron_timezone`,
/// `cron_catch_up`; the zone defaults to UTC, catch-up to one); the error says which
/// column does not read.
pub fn from_stored(
    schedule: Option<&str>,
    timezone: Option<&str>,
    catch_up: Option<&str>,
) -> std::result::Result<(Schedule, CatchUp), String> {
    let pattern = CronPattern::parse(schedule.unwrap_or_default()).map_err(|e| e.to_string())?;
    let timezone = TimeZoneName::parse(timezone.unwrap_or("UTC")).map_err(|e| e.to_string())?;
    let catch_up = CatchUp::parse(catch_up.unwrap_or("one"))
        .ok_or_else(|| format!("catch_up '{}'", catch_up.unwrap_or_default()))?;
    Ok((Schedule { pattern, timezone }, catch_up))
}

/// What to do for a trigger whose next tick `due` has come at `now`: the tick to fire,
/// if any, and the tick after `now` to wait for next.
pub fn plan_tick(schedule: &Schedule, catch_up: CatchUp, due: i64, now: i64) -> TickPlan {
    // The latest tick not after now: `due` itself unless ticks were missed since.
    let latest = schedule.latest_at_or_before(now).unwrap_or(due).max(due);
    let fire = match catch_up {
        CatchUp::One => Some(latest),
        CatchUp::None => (now - latest <= ON_TIME_MS).then_some(latest),
    };
    TickPlan {
        fire,
        // A tick skipped (the ones before `latest`), or `latest` itself late.
        missed: latest > due || now - latest > ON_TIME_MS,
        next: schedule.next_after(now.max(latest)),
    }
}

/// What [`plan_tick`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickPlan {
    /// The tick to fire now (its scheduled time, ms).
    pub fire: Option<i64>,
    /// Whether ticks went by unfired (the server was down, or catch-up skipped them).
    pub missed: bool,
    /// The next tick to wait for, if the pattern has one.
    pub next: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(pattern: &str, tz: &str) -> Schedule {
        Schedule {
            pattern: CronPattern::parse(pattern).unwrap(),
            timezone: TimeZoneName::parse(tz).unwrap(),
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn patterns_and_zones_are_checked() {
        assert!(CronPattern::parse("*/5 * * * *").is_ok());
        assert!(CronPattern::parse("*/2 * * * * *").is_ok(), "seconds first");
        assert!(CronPattern::parse("@daily").is_ok());
        for bad in ["", "61 * * * *", "* * *", "every minute"] {
            assert!(CronPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TimeZoneName::parse("Europe/Berlin").unwrap().as_str(),
            "Europe/Berlin"
        );
        assert!(TimeZoneName::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn ticks_follow_the_zone_across_daylight_saving() {
        let nine = schedule("0 9 * * *", "Europe/Berlin");
        // Winter: 09:00 in Berlin is 08:00 UTC; summer: 07:00 UTC.
        assert_eq!(
            nine.next_after(ms("2026-01-10T12:00:00Z")),
            Some(ms("2026-01-11T08:00:00Z"))
        );
        assert_eq!(
            nine.next_after(ms("2026-07-10T12:00:00Z")),
            Some(ms("2026-07-11T07:00:00Z"))
        );
    }

    #[test]
    fn missed_ticks_fire_once_or_not_at_all() {
        let hourly = schedule("0 * * * *", "UTC");
        let due = ms("2026-03-01T10:00:00Z");
        // On time: fire it, wait for the next.
        let now = due + 500;
        assert_eq!(
            plan_tick(&hourly, CatchUp::None, due, now),
            TickPlan {
                fire: Some(due),
                missed: false,
                next: Some(ms("2026-03-01T11:00:00Z"))
            }
        );
        // Down from 09:59 to 13:20: ticks 10, 11, 12 and 13 went by.
        let now = ms("2026-03-01T13:20:00Z");
        let latest = ms("2026-03-01T13:00:00Z");
        let next = Some(ms("2026-03-01T14:00:00Z"));
        assert_eq!(
            plan_tick(&hourly, CatchUp::One, due, now),
            TickPlan {
                fire: Some(latest),
                missed: true,
                next
            }
        );
        assert_eq!(
            plan_tick(&hourly, CatchUp::None, due, now),
            TickPlan {
                fire: None,
                missed: true,
                next
            }
        );
    }
}
