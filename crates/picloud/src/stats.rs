//! The series behind the dashboard's overview charts: a sampler that every interval
//! (`PICLOUD_STATS_INTERVAL_SEC`, 10 s) records what happened since the previous sample,
//! per app, into an in-memory ring buffer holding the last hour, served at
//! `GET /v1/admin/stats` (`?app=ID` for one app, else the whole instance).
//!
//! Publishes, deliveries, dead letters and the outbox backlog come from the database
//! ([`picloud_manager_core::stats`]), so they cover the whole cluster; SSE streams are
//! this node's. The buffer starts empty at each start of the process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use picloud_manager_core::stats::StatsDelta;
use picloud_manager_core::Db;
use picloud_shared::error::ErrorBody;
use picloud_shared::extract::ApiQuery;
use picloud_shared::time::now_ms;
use picloud_shared::{ApiError, AppId};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How much history the buffer keeps.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// One sample: what happened during the interval that ended at `at`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Sample {
    /// End of the interval, ms since the epoch.
    pub at: i64,
    /// Events published (all nodes).
    pub publishes: i64,
    /// Webhook delivery attempts answered with a 2xx (all nodes).
    pub deliveries_ok: i64,
    /// Webhook delivery attempts that failed (all nodes).
    pub deliveries_failed: i64,
    /// Dead letters written (all nodes).
    pub dead_letters: i64,
    /// Open SSE streams on this node at `at`.
    pub sse_streams: i64,
    /// Outbox rows waiting for delivery at `at` (all nodes).
    pub outbox_pending: i64,
}

impl Sample {
    fn add(&mut self, other: &Sample) {
        self.publishes += other.publishes;
        self.deliveries_ok += other.deliveries_ok;
        self.deliveries_failed += other.deliveries_failed;
        self.dead_letters += other.dead_letters;
        self.sse_streams += other.sse_streams;
        self.outbox_pending += other.outbox_pending;
    }
}

/// `GET /v1/admin/stats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsSeries {
    /// The app the series is for; `null` for the whole instance.
    pub app: Option<String>,
    /// Seconds each sample covers; divide counts by it for rates.
    pub interval_secs: u64,
    /// Seconds of history kept.
    pub window_secs: u64,
    /// Oldest first.
    pub samples: Vec<Sample>,
}

/// Query of `GET /v1/admin/stats`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Only this app's series (all zeros for an app with no activity or none at all).
    pub app: Option<String>,
}

/// Open SSE streams on this node per app, read at each sample.
pub type StreamCount = Arc<dyn Fn() -> Vec<(String, usize)> + Send + Sync>;

/// One tick: each active app's sample.
#[derive(Debug, Clone)]
struct Tick {
    at: i64,
    apps: HashMap<String, Sample>,
}

/// The ring buffer of samples, shared by the sampler task and the route.
#[derive(Clone)]
pub struct Stats {
    interval: Duration,
    capacity: usize,
    ticks: Arc<Mutex<VecDeque<Tick>>>,
}

impl Stats {
    /// An empty buffer sampled every `interval`, holding [`WINDOW`] of samples.
    pub fn new(interval: Duration) -> Stats {
        let capacity = (WINDOW.as_secs() / interval.as_secs().max(1)).max(1) as usize;
        Stats {
            interval,
            capacity,
            ticks: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
        }
    }

    /// Adds a tick (each active app's numbers), dropping the oldest beyond the window.
    pub fn push(&self, at: i64, apps: HashMap<String, Sample>) {
        let mut ticks = self.ticks.lock().expect("stats lock");
        if ticks.len() == self.capacity {
            ticks.pop_front();
        }
        ticks.push_back(Tick { at, apps });
    }

