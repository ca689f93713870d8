//! The publish path: events and their outbox rows commit in one transaction, and only
//! then are they broadcast to live subscribers and the dispatcher is woken.
//!
//! All publishes of a process go through one writer task that commits them in groups
//! (group commit): while one transaction is being made durable, the next requests queue
//! up and commit together, so many publishes share one fsync without weakening it.
//! Within a group, each request is still all-or-nothing; if the group's transaction
//! fails, each request is retried alone so one bad request cannot fail its neighbours.
//!
//! Seqs come from `UPDATE topics SET last_seq = last_seq + n … RETURNING`, a row lock
//! held to commit, so per topic seqs are gap-free and in commit order, also with several
//! nodes on one PostgreSQL database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use picloud_shared::events::{CommittedEvent, RealtimeBroadcaster};
use picloud_shared::ids::time_ordered_id;
use picloud_shared::time::now_ms;
use picloud_shared::{AppId, TopicName};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster_feed::{self, SeqRange};
use crate::db::{begin_write, Backend, Db};
use crate::error::{Error, Result};
use crate::on_db;
use crate::topics::{Retention, TOPIC_INSERT};
use crate::triggers::{TopicPattern, ENABLED_TOPIC_TRIGGERS};

/// One event to publish.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Where to.
    pub topic: TopicName,
    /// Its type (`message` by default).
    pub event_type: String,
    /// Its `data`: raw JSON text, stored and broadcast exactly as given.
    pub data: Bytes,
}

/// A publish request: one or more events, committed atomically.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The publishing app.
    pub app: AppId,
    /// The events, in order.
    pub events: Vec<NewEvent>,
    /// A retried request with the same key returns the first result and writes nothing.
    pub idempotency_key: Option<String>,
}

/// What a publish of one event answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublishedEvent {
    /// The topic.
    pub topic: String,
    /// The event's seq in its topic.
    pub seq: i64,
    /// The event's id.
    pub id: String,
    /// Commit time, ms since the epoch.
    pub published_at: i64,
    /// Outbox rows created: one per enabled trigger matching the topic.
    pub deliveries: u32,
}

/// The result of a publish request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// One entry per event, in request order.
    pub events: Vec<PublishedEvent>,
    /// True if this answers a retry of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// Called after every row of a group is written and before it commits; an error rolls
/// the group back. Only for fault-injection tests.
pub type BeforeCommitHook = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// How the writer batches.
#[derive(Clone)]
pub struct PublisherConfig {
    /// Most events committed in one transaction.
    pub max_group_events: usize,
    /// Fault injection for tests; `None` in production.
    pub before_commit: Option<BeforeCommitHook>,
    /// This node's id in cluster notifications, so it skips its own.
    pub node_id: String,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            max_group_events: 2048,
            before_commit: None,
            node_id: picloud_shared::ids::random_id("node"),
        }
    }
}

/// The handle through which requests publish. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    jobs: mpsc::Sender<Job>,
}

struct Job {
    request: PublishRequest,
    reply: oneshot::Sender<Result<Publication>>,
}

impl Publisher {
    /// Starts the writer task. It commits until `shutdown`, then drains what is queued.
    pub fn spawn(
        db: Db,
        broadcaster: Arc<dyn RealtimeBroadcaster>,
        dispatch_wake: Arc<Notify>,
        config: PublisherConfig,
        shutdown: CancellationToken,
    ) -> (Publisher, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(8192);
        let writer = Writer {
            db,
            broadcaster,
            dispatch_wake,
            config,
            triggers: HashMap::new(),
        };
        let task = tokio::spawn(writer.run(queue, shutdown));
        (Publisher { jobs }, task)
    }

    /// Publishes atomically and returns once the events are durable.
    pub async fn publish(&self, request: PublishRequest) -> Result<Publication> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)?
    }
}

/// The enabled topic triggers of one app, as of a trigger generation.
struct AppTriggers {
    generation: i64,
    exact: HashMap<String, Vec<String>>,
    patterns: Vec<(TopicPattern, String)>,
}

