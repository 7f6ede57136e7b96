//! Failed authentications per source: after `limit` failures in a window a
//! source is answered 429 without a database lookup. Sans-IO: the caller
//! passes the time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failures per source address (IPv6 per /64, which one host
/// usually holds whole) in fixed windows.
#[derive(Debug)]
pub struct AuthFailures {
    limit: u32,
    window: Duration,
    max_sources: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    started: Instant,
    failures: u32,
}

/// Where sources go that are unknown (no peer address) or that do not fit
/// in the table: they share one bucket, so memory stays bounded and a flood
/// from many addresses blocks only the overflow, not the known sources.
const SHARED: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

impl AuthFailures {
    pub fn new(limit: u32, window: Duration, max_sources: usize) -> Self {
        Self {
            limit,
            window,
            max_sources,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// If `source` is over its limit, how long until it may try again.
    pub fn blocked(&self, source: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let key = key(source);
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match buckets.get(&key) {
            Some(bucket) => bucket,
            // Where `record` would count it.
            None if buckets.len() >= self.max_sources => buckets.get(&SHARED)?,
            None => return None,
        };
        let elapsed = now.saturating_duration_since(bucket.started);
        (elapsed < self.window && bucket.failures >= self.limit).then(|| self.window - elapsed)
    }

    /// Counts one failure from `source`.
    pub fn record(&self, source: Option<IpAddr>, now: Instant) {
        let mut key = key(source);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&key) && buckets.len() >= self.max_sources {
            let window = self.window;
            buckets.retain(|_, b| now.saturating_duration_since(b.started) < window);
            if buckets.len() >= self.max_sources {
                key = SHARED;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(bucket.started) >= self.window {
            *bucket = Bucket {
                started: now,
                failures: 0,
            };
        }
        bucket.failures = bucket.failures.saturating_add(1);
    }
}

fn key(source: Option<IpAddr>) -> IpAddr {
    match source {
        None => SHARED,
        Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_source_is_blocked_after_the_limit_until_the_window_ends() {
        let limits = AuthFailures::new(3, WINDOW, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.blocked(ip("192.0.2.1"), t0), None);
            limits.record(ip("192.0.2.1"), t0);
        }
        let later = t0 + Duration::from_secs(20);
        assert_eq!(
            limits.blocked(ip("192.0.2.1"), later),
            Some(Duration::from_secs(40))
        );
        // Another host is not affected; the same IPv6 /64 is one source.
        assert_eq!(limits.blocked(ip("192.0.2.2"), later), None);
        for _ in 0..3 {
            limits.record(ip("2001:db8::1"), t0);
        }
        assert!(limits.blocked(ip("2001:db8::ffff:1"), t0).is_some());
        assert!(limits.blocked(ip("2001:db8:0:1::1"), t0).is_none());
        // A new window forgives.
        assert_eq!(limits.blocked(ip("192.0.2.1"), t0 + WINDOW), None);
    }

    #[test]
    fn a_full_table_sends_new_sources_to_one_shared_bucket() {
        let limits = AuthFailures::new(2, WINDOW, 2);
        let t0 = Instant::now();
        limits.record(ip("192.0.2.1"), t0);
        limits.record(ip("192.0.2.2"), t0);
        // Table full: these two land in the shared bucket and fill it.
        limits.record(ip("192.0.2.3"), t0);
        limits.record(ip("192.0.2.4"), t0);
        assert!(limits.blocked(ip("192.0.2.5"), t0).is_some());
        // Known sources keep their own counts.
        assert!(limits.blocked(ip("192.0.2.1"), t0).is_none());
        // Expired entries make room again.
        let later = t0 + WINDOW;
        limits.record(ip("192.0.2.9"), later);
        assert!(limits.blocked(ip("192.0.2.9"), later).is_none());
        assert_eq!(limits.buckets.lock().unwrap().len(), 1);
    }
}
