//! Triggers: what an app wants done when an event is published (or dead-lettered), and
//! their storage.
//!
//! A trigger has a [`TriggerSource`] (a [`TopicPattern`] or the app's dead letters), a
//! [`Handler`] (a signed webhook), a [`RetryPolicy`] and a signing secret that the server
//! generates and never lists. Every change to an app's triggers bumps
//! `apps.trigger_generation` in the same transaction, so each node's in-memory trigger
//! index can tell when to reload ([`Db::trigger_generation`]).

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use picloud_shared::ids::{random_bytes, random_id};
use picloud_shared::time::now_ms;
use picloud_shared::{AppId, NameError, TopicName};
use serde::{Deserialize, Serialize};

use crate::db::{begin_write, Db};
use crate::error::{Error, Result};
use crate::on_db;
use crate::secret_box::Aad;

// ---------------------------------------------------------------------------------------
// Topic patterns

/// The topics a trigger listens to. Grammar, one of:
///
/// - an exact topic name (validated like [`TopicName`]): `orders.created` matches only
///   `orders.created`;
/// - `PREFIX.*`, where `PREFIX` is a valid topic name: matches every topic that starts
///   with `PREFIX.` and has at least one more character, so `orders.*` matches
///   `orders.created` and `orders.eu.created` but not `orders`, `orders.` or `ordersx.y`;
/// - `*` alone: matches every topic.
///
/// `*` anywhere else (`or*ders`, `orders*`, `orders.*.created`) is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicPattern {
    text: String,
    kind: PatternKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum PatternKind {
    Exact,
    /// `text` ends with `.*`.
    Prefix,
    All,
}

impl TopicPattern {
    /// Validates `value` as a topic pattern (grammar on [`TopicPattern`]).
    pub fn parse(value: &str) -> Result<TopicPattern, NameError> {
        let kind = if value == "*" {
            PatternKind::All
        } else if let Some(prefix) = value.strip_suffix(".*").filter(|p| !p.contains('*')) {
            TopicName::parse(prefix).map_err(|e| {
                NameError(format!(
                    "invalid topic pattern '{value}': the part before '.*' must be a topic name: {e}"
                ))
            })?;
            PatternKind::Prefix
        } else if value.contains('*') {
            return Err(NameError(format!(
                "invalid topic pattern '{value}': '*' may only be the whole pattern ('*') \
                 or follow a final '.' ('orders.*')"
            )));
        } else {
            TopicName::parse(value)?;
            PatternKind::Exact
        };
        Ok(TopicPattern {
            text: value.to_owned(),
            kind,
        })
    }

    /// Whether an event published to `topic` matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        match self.kind {
            PatternKind::Exact => topic == self.text,
            PatternKind::Prefix => {
                // `orders.*` -> `orders.`, followed by at least one character.
                let prefix = &self.text[..self.text.len() - 1];
                topic.len() > prefix.len() && topic.starts_with(prefix)
            }
            PatternKind::All => true,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for TopicPattern {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, NameError> {
        Self::parse(&value)
    }
}

impl From<TopicPattern> for String {
    fn from(value: TopicPattern) -> String {
        value.text
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl utoipa::PartialSchema for TopicPattern {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        String::schema()
    }
}

impl utoipa::ToSchema for TopicPattern {}

// ---------------------------------------------------------------------------------------
// Source, handler, retry policy

/// What fires a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerSource {
    /// Events published to topics matching `topic`.
    Topic {
        /// A topic name, `PREFIX.*` or `*`.
        topic: TopicPattern,
    },
    /// The app's dead letters (deliveries that ran out of attempts). Failures of these
    /// triggers are never dead-lettered again.
    DeadLetter {},
}

/// Longest accepted webhook URL.
pub const MAX_URL_LEN: usize = 2048;

/// A webhook URL: absolute, `http` or `https`, with a host, at most [`MAX_URL_LEN`]
/// characters. Kept in its normalized form (as the HTTP client will request it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Validates and normalizes `value`.
    pub fn parse(value: &str) -> Result<WebhookUrl> {
        let invalid = |why: String| Error::Invalid(format!("url {why}"));
        let too_long = || invalid(format!("must be at most {MAX_URL_LEN} characters"));
        if value.len() > MAX_URL_LEN {
            return Err(too_long());
        }
        let url = url::Url::parse(value)
            .map_err(|e| invalid(format!("must be an absolute http or https URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme must be http or https, got '{}'",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("must have a host".into()));
        }
        if url.as_str().len() > MAX_URL_LEN {
            return Err(too_long());
        }
        Ok(WebhookUrl(url.into()))
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<WebhookUrl> for String {
    fn from(value: WebhookUrl) -> String {
        value.0
    }
}

impl utoipa::PartialSchema for WebhookUrl {
    /// An absolute URL of at most [`MAX_URL_LEN`] characters.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uri".into())))
            .max_length(Some(MAX_URL_LEN))
            .into()
    }
}

impl utoipa::ToSchema for WebhookUrl {}

/// Where a trigger delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Handler {
    /// An HTTP `POST` signed per Standard Webhooks with the trigger's secret.
    Webhook {
        /// The endpoint.
        url: WebhookUrl,
    },
}

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

/// The wire form of [`RetryPolicy`] before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrySpec {
    max_attempts: Option<u32>,
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

// ---------------------------------------------------------------------------------------
// Triggers

/// A trigger's circuit breaker, maintained by the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Deliveries flow.
    Closed,
    /// Deliveries are paused after repeated failures.
    Open,
    /// One probe delivery decides whether to close again.
    HalfOpen,
}