impl AppTriggers {
    fn new(generation: i64, rows: Vec<(String, String)>) -> Self {
        let mut exact: HashMap<String, Vec<String>> = HashMap::new();
        let mut patterns = Vec::new();
        for (id, source) in rows {
            let pattern = match TopicPattern::parse(&source) {
                Ok(pattern) => pattern,
                Err(error) => {
                    // Only a damaged database holds one; events still commit, but this
                    // trigger misses them until its pattern is fixed, so say so loudly.
                    tracing::error!(trigger = %id, pattern = %source, %error,
                        "stored trigger pattern is invalid; the trigger matches no event");
                    crate::metrics::trigger_pattern_invalid();
                    continue;
                }
            };
            if pattern.as_str().ends_with('*') {
                patterns.push((pattern, id));
            } else {
                exact
                    .entry(pattern.as_str().to_owned())
                    .or_default()
                    .push(id);
            }
        }
        Self {
            generation,
            exact,
            patterns,
        }
    }

    /// Ids of the triggers matching `topic`: a hash lookup plus the app's patterns.
    fn matching<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let exact = self.exact.get(topic).into_iter().flatten();
        let patterns = self
            .patterns
            .iter()
            .filter(move |(pattern, _)| pattern.matches(topic))
            .map(|(_, id)| id);
        exact.chain(patterns).map(String::as_str)
    }
}

struct Writer {
    db: Db,
    broadcaster: Arc<dyn RealtimeBroadcaster>,
    dispatch_wake: Arc<Notify>,
    config: PublisherConfig,
    /// Per app, reloaded whenever the app's `trigger_generation` moves.
    triggers: HashMap<String, Arc<AppTriggers>>,
}

/// What a committed group produced, besides the per-request answers.
struct GroupOutcome {
    answers: Vec<Result<Publication>>,
    committed: Vec<CommittedEvent>,
    outbox_rows: u64,
}

/// One event row about to be written.
struct EventRow<'a> {
    app: &'a AppId,
    topic: &'a str,
    seq: i64,
    id: String,
    event: &'a NewEvent,
    key: Option<&'a str>,
}

