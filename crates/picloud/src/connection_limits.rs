//! Caps on open connections, in total and per client IP address, counted by the front
//! door across both paths (the HTTP stack and direct SSE streams). A connection holds a
//! [`ConnectionSlot`] for its whole life; dropping it frees the slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use picloud_shared::{ApiError, ErrorCode};

/// How many connections may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// On this server.
    pub total: usize,
    /// From one IP address.
    pub per_ip: usize,
}

impl Caps {
    /// The caps for the `--max-connections` and `--max-connections-per-ip` settings
    /// (0 = automatic) under an open-file limit of `fd_limit`: three quarters of the
    /// limit in total (the rest is for the database, webhooks and the sockets being
    /// refused), nine tenths of the total per address.
    pub fn resolve(total: u64, per_ip: u64, fd_limit: u64) -> Caps {
        let total = match total {
            0 => (fd_limit / 4 * 3).max(1),
            n => n,
        };
        let per_ip = match per_ip {
            0 => (total / 10 * 9).max(1),
            n => n,
        };
        Caps {
            total: usize::try_from(total).unwrap_or(usize::MAX),
            per_ip: usize::try_from(per_ip).unwrap_or(usize::MAX),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server is at its total cap (503).
    Total(usize),
    /// The client's address is at its cap (429).
    PerIp(usize),
}

impl Refusal {
    /// The metric label of this reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Total(_) => "max_connections",
            Refusal::PerIp(_) => "max_connections_per_ip",
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Total(cap) => ApiError::new(
                ErrorCode::Unavailable,
                format!("the server has {cap} connections open, its limit; retry later"),
            ),
            Refusal::PerIp(cap) => ApiError::new(
                ErrorCode::RateLimited,
                format!("{cap} connections from your address are open, the limit; close some"),
            ),
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counts open connections against [`Caps`].
#[derive(Clone)]
pub struct ConnectionLimits {
    caps: Caps,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionLimits {
    /// Limits with nothing open.
    pub fn new(caps: Caps) -> Self {
        ConnectionLimits {
            caps,
            counts: Arc::default(),
        }
    }

    /// The caps applied.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Takes a slot for a connection from `ip`, or says which cap it is over (counted in
    /// `picloud_connections_refused_total`).
    pub fn acquire(&self, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        // An IPv4 client on a dual-stack socket is the same client as over IPv4.
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock().expect("connection limits lock");
        let refusal = if counts.total >= self.caps.total {
            Some(Refusal::Total(self.caps.total))
        } else if counts.per_ip.get(&ip).copied().unwrap_or(0) >= self.caps.per_ip {
            Some(Refusal::PerIp(self.caps.per_ip))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            drop(counts);
            count_refused(refusal.reason());
            return Err(refusal);
        }
        *counts.per_ip.entry(ip).or_default() += 1;
        counts.total += 1;
        metrics::gauge!("picloud_connections_open").set(counts.total as f64);
        Ok(ConnectionSlot {
            ip,
            counts: self.counts.clone(),
        })
    }
}

/// Counts a connection refused or closed before its first request, by `reason`.
pub fn count_refused(reason: &'static str) {
    metrics::counter!("picloud_connections_refused_total", "reason" => reason).increment(1);
}

/// One open connection's claim on the limits, released when dropped.
pub struct ConnectionSlot {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("connection limits lock");
        counts.total -= 1;
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
        metrics::gauge!("picloud_connections_open").set(counts.total as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_then_total_and_slots_come_back() {
        let limits = ConnectionLimits::new(Caps {
            total: 3,
            per_ip: 2,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let first = limits.acquire(a).unwrap();
        let _second = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).err(), Some(Refusal::PerIp(2)));
        let _third = limits.acquire(b).unwrap();
        assert_eq!(
            limits.acquire("10.0.0.2".parse().unwrap()).err(),
            Some(Refusal::Total(3))
        );
        drop(first);
        assert!(limits.acquire(a).is_ok());
    }

    #[test]
    fn automatic_caps_follow_the_file_limit() {
        assert_eq!(
            Caps::resolve(0, 0, 1024),
            Caps {
                total: 768,
                per_ip: 684
            }
        );
        assert_eq!(
            Caps::resolve(100, 0, 1024),
            Caps {
                total: 100,
                per_ip: 90
            }
        );
        assert_eq!(
            Caps::resolve(5, 7, 1024),
            Caps {
                total: 5,
                per_ip: 7
            }
        );
    }
}
