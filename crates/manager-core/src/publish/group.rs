//! One group's transaction. The writer runs its phases in order — admit the requests,
//! take the seqs, write the rows, notify other nodes, remember keyed answers — and
//! commits; every request of the group is in this one transaction.

use std::collections::HashMap;
use std::sync::Arc;

use picloud_shared::events::CommittedEvent;
use picloud_shared::ids::time_ordered_id;
use picloud_shared::time::now_ms;
use picloud_shared::AppId;

use super::trigger_index::AppTriggers;
use super::{BeforeCommitHook, NewEvent, Publication, PublishRequest, PublishedEvent};
use crate::cluster_feed::FeedNotify;
use crate::db::{column, Db, WriteTx};
use crate::error::{Error, Result};
use crate::on_tx;
use crate::topics::{Retention, TOPIC_INSERT};
use crate::triggers::ENABLED_TOPIC_TRIGGERS;
use picloud_shared::cluster::{committed_payloads, SeqRange};

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

/// The seqs a group takes: per (app, topic), the first of its range, and the ranges
/// themselves (what other nodes are told).
pub(super) struct Seqs<'r> {
    /// Per (app, topic), the first seq of its range.
    pub(super) first: HashMap<(&'r str, &'r str), i64>,
    /// The ranges, as other nodes are told them.
    pub(super) ranges: Vec<SeqRange>,
}

/// A group of publish requests being written in one transaction.
pub(super) struct GroupWrite<'r> {
    tx: WriteTx,
    requests: &'r [&'r PublishRequest],
    now: i64,
    /// Per request: what it will answer, once known.
    answers: Vec<Option<Result<Publication>>>,
    /// Requests repeating an idempotency key claimed earlier in this group, with the
    /// index of that earlier request.
    repeats: Vec<(usize, usize)>,
    /// The requests that write, with their app's triggers.
    accepted: Vec<(usize, Arc<AppTriggers>)>,
}

