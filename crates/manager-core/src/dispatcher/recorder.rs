//! The outcome recorder: one task per node that commits finished attempts in groups (one
//! transaction, one fsync, for many deliveries) and counts each logical delivery once.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::circuit::CircuitPolicy;
use super::outbox::{Finished, Verdict};
use crate::db::Db;
use crate::metrics::AttemptEnd;

/// Most attempts recorded in one transaction.
const RECORD_GROUP: usize = 512;

/// Commits finished attempts in groups until `stop`, then the rest, and counts them.
pub(super) async fn record_finished(
    db: Db,
    circuit: CircuitPolicy,
    mut queue: mpsc::UnboundedReceiver<Finished>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            finished = queue.recv() => finished,
            _ = stop.cancelled() => queue.try_recv().ok(),
        };
        let Some(first) = first else { break };
        let mut group = vec![first];
        while group.len() < RECORD_GROUP {
            match queue.try_recv() {
                Ok(finished) => group.push(finished),
                Err(_) => break,
            }
        }
        match db.record_finished(&group, &circuit).await {
            Ok(_) => group.iter().for_each(count),
            Err(error) => tracing::warn!(%error, attempts = group.len(),
                "recording delivery outcomes failed; the leases expire and the rows are retried"),
        }
    }
}

/// Counts one recorded attempt: each logical delivery once, at its end.
fn count(finished: &Finished) {
    crate::metrics::attempt_recorded(match (&finished.verdict, finished.row.dead_letter_id) {
        (Verdict::Delivered, _) => AttemptEnd::Delivered,
        (Verdict::Retry { .. }, _) => AttemptEnd::Retrying,
        (Verdict::Exhausted { .. }, Some(_)) => AttemptEnd::Failed,
        (Verdict::Exhausted { .. }, None) => AttemptEnd::DeadLettered,
    });
}
