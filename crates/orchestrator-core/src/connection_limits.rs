//! Limits on open SSE streams, per app and per server. A stream holds a
//! [`StreamSlot`] for its whole life; dropping it frees the slot.

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
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_app: HashMap<AppId, usize>,
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

    /// Takes a slot for a stream of `app`: [`Error::AppStreamLimit`] (429) when the app is
    /// at its limit, [`Error::ServerStreamLimit`] (503) when the server is.
    pub fn acquire(&self, app: &AppId) -> Result<StreamSlot> {
        let mut counts = self.counts.lock().expect("limits lock");
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
        metrics::gauge!("picloud_realtime_streams").set(counts.total as f64);
        Ok(StreamSlot {
            app: app.clone(),
            counts: self.counts.clone(),
        })
    }

    /// Open streams of `app` on this server.
    pub fn open_streams(&self, app: &AppId) -> usize {
        let counts = self.counts.lock().expect("limits lock");
        counts.per_app.get(app).copied().unwrap_or(0)
    }
}

/// One open stream's claim on the limits.
pub struct StreamSlot {
    app: AppId,
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
        });
        let shop = AppId::parse("shop").unwrap();
        let blog = AppId::parse("blog").unwrap();
        let a = limits.acquire(&shop).unwrap();
        let _b = limits.acquire(&shop).unwrap();
        assert!(matches!(
            limits.acquire(&shop),
            Err(Error::AppStreamLimit(2))
        ));
        let _c = limits.acquire(&blog).unwrap();
        assert!(matches!(
            limits.acquire(&blog),
            Err(Error::ServerStreamLimit(3))
        ));
        drop(a);
        assert_eq!(limits.open_streams(&shop), 1);
        assert!(limits.acquire(&shop).is_ok());
    }
}