    /// The series of one app, or of the whole instance for `None`.
    pub fn series(&self, app: Option<&str>) -> StatsSeries {
        let ticks = self.ticks.lock().expect("stats lock");
        let samples = ticks
            .iter()
            .map(|tick| {
                let mut sample = Sample {
                    at: tick.at,
                    ..Sample::default()
                };
                match app {
                    Some(app) => {
                        if let Some(s) = tick.apps.get(app) {
                            sample.add(s);
                        }
                    }
                    None => tick.apps.values().for_each(|s| sample.add(s)),
                }
                sample
            })
            .collect();
        StatsSeries {
            app: app.map(str::to_owned),
            interval_secs: self.interval.as_secs(),
            window_secs: WINDOW.as_secs(),
            samples,
        }
    }

    /// Samples every interval until `stop`. A failed read is logged and skipped; the
    /// next sample then covers both intervals.
    pub async fn run(self, db: Db, streams: StreamCount, stop: CancellationToken) {
        let mut cursor = None;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            match db.stats_since(cursor.as_ref()).await {
                Ok((next, deltas)) => {
                    if cursor.is_some() {
                        self.push(now_ms(), samples(deltas, streams()));
                    }
                    cursor = Some(next);
                }
                Err(e) => tracing::warn!(error = %e, "could not sample the overview stats"),
            }
        }
    }
}

fn samples(
    deltas: HashMap<String, StatsDelta>,
    streams: Vec<(String, usize)>,
) -> HashMap<String, Sample> {
    let mut apps: HashMap<String, Sample> = deltas
        .into_iter()
        .map(|(app, d)| {
            let sample = Sample {
                at: 0,
                publishes: d.published,
                deliveries_ok: d.deliveries_ok,
                deliveries_failed: d.deliveries_failed,
                dead_letters: d.dead_letters,
                sse_streams: 0,
                outbox_pending: d.outbox_pending,
            };
            (app, sample)
        })
        .collect();
    for (app, n) in streams {
        apps.entry(app).or_default().sse_streams = n as i64;
    }
    apps
}

/// The overview series over the last hour, one sample per interval: publishes,
/// deliveries ok and failed, dead letters, SSE streams (this node) and the outbox
/// backlog, of one app or of the whole instance.
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin",
    params(StatsQuery),
    security(("session" = [])),
    responses((status = 200, body = StatsSeries), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 403, description = "API keys cannot read it", body = ErrorBody)))]
pub async fn stats(
    State(stats): State<Stats>,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<Json<StatsSeries>, ApiError> {
    if let Some(app) = &query.app {
        AppId::parse(app).map_err(|e| ApiError::invalid(e.0))?;
    }
    Ok(Json(stats.series(query.app.as_deref())))
}

/// The stats route.
pub fn router(stats: Stats) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(self::stats))
        .with_state(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publishes(n: i64) -> Sample {
        Sample {
            publishes: n,
            ..Sample::default()
        }
    }

    #[test]
    fn the_buffer_keeps_one_hour() {
        let stats = Stats::new(Duration::from_secs(600));
        for at in 0..8 {
            stats.push(at, HashMap::from([("shop".to_owned(), publishes(at))]));
        }
        let series = stats.series(None);
        assert_eq!(series.interval_secs, 600);
        let kept: Vec<i64> = series.samples.iter().map(|s| s.at).collect();
        assert_eq!(kept, vec![2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn series_are_per_app_or_summed() {
        let stats = Stats::new(Duration::from_secs(10));
        stats.push(
            1,
            HashMap::from([
                ("shop".to_owned(), publishes(2)),
                ("blog".to_owned(), publishes(3)),
            ]),
        );
        stats.push(2, HashMap::new());
        let total: Vec<i64> = stats
            .series(None)
            .samples
            .iter()
            .map(|s| s.publishes)
            .collect();
        assert_eq!(total, vec![5, 0]);
        let shop: Vec<i64> = stats
            .series(Some("shop"))
            .samples
            .iter()
            .map(|s| s.publishes)
            .collect();
        assert_eq!(shop, vec![2, 0]);
        let none: Vec<i64> = stats
            .series(Some("nope"))
            .samples
            .iter()
            .map(|s| s.publishes)
            .collect();
        assert_eq!(none, vec![0, 0]);
    }
}