/// Rows per multi-row INSERT: 500 x 9 binds stays far below both databases' limits.
const ROWS_PER_INSERT: usize = 500;

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                job = queue.recv() => job,
                _ = shutdown.cancelled() => {
                    queue.close();
                    queue.recv().await
                }
            };
            let Some(first) = first else { break };
            let mut group = vec![first];
            let mut events = group[0].request.events.len();
            while events < self.config.max_group_events {
                match queue.try_recv() {
                    Ok(job) => {
                        events += job.request.events.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group).await;
        }
    }

    /// Commits a group, or each of its requests alone if the group fails, then
    /// broadcasts, wakes the dispatcher and answers.
    async fn commit_group(&mut self, group: Vec<Job>) {
        let started = Instant::now();
        let requests: Vec<&PublishRequest> = group.iter().map(|j| &j.request).collect();
        let answers = match self.write(&requests).await {
            Ok(outcome) => {
                crate::metrics::group_committed(started.elapsed(), group.len());
                self.after_commit(&outcome);
                outcome.answers
            }
            Err(error) if group.len() > 1 => {
                tracing::warn!(%error, requests = group.len(), "group commit failed; retrying requests one by one");
                let mut answers = Vec::with_capacity(group.len());
                for request in &requests {
                    match self.write(std::slice::from_ref(request)).await {
                        Ok(outcome) => {
                            self.after_commit(&outcome);
                            answers.extend(outcome.answers);
                        }
                        Err(error) => answers.push(Err(error)),
                    }
                }
                answers
            }
            Err(error) => vec![Err(error)],
        };
        for (job, answer) in group.into_iter().zip(answers) {
            let _ = job.reply.send(answer);
        }
    }

    fn after_commit(&self, outcome: &GroupOutcome) {
        if !outcome.committed.is_empty() {
            crate::metrics::events_published(outcome.committed.len() as u64);
            if let Err(error) = self.broadcaster.broadcast(&outcome.committed) {
                crate::metrics::broadcast_failed();
                tracing::warn!(%error, events = outcome.committed.len(), "broadcast failed; subscribers will catch up from the log");
            }
        }
        if outcome.outbox_rows > 0 {
            crate::metrics::outbox_rows_created(outcome.outbox_rows);
            self.dispatch_wake.notify_one();
        }
    }

    /// Writes the group (see [`Writer::write_group`]) and tells the database's
    /// [`WriteHealth`](crate::db::WriteHealth) whether the write path works.
    async fn write(&mut self, requests: &[&PublishRequest]) -> Result<GroupOutcome> {
        let result = self.write_group(requests).await;
        match &result {
            Ok(_) => self.db.write_health().succeeded(),
            Err(Error::Database(_)) => self.db.write_health().failed(),
            Err(_) => {}
        }
        result
    }

    /// Writes every request of the group in one transaction and commits it. Work is
    /// merged across the group: one seq-taking UPDATE per topic and multi-row INSERTs for
    /// all events and outbox rows, whatever the number of requests.
    async fn write_group(&mut self, requests: &[&PublishRequest]) -> Result<GroupOutcome> {
        let now = now_ms();
        let retention = Retention::default();
        // Per request: what it will answer, once known.
        let mut answers: Vec<Option<Result<Publication>>> = requests.iter().map(|_| None).collect();
        // Requests repeating an idempotency key claimed earlier in this group.
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        let mut claimed: HashMap<(&str, &str), usize> = HashMap::new();
        let mut generations: HashMap<&str, Option<i64>> = HashMap::new();
        let mut accepted: Vec<(usize, Arc<AppTriggers>)> = Vec::new();
        let mut committed = Vec::new();
        let outbox_rows: u64;
        let triggers = &mut self.triggers;
        let _gate = self.db.write_gate().await;
        let postgres = self.db.backend() == Backend::Postgres;
        on_db!(&self.db, pool, {
            let mut tx = begin_write(pool).await?;

            // 1. Per request: does the app exist, is the request a retry, which triggers apply.
            for (index, request) in requests.iter().enumerate() {
                let app = request.app.as_str();
                let generation = match generations.get(app) {
                    Some(generation) => *generation,
                    None => {
                        let generation: Option<i64> =
                            sqlx::query_scalar("SELECT trigger_generation FROM apps WHERE id = $1")
                                .bind(app)
                                .fetch_optional(&mut *tx)
                                .await?;
                        generations.insert(app, generation);
                        generation
                    }
                };
                let Some(generation) = generation else {
                    answers[index] = Some(Err(Error::AppNotFound(app.to_owned())));
                    continue;
                };
                if let Some(key) = request.idempotency_key.as_deref() {
                    if let Some(&first) = claimed.get(&(app, key)) {
                        repeats.push((index, first));
                        continue;
                    }
                    let fresh = sqlx::query(
                        "INSERT INTO idempotency_keys (app_id, key, response, created_at)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (app_id, key) DO NOTHING",
                    )
                    .bind(app)
                    .bind(key)
                    .bind(&b""[..])
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if !fresh {
                        let stored: Vec<u8> = sqlx::query_scalar(
                            "SELECT response FROM idempotency_keys WHERE app_id = $1 AND key = $2",
                        )
                        .bind(app)
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?;
                        crate::metrics::idempotent_replay();
                        answers[index] = Some(decode_stored_answer(&stored));
                        continue;
                    }
                    claimed.insert((app, key), index);
                }
                let app_triggers = match triggers.get(app) {
                    Some(cached) if cached.generation == generation => cached.clone(),
                    _ => {
                        let rows: Vec<(String, String)> = sqlx::query_as(ENABLED_TOPIC_TRIGGERS)
                            .bind(app)
                            .bind(true)
                            .fetch_all(&mut *tx)
                            .await?;
                        let loaded = Arc::new(AppTriggers::new(generation, rows));
                        triggers.insert(app.to_owned(), loaded.clone());
                        loaded
                    }
                };
                accepted.push((index, app_triggers));
            }

            // 2. Take the seqs: one row-locking UPDATE per (app, topic) of the group.
            let mut next_seq: HashMap<(&str, &str), i64> = HashMap::new();
            for (index, _) in &accepted {
                let request = requests[*index];
                for event in &request.events {
                    *next_seq
                        .entry((request.app.as_str(), event.topic.as_str()))
                        .or_default() += 1;
                }
            }
            let take = "UPDATE topics SET last_seq = last_seq + $3, updated_at = $4
                        WHERE app_id = $1 AND name = $2 RETURNING last_seq";
            let mut ranges = Vec::with_capacity(next_seq.len());
            for ((app, topic), count) in next_seq.iter_mut() {
                let mut last: Option<i64> = sqlx::query_scalar(take)
                    .bind(*app)
                    .bind(*topic)
                    .bind(*count)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                if last.is_none() {
                    // First publish to an unregistered name: register it, not external.
                    sqlx::query(&format!(
                        "{TOPIC_INSERT} ON CONFLICT (app_id, name) DO NOTHING"
                    ))
                    .bind(*app)
                    .bind(*topic)
                    .bind(false)
                    .bind("token")
                    .bind(retention.max_events)
                    .bind(retention.max_age_secs.map(|s| s * 1000))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    last = sqlx::query_scalar(take)
                        .bind(*app)
                        .bind(*topic)
                        .bind(*count)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await?;
                }
                let last = last.ok_or_else(|| Error::AppNotFound(app.to_string()))?;
                *count = last - *count + 1;
                ranges.push(SeqRange {
                    app: app.to_string(),
                    topic: topic.to_string(),
                    first: *count,
                    last,
                });
            }

            // 3. Every event and outbox row of the group, in request order.
            let mut rows: Vec<EventRow> = Vec::new();
            let mut outbox: Vec<(&str, &str, &str, i64)> = Vec::new();
            for (index, app_triggers) in &accepted {
                let request = requests[*index];
                let app = request.app.as_str();
                let mut published = Vec::with_capacity(request.events.len());
                for event in &request.events {
                    let topic = event.topic.as_str();
                    let seq = next_seq
                        .get_mut(&(app, topic))
                        .expect("seq taken for every topic");
                    let row = EventRow {
                        app: &request.app,
                        topic,
                        seq: *seq,
                        id: time_ordered_id("evt"),
                        event,
                        key: request.idempotency_key.as_deref(),
                    };
                    *seq += 1;
                    let before = outbox.len();
                    outbox.extend(
                        app_triggers
                            .matching(topic)
                            .map(|trigger| (app, trigger, topic, row.seq)),
                    );
                    published.push(PublishedEvent {
                        topic: topic.to_owned(),
                        seq: row.seq,
                        id: row.id.clone(),
                        published_at: now,
                        deliveries: (outbox.len() - before) as u32,
                    });
                    rows.push(row);
                }
                answers[*index] = Some(Ok(Publication {
                    events: published,
                    replayed: false,
                }));
            }
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO topic_events
                     (app_id, topic, seq, id, event_type, payload, published_at, idempotency_key) ",
                );
                insert.push_values(chunk, |mut values, row| {
                    values
                        .push_bind(row.app.as_str())
                        .push_bind(row.topic)
                        .push_bind(row.seq)
                        .push_bind(row.id.as_str())
                        .push_bind(row.event.event_type.as_str())
                        .push_bind(&row.event.data[..])
                        .push_bind(now)
                        .push_bind(row.key);
                });
                insert.build().execute(&mut *tx).await?;
            }
            for chunk in outbox.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts,
                     next_attempt_at, created_at, updated_at) ",
                );
                insert.push_values(chunk, |mut values, (app, trigger, topic, seq)| {
                    values
                        .push_bind(*app)
                        .push_bind(*trigger)
                        .push_bind(*topic)
                        .push_bind(*seq)
                        .push_bind("pending")
                        .push_bind(0i64)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now);
                });
                insert.build().execute(&mut *tx).await?;
            }
            outbox_rows = outbox.len() as u64;
            if postgres {
                // Delivered to the other nodes' cluster feeds if, and when, this commits.
                for payload in cluster_feed::payloads(&self.config.node_id, &ranges) {
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(cluster_feed::CHANNEL)
                        .bind(payload)
                        .execute(&mut *tx)
                        .await?;
                }
            }

            // 4. Remember the answers of keyed requests for their retries.
            for (index, _) in &accepted {
                let request = requests[*index];
                let (Some(key), Some(Ok(publication))) =
                    (&request.idempotency_key, &answers[*index])
                else {
                    continue;
                };
                let answer = serde_json::to_vec(&publication.events).expect("answers serialize");
                sqlx::query(
                    "UPDATE idempotency_keys SET response = $3 WHERE app_id = $1 AND key = $2",
                )
                .bind(request.app.as_str())
                .bind(key)
                .bind(answer)
                .execute(&mut *tx)
                .await?;
            }
            committed.extend(rows.iter().map(|row| CommittedEvent {
                app: row.app.clone(),
                topic: row.event.topic.clone(),
                seq: row.seq,
                id: row.id.clone(),
                event_type: row.event.event_type.clone(),
                data: row.event.data.clone(),
                published_at: now,
            }));
            if let Some(hook) = &self.config.before_commit {
                hook()?;
            }
            tx.commit().await?;
        });
        for (index, first) in repeats {
            answers[index] = Some(match &answers[first] {
                Some(Ok(publication)) => Ok(Publication {
                    events: publication.events.clone(),
                    replayed: true,
                }),
                _ => Err(Error::Invalid(
                    "the first request with this idempotency key failed".into(),
                )),
            });
        }
        Ok(GroupOutcome {
            answers: answers
                .into_iter()
                .map(|answer| answer.expect("every request answered"))
                .collect(),
            committed,
            outbox_rows,
        })
    }
}

