//! One byte quota per sending node, shared by all of its connections (pure:
//! the caller passes the time).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use warren_proto::relay::Quota;
use warren_proto::NodePublicKey;

/// How often idle buckets are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A node's relay share: `rate` bytes per second with bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    pub rate: u64,
    pub burst: u64,
}

impl RelayLimits {
    /// About 100 Mbit/s per node.
    pub const DEFAULT_RATE: u64 = 12_500_000;
    pub const DEFAULT_BURST: u64 = 2 * 1024 * 1024;
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            rate: Self::DEFAULT_RATE,
            burst: Self::DEFAULT_BURST,
        }
    }
}

struct Bucket {
    quota: Quota,
    last_used: Instant,
}

/// Token buckets by node key. Keyed by node, not connection, so a node
/// gains nothing by opening more connections or reconnecting.
pub struct QuotaTable {
    limits: RelayLimits,
    buckets: HashMap<NodePublicKey, Bucket>,
    next_sweep: Option<Instant>,
}

impl QuotaTable {
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
            next_sweep: None,
        }
    }

    /// Takes `bytes` from `node`'s bucket; false if the node is over quota.
    pub fn take(&mut self, node: &NodePublicKey, bytes: u64, now: Instant) -> bool {
        self.sweep(now);
        let limits = self.limits;
        let bucket = self.buckets.entry(*node).or_insert_with(|| Bucket {
            quota: Quota::new(limits.rate, limits.burst),
            last_used: now,
        });
        bucket.last_used = now;
        bucket.quota.take(bytes, now)
    }

    /// Drops buckets that have refilled completely: a fresh bucket is the
    /// same, so this saves memory without giving anyone extra bytes.
    fn sweep(&mut self, now: Instant) {
        let due = self.next_sweep.get_or_insert(now + SWEEP_EVERY);
        if now < *due {
            return;
        }
        *due = now + SWEEP_EVERY;
        let refill = self.full_after();
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last_used) <= refill);
    }

    /// Time for an empty bucket to fill up.
    fn full_after(&self) -> Duration {
        let rate = self.limits.rate.max(1);
        Duration::from_secs(self.limits.burst.div_ceil(rate)).max(Duration::from_secs(1))
    }

    /// Nodes with a bucket (for tests and metrics).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::NodePrivateKey;

    fn key(seed: u8) -> NodePublicKey {
        NodePrivateKey::from_bytes([seed; 32]).public_key()
    }

    #[test]
    fn each_node_has_its_own_bucket() {
        let start = Instant::now();
        let mut table = QuotaTable::new(RelayLimits {
            rate: 1000,
            burst: 3000,
        });
        let (a, b) = (key(1), key(2));
        assert!(table.take(&a, 3000, start));
        assert!(!table.take(&a, 1, start));
        // A is empty; B is untouched.
        assert!(table.take(&b, 2000, start));
        assert!(table.take(&a, 1000, start + Duration::from_secs(1)));
        assert!(!table.take(&a, 1000, start + Duration::from_secs(1)));
    }

    #[test]
    fn idle_buckets_are_swept_only_once_full_again() {
        let start = Instant::now();
        let mut table = QuotaTable::new(RelayLimits {
            rate: 1000,
            burst: 5000,
        });
        let (a, b) = (key(1), key(2));
        assert!(table.take(&a, 5000, start));
        // B keeps sending; A goes quiet. After a minute, A's bucket would be
        // full again, so dropping it changes nothing.
        let later = start + SWEEP_EVERY + Duration::from_secs(1);
        assert!(table.take(&b, 1, later - Duration::from_secs(2)));
        assert!(table.take(&b, 1, later));
        assert_eq!(table.len(), 1);
        assert!(table.take(&a, 5000, later));
        assert!(!table.take(&a, 1, later));
    }
}