impl CircuitState {
    /// The stored form (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// Parses the stored form.
    pub fn parse(value: &str) -> Option<CircuitState> {
        [
            CircuitState::Closed,
            CircuitState::Open,
            CircuitState::HalfOpen,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// How hard one node may push deliveries at a trigger's endpoint, so an endpoint coming
/// back after an outage (or a replay) is not hit by the whole backlog at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "PacingFields")]
pub struct Pacing {
    /// Most deliveries in flight at once; `null` for no limit beyond the node's workers
    /// (the default).
    pub max_in_flight: Option<u32>,
    /// Most deliveries started per second; `null` for no rate limit (the default).
    pub max_per_second: Option<u32>,
}

/// Highest accepted pacing value.
pub const MAX_PACING: u32 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PacingFields {
    max_in_flight: Option<u32>,
    max_per_second: Option<u32>,
}

impl TryFrom<PacingFields> for Pacing {
    type Error = String;
    fn try_from(fields: PacingFields) -> std::result::Result<Self, String> {
        let pacing = Pacing {
            max_in_flight: fields.max_in_flight,
            max_per_second: fields.max_per_second,
        };
        let valid = |v: Option<u32>| v.is_none_or(|v| (1..=MAX_PACING).contains(&v));
        if !valid(pacing.max_in_flight) || !valid(pacing.max_per_second) {
            return Err(format!("pacing values must be 1 to {MAX_PACING}"));
        }
        Ok(pacing)
    }
}

impl Pacing {
    /// The pacing as stored in `triggers.max_in_flight` and `max_per_second`.
    pub fn from_stored(max_in_flight: Option<i64>, max_per_second: Option<i64>) -> Pacing {
        let clamp = |v: i64| v.clamp(1, i64::from(MAX_PACING)) as u32;
        Pacing {
            max_in_flight: max_in_flight.map(clamp),
            max_per_second: max_per_second.map(clamp),
        }
    }
}

/// A trigger as the API shows it. Never includes its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Trigger {
    /// `trg_` and 32 hex characters.
    pub id: String,
    /// The owning app.
    #[schema(value_type = String)]
    pub app: AppId,
    /// What fires it.
    pub source: TriggerSource,
    /// Where it delivers.
    pub handler: Handler,
    /// How failed deliveries are retried.
    pub retry: RetryPolicy,
    /// Whether deliveries of one topic go out one at a time, in seq order.
    pub ordered: bool,
    /// Limits on how hard deliveries hit the endpoint.
    pub pacing: Pacing,
    /// Whether it fires; disabled triggers get no new deliveries.
    pub enabled: bool,
    /// Why the server disabled it, if it did.
    pub disabled_reason: Option<String>,
    /// The circuit breaker's state.
    pub circuit_state: CircuitState,
    /// Failed deliveries in a row.
    pub consecutive_failures: i64,
    /// While the circuit is open: when one probe delivery is tried, ms since the epoch
    /// (null otherwise), so an admin can tell when deliveries may resume.
    pub circuit_probe_at: Option<i64>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last change, ms since the epoch.
    pub updated_at: i64,
}

/// What a new trigger is made of; also the body of `POST /v1/apps/{app}/triggers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrigger {
    /// What fires it.
    pub source: TriggerSource,
    /// Where it delivers.
    pub handler: Handler,
    /// How failed deliveries are retried; 8 attempts on the standard schedule if absent.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Whether it fires; `true` if absent.
    #[serde(default = "default_true")]
    #[schema(default = true)]
    pub enabled: bool,
    /// Deliver one topic's events one at a time, in order; `false` if absent.
    #[serde(default)]
    pub ordered: bool,
    /// Limits on how hard deliveries hit the endpoint; 16 in flight, no rate limit if
    /// absent.
    #[serde(default)]
    pub pacing: Pacing,
}

fn default_true() -> bool {
    true
}

impl NewTrigger {
    /// An enabled, unordered trigger with the default retry policy.
    pub fn new(source: TriggerSource, handler: Handler) -> NewTrigger {
        NewTrigger {
            source,
            handler,
            retry: RetryPolicy::default(),
            enabled: true,
            ordered: false,
            pacing: Pacing::default(),
        }
    }
}

/// A change to a trigger: every field is optional and only given ones change. Also the
/// body of `PATCH /v1/apps/{app}/triggers/{trigger_id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerPatch {
    /// A new source.
    pub source: Option<TriggerSource>,
    /// A new handler (URL).
    pub handler: Option<Handler>,
    /// A new retry policy, replacing the old one whole.
    pub retry: Option<RetryPolicy>,
    /// Turn in-order delivery on or off.
    pub ordered: Option<bool>,
    /// New pacing, replacing the old one whole.
    pub pacing: Option<Pacing>,
    /// Enable or disable; enabling clears `disabled_reason`.
    pub enabled: Option<bool>,
}

