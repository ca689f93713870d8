//! The writer task: one per process, fed by [`Publisher`](super::Publisher). It gathers
//! queued requests into a group (up to `max_group_events` events), commits the group, or
//! each request alone when the group fails, and after the commit broadcasts the events
//! and wakes the dispatcher.
//!
//! On SQLite the task runs on a thread of its own, where it runs its statements on the
//! write connection directly (blocking calls, see [`WriteGate`](crate::db::WriteGate));
//! on PostgreSQL it is an ordinary task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use picloud_shared::events::{CommittedEvent, RealtimeBroadcaster};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::group::GroupWrite;
use super::trigger_index::AppTriggers;
use super::{Job, Publication, PublishRequest, PublisherConfig};
use crate::db::{Backend, Db};
use crate::error::{Error, Result};

/// The one writer task of a process.
pub(super) struct Writer {
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
        }
    }

    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Job>, shutdown: CancellationToken) {
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
            Err(Error::Database(_) | Error::Sqlite(_)) => self.db.write_health().failed(),
            Err(_) => {}
        }
        result
    }

    /// Writes every request of the group in one transaction and commits it, phase by
    /// phase (see [`GroupWrite`]). Work is merged across the group: one seq-taking UPDATE
    /// per topic and multi-row INSERTs for all events and outbox rows, whatever the
    /// number of requests.
    async fn write_group(&mut self, requests: &[&PublishRequest]) -> Result<GroupOutcome> {
        let mut gate = self.db.write_gate().await;
        let mut group = GroupWrite::begin(&self.db, gate.as_deref_mut(), requests).await?;
        group.admit(&mut self.triggers).await?;
        let seqs = group.take_seqs().await?;
        let (committed, outbox_rows) = group.write_rows(seqs.first).await?;
        if self.db.backend() == Backend::Postgres {
            group
                .notify_cluster(&self.config.node_id, &seqs.ranges)
                .await?;
        }
        group.remember_answers().await?;
        let answers = group.commit(self.config.before_commit.as_ref()).await?;
        Ok(GroupOutcome {
            answers,
            committed,
            outbox_rows,
        })
    }
}