/// The deepest nesting of arrays and objects in `json` (valid JSON text): one pass over
/// the bytes counting brackets outside strings, without building anything.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn decode_stored_answer(stored: &[u8]) -> Result<Publication> {
    let events: Vec<PublishedEvent> = serde_json::from_slice(stored)
        .map_err(|e| Error::Corrupt(format!("stored idempotent answer: {e}")))?;
    Ok(Publication {
        events,
        replayed: true,
    })
}

/// Size limits on what one request may publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishLimits {
    /// Largest `data` of one event, in bytes of JSON text.
    pub max_event_bytes: usize,
    /// Most events in one batch request.
    pub max_batch_events: usize,
}

impl Default for PublishLimits {
    /// 256 KiB per event, 1,000 events per batch.
    fn default() -> Self {
        Self {
            max_event_bytes: 256 * 1024,
            max_batch_events: 1000,
        }
    }
}

/// The event type when the publisher names none.
pub const DEFAULT_EVENT_TYPE: &str = "message";
/// Longest event type.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// The characters of an event type, as the API document's pattern.
pub const EVENT_TYPE_PATTERN: &str = "^[A-Za-z0-9._:-]+$";

/// Deepest nesting of arrays and objects accepted in event data (`[[1]]` is 2 deep).
/// Far beyond what real payloads use, and well inside the recursion limits of common
/// JSON parsers (serde_json's is 128), so every webhook receiver and SDK can read what
/// was published.
pub const MAX_DATA_DEPTH: usize = 64;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