impl TriggerPatch {
    fn is_empty(&self) -> bool {
        *self == TriggerPatch::default()
    }

    fn apply(self, trigger: &mut Trigger) {
        let TriggerPatch {
            source,
            handler,
            retry,
            ordered,
            pacing,
            enabled,
        } = self;
        if let Some(source) = source {
            trigger.source = source;
        }
        if let Some(handler) = handler {
            trigger.handler = handler;
        }
        if let Some(retry) = retry {
            trigger.retry = retry;
        }
        if let Some(ordered) = ordered {
            trigger.ordered = ordered;
        }
        if let Some(pacing) = pacing {
            trigger.pacing = pacing;
        }
        if let Some(enabled) = enabled {
            trigger.enabled = enabled;
            if enabled {
                trigger.disabled_reason = None;
            }
        }
    }
}

/// A new trigger and its signing secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedTrigger {
    /// The stored trigger.
    #[serde(flatten)]
    pub trigger: Trigger,
    /// The signing secret, `whsec_` and base64. Also available later through reveal.
    pub secret: String,
}

/// A rotated signing secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    /// The new secret, used to sign from now on.
    pub secret: String,
    /// Until when (ms since the epoch) deliveries are also signed with the old secret.
    pub previous_secret_expires_at: i64,
}

/// Every signing secret starts with this.
pub const SECRET_PREFIX: &str = "whsec_";
/// How long a rotated-out secret keeps signing: 24 hours.
pub const PREVIOUS_SECRET_GRACE_MS: i64 = 24 * 3600 * 1000;

/// A new signing secret: `whsec_` and the standard base64 of 32 random bytes.
fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(random_bytes::<32>()))
}

// ---------------------------------------------------------------------------------------
// Storage

#[derive(sqlx::FromRow)]
struct TriggerRow {
    id: String,
    app_id: String,
    source_kind: String,
    source_topic: Option<String>,
    handler_kind: String,
    handler_url: String,
    retry_max_attempts: i64,
    retry_schedule_ms: Option<String>,
    ordered: bool,
    max_in_flight: Option<i64>,
    max_per_second: Option<i64>,
    enabled: bool,
    disabled_reason: Option<String>,
    circuit_state: String,
    circuit_open_until: Option<i64>,
    consecutive_failures: i64,
    created_at: i64,
    updated_at: i64,
}