impl<'r> GroupWrite<'r> {
    /// Opens the group's write transaction.
    pub(super) async fn begin(db: &Db, requests: &'r [&'r PublishRequest]) -> Result<Self> {
        Ok(GroupWrite {
            tx: db.begin_write_tx().await?,
            requests,
            now: now_ms(),
            answers: requests.iter().map(|_| None).collect(),
            repeats: Vec::new(),
            accepted: Vec::new(),
        })
    }

    /// Phase 1, per request: does the app exist, is the request a retry (its idempotency
    /// key already claimed), which triggers apply. `cache` holds each app's triggers as of
    /// its trigger generation, read here inside the transaction. The group's keys are
    /// claimed together, a few statements for the whole group.
    pub(super) async fn admit(
        &mut self,
        cache: &mut HashMap<String, Arc<AppTriggers>>,
    ) -> Result<()> {
        let requests = self.requests;
        let mut generations: HashMap<&str, Option<i64>> = HashMap::new();
        let mut claimed: HashMap<(&str, &str), usize> = HashMap::new();
        // The requests that may write, in request order, with their app's generation.
        let mut admitted: Vec<(usize, i64)> = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            let app = request.app.as_str();
            let generation = match generations.get(app) {
                Some(generation) => *generation,
                None => {
                    let generation = self.trigger_generation(app).await?;
                    generations.insert(app, generation);
                    generation
                }
            };
            let Some(generation) = generation else {
                self.answers[index] = Some(Err(Error::AppNotFound(app.to_owned())));
                continue;
            };
            if let Some(key) = request.idempotency_key.as_deref() {
                if let Some(&first) = claimed.get(&(app, key)) {
                    self.repeats.push((index, first));
                    continue;
                }
                claimed.insert((app, key), index);
            }
            admitted.push((index, generation));
        }
        let keys: Vec<(&str, &str)> = admitted
            .iter()
            .filter_map(|(index, _)| {
                let request = requests[*index];
                Some((request.app.as_str(), request.idempotency_key.as_deref()?))
            })
            .collect();
        let fresh = self.claim_keys(&keys).await?;
        for (index, generation) in admitted {
            let request = requests[index];
            let app = request.app.as_str();
            if let Some(key) = request.idempotency_key.as_deref() {
                if !fresh.contains(&(app, key)) {
                    let stored = self.stored_answer(app, key).await?;
                    crate::metrics::idempotent_replay();
                    self.answers[index] = Some(decode_stored_answer(&stored));
                    continue;
                }
            }
            let triggers = match cache.get(app) {
                Some(cached) if cached.generation == generation => cached.clone(),
                _ => {
                    let loaded = Arc::new(self.load_triggers(app, generation).await?);
                    cache.insert(app.to_owned(), loaded.clone());
                    loaded
                }
            };
            self.accepted.push((index, triggers));
        }
        Ok(())
    }

    /// The app's trigger generation; `None` if the app does not exist.
    async fn trigger_generation(&mut self, app: &str) -> Result<Option<i64>> {
        Ok(on_tx!(&mut self.tx, conn, {
            sqlx::query_scalar("SELECT trigger_generation FROM apps WHERE id = $1")
                .bind(app)
                .fetch_optional(&mut **conn)
                .await?
        }))
    }

    /// Claims idempotency keys `(app, key)` (on SQLite [`ROWS_PER_INSERT`] to a
    /// statement, on PostgreSQL as arrays); returns the ones this group claimed (the
    /// others an earlier request holds). A key another transaction is claiming waits for
    /// it to end, so concurrent repeats are serialized.
    async fn claim_keys<'k>(
        &mut self,
        keys: &[(&'k str, &'k str)],
    ) -> Result<std::collections::HashSet<(&'k str, &'k str)>> {
        const RETURNING: &str = " ON CONFLICT (app_id, key) DO NOTHING RETURNING app_id, key";
        if keys.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let now = self.now;
        let inserted: Vec<(String, String)> = match &mut self.tx {
            WriteTx::Sqlite(conn) => {
                let mut inserted = Vec::with_capacity(keys.len());
                for chunk in keys.chunks(ROWS_PER_INSERT) {
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO idempotency_keys (app_id, key, response, created_at) ",
                    );
                    insert.push_values(chunk, |mut values, (app, key)| {
                        values
                            .push_bind(*app)
                            .push_bind(*key)
                            .push_bind(&b""[..])
                            .push_bind(now);
                    });
                    insert.push(RETURNING);
                    inserted.extend(insert.build_query_as().fetch_all(&mut **conn).await?);
                }
                inserted
            }
            WriteTx::Postgres(conn) => {
                sqlx::query_as(&format!(
                    "INSERT INTO idempotency_keys (app_id, key, response, created_at)
                     SELECT a, k, ''::bytea, $3 FROM UNNEST($1::text[], $2::text[]) AS r (a, k)
                     {RETURNING}"
                ))
                .bind(column(keys, |key| key.0))
                .bind(column(keys, |key| key.1))
                .bind(now)
                .fetch_all(&mut **conn)
                .await?
            }
        };
        let inserted: std::collections::HashSet<(String, String)> = inserted.into_iter().collect();
        Ok(keys
            .iter()
            .copied()
            .filter(|(app, key)| inserted.contains(&((*app).to_owned(), (*key).to_owned())))
            .collect())
    }

    /// The answer stored for a key an earlier request claimed.
    async fn stored_answer(&mut self, app: &str, key: &str) -> Result<Vec<u8>> {
        Ok(on_tx!(&mut self.tx, conn, {
            sqlx::query_scalar(
                "SELECT response FROM idempotency_keys WHERE app_id = $1 AND key = $2",
            )
            .bind(app)
            .bind(key)
            .fetch_one(&mut **conn)
            .await?
        }))
    }

    /// Loads the app's enabled topic triggers.
    async fn load_triggers(&mut self, app: &str, generation: i64) -> Result<AppTriggers> {
        let rows: Vec<(String, String)> = on_tx!(&mut self.tx, conn, {
            sqlx::query_as(ENABLED_TOPIC_TRIGGERS)
                .bind(app)
                .bind(true)
                .fetch_all(&mut **conn)
                .await?
        });
        Ok(AppTriggers::new(generation, rows))
    }

    /// Phase 2: takes the seqs, one row-locking `UPDATE topics … RETURNING` per (app,
    /// topic) of the group. The lock is held to commit, so seqs are gap-free and in
    /// commit order, also across nodes.
    pub(super) async fn take_seqs(&mut self) -> Result<Seqs<'r>> {
        let requests = self.requests;
        let mut first: HashMap<(&'r str, &'r str), i64> = HashMap::new();
        for (index, _) in &self.accepted {
            let request = requests[*index];
            for event in &request.events {
                *first
                    .entry((request.app.as_str(), event.topic.as_str()))
                    .or_default() += 1;
            }
        }
        let mut ranges = Vec::with_capacity(first.len());
        for ((app, topic), count) in first.iter_mut() {
            let last = self.take_seq_range(app, topic, *count).await?;
            *count = last - *count + 1;
            ranges.push(SeqRange {
                app: app.to_string(),
                topic: topic.to_string(),
                first: *count,
                last,
            });
        }
        Ok(Seqs { first, ranges })
    }

    /// Moves the topic's `last_seq` on by `count` and returns the new value. A first
    /// publish to an unregistered name registers the topic (internal, default retention).
    async fn take_seq_range(&mut self, app: &str, topic: &str, count: i64) -> Result<i64> {
        let now = self.now;
        let take = "UPDATE topics SET last_seq = last_seq + $3, updated_at = $4
                    WHERE app_id = $1 AND name = $2 RETURNING last_seq";
        let last: Option<i64> = on_tx!(&mut self.tx, conn, {
            let mut last: Option<i64> = sqlx::query_scalar(take)
                .bind(app)
                .bind(topic)
                .bind(count)
                .bind(now)
                .fetch_optional(&mut **conn)
                .await?;
            if last.is_none() {
                let retention = Retention::default();
                sqlx::query(&format!(
                    "{TOPIC_INSERT} ON CONFLICT (app_id, name) DO NOTHING"
                ))
                .bind(app)
                .bind(topic)
                .bind(false)
                .bind("token")
                .bind(retention.max_events)
                .bind(retention.max_age_secs.map(|s| s * 1000))
                .bind(now)
                .execute(&mut **conn)
                .await?;
                last = sqlx::query_scalar(take)
                    .bind(app)
                    .bind(topic)
                    .bind(count)
                    .bind(now)
                    .fetch_optional(&mut **conn)
                    .await?;
            }
            last
        });
        last.ok_or_else(|| Error::AppNotFound(app.to_owned()))
    }

    /// Phase 3: every event and outbox row of the group, in request order, as multi-row
    /// INSERTs; answers each admitted request. Returns the events (to broadcast after
    /// the commit) and how many outbox rows were written.
    pub(super) async fn write_rows(
        &mut self,
        mut next_seq: HashMap<(&'r str, &'r str), i64>,
    ) -> Result<(Vec<CommittedEvent>, u64)> {
        let requests = self.requests;
        let now = self.now;
        // Taken for the phase (the outbox rows borrow trigger ids from it) and put back.
        let accepted = std::mem::take(&mut self.accepted);
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
            self.answers[*index] = Some(Ok(Publication {
                events: published,
                replayed: false,
            }));
        }
        insert_events(&mut self.tx, &rows, now).await?;
        insert_outbox(&mut self.tx, &outbox, now).await?;
        let committed = rows
            .iter()
            .map(|row| CommittedEvent {
                app: row.app.clone(),
                topic: row.event.topic.clone(),
                seq: row.seq,
                id: row.id.clone(),
                event_type: row.event.event_type.clone(),
                data: row.event.data.clone(),
                published_at: now,
            })
            .collect();
        let outbox_rows = outbox.len() as u64;
        drop(outbox);
        self.accepted = accepted;
        Ok((committed, outbox_rows))
    }

    /// Phase 4 (PostgreSQL): tells the other nodes' cluster feeds which seq ranges this
    /// group commits. `NOTIFY` is delivered if, and when, the transaction commits.
    pub(super) async fn notify_cluster(
        &mut self,
        node_id: &str,
        ranges: &[SeqRange],
    ) -> Result<()> {
        for payload in committed_payloads(node_id, ranges) {
            on_tx!(&mut self.tx, conn, conn.notify_feed(payload).await?);
        }
        Ok(())
    }

    /// Phase 5: stores the answer of each keyed request, for its retries (on SQLite
    /// [`ROWS_PER_INSERT`] to a statement, on PostgreSQL as arrays).
    pub(super) async fn remember_answers(&mut self) -> Result<()> {
        let requests = self.requests;
        let mut answers: Vec<(&str, &str, Vec<u8>)> = Vec::new();
        for (index, _) in &self.accepted {
            let request = requests[*index];
            let (Some(key), Some(Ok(publication))) =
                (&request.idempotency_key, &self.answers[*index])
            else {
                continue;
            };
            let answer = serde_json::to_vec(&publication.events).expect("answers serialize");
            answers.push((request.app.as_str(), key, answer));
        }
        if answers.is_empty() {
            return Ok(());
        }
        match &mut self.tx {
            WriteTx::Sqlite(conn) => {
                for chunk in answers.chunks(ROWS_PER_INSERT) {
                    let mut update = sqlx::QueryBuilder::new(
                        "UPDATE idempotency_keys SET response = answers.column3 FROM (",
                    );
                    update.push_values(chunk, |mut values, (app, key, answer)| {
                        values
                            .push_bind(*app)
                            .push_bind(*key)
                            .push_bind(&answer[..]);
                    });
                    update.push(
                        ") AS answers WHERE idempotency_keys.app_id = answers.column1
                           AND idempotency_keys.key = answers.column2",
                    );
                    update.build().execute(&mut **conn).await?;
                }
            }
            WriteTx::Postgres(conn) => {
                sqlx::query(
                    "UPDATE idempotency_keys SET response = answers.answer
                     FROM UNNEST($1::text[], $2::text[], $3::bytea[]) AS answers (app, key, answer)
                     WHERE idempotency_keys.app_id = answers.app AND idempotency_keys.key = answers.key",
                )
                .bind(column(&answers, |answer| answer.0))
                .bind(column(&answers, |answer| answer.1))
                .bind(column(&answers, |answer| &answer.2[..]))
                .execute(&mut **conn)
                .await?;
            }
        }
        Ok(())
    }

    /// Commits (after the test hook, if any) and returns every request's answer, the
    /// repeats of a key answered like the request that claimed it.
    pub(super) async fn commit(
        self,
        before_commit: Option<&BeforeCommitHook>,
    ) -> Result<Vec<Result<Publication>>> {
        if let Some(hook) = before_commit {
            hook()?;
        }
        self.tx.commit().await?;
        let mut answers = self.answers;
        for (index, first) in self.repeats {
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
        Ok(answers
            .into_iter()
            .map(|answer| answer.expect("every request answered"))
            .collect())
    }
}

