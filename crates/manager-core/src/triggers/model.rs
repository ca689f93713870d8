//! What a trigger is, as the API shows and takes it: its source, handler, pacing and
//! circuit state, and the shapes of create, update and secret rotation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use picloud_shared::ids::random_bytes;
use picloud_shared::{AppId, TopicName};
use serde::{Deserialize, Serialize};

use super::retry::RetrySpec;
use super::schedule::{CatchUp, CronPattern, Schedule, TimeZoneName};
use super::{RetryPolicy, TopicPattern};
use crate::error::{Error, Result};

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
    /// A schedule: each tick fires once, whatever the number of nodes, with
    /// `#{type: "cron.tick", app, trigger_id, scheduled_at}` as its event.
    Cron {
        /// A cron pattern: five fields (minute first), or six with seconds first.
        schedule: CronPattern,
        /// The IANA time zone the pattern is read in; `UTC` if absent.
        #[serde(default)]
        timezone: TimeZoneName,
        /// What to do about ticks that went by while no node ran: fire `one` for them
        /// all (the default), or `none`.
        #[serde(default)]
        catch_up: CatchUp,
    },
}

impl TriggerSource {
    /// The schedule of a `cron` source.
    pub fn schedule(&self) -> Option<Schedule> {
        match self {
            TriggerSource::Cron {
                schedule, timezone, ..
            } => Some(Schedule {
                pattern: schedule.clone(),
                timezone: *timezone,
            }),
            _ => None,
        }
    }
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
    /// A script of the app, run with `event` (the body a webhook would get) and
    /// `delivery` (its id and attempt) in scope. Returning is delivered; throwing or
    /// running out of time is a failed attempt, retried like a webhook's.
    Script {
        /// The script's name.
        #[schema(value_type = String)]
        script: TopicName,
    },
}

impl Handler {
    /// The stored form: `handler_kind` and `handler_target`.
    pub fn stored(&self) -> (&'static str, &str) {
        match self {
            Handler::Webhook { url } => ("webhook", url.as_str()),
            Handler::Script { script } => ("script", script.as_str()),
        }
    }
}

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
    /// A `cron` trigger's next tick, ms since the epoch (null for other triggers, and
    /// for a schedule with no tick left).
    pub next_tick_at: Option<i64>,
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
    #[schema(value_type = RetrySpec)]
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
    /// A new retry policy, replacing the old one whole (a field left out takes its
    /// default, not the old value).
    #[schema(value_type = Option<RetrySpec>)]
    pub retry: Option<RetryPolicy>,
    /// Turn in-order delivery on or off.
    pub ordered: Option<bool>,
    /// New pacing, replacing the old one whole.
    pub pacing: Option<Pacing>,
    /// Enable or disable; enabling clears `disabled_reason`.
    pub enabled: Option<bool>,
}

impl TriggerPatch {
    pub(super) fn is_empty(&self) -> bool {
        *self == TriggerPatch::default()
    }

    pub(super) fn apply(self, trigger: &mut Trigger) {
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
pub(super) fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(random_bytes::<32>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(value: &str) -> TopicPattern {
        TopicPattern::parse(value).unwrap()
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