impl PublishLimits {
    /// Validates one event of a request and turns it into a [`NewEvent`].
    pub fn new_event(
        &self,
        topic: &str,
        event_type: Option<String>,
        data: Box<serde_json::value::RawValue>,
    ) -> Result<NewEvent> {
        let topic = TopicName::parse(topic).map_err(|e| Error::Invalid(e.0))?;
        let event_type = match event_type {
            None => DEFAULT_EVENT_TYPE.to_owned(),
            Some(t) if is_valid_event_type(&t) => t,
            Some(_) => {
                return Err(Error::Invalid(format!(
                "type must be 1 to {MAX_EVENT_TYPE_LEN} characters of letters, digits and . _ : -"
            )))
            }
        };
        let data: Box<str> = data.into();
        if data.len() > self.max_event_bytes {
            return Err(Error::TooLarge(format!(
                "event data is {} bytes; the limit is {}",
                data.len(),
                self.max_event_bytes
            )));
        }
        if nesting_depth(data.as_bytes()) > MAX_DATA_DEPTH {
            return Err(Error::Invalid(format!(
                "event data is nested more than {MAX_DATA_DEPTH} levels deep"
            )));
        }
        Ok(NewEvent {
            topic,
            event_type,
            data: Bytes::from(String::from(data)),
        })
    }