const TRIGGER_COLUMNS: &str = "id, app_id, source_kind, source_topic, handler_kind, handler_url, \
     retry_max_attempts, retry_schedule_ms, ordered, max_in_flight, max_per_second, enabled, \
     disabled_reason, circuit_state, circuit_open_until, \
     consecutive_failures, created_at, updated_at";

/// A stored trigger that does not read back: logged and answered 500, never blamed on
/// the caller.
fn corrupt(id: &str, what: impl fmt::Display) -> Error {
    Error::Corrupt(format!("stored trigger '{id}' is invalid: {what}"))
}

impl TriggerRow {
    fn into_trigger(self) -> Result<Trigger> {
        let id = self.id;
        let source = match (self.source_kind.as_str(), self.source_topic) {
            ("topic", Some(topic)) => TriggerSource::Topic {
                topic: TopicPattern::parse(&topic).map_err(|e| corrupt(&id, e))?,
            },
            ("dead_letter", _) => TriggerSource::DeadLetter {},
            (kind, _) => return Err(corrupt(&id, format!("source '{kind}'"))),
        };
        let handler = match self.handler_kind.as_str() {
            "webhook" => Handler::Webhook {
                url: WebhookUrl::parse(&self.handler_url).map_err(|e| corrupt(&id, e))?,
            },
            kind => return Err(corrupt(&id, format!("handler '{kind}'"))),
        };
        let retry =
            RetryPolicy::from_stored(self.retry_max_attempts, self.retry_schedule_ms.as_deref())
                .map_err(|e| corrupt(&id, e))?;
        let circuit_state = CircuitState::parse(&self.circuit_state)
            .ok_or_else(|| corrupt(&id, format!("circuit state '{}'", self.circuit_state)))?;
        Ok(Trigger {
            app: AppId::parse(&self.app_id).map_err(|e| corrupt(&id, e))?,
            source,
            handler,
            retry,
            ordered: self.ordered,
            pacing: Pacing::from_stored(self.max_in_flight, self.max_per_second),
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            circuit_state,
            // Half-open reuses the column for when its probe started: not a time to show.
            circuit_probe_at: self
                .circuit_open_until
                .filter(|_| circuit_state == CircuitState::Open),
            consecutive_failures: self.consecutive_failures,
            created_at: self.created_at,
            updated_at: self.updated_at,
            id,
        })
    }
}

/// The stored form of a trigger's configurable columns.
struct ConfigColumns<'a> {
    source_kind: &'static str,
    source_topic: Option<&'a str>,
    handler_kind: &'static str,
    handler_url: &'a str,
    retry_max_attempts: i64,
    retry_schedule_ms: String,
}

impl<'a> ConfigColumns<'a> {
    fn of(trigger: &'a Trigger) -> Self {
        let (source_kind, source_topic) = match &trigger.source {
            TriggerSource::Topic { topic } => ("topic", Some(topic.as_str())),
            TriggerSource::DeadLetter {} => ("dead_letter", None),
        };
        let Handler::Webhook { url } = &trigger.handler;
        let schedule_ms: Vec<u64> = trigger
            .retry
            .schedule_secs
            .iter()
            .map(|secs| secs * 1000)
            .collect();
        ConfigColumns {
            source_kind,
            source_topic,
            handler_kind: "webhook",
            handler_url: url.as_str(),
            retry_max_attempts: i64::from(trigger.retry.max_attempts),
            retry_schedule_ms: serde_json::to_string(&schedule_ms).expect("a list of numbers"),
        }
    }
}

/// Bumps `$app`'s trigger generation inside transaction `$tx`, evaluating to whether the
/// app exists. Every change to triggers runs this first, in its own transaction; on
/// PostgreSQL the row lock it takes also serializes concurrent changes to one app.
macro_rules! bump_generation {
    ($tx:expr, $app:expr) => {
        sqlx::query("UPDATE apps SET trigger_generation = trigger_generation + 1 WHERE id = $1")
            .bind($app)
            .execute(&mut *$tx)
            .await?
            .rows_affected()
            == 1
    };
}
pub(crate) use bump_generation;

