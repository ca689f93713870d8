//! The relays: each enabled source has one, on whichever node holds its lease. A relay
//! reads the committed rows of the app's outbox in id order, publishes each through the
//! normal publish path, then deletes what it published from the app's outbox. It wakes
//! on the app database's `NOTIFY` and polls as a fallback.
//!
//! Exactly once: each row is published under an idempotency key made of the source and
//! the row id (or under the app's own key, when the row has one), so a row met again —
//! a relay that stopped between PiCloud's commit and the delete, or two nodes that both
//! believe they hold the lease — is answered as a repeat, not published twice. Rows are
//! deleted rather than passed by a high-water mark, so a row whose transaction commits
//! after rows with higher ids were relayed is still relayed.
//!
//! A row PiCloud refuses (unknown topic, oversized data, a bad type or key) becomes a
//! dead letter of the source with the reason, and the rows behind it go on. PiCloud or
//! the app's database failing stops the pass; what was not deleted is read again after a
//! back-off, so nothing is lost and no other source or publish waits on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_shared::AppId;
use sqlx::postgres::{PgConnection, PgListener, PgPoolOptions};
use sqlx::Connection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::address::checked_options;
use super::app_schema::NOTIFY_CHANNEL;
use super::store::{RejectedRow, StatusReport};
use super::{OutboxRow, RelayTarget};
use crate::db::Db;
use crate::dispatcher::ssrf::AddressPolicy;
use crate::error::{Error, Result};
use crate::http::event_input::PublishLimits;
use crate::publish::Publisher;

/// How the relays run.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// How long a lease lasts unless renewed; a dead node's sources are taken over
    /// after it (PICLOUD_DISPATCH_LEASE_SEC).
    pub lease: Duration,
    /// How often a relay reads without a notification.
    pub poll: Duration,
    /// Most rows read and published in one pass.
    pub batch: usize,
    /// This node's id, the lease owner's name.
    pub node_id: String,
    /// Which addresses the app databases may be at, checked at every connect.
    pub address_policy: Arc<AddressPolicy>,
}

/// Starts the relay supervisor: it takes the leases of enabled sources, runs a relay for
/// each source it holds, renews the leases, and stops relays whose lease it lost or
/// whose source was disabled or deleted. It releases its leases at `shutdown`.
pub fn spawn(
    db: Db,
    publisher: Publisher,
    limits: PublishLimits,
    settings: RelaySettings,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(supervise(db, publisher, limits, settings, shutdown))
}

/// A relay this node runs.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// When its lease was last renewed.
    renewed: Instant,
}