/// Writes event rows: on SQLite [`ROWS_PER_INSERT`] to a statement, on PostgreSQL one
/// statement of arrays (see [`column`]).
async fn insert_events(tx: &mut WriteTx, rows: &[EventRow<'_>], now: i64) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    const INSERT: &str = "INSERT INTO topic_events
        (app_id, topic, seq, id, event_type, payload, published_at, idempotency_key) ";
    match tx {
        WriteTx::Sqlite(conn) => {
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new(INSERT);
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
                insert.build().execute(&mut **conn).await?;
            }
        }
        WriteTx::Postgres(conn) => {
            sqlx::query(&format!(
                "{INSERT} SELECT a, t, s, i, e, p, $7, k
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                             $6::bytea[], $8::text[]) AS r (a, t, s, i, e, p, k)"
            ))
            .bind(column(rows, |row| row.app.as_str()))
            .bind(column(rows, |row| row.topic))
            .bind(column(rows, |row| row.seq))
            .bind(column(rows, |row| row.id.as_str()))
            .bind(column(rows, |row| row.event.event_type.as_str()))
            .bind(column(rows, |row| &row.event.data[..]))
            .bind(now)
            .bind(column(rows, |row| row.key))
            .execute(&mut **conn)
            .await?;
        }
    }
    Ok(())
}