/// The enabled topic triggers of an app (`$1`, with `$2` bound to `true`), oldest first:
/// what the publish path matches events against.
pub(crate) const ENABLED_TOPIC_TRIGGERS: &str = "SELECT id, source_topic FROM triggers
     WHERE app_id = $1 AND source_kind = 'topic' AND enabled = $2
       AND source_topic IS NOT NULL
     ORDER BY created_at, id";

impl Db {
    /// Creates a trigger for `app` with a fresh signing secret.
    pub async fn create_trigger(&self, app: &AppId, new: NewTrigger) -> Result<CreatedTrigger> {
        let now = now_ms();
        let trigger = Trigger {
            id: random_id("trg"),
            app: app.clone(),
            source: new.source,
            handler: new.handler,
            retry: new.retry,
            ordered: new.ordered,
            pacing: new.pacing,
            enabled: new.enabled,
            disabled_reason: None,
            circuit_state: CircuitState::Closed,
            consecutive_failures: 0,
            circuit_probe_at: None,
            created_at: now,
            updated_at: now,
        };
        let secret = new_secret();
        let sealed = self
            .master_key()?
            .seal(&Aad::trigger_secret(&trigger.id), secret.as_bytes());
        let c = ConfigColumns::of(&trigger);
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            if !bump_generation!(tx, app.as_str()) {
                return Err(Error::AppNotFound(app.to_string()));
            }
            sqlx::query(
                "INSERT INTO triggers (id, app_id, source_kind, source_topic, handler_kind,
                     handler_url, secret, retry_max_attempts, retry_schedule_ms, ordered,
                     enabled, circuit_state, created_at, updated_at, max_in_flight, max_per_second)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15)",
            )
            .bind(&trigger.id)
            .bind(app.as_str())
            .bind(c.source_kind)
            .bind(c.source_topic)
            .bind(c.handler_kind)
            .bind(c.handler_url)
            .bind(&sealed)
            .bind(c.retry_max_attempts)
            .bind(&c.retry_schedule_ms)
            .bind(trigger.ordered)
            .bind(trigger.enabled)
            .bind(trigger.circuit_state.as_str())
            .bind(now)
            .bind(trigger.pacing.max_in_flight.map(i64::from))
            .bind(trigger.pacing.max_per_second.map(i64::from))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(CreatedTrigger { trigger, secret })
    }

    /// The triggers of `app`, oldest first.
    pub async fn list_triggers(&self, app: &str) -> Result<Vec<Trigger>> {
        let rows: Vec<TriggerRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = $1 ORDER BY created_at, id"
            ))
            .bind(app)
            .fetch_all(pool)
            .await?
        });
        if rows.is_empty() {
            self.get_app(app).await?;
        }
        rows.into_iter().map(TriggerRow::into_trigger).collect()
    }

    /// One trigger of `app`; [`Error::TriggerNotFound`] if `app` has none with this id.
    pub async fn get_trigger(&self, app: &str, id: &str) -> Result<Trigger> {
        let row: Option<TriggerRow> = on_db!(self, pool, {
            sqlx::query_as(&format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = $1 AND id = $2"
            ))
            .bind(app)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        match row {
            Some(row) => row.into_trigger(),
            None => Err(self.trigger_not_found(app, id).await),
        }
    }

    /// Applies `patch` to a trigger of `app` and returns the result. An empty patch
    /// changes nothing.
    pub async fn update_trigger(
        &self,
        app: &str,
        id: &str,
        patch: TriggerPatch,
    ) -> Result<Trigger> {
        if patch.is_empty() {
            return self.get_trigger(app, id).await;
        }
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            if !bump_generation!(tx, app) {
                return Err(Error::AppNotFound(app.to_owned()));
            }
            let row: Option<TriggerRow> = sqlx::query_as(&format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = $1 AND id = $2"
            ))
            .bind(app)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(Error::TriggerNotFound(id.to_owned()));
            };
            let mut trigger = row.into_trigger()?;
            patch.apply(&mut trigger);
            trigger.updated_at = now_ms().max(trigger.updated_at);
            let c = ConfigColumns::of(&trigger);
            sqlx::query(
                "UPDATE triggers SET source_kind = $1, source_topic = $2, handler_kind = $3,
                     handler_url = $4, retry_max_attempts = $5, retry_schedule_ms = $6,
                     ordered = $7, enabled = $8, disabled_reason = $9, updated_at = $10,
                     max_in_flight = $13, max_per_second = $14
                 WHERE app_id = $11 AND id = $12",
            )
            .bind(c.source_kind)
            .bind(c.source_topic)
            .bind(c.handler_kind)
            .bind(c.handler_url)
            .bind(c.retry_max_attempts)
            .bind(&c.retry_schedule_ms)
            .bind(trigger.ordered)
            .bind(trigger.enabled)
            .bind(trigger.disabled_reason.as_deref())
            .bind(trigger.updated_at)
            .bind(app)
            .bind(id)
            .bind(trigger.pacing.max_in_flight.map(i64::from))
            .bind(trigger.pacing.max_per_second.map(i64::from))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(trigger)
        })
    }

    /// Deletes a trigger of `app`, with its pending deliveries.
    pub async fn delete_trigger(&self, app: &str, id: &str) -> Result<()> {
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            if !bump_generation!(tx, app) {
                return Err(Error::AppNotFound(app.to_owned()));
            }
            let deleted = sqlx::query("DELETE FROM triggers WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(Error::TriggerNotFound(id.to_owned()));
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The current signing secret of a trigger of `app`.
    pub async fn trigger_secret(&self, app: &str, id: &str) -> Result<String> {
        let secret: Option<String> = on_db!(self, pool, {
            sqlx::query_scalar("SELECT secret FROM triggers WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        match secret {
            Some(secret) => self
                .master_key()?
                .open_text(&Aad::trigger_secret(id), &secret),
            None => Err(self.trigger_not_found(app, id).await),
        }
    }

    /// Replaces a trigger's signing secret with a fresh one. The old secret becomes the
    /// previous secret, which keeps signing for [`PREVIOUS_SECRET_GRACE_MS`] so receivers
    /// can switch without dropping deliveries.
    pub async fn rotate_trigger_secret(&self, app: &str, id: &str) -> Result<RotatedSecret> {
        let secret = new_secret();
        let sealed = self
            .master_key()?
            .seal(&Aad::trigger_secret(id), secret.as_bytes());
        let now = now_ms();
        let previous_until = now + PREVIOUS_SECRET_GRACE_MS;
        on_db!(self, pool, {
            let mut tx = begin_write(pool).await?;
            if !bump_generation!(tx, app) {
                return Err(Error::AppNotFound(app.to_owned()));
            }
            let rotated = sqlx::query(
                "UPDATE triggers SET previous_secret = secret, previous_secret_until = $1,
                     secret = $2, updated_at = $3
                 WHERE app_id = $4 AND id = $5",
            )
            .bind(previous_until)
            .bind(&sealed)
            .bind(now)
            .bind(app)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if rotated == 0 {
                return Err(Error::TriggerNotFound(id.to_owned()));
            }
            tx.commit().await?;
        });
        Ok(RotatedSecret {
            secret,
            previous_secret_expires_at: previous_until,
        })
    }

    /// `app`'s trigger generation, bumped by every change to its triggers. A cache of
    /// the app's triggers reads this first and reloads when it moved.
    pub async fn trigger_generation(&self, app: &str) -> Result<i64> {
        let generation: Option<i64> = on_db!(self, pool, {
            sqlx::query_scalar("SELECT trigger_generation FROM apps WHERE id = $1")
                .bind(app)
                .fetch_optional(pool)
                .await?
        });
        generation.ok_or_else(|| Error::AppNotFound(app.to_owned()))
    }

    /// The id and pattern of every enabled topic trigger of `app`, oldest first: what
    /// the publish path matches events against. Empty for an unknown app.
    pub async fn enabled_topic_triggers(&self, app: &str) -> Result<Vec<(String, TopicPattern)>> {
        let rows: Vec<(String, String)> = on_db!(self, pool, {
            sqlx::query_as(ENABLED_TOPIC_TRIGGERS)
                .bind(app)
                .bind(true)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, topic)| match TopicPattern::parse(&topic) {
                Ok(pattern) => Ok((id, pattern)),
                Err(e) => Err(corrupt(&id, e)),
            })
            .collect()
    }

    /// The error for a trigger id `app` does not have: [`Error::AppNotFound`] if the app
    /// itself is missing, else [`Error::TriggerNotFound`].
    async fn trigger_not_found(&self, app: &str, id: &str) -> Error {
        match self.get_app(app).await {
            Ok(_) => Error::TriggerNotFound(id.to_owned()),
            Err(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(value: &str) -> TopicPattern {
        TopicPattern::parse(value).unwrap()
    }

    #[test]
    fn exact_patterns_match_one_topic() {
        let p = pattern("orders.created");
        assert!(p.matches("orders.created"));
        assert!(!p.matches("orders"));
        assert!(!p.matches("orders.created.eu"));
        assert_eq!(p.as_str(), "orders.created");
    }

    #[test]
    fn prefix_patterns_need_one_more_segment_character() {
        let p = pattern("orders.*");
        assert!(p.matches("orders.created"));
        assert!(p.matches("orders.eu.created"));
        assert!(!p.matches("orders"));
        assert!(!p.matches("orders."));
        assert!(!p.matches("ordersx.y"));
        assert!(!p.matches("x.orders.created"));
    }

    #[test]
    fn star_matches_everything() {
        let p = pattern("*");
        assert!(p.matches("orders"));
        assert!(p.matches("a/b:c"));
    }

    #[test]
    fn misplaced_stars_are_rejected_clearly() {
        for bad in [
            "or*ders",
            "orders*",
            "*.orders",
            "orders.*.created",
            "**",
            "orders.**",
        ] {
            let err = TopicPattern::parse(bad).unwrap_err();
            assert!(err.0.contains("'*' may only be"), "{bad}: {err}");
        }
        let err = TopicPattern::parse(".*").unwrap_err();
        assert!(err.0.contains("before '.*'"), "{err}");
        assert!(TopicPattern::parse("").is_err());
        assert!(TopicPattern::parse("a b.*").is_err());
        assert!(TopicPattern::parse(&format!("{}.*", "x".repeat(201))).is_err());
    }

    #[test]
    fn patterns_serialize_as_strings() {
        let p: TopicPattern = serde_json::from_str("\"orders.*\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"orders.*\"");
        assert!(serde_json::from_str::<TopicPattern>("\"or*ders\"").is_err());
    }

    #[test]
    fn webhook_urls() {
        let url = WebhookUrl::parse("https://Example.com/hook?x=1").unwrap();
        assert_eq!(url.as_str(), "https://example.com/hook?x=1");
        assert!(WebhookUrl::parse("http://127.0.0.1:8080").is_ok());
        for bad in [
            "ftp://x",
            "not a url",
            "mailto:a@b.c",
            "https://",
            "/relative",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        let long = format!("https://x.io/{}", "a".repeat(MAX_URL_LEN));
        assert!(WebhookUrl::parse(&long).is_err());
    }

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

    #[test]
    fn sources_and_handlers_wire_form() {
        let source: TriggerSource =
            serde_json::from_str(r#"{"kind": "topic", "topic": "orders.*"}"#).unwrap();
        assert_eq!(
            source,
            TriggerSource::Topic {
                topic: pattern("orders.*")
            }
        );
        let dead: TriggerSource = serde_json::from_str(r#"{"kind": "dead_letter"}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&dead).unwrap(),
            serde_json::json!({"kind": "dead_letter"})
        );
        assert!(
            serde_json::from_str::<TriggerSource>(r#"{"kind": "dead_letter", "topic": "x"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<TriggerSource>(r#"{"kind": "topic"}"#).is_err());
        let handler: Handler =
            serde_json::from_str(r#"{"kind": "webhook", "url": "https://h.io/x"}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&handler).unwrap(),
            serde_json::json!({"kind": "webhook", "url": "https://h.io/x"})
        );
        assert!(
            serde_json::from_str::<Handler>(r#"{"kind": "webhook", "url": "ftp://x"}"#).is_err()
        );
    }

    #[test]
    fn secrets_are_base64_of_32_bytes() {
        let secret = new_secret();
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), 32);
        assert_ne!(new_secret(), secret);
    }

    #[test]
    fn circuit_states_round_trip() {
        for state in [
            CircuitState::Closed,
            CircuitState::Open,
            CircuitState::HalfOpen,
        ] {
            assert_eq!(CircuitState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
    }
}
