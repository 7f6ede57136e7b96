//! Which disco pings from one peer are fresh: a replay window over the
//! sender's clock, and the clock this engine stamps its own pings with.

use std::collections::VecDeque;
use std::time::Instant;

use warren_proto::disco::TxId;

/// How far behind the newest ping seen from a peer another may be: pings
/// to every candidate leave together and arrive in any order.
pub const WINDOW_MS: u64 = 10_000;
/// Pings remembered per peer to refuse an exact copy inside the window.
const REMEMBERED: usize = 128;

/// The pings a peer sent recently, newest clock first seen.
#[derive(Debug, Default)]
pub(crate) struct PingReplay {
    newest: Option<u64>,
    seen: VecDeque<(u64, TxId)>,
}

impl PingReplay {
    /// True if a ping stamped `sent_at` with `tx` is fresh: not older than
    /// [`WINDOW_MS`] behind the newest seen, and not seen before. A fresh
    /// ping is remembered.
    pub(crate) fn accept(&mut self, sent_at: u64, tx: TxId) -> bool {
        if let Some(newest) = self.newest {
            if sent_at.saturating_add(WINDOW_MS) < newest {
                return false;
            }
        }
        if self.seen.iter().any(|&(t, x)| t == sent_at && x == tx) {
            return false;
        }
        self.newest = Some(self.newest.map_or(sent_at, |n| n.max(sent_at)));
        if self.seen.len() == REMEMBERED {
            self.seen.pop_front();
        }
        self.seen.push_back((sent_at, tx));
        true
    }
}

/// The clock stamped on this engine's pings: the wall clock the shell gave
/// at start, moved on by the monotonic clock, so it never goes back within
/// a run and keeps going forward across restarts.
#[derive(Debug)]
pub(crate) struct PingClock {
    base_ms: u64,
    start: Option<Instant>,
}

impl PingClock {
    pub(crate) fn new(base_ms: u64) -> Self {
        Self {
            base_ms,
            start: None,
        }
    }

    pub(crate) fn stamp(&mut self, now: Instant) -> u64 {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start).as_millis();
        self.base_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn copies_and_old_pings_are_refused_and_reordering_is_not() {
        let mut replay = PingReplay::default();
        assert!(replay.accept(50_000, [1; 12]));
        // Sent together to other candidates, arriving out of order.
        assert!(replay.accept(50_000, [2; 12]));
        assert!(replay.accept(49_990, [3; 12]));
        // The same ping again, from anywhere.
        assert!(!replay.accept(50_000, [1; 12]));
        assert!(replay.accept(70_000, [4; 12]));
        // Older than the window behind the newest.
        assert!(!replay.accept(50_000, [5; 12]));
        assert!(!replay.accept(59_999, [6; 12]));
        assert!(replay.accept(60_000, [7; 12]));
    }

    #[test]
    fn memory_is_bounded() {
        let mut replay = PingReplay::default();
        for i in 0..10_000u64 {
            assert!(replay.accept(i, [(i % 251) as u8; 12]));
        }
        assert!(replay.seen.len() <= REMEMBERED);
    }

    #[test]
    fn the_clock_starts_at_its_base_and_only_goes_forward() {
        let mut clock = PingClock::new(1_000_000);
        let t0 = Instant::now();
        assert_eq!(clock.stamp(t0), 1_000_000);
        assert_eq!(clock.stamp(t0 + Duration::from_millis(1500)), 1_001_500);
        assert_eq!(clock.stamp(t0), 1_000_000);
    }
}
