//! One group's transaction. The writer runs its phases in order — admit the requests,
//! take the seqs, write the rows, notify other nodes, remember keyed answers — and
//! commits; every request of the group is in this one transaction.
//!
//! On PostgreSQL the statements go through sqlx, batched into arrays. On SQLite they run
//! on the write connection of [`WriteGate`](crate::db::WriteGate), on the writer's own
//! thread: each a cached prepared statement executed once per row, which in-process
//! SQLite runs in microseconds, with no hand-off to another thread.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use picloud_shared::events::CommittedEvent;
use picloud_shared::ids::time_ordered_id;
use picloud_shared::time::now_ms;
use picloud_shared::AppId;

use super::trigger_index::AppTriggers;
use super::{CommitHook, NewEvent, Publication, PublishRequest, PublishedEvent};
use crate::cluster_feed::FeedNotify;
use crate::db::column;
use crate::error::{connection_lost, Error, Result};
use crate::topics::{Retention, TOPIC_INSERT};
use crate::triggers::ENABLED_TOPIC_TRIGGERS;
use picloud_shared::cluster::{committed_payloads, SeqRange};
use rusqlite::OptionalExtension;

/// One event row about to be written.
struct EventRow<'a> {
    app: &'a AppId,
    topic: &'a str,
    seq: i64,
    id: String,
    event: &'a NewEvent,
    key: Option<&'a str>,
}

/// The connection the writer writes its groups on.
pub(super) enum WriteConnection<'c> {
    /// SQLite's write connection, held through the write gate.
    Sqlite(&'c mut rusqlite::Connection),
    /// A PostgreSQL connection the writer keeps.
    Postgres(&'c mut sqlx::PgConnection),
}

/// The transaction a group writes in.
enum GroupTx<'c> {
    /// On SQLite, on the write connection.
    Sqlite(SqliteTx<'c>),
    /// On PostgreSQL.
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
}

/// A `BEGIN IMMEDIATE` transaction on SQLite's write connection; dropped without
/// [`SqliteTx::commit`], it rolls back. (Not `rusqlite::Transaction`: that borrows the
/// connection shared, which would keep the writer's future from moving between threads.)
struct SqliteTx<'c>(&'c mut rusqlite::Connection);

impl<'c> SqliteTx<'c> {
    fn begin(conn: &'c mut rusqlite::Connection) -> Result<Self> {
        if !conn.is_autocommit() {
            // A transaction whose COMMIT and ROLLBACK both failed (a full disk) is
            // still open; end it, or this BEGIN would fail on and on.
            conn.execute_batch("ROLLBACK")?;
        }
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(SqliteTx(conn))
    }

    fn commit(self) -> Result<()> {
        self.0.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.0.execute_batch("ROLLBACK");
        }
    }
}

/// The seqs a group takes: per (app, topic), the first of its range, and the ranges
/// themselves (what other nodes are told).
pub(super) struct Seqs<'r> {
    /// Per (app, topic), the first seq of its range.
    pub(super) first: HashMap<(&'r str, &'r str), i64>,
    /// The ranges, as other nodes are told them.
    pub(super) ranges: Vec<SeqRange>,
}