    /// Checks a batch's size.
    pub fn check_batch(&self, events: usize) -> Result<()> {
        if events == 0 {
            return Err(Error::Invalid("events must not be empty".into()));
        }
        if events > self.max_batch_events {
            return Err(Error::TooLarge(format!(
                "batch has {events} events; the limit is {}",
                self.max_batch_events
            )));
        }
        Ok(())
    }
}

fn is_valid_event_type(value: &str) -> bool {
    (1..=MAX_EVENT_TYPE_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Validates an `Idempotency-Key` header value: 1-255 visible ASCII characters.
pub fn validate_idempotency_key(value: &str) -> Result<String> {
    if (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_graphic())
    {
        Ok(value.to_owned())
    } else {
        Err(Error::Invalid(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nesting_depth_counts_brackets_outside_strings() {
        use super::nesting_depth;
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(nesting_depth(b"[[1], {\"a\": {}}]"), 3);
        assert_eq!(nesting_depth(br#""[[[{{""#), 0);
        assert_eq!(nesting_depth(br#"{"a\"[[": [1]}"#), 2);
        assert_eq!(nesting_depth(br#"["\\", [[]]]"#), 3);
    }

    use super::*;

    fn raw(json: &str) -> Box<serde_json::value::RawValue> {
        serde_json::value::RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn events_are_validated() {
        let limits = PublishLimits {
            max_event_bytes: 10,
            max_batch_events: 2,
        };
        let event = limits.new_event("orders", None, raw("{\"a\":1}")).unwrap();
        assert_eq!(event.event_type, "message");
        assert_eq!(&event.data[..], b"{\"a\":1}");
        assert!(matches!(
            limits.new_event("or ders", None, raw("1")),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            limits.new_event("a", Some("a\nb".into()), raw("1")),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            limits.new_event("a", Some(String::new()), raw("1")),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            limits.new_event("a", None, raw("\"0123456789\"")),
            Err(Error::TooLarge(_))
        ));
        assert!(limits.check_batch(2).is_ok());
        assert!(matches!(limits.check_batch(3), Err(Error::TooLarge(_))));
        assert!(matches!(limits.check_batch(0), Err(Error::Invalid(_))));
    }

    #[test]
    fn idempotency_keys_are_validated() {
        assert!(validate_idempotency_key("order-42/retry").is_ok());
        assert!(validate_idempotency_key("").is_err());
        assert!(validate_idempotency_key("a b").is_err());
        assert!(validate_idempotency_key(&"k".repeat(256)).is_err());
    }

    #[test]
    fn trigger_index_matches_exact_names_and_patterns() {
        let rows = vec![
            ("t1".to_owned(), "orders".to_owned()),
            ("t2".to_owned(), "orders.*".to_owned()),
            ("t3".to_owned(), "*".to_owned()),
            ("t4".to_owned(), "users".to_owned()),
        ];
        let index = AppTriggers::new(1, rows);
        let ids = |topic| index.matching(topic).collect::<Vec<_>>();
        assert_eq!(ids("orders"), ["t1", "t3"]);
        assert_eq!(ids("orders.created"), ["t2", "t3"]);
        assert_eq!(ids("billing"), ["t3"]);
    }
}
