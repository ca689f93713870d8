//! The scan floor: a due time no pending outbox row is before, where the claim and the
//! next-due query start reading the pending rows' index.
//!
//! On PostgreSQL a delivered row's entry stays in that index until VACUUM, and a scan
//! from the start walks past every row delivered since. Without a floor each claim read
//! further as a backlog drained: at 100,000 delivered rows a claim took 4.8 ms and the
//! next-due query 1 ms (bench/RESULTS.md), and autovacuum comes by about once a minute.
//! (SQLite removes index entries at once; the floor costs it nothing.)
//!
//! The floor is the earliest due time of any pending row — leased, held back by pacing,
//! or behind an open circuit alike — or now, whichever is earlier, less [`MARGIN_MS`];
//! it is read again at most every [`REFRESH`]. A row can fall due below it only if it is
//! written afterwards with an older due time (a publish that read the clock before the
//! floor was read and committed after, another node's clock running behind by more than
//! the margin): the next reading lowers the floor to it, so such a row waits at most
//! [`REFRESH`] longer, and none is left behind.

use std::time::{Duration, Instant};

use picloud_shared::time::now_ms;

use crate::db::Db;

/// How long a floor is used before it is read again.
const REFRESH: Duration = Duration::from_secs(1);

/// How far below the earliest due time the floor is set (milliseconds).
const MARGIN_MS: i64 = 500;

/// The floor of one claim loop.
#[derive(Debug, Default)]
pub(super) struct ScanFloor {
    /// The floor and when it was read; `None` until the first reading succeeds.
    read: Option<(i64, Instant)>,
}

impl ScanFloor {
    /// The floor now, read again from the database when older than [`REFRESH`]. When
    /// the reading fails, no floor (`i64::MIN`: scans start at the beginning).
    pub(super) async fn current(&mut self, db: &Db) -> i64 {
        if let Some((floor, at)) = self.read {
            if at.elapsed() < REFRESH {
                return floor;
            }
        }
        let now = now_ms();
        match db.next_due(i64::MIN).await {
            Ok(earliest) => {
                let floor = earliest.map_or(now, |due| due.min(now)) - MARGIN_MS;
                self.read = Some((floor, Instant::now()));
                floor
            }
            Err(error) => {
                tracing::warn!(%error, "reading the earliest pending row failed; scanning all");
                self.read = None;
                i64::MIN
            }
        }
    }
}