/// A group of publish requests being written in one transaction.
pub(super) struct GroupWrite<'r, 'c> {
    tx: GroupTx<'c>,
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

impl<'r, 'c> GroupWrite<'r, 'c> {
    /// Opens the group's write transaction on `connection`.
    pub(super) async fn begin(
        connection: WriteConnection<'c>,
        requests: &'r [&'r PublishRequest],
    ) -> Result<Self> {
        let tx = match connection {
            WriteConnection::Sqlite(conn) => GroupTx::Sqlite(SqliteTx::begin(conn)?),
            WriteConnection::Postgres(conn) => {
                GroupTx::Postgres(sqlx::Connection::begin(conn).await?)
            }
        };
        Ok(GroupWrite {
            tx,
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
        const SELECT: &str = "SELECT trigger_generation FROM apps WHERE id = $1";
        Ok(match &mut self.tx {
            GroupTx::Sqlite(tx) => {
                tx.0.prepare_cached(SELECT)?
                    .query_row([app], |row| row.get(0))
                    .optional()?
            }
            GroupTx::Postgres(conn) => {
                sqlx::query_scalar(SELECT)
                    .bind(app)
                    .fetch_optional(&mut **conn)
                    .await?
            }
        })
    }

    /// Claims idempotency keys `(app, key)` (on PostgreSQL as arrays); returns the ones
    /// this group claimed (the others an earlier request holds). A key another
    /// transaction is claiming waits for it to end, so concurrent repeats are serialized.
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
            GroupTx::Sqlite(tx) => {
                let mut insert = tx.0.prepare_cached(
                    "INSERT INTO idempotency_keys (app_id, key, response, created_at)
                     VALUES ($1, $2, x'', $3) ON CONFLICT (app_id, key) DO NOTHING",
                )?;
                let mut claimed = std::collections::HashSet::with_capacity(keys.len());
                for &(app, key) in keys {
                    if insert.execute(rusqlite::params![app, key, now])? == 1 {
                        claimed.insert((app, key));
                    }
                }
                return Ok(claimed);
            }
            GroupTx::Postgres(conn) => {
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
        const SELECT: &str = "SELECT response FROM idempotency_keys WHERE app_id = $1 AND key = $2";
        Ok(match &mut self.tx {
            GroupTx::Sqlite(tx) => {
                tx.0.prepare_cached(SELECT)?
                    .query_row([app, key], |row| row.get(0))?
            }
            GroupTx::Postgres(conn) => {
                sqlx::query_scalar(SELECT)
                    .bind(app)
                    .bind(key)
                    .fetch_one(&mut **conn)
                    .await?
            }
        })
    }

    /// Loads the app's enabled topic triggers.
    async fn load_triggers(&mut self, app: &str, generation: i64) -> Result<AppTriggers> {
        let rows: Vec<(String, String)> = match &mut self.tx {
            GroupTx::Sqlite(tx) => {
                tx.0.prepare_cached(ENABLED_TOPIC_TRIGGERS)?
                    .query_map(rusqlite::params![app, true], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect::<Result<_, _>>()?
            }
            GroupTx::Postgres(conn) => {
                sqlx::query_as(ENABLED_TOPIC_TRIGGERS)
                    .bind(app)
                    .bind(true)
                    .fetch_all(&mut **conn)
                    .await?
            }
        };
        Ok(AppTriggers::new(generation, rows))
    }

    /// Phase 2: takes the seqs, one row-locking `UPDATE topics … RETURNING` per (app,
    /// topic) of the group, in sorted order. The lock is held to commit, so seqs are
    /// gap-free and in commit order, also across nodes.
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
        // Every group locks its topics in one order (sorted), so two groups (two nodes
        // on PostgreSQL) never each hold a topic the other waits for.
        let mut topics: Vec<_> = first.iter_mut().collect();
        topics.sort_unstable_by_key(|(key, _)| **key);
        let mut ranges = Vec::with_capacity(topics.len());
        for ((app, topic), count) in topics {
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
        let retention = Retention::default();
        let register = || format!("{TOPIC_INSERT} ON CONFLICT (app_id, name) DO NOTHING");
        let last: Option<i64> = match &mut self.tx {
            GroupTx::Sqlite(tx) => {
                // `$3` comes first in the text: bound by name, it is still the third.
                let take_on = |conn: &rusqlite::Connection| -> rusqlite::Result<Option<i64>> {
                    conn.prepare_cached(take)?
                        .query_row(
                            rusqlite::named_params! {"$1": app, "$2": topic, "$3": count, "$4": now},
                            |row| row.get(0),
                        )
                        .optional()
                };
                let mut last = take_on(tx.0)?;
                if last.is_none() {
                    tx.0.prepare_cached(&register())?
                        .execute(rusqlite::params![
                            app,
                            topic,
                            false,
                            "token",
                            retention.max_events,
                            retention.max_age_secs.map(|s| s * 1000),
                            now
                        ])?;
                    last = take_on(tx.0)?;
                }
                last
            }
            GroupTx::Postgres(conn) => {
                let mut last: Option<i64> = sqlx::query_scalar(take)
                    .bind(app)
                    .bind(topic)
                    .bind(count)
                    .bind(now)
                    .fetch_optional(&mut **conn)
                    .await?;
                if last.is_none() {
                    sqlx::query(&register())
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
            }
        };
        last.ok_or_else(|| Error::AppNotFound(app.to_owned()))
    }

    /// Phase 3: every event and outbox row of the group, in request order (see
    /// [`insert_events`], [`insert_outbox`]); answers each admitted request. Returns the events (to broadcast after
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

    /// Phase 4: tells the other nodes' cluster feeds which seq ranges this group commits.
    /// `NOTIFY` is delivered if, and when, the transaction commits. SQLite serves one node:
    /// nothing to tell.
    pub(super) async fn notify_cluster(
        &mut self,
        node_id: &str,
        ranges: &[SeqRange],
    ) -> Result<()> {
        if let GroupTx::Postgres(conn) = &mut self.tx {
            for payload in committed_payloads(node_id, ranges) {
                conn.notify_feed(payload).await?;
            }
        }
        Ok(())
    }

    /// Phase 5: stores the answer of each keyed request, for its retries (on PostgreSQL
    /// as arrays).
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
            GroupTx::Sqlite(tx) => {
                let mut update = tx.0.prepare_cached(
                    "UPDATE idempotency_keys SET response = ?3 WHERE app_id = ?1 AND key = ?2",
                )?;
                for (app, key, answer) in &answers {
                    update.execute(rusqlite::params![app, key, answer])?;
                }
            }
            GroupTx::Postgres(conn) => {
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
        before_commit: Option<&CommitHook>,
        after_commit: Option<&CommitHook>,
    ) -> Result<Vec<Result<Publication>>> {
        if let Some(hook) = before_commit {
            hook()?;
        }
        match self.tx {
            // SQLite commits in this process: it committed or it did not.
            GroupTx::Sqlite(tx) => tx.commit()?,
            GroupTx::Postgres(tx) => tx.commit().await.map_err(|error| {
                if connection_lost(&error) {
                    // The COMMIT was sent and its answer never came back.
                    tracing::warn!(%error, "connection lost while committing a publish group");
                    Error::CommitOutcomeUnknown
                } else {
                    error.into()
                }
            })?,
        }
        if let Some(hook) = after_commit {
            hook()?;
        }
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

/// Writes event rows: on SQLite a row at a time, on PostgreSQL in one statement of arrays
/// (see [`column`]).
async fn insert_events(tx: &mut GroupTx<'_>, rows: &[EventRow<'_>], now: i64) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    const INSERT: &str = "INSERT INTO topic_events
        (app_id, topic, seq, id, event_type, payload, published_at, idempotency_key) ";
    match tx {
        GroupTx::Sqlite(tx) => {
            static ONE_ROW: LazyLock<String> =
                LazyLock::new(|| format!("{INSERT} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"));
            let mut insert = tx.0.prepare_cached(&ONE_ROW)?;
            for row in rows {
                insert.execute(rusqlite::params![
                    row.app.as_str(),
                    row.topic,
                    row.seq,
                    row.id,
                    row.event.event_type,
                    &row.event.data[..],
                    now,
                    row.key
                ])?;
            }
        }
        GroupTx::Postgres(conn) => {
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

/// Writes outbox rows `(app, trigger, topic, seq)`: on SQLite a row at a time, on
/// PostgreSQL in one statement of arrays (see [`column`]).
async fn insert_outbox(
    tx: &mut GroupTx<'_>,
    rows: &[(&str, &str, &str, i64)],
    now: i64,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    const INSERT: &str = "INSERT INTO outbox (app_id, trigger_id, topic, seq, state, attempts,
        next_attempt_at, created_at, updated_at) ";
    match tx {
        GroupTx::Sqlite(tx) => {
            static ONE_ROW: LazyLock<String> = LazyLock::new(|| {
                format!("{INSERT} VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)")
            });
            let mut insert = tx.0.prepare_cached(&ONE_ROW)?;
            for (app, trigger, topic, seq) in rows {
                insert.execute(rusqlite::params![app, trigger, topic, seq, now])?;
            }
        }
        GroupTx::Postgres(conn) => {
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
