//! Triggers: what an app wants done when an event is published (or dead-lettered), and
//! their storage.
//!
//! A trigger has a [`TriggerSource`] (a [`TopicPattern`], the app's dead letters or a cron
//! schedule), a [`Handler`] (a signed webhook or a script), a [`RetryPolicy`] and a signing secret that the server
//! generates and never lists. Every change to an app's triggers bumps
//! `apps.trigger_generation` in the same transaction, so each node's in-memory trigger
//! index can tell when to reload ([`Db::trigger_generation`](crate::db::Db)).
//!
//! - `pattern` — the topic-pattern grammar;
//! - `retry` — the retry policy and its limits;
//! - [`schedule`] — cron patterns, time zones and which tick fires when;
//! - `model` — the trigger and the API's shapes around it;
//! - `store` — the queries, as `impl Db`.

mod model;
mod pattern;
mod retry;
pub mod schedule;
mod store;

pub use model::{
    CircuitState, CreatedTrigger, Handler, NewTrigger, Pacing, RotatedSecret, Trigger,
    TriggerPatch, TriggerSource, WebhookUrl, MAX_PACING, MAX_URL_LEN, PREVIOUS_SECRET_GRACE_MS,
    SECRET_PREFIX,
};
pub use pattern::TopicPattern;
pub use retry::{
    RetryPolicy, DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS, MAX_DELAY_SECS, MAX_SCHEDULE_LEN,
    STANDARD_SCHEDULE_SECS,
};
pub(crate) use store::{bump_generation, ENABLED_TOPIC_TRIGGERS};
