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
//!
//! - `writer` — the writer task: gathers groups, commits them, then broadcasts and
//!   wakes the dispatcher;
//! - `group` — one group's transaction, phase by phase;
//! - `trigger_index` — each app's enabled topic triggers, matched in memory.
//!
//! What the HTTP layer checks before a request gets here (sizes, event types, nesting
//! depth) is in `http::event_input`.

use std::sync::Arc;

use bytes::Bytes;
use picloud_shared::events::RealtimeBroadcaster;
use picloud_shared::{AppId, TopicName};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::error::{Error, Result};

mod group;
mod trigger_index;
mod writer;

use writer::Writer;

/// The name the publish writer's own PostgreSQL connection has in `pg_stat_activity`,
/// unless the database URL sets `application_name`.
pub const WRITER_APPLICATION_NAME: &str = "picloud publish writer";

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

/// A fault-injection hook around a group's commit (see [`PublisherConfig`]). Only for
/// tests.
pub type CommitHook = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// How the writer batches.
#[derive(Clone)]
pub struct PublisherConfig {
    /// Most events committed in one transaction.
    pub max_group_events: usize,
    /// Called after every row of a group is written and before it commits; an error
    /// rolls the group back. Fault injection for tests; `None` in production.
    pub before_commit: Option<CommitHook>,
    /// Called after a group committed; an error stands for a commit whose answer was
    /// lost. Fault injection for tests; `None` in production.
    pub after_commit: Option<CommitHook>,
    /// This node's id in cluster notifications, so it skips its own.
    pub node_id: String,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            max_group_events: 2048,
            before_commit: None,
            after_commit: None,
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
        let writer = Writer::new(db, broadcaster, dispatch_wake, config).run(queue, shutdown);
        // A thread and a runtime of its own (see `writer` for why).
        let task = tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the publish writer's runtime starts")
                .block_on(writer)
        });
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

    /// Publishes several requests, each atomic on its own, and answers each. They are
    /// queued back to back before any answer is awaited, so they commit in one or a few
    /// groups and, per topic, take seqs in the order given.
    pub async fn publish_many(&self, requests: Vec<PublishRequest>) -> Vec<Result<Publication>> {
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            let (reply, answer) = oneshot::channel();
            let queued = self.jobs.send(Job { request, reply }).await;
            answers.push(queued.map(|()| answer));
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer {
                Ok(answer) => answer.await.unwrap_or(Err(Error::ShuttingDown)),
                Err(_) => Err(Error::ShuttingDown),
            });
        }
        results
    }
}
