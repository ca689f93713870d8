//! The writer task: one per process, fed by [`Publisher`](super::Publisher). It gathers
//! queued requests into a group (up to `max_group_events` events), commits the group, or
//! each request alone when the group fails, and after the commit broadcasts the events
//! and wakes the dispatcher.
//!
//! The task runs on a thread and a runtime of its own, with a connection of its own. On
//! SQLite it runs its statements on the write connection directly (blocking calls, see
//! [`WriteGate`](crate::db::WriteGate)). On PostgreSQL its connection's socket belongs to
//! its runtime: on the server's runtime, each of a group's round trips waited behind the
//! HTTP tasks that the previous group's answers had set off (the next requests of the
//! clients just answered), and the group's first statement took twice as long as the
//! others (bench/RESULTS.md, issue #17 item 3).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use picloud_shared::events::{CommittedEvent, RealtimeBroadcaster};
use sqlx::PgConnection;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::group::{GroupWrite, WriteConnection};
use super::trigger_index::AppTriggers;
use super::{Job, Publication, PublishRequest, PublisherConfig, WRITER_APPLICATION_NAME};
use crate::db::{open_postgres_connection, still_alive, Backend, Db};
use crate::error::{connection_lost, Error, Result};

/// The one writer task of a process.
pub(super) struct Writer {
    db: Db,
    broadcaster: Arc<dyn RealtimeBroadcaster>,
    dispatch_wake: Arc<Notify>,
    config: PublisherConfig,
    /// Per app, reloaded whenever the app's `trigger_generation` moves.
    triggers: HashMap<String, Arc<AppTriggers>>,
    /// On PostgreSQL, the writer's own connection (see above) and when it was last used;
    /// opened when first needed, and again when a failure may have broken it or it no
    /// longer answers after sitting idle.
    postgres: Option<(PgConnection, Instant)>,
}

/// What a committed group produced, besides the per-request answers.
struct GroupOutcome {
    answers: Vec<Result<Publication>>,
    committed: Vec<CommittedEvent>,
    outbox_rows: u64,
}

impl Writer {
    pub(super) fn new(
        db: Db,
        broadcaster: Arc<dyn RealtimeBroadcaster>,
        dispatch_wake: Arc<Notify>,
        config: PublisherConfig,
    ) -> Self {
        Writer {
            db,
            broadcaster,
            dispatch_wake,
            config,
            triggers: HashMap::new(),
            postgres: None,
        }
    }

    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        if self.db.backend() == Backend::Postgres {
            // Connected up front, while the database surely takes one more connection;
            // failing that, at the first group.
            if let Err(error) = postgres_connection(&self.db, &mut self.postgres).await {
                tracing::warn!(%error, "the publish writer could not connect yet");
            }
        }
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
        if let Some((connection, _)) = self.postgres.take() {
            let _ = sqlx::Connection::close(connection).await;
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
            // Retried alone, requests whose group may have committed would be stored twice.
            Err(Error::CommitOutcomeUnknown) => group
                .iter()
                .map(|_| Err(Error::CommitOutcomeUnknown))
                .collect(),
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
            Err(Error::Database(error)) => {
                self.db.write_health().failed();
                // A statement's error leaves the connection usable.
                if connection_lost(error) {
                    self.postgres = None;
                }
            }
            Err(Error::Sqlite(_)) => self.db.write_health().failed(),
            Err(Error::CommitOutcomeUnknown) => {
                self.db.write_health().failed();
                self.postgres = None;
            }
            Err(_) => {}
        }
        result
    }

    /// Writes every request of the group in one transaction and commits it, phase by
    /// phase (see [`GroupWrite`]). Work is merged across the group: one seq-taking UPDATE
    /// per topic, and the events and outbox rows of all requests in one INSERT each on
    /// PostgreSQL (one cached statement each, run per row, on SQLite).
    async fn write_group(&mut self, requests: &[&PublishRequest]) -> Result<GroupOutcome> {
        let mut gate = self.db.write_gate().await;
        let connection = match gate.as_deref_mut() {
            Some(conn) => WriteConnection::Sqlite(conn),
            None => {
                WriteConnection::Postgres(postgres_connection(&self.db, &mut self.postgres).await?)
            }
        };
        let mut group = GroupWrite::begin(connection, requests).await?;
        group.admit(&mut self.triggers).await?;
        let seqs = group.take_seqs().await?;
        let (committed, outbox_rows) = group.write_rows(seqs.first).await?;
        group
            .notify_cluster(&self.config.node_id, &seqs.ranges)
            .await?;
        group.remember_answers().await?;
        let answers = group
            .commit(
                self.config.before_commit.as_ref(),
                self.config.after_commit.as_ref(),
            )
            .await?;
        Ok(GroupOutcome {
            answers,
            committed,
            outbox_rows,
        })
    }
}

/// The writer's PostgreSQL connection (`kept`), opened if there is none or if the one
/// kept no longer answers after sitting idle (see [`still_alive`]).
async fn postgres_connection<'a>(
    db: &Db,
    kept: &'a mut Option<(PgConnection, Instant)>,
) -> Result<&'a mut PgConnection> {
    let Db::Postgres(pool, _) = db else {
        unreachable!("only PostgreSQL's writer keeps a connection here")
    };
    if let Some((connection, used)) = kept {
        if !still_alive(connection, used.elapsed()).await {
            *kept = None;
        }
    }
    let (connection, used) = match kept {
        Some(kept) => kept,
        None => kept.insert((
            open_postgres_connection(pool, WRITER_APPLICATION_NAME).await?,
            Instant::now(),
        )),
    };
    *used = Instant::now();
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use picloud_shared::{AppId, TopicName};
    use tokio::sync::oneshot;

    use super::*;
    use crate::publish::NewEvent;
    use crate::testing::{RecordingBroadcaster, TestDb};

    crate::backend_test!(a_group_whose_commit_answer_was_lost_is_not_written_again);
    /// A group's COMMIT sent and its answer lost with the connection may have committed:
    /// its requests are answered so, not retried one by one, which would store them twice.
    async fn a_group_whose_commit_answer_was_lost_is_not_written_again(t: TestDb) {
        let app = AppId::parse("shop").unwrap();
        t.db.create_app(&app, "Shop").await.unwrap();
        let config = PublisherConfig {
            after_commit: Some(Arc::new(|| Err(Error::CommitOutcomeUnknown))),
            ..PublisherConfig::default()
        };
        let mut writer = Writer::new(
            t.db.clone(),
            Arc::new(RecordingBroadcaster::default()),
            Arc::new(Notify::new()),
            config,
        );
        let mut answers = Vec::new();
        let group = (0..3)
            .map(|n| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                let event = NewEvent {
                    topic: TopicName::parse("orders").unwrap(),
                    event_type: "message".into(),
                    data: Bytes::from(format!("{{\"n\":{n}}}")),
                };
                let request = PublishRequest {
                    app: app.clone(),
                    events: vec![event],
                    idempotency_key: None,
                };
                Job { request, reply }
            })
            .collect();
        writer.commit_group(group).await;
        for answer in answers {
            let answer = answer.await.unwrap();
            assert!(
                matches!(answer, Err(Error::CommitOutcomeUnknown)),
                "{answer:?}"
            );
        }
        let stored = t.db.get_topic("shop", "orders").await.unwrap().last_seq;
        assert_eq!(stored, 3, "the group is stored once");
    }
}
