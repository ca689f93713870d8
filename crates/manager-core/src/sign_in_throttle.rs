//! The per-address sign-in rate limit: a token bucket per client address, in memory.
//!
//! Each address may start `per_minute` sign-ins at once and then one every
//! `60 / per_minute` seconds. IPv6 clients are grouped by their /64 (one host usually
//! owns a whole /64). The table holds at most [`MAX_TRACKED`] addresses; beyond that, and
//! for requests whose peer address is unknown, everyone shares one bucket, so memory
//! stays bounded and the limit still holds. The address is the TCP peer's:
//! `X-Forwarded-For` is never trusted (anyone can send it).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked at once.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-address token buckets for sign-in attempts.
#[derive(Debug)]
pub struct SignInThrottle {
    per_minute: f64,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

impl SignInThrottle {
    /// A throttle allowing `per_minute` (at least one) attempts per address per minute.
    pub fn new(per_minute: u32) -> Self {
        SignInThrottle {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `peer` at `now`, or says how long until the next one is
    /// allowed.
    pub fn take(&self, peer: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let per_sec = self.per_minute / 60.0;
        let mut buckets = self.buckets.lock().expect("sign-in throttle lock");
        let mut key = peer.map(group);
        if key.is_some() && !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            // Forget the addresses whose buckets are full again: they lose nothing.
            buckets.retain(|_, b| {
                let idle = now.saturating_duration_since(b.at).as_secs_f64();
                b.tokens + idle * per_sec < self.per_minute
            });
            if buckets.len() >= MAX_TRACKED {
                key = None;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.per_minute,
            at: now,
        });
        let idle = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + idle * per_sec).min(self.per_minute);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }
}

/// The key an address is limited under: IPv4 as is (IPv4-mapped IPv6 included), IPv6
/// by its /64.
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn each_address_gets_its_burst_then_one_per_interval() {
        let throttle = SignInThrottle::new(6);
        let start = Instant::now();
        for _ in 0..6 {
            assert_eq!(throttle.take(ip("192.0.2.1"), start), Ok(()));
        }
        let wait = throttle.take(ip("192.0.2.1"), start).unwrap_err();
        assert!((9..=10).contains(&wait.as_secs()), "{wait:?}");
        assert_eq!(
            throttle.take(ip("192.0.2.2"), start),
            Ok(()),
            "another address"
        );
        let later = start + Duration::from_secs(10);
        assert_eq!(throttle.take(ip("192.0.2.1"), later), Ok(()));
        assert!(throttle.take(ip("192.0.2.1"), later).is_err());
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_ipv4_as_ipv4() {
        let throttle = SignInThrottle::new(1);
        let now = Instant::now();
        assert_eq!(throttle.take(ip("2001:db8:1:2::1"), now), Ok(()));
        assert!(throttle.take(ip("2001:db8:1:2:ffff::9"), now).is_err());
        assert_eq!(throttle.take(ip("2001:db8:1:3::1"), now), Ok(()));
        assert_eq!(throttle.take(ip("198.51.100.7"), now), Ok(()));
        assert!(throttle.take(ip("::ffff:198.51.100.7"), now).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_overflow_shares_one_bucket() {
        let throttle = SignInThrottle::new(2);
        let now = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            assert_eq!(throttle.take(Some(addr), now), Ok(()));
        }
        // Every tracked bucket is in use: newcomers share the overflow bucket.
        assert_eq!(throttle.take(ip("203.0.113.1"), now), Ok(()));
        assert_eq!(throttle.take(ip("203.0.113.2"), now), Ok(()));
        assert!(throttle.take(ip("203.0.113.3"), now).is_err());
        assert!(
            throttle.take(None, now).is_err(),
            "unknown peers share it too"
        );
        assert!(throttle.buckets.lock().unwrap().len() <= MAX_TRACKED + 1);
        // Once the buckets have refilled they are forgotten and newcomers get their own.
        let later = now + Duration::from_secs(60);
        assert_eq!(throttle.take(ip("203.0.113.4"), later), Ok(()));
        assert_eq!(throttle.take(ip("203.0.113.4"), later), Ok(()));
        assert!(throttle.buckets.lock().unwrap().len() <= 3);
    }
}
