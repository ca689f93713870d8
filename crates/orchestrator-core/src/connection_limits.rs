//! Limits on open SSE streams, per app, per subscriber-token subject and per server. A
//! stream holds a [`StreamSlot`] for its whole life; dropping it frees the slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use picloud_shared::AppId;

use crate::error::{Error, Result};

/// How many streams may be open.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// On this server, across apps.
    pub total: usize,
    /// Per app on this server.
    pub per_app: usize,
    /// Per subscriber-token subject (`sub`) of an app on this server; 0 for no limit.
    /// Streams whose token has no subject, and public streams, are not counted.
    pub per_subject: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_app: HashMap<AppId, usize>,
    per_subject: HashMap<(AppId, String), usize>,
}

/// Counts open streams against [`Limits`].
#[derive(Clone)]
pub struct ConnectionLimits {
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionLimits {
    /// Limits with nothing open.
    pub fn new(limits: Limits) -> Self {
        ConnectionLimits {
            limits,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for a stream of `app` whose token names `subject`:
    /// [`Error::AppStreamLimit`] (429) when the app is at its limit,
    /// [`Error::SubjectStreamLimit`] (429) when the subject is, [`Error::ServerStreamLimit`]
    /// (503) when the server is.
    pub fn acquire(&self, app: &AppId, subject: Option<&str>) -> Result<StreamSlot> {
        let mut counts = self.counts.lock().expect("limits lock");
        let subject = subject
            .filter(|_| self.limits.per_subject > 0)
            .map(|s| (app.clone(), s.to_owned()));
        if let Some(key) = &subject {
            if counts.per_subject.get(key).copied().unwrap_or(0) >= self.limits.per_subject {
                metrics::counter!("picloud_realtime_streams_refused_total", "limit" => "subject")
                    .increment(1);
                return Err(Error::SubjectStreamLimit(self.limits.per_subject));
            }
        }
        if counts.total >= self.limits.total {
            metrics::counter!("picloud_realtime_streams_refused_total", "limit" => "server")
                .increment(1);
            return Err(Error::ServerStreamLimit(self.limits.total));
        }
        let per_app = counts.per_app.entry(app.clone()).or_default();
        if *per_app >= self.limits.per_app {
            metrics::counter!("picloud_realtime_streams_refused_total", "limit" => "app")
                .increment(1);
            return Err(Error::AppStreamLimit(self.limits.per_app));
        }
        *per_app += 1;
        counts.total += 1;
        if let Some(key) = &subject {
            *counts.per_subject.entry(key.clone()).or_default() += 1;
        }
        metrics::gauge!("picloud_realtime_streams").set(counts.total as f64);
        Ok(StreamSlot {
            app: app.clone(),
            subject,
            counts: self.counts.clone(),
        })
    }

    /// Open streams of `app` on this server.
    pub fn open_streams(&self, app: &AppId) -> usize {
        let counts = self.counts.lock().expect("limits lock");
        counts.per_app.get(app).copied().unwrap_or(0)
    }

    /// Open streams on this server, per app with any open.
    pub fn open_by_app(&self) -> Vec<(AppId, usize)> {
        let counts = self.counts.lock().expect("limits lock");
        counts
            .per_app
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(app, n)| (app.clone(), *n))
            .collect()
    }
}

/// One open stream's claim on the limits.
pub struct StreamSlot {
    app: AppId,
    /// The (app, subject) counted, when the subject limit applies.
    subject: Option<(AppId, String)>,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("limits lock");
        counts.total -= 1;
        if let Some(n) = counts.per_app.get_mut(&self.app) {
            *n -= 1;
            if *n == 0 {
                counts.per_app.remove(&self.app);
            }
        }
        if let Some(key) = &self.subject {
            if let Some(n) = counts.per_subject.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    counts.per_subject.remove(key);
                }
            }
        }
        metrics::gauge!("picloud_realtime_streams").set(counts.total as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_app_then_total() {
        let limits = ConnectionLimits::new(Limits {
            total: 3,
            per_app: 2,
            per_subject: 0,
        });
        let shop = AppId::parse("shop").unwrap();
        let blog = AppId::parse("blog").unwrap();
        let a = limits.acquire(&shop, None).unwrap();
        let _b = limits.acquire(&shop, None).unwrap();
        assert!(matches!(
            limits.acquire(&shop, None),
            Err(Error::AppStreamLimit(2))
        ));
        let _c = limits.acquire(&blog, None).unwrap();
        assert!(matches!(
            limits.acquire(&blog, None),
            Err(Error::ServerStreamLimit(3))
        ));
        drop(a);
        assert_eq!(limits.open_streams(&shop), 1);
        assert!(limits.acquire(&shop, None).is_ok());
    }

    #[test]
    fn per_subject_when_set() {
        let limits = ConnectionLimits::new(Limits {
            total: 10,
            per_app: 10,
            per_subject: 2,
        });
        let shop = AppId::parse("shop").unwrap();
        let blog = AppId::parse("blog").unwrap();
        let a = limits.acquire(&shop, Some("user-1")).unwrap();
        let _b = limits.acquire(&shop, Some("user-1")).unwrap();
        assert!(matches!(
            limits.acquire(&shop, Some("user-1")),
            Err(Error::SubjectStreamLimit(2))
        ));
        // Other subjects, the same subject of another app, and no subject are apart.
        let _c = limits.acquire(&shop, Some("user-2")).unwrap();
        let _d = limits.acquire(&blog, Some("user-1")).unwrap();
        let _e = limits.acquire(&shop, None).unwrap();
        let _f = limits.acquire(&shop, None).unwrap();
        let _g = limits.acquire(&shop, None).unwrap();
        drop(a);
        assert!(limits.acquire(&shop, Some("user-1")).is_ok());
    }
}