/// Writes outbox rows `(app, trigger, topic, seq)`: on SQLite [`ROWS_PER_INSERT`] to a
/// statement, on PostgreSQL one statement of arrays (see [`column`]).
async fn insert_outbox(tx: &mut WriteTx, rows: &[(&str, &str, &str, i64)], now: i64) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    const INSERT: &str = "INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts,
        next_attempt_at, created_at, updated_at) ";
    match tx {
        WriteTx::Sqlite(conn) => {
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let mut insert = sqlx::QueryBuilder::new(INSERT);
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
                insert.build().execute(&mut **conn).await?;
            }
        }
        WriteTx::Postgres(conn) => {
            sqlx::query(&format!(
                "{INSERT} SELECT a, t, p, s, 'pending', 0, $5, $5, $5
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) AS r (a, t, p, s)"
            ))
            .bind(column(rows, |row| row.0))
            .bind(column(rows, |row| row.1))
            .bind(column(rows, |row| row.2))
            .bind(column(rows, |row| row.3))
            .bind(now)
            .execute(&mut **conn)
            .await?;
        }
    }
    Ok(())
}

fn decode_stored_answer(stored: &[u8]) -> Result<Publication> {
    let events: Vec<PublishedEvent> = serde_json::from_slice(stored)
        .map_err(|e| Error::Corrupt(format!("stored idempotent answer: {e}")))?;
    Ok(Publication {
        events,
        replayed: true,
    })
}