async fn supervise(
    db: Db,
    publisher: Publisher,
    limits: PublishLimits,
    settings: RelaySettings,
    shutdown: CancellationToken,
) {
    // New sources are looked for every second; leases are renewed a third of the way
    // through, so a renewal can fail twice before the lease runs out.
    let renew_every = settings.lease / 3;
    let look_every = Duration::from_secs(1).min(renew_every);
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        match db.relay_targets().await {
            Ok(targets) => {
                let wanted: HashMap<&str, &RelayTarget> =
                    targets.iter().map(|t| (t.id.as_str(), t)).collect();
                running.retain(|id, relay| {
                    let keep = wanted.contains_key(id.as_str()) && !relay.task.is_finished();
                    if !keep {
                        relay.stop.cancel();
                    }
                    keep
                });
                let now = picloud_shared::time::now_ms();
                for target in &targets {
                    let due = match running.get(&target.id) {
                        Some(relay) => relay.renewed.elapsed() >= renew_every,
                        // Another node's live lease is not tried for.
                        None => target.lease.as_ref().is_none_or(|(owner, until)| {
                            *owner == settings.node_id || *until < now
                        }),
                    };
                    if due {
                        supervise_one(
                            &db,
                            &publisher,
                            limits,
                            &settings,
                            &shutdown,
                            target,
                            &mut running,
                        )
                        .await;
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "could not read the sources"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(look_every) => {}
        }
    }
    for (id, relay) in running {
        relay.stop.cancel();
        let _ = relay.task.await;
        if let Err(error) = db.release_source_lease(&id, &settings.node_id).await {
            tracing::warn!(source = %id, %error, "could not release a source lease");
        }
    }
}

/// Takes or renews `target`'s lease, and starts or stops its relay to match.
async fn supervise_one(
    db: &Db,
    publisher: &Publisher,
    limits: PublishLimits,
    settings: &RelaySettings,
    shutdown: &CancellationToken,
    target: &RelayTarget,
    running: &mut HashMap<String, Running>,
) {
    let until = picloud_shared::time::now_ms() + settings.lease.as_millis() as i64;
    let held = match db
        .take_source_lease(&target.id, &settings.node_id, until)
        .await
    {
        Ok(held) => held,
        Err(error) => {
            tracing::warn!(source = %target.id, %error, "could not take or renew a source lease");
            false
        }
    };
    match (held, running.get_mut(&target.id)) {
        (true, Some(relay)) => relay.renewed = Instant::now(),
        (true, None) => {
            let stop = shutdown.child_token();
            let relay = Relay {
                db: db.clone(),
                publisher: publisher.clone(),
                limits,
                settings: settings.clone(),
                target: target.clone(),
                stop: stop.clone(),
            };
            let span = tracing::info_span!("source_relay", app = %target.app, source = %target.id);
            let task = tokio::spawn(relay.run().instrument(span));
            let renewed = Instant::now();
            running.insert(
                target.id.clone(),
                Running {
                    stop,
                    task,
                    renewed,
                },
            );
        }
        (false, Some(_)) => {
            tracing::info!(source = %target.id, "lost a source lease; its relay stops");
            if let Some(relay) = running.remove(&target.id) {
                relay.stop.cancel();
            }
        }
        (false, None) => {}
    }
}

/// One source's relay.
struct Relay {
    db: Db,
    publisher: Publisher,
    limits: PublishLimits,
    settings: RelaySettings,
    target: RelayTarget,
    stop: CancellationToken,
}

/// How long a relay waits after a failure before it tries again, doubling up to the
/// last.
const BACKOFF: [Duration; 6] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
];

/// How long a relay waits for the app database to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a relay counts the rows waiting, for its status.
const COUNT_EVERY: Duration = Duration::from_secs(1);

impl Relay {
    async fn run(self) {
        let mut failures = 0usize;
        loop {
            let error = match self.connected().await {
                Ok(()) => return, // stopped
                Err(error) => error,
            };
            if self.stop.is_cancelled() {
                return;
            }
            tracing::warn!(%error, "source relay failed; retrying");
            crate::metrics::source_error(&self.target.id);
            self.report(StatusReport {
                connected: false,
                error: Some(error.to_string()),
                ..StatusReport::default()
            })
            .await;
            let wait = BACKOFF[failures.min(BACKOFF.len() - 1)];
            failures += 1;
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Connects to the app's database and relays until stopped (`Ok`) or until
    /// something fails.
    async fn connected(&self) -> Result<()> {
        let url = self.db.source_database_url(&self.target.id).await?;
        let options = checked_options(&self.settings.address_policy, &url).await?;
        // The queries' connection first, made directly, so an unreachable database is
        // reported as what it is (refused, unknown host, bad password) at once; the
        // listener then gets a connection of its own.
        let mut queries =
            tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
                .await
                .map_err(|_| {
                    Error::SourceRelay("connecting to the app database timed out".into())
                })??;
        let listening = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&listening).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        tracing::info!("source relay connected");
        let mut relayed = 0i64;
        let mut counted_at = tokio::time::Instant::now() - COUNT_EVERY;
        loop {
            if !self
                .db
                .holds_source_lease(&self.target.id, &self.settings.node_id)
                .await?
            {
                tracing::info!("the source was disabled, deleted or taken over; its relay stops");
                return Ok(());
            }
            let moved = self.pass(&mut queries).await?;
            relayed += moved as i64;
            if counted_at.elapsed() >= COUNT_EVERY {
                let (waiting, oldest) = self.backlog(&mut queries).await?;
                self.report(StatusReport {
                    connected: true,
                    rows_waiting: Some(waiting),
                    oldest_waiting_ms: Some(oldest),
                    relayed: std::mem::take(&mut relayed),
                    error: None,
                })
                .await;
                counted_at = tokio::time::Instant::now();
            }
            if moved == self.settings.batch {
                continue; // more waiting
            }
            tokio::select! {
                _ = self.stop.cancelled() => {
                    self.report(StatusReport { relayed, ..StatusReport::default() }).await;
                    return Ok(());
                }
                notified = listener.try_recv() => {
                    if notified?.is_none() {
                        return Err(Error::SourceRelay("the app database closed the connection".into()));
                    }
                }
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Relays one batch: returns how many rows it took off the app's outbox.
    async fn pass(&self, app_db: &mut PgConnection) -> Result<usize> {
        let schema = &self.target.schema;
        let rows: Vec<OutboxRow> = sqlx::query_as(&format!(
            "SELECT id, topic, type AS event_type, data::text AS data, idempotency_key
             FROM {schema}.outbox ORDER BY id LIMIT $1"
        ))
        .bind(self.settings.batch as i64)
        .fetch_all(&mut *app_db)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let app = AppId::parse(&self.target.app)
            .map_err(|e| Error::Corrupt(format!("source app id: {}", e.0)))?;
        // Rows PiCloud refuses before publishing, by index; the rest are published.
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let mut requests = Vec::with_capacity(rows.len());
        let mut published_rows = Vec::with_capacity(rows.len());
        for (index, row) in rows.iter().enumerate() {
            match row.publish_request(&self.limits, &app, &self.target.id) {
                Ok(request) => {
                    requests.push(request);
                    published_rows.push(index);
                }
                Err(reason) => rejected.push((index, reason)),
            }
        }
        let answers = self.publisher.publish_many(requests).await;
        // Rows done with: published (or repeats), or refused. A row PiCloud could not
        // write for its own reasons stops the pass there; it and the rows after it are
        // read again (the ones published meanwhile come back as repeats).
        let mut done = vec![false; rows.len()];
        let mut failure = None;
        for (index, answer) in published_rows.into_iter().zip(answers) {
            match answer {
                Ok(_) => done[index] = true,
                Err(error) => {
                    let api = picloud_shared::ApiError::from(error);
                    if api.code.status().is_client_error() {
                        rejected.push((index, api.message));
                    } else if failure.is_none() {
                        failure = Some(api.message);
                    }
                }
            }
        }
        let dead: Vec<RejectedRow> = rejected
            .iter()
            .map(|(index, reason)| rejected_row(&rows[*index], reason))
            .collect();
        self.db
            .dead_letter_source_rows(&self.target.app, &self.target.id, &dead)
            .await?;
        for (index, _) in &rejected {
            done[*index] = true;
        }
        let finished: Vec<i64> = rows
            .iter()
            .zip(&done)
            .take_while(|(_, done)| **done)
            .map(|(row, _)| row.id)
            .collect();
        if !finished.is_empty() {
            sqlx::query(&format!("DELETE FROM {schema}.outbox WHERE id = ANY($1)"))
                .bind(&finished)
                .execute(&mut *app_db)
                .await?;
            crate::metrics::source_relayed(&self.target.id, finished.len() as u64);
        }
        match failure {
            Some(why) => Err(Error::SourceRelay(format!("publishing failed: {why}"))),
            None => Ok(finished.len()),
        }
    }

    /// Rows waiting and the oldest one's age in ms.
    async fn backlog(&self, app_db: &mut PgConnection) -> Result<(i64, i64)> {
        let schema = &self.target.schema;
        let (waiting, oldest): (i64, Option<i64>) = sqlx::query_as(&format!(
            "SELECT COUNT(*), (EXTRACT(EPOCH FROM clock_timestamp() - MIN(created_at)) * 1000)::BIGINT
             FROM {schema}.outbox"
        ))
        .fetch_one(&mut *app_db)
        .await?;
        let oldest = oldest.unwrap_or(0).max(0);
        crate::metrics::source_lag(
            &self.target.id,
            waiting,
            Duration::from_millis(oldest as u64),
        );
        Ok((waiting, oldest))
    }

    /// Records a status report; a failure to record is only logged.
    async fn report(&self, report: StatusReport) {
        if let Err(error) = self
            .db
            .report_source_status(&self.target.id, &self.settings.node_id, &report)
            .await
        {
            tracing::warn!(%error, "could not record a source's status");
        }
    }
}

/// `row` as a dead letter.
fn rejected_row(row: &OutboxRow, reason: &str) -> RejectedRow {
    RejectedRow {
        row_id: row.id,
        topic: row.topic.clone(),
        payload: row.to_payload(),
        reason: reason.to_owned(),
    }
}
