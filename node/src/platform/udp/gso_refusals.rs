//! The routes that refuse GSO sends, remembered for a while.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a refusal holds. After it, one GSO send is tried again, so a
/// path that widened (a raised link MTU, an expired learnt path MTU)
/// regains GSO within this time.
pub const REFUSAL_HOLDS: Duration = Duration::from_secs(60);
/// Routes remembered at most. When a new refusal finds the table full,
/// expired entries go first, then the oldest one.
const MAX_REFUSALS: usize = 256;

/// A destination address, and the local address sent from (`None`: the
/// one the routing table picks). The MTU that makes the kernel refuse a
/// GSO send belongs to the route between them, whatever the port.
pub type Route = (IpAddr, Option<IpAddr>);

/// Routes where a GSO send was refused with `EMSGSIZE` (the host's MTU
/// there is below one segment). Batches to them go out one segment at a
/// time from the start, without a refused send each time.
#[derive(Debug, Default)]
pub struct GsoRefusals {
    refused: HashMap<Route, Instant>,
}

impl GsoRefusals {
    /// Whether a GSO send on `route` was refused less than [`REFUSAL_HOLDS`] ago.
    pub fn refuses(&mut self, route: Route, now: Instant) -> bool {
        match self.refused.get(&route) {
            Some(at) if now.saturating_duration_since(*at) < REFUSAL_HOLDS => true,
            Some(_) => {
                self.refused.remove(&route);
                false
            }
            None => false,
        }
    }

    /// Records that the kernel refused a GSO send on `route` at `now`.
    pub fn remember(&mut self, route: Route, now: Instant) {
        if self.refused.len() >= MAX_REFUSALS && !self.refused.contains_key(&route) {
            self.refused
                .retain(|_, at| now.saturating_duration_since(*at) < REFUSAL_HOLDS);
            let oldest = self
                .refused
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(route, _)| *route);
            if let (true, Some(oldest)) = (self.refused.len() >= MAX_REFUSALS, oldest) {
                self.refused.remove(&oldest);
            }
        }
        self.refused.insert(route, now);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.refused.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(last: u8) -> Route {
        (IpAddr::from([192, 0, 2, last]), None)
    }

    #[test]
    fn a_refusal_holds_for_a_minute_then_gso_is_tried_again() {
        let t0 = Instant::now();
        let mut refusals = GsoRefusals::default();
        assert!(!refusals.refuses(route(1), t0));
        refusals.remember(route(1), t0);
        assert!(refusals.refuses(route(1), t0 + REFUSAL_HOLDS - Duration::from_millis(1)));
        // Another destination, or the same one from a chosen source, is its own route.
        assert!(!refusals.refuses(route(2), t0));
        let sourced = (route(1).0, Some(IpAddr::from([198, 51, 100, 7])));
        assert!(!refusals.refuses(sourced, t0));
        assert!(!refusals.refuses(route(1), t0 + REFUSAL_HOLDS));
        assert_eq!(refusals.len(), 0, "an expired refusal is forgotten");
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest_refusal_first() {
        let t0 = Instant::now();
        let mut refusals = GsoRefusals::default();
        for i in 0..MAX_REFUSALS {
            let last = u8::try_from(i % 250).unwrap_or(0);
            let source = IpAddr::from([10, 0, u8::try_from(i / 250).unwrap_or(0), 1]);
            refusals.remember(
                (IpAddr::from([192, 0, 2, last]), Some(source)),
                t0 + Duration::from_millis(u64::try_from(i).unwrap_or(0)),
            );
        }
        assert_eq!(refusals.len(), MAX_REFUSALS);
        let first = (
            IpAddr::from([192, 0, 2, 0]),
            Some(IpAddr::from([10, 0, 0, 1])),
        );
        let second = (
            IpAddr::from([192, 0, 2, 1]),
            Some(IpAddr::from([10, 0, 0, 1])),
        );
        let now = t0 + Duration::from_secs(1);
        refusals.remember(route(99), now);
        assert_eq!(refusals.len(), MAX_REFUSALS);
        assert!(refusals.refuses(route(99), now));
        assert!(!refusals.refuses(first, now), "the oldest gave way");
        assert!(refusals.refuses(second, now));
        // Once all have expired, a new refusal clears them instead.
        let later = now + REFUSAL_HOLDS;
        refusals.remember(route(100), later);
        assert_eq!(refusals.len(), 1);
    }
}
