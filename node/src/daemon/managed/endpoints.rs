//! Endpoint candidates from a controller, checked again before the data
//! plane probes them (the controller filters them too; this is in case it
//! does not): no loopback, link-local, multicast, unspecified, port 0 or
//! overlay addresses (`warren_proto::endpoint`). And call-me-maybe, which
//! makes the node probe at once, is limited per peer, so that nobody can
//! turn the node into a prober of addresses of their choosing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use warren_proto::endpoint::{self, EndpointError};
use warren_proto::netmap::Netmap;
use warren_proto::{NetworkId, NodePublicKey};

/// At most this many candidates of one peer are probed (the controller's own limit).
pub const MAX_CANDIDATES: usize = 32;

/// Call-me-maybe requests a peer may send in a burst; a peer's engine asks
/// at most every 10 s, and once more when its candidates change.
const CALL_ME_MAYBE_BURST: u32 = 4;
/// One more request is allowed each this long.
const CALL_ME_MAYBE_REFILL: Duration = Duration::from_secs(5);
/// Peers tracked at most; past it, the oldest are forgotten.
const MAX_TRACKED: usize = 4096;

/// A network's overlay: endpoints inside it would loop through the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlay {
    pub pool: Option<Ipv4Net>,
    pub ula: Ipv6Net,
}

impl Overlay {
    /// The pool is the node's own IPv4 address's subnet; the ULA prefix is
    /// its IPv6 address's subnet, or the network's own /64.
    pub fn of(map: &Netmap) -> Overlay {
        let mut pool = None;
        let mut ula = map.network_id.ula_prefix();
        for address in &map.self_node.addresses {
            match address {
                IpNet::V4(v4) => pool = Some(v4.trunc()),
                IpNet::V6(v6) => ula = v6.trunc(),
            }
        }
        Overlay { pool, ula }
    }

    fn check(&self, candidate: &SocketAddr) -> Result<(), EndpointError> {
        match &self.pool {
            Some(pool) => endpoint::check_in(candidate, pool, &self.ula),
            // No IPv4 pool known: nothing in it to loop through.
            None => endpoint::check_in(candidate, &unroutable_pool(), &self.ula),
        }
    }
}

/// An IPv4 network no candidate can be in that `check` lets through.
fn unroutable_pool() -> Ipv4Net {
    Ipv4Net::new(std::net::Ipv4Addr::UNSPECIFIED, 32).unwrap_or_default()
}

/// The candidates worth probing, at most [`MAX_CANDIDATES`]; the others are
/// logged at debug level.
pub fn keep_valid(
    network: NetworkId,
    peer: &NodePublicKey,
    candidates: &[SocketAddr],
    overlay: &Overlay,
) -> Vec<SocketAddr> {
    let mut kept = Vec::new();
    for candidate in candidates {
        match overlay.check(candidate) {
            Ok(()) if kept.len() < MAX_CANDIDATES => kept.push(*candidate),
            Ok(()) => {
                tracing::debug!(%network, peer = %peer.short(), %candidate, "endpoint candidate dropped: too many");
            }
            Err(e) => {
                tracing::debug!(%network, peer = %peer.short(), %candidate, error = %e, "endpoint candidate refused");
            }
        }
    }
    kept
}

/// Call-me-maybe requests allowed per peer: a token bucket for each.
#[derive(Debug, Default)]
pub struct CallMeMaybeLimit {
    buckets: BTreeMap<(NetworkId, NodePublicKey), Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When the last token was added (or the bucket made).
    since: Instant,
}

impl CallMeMaybeLimit {
    /// Whether a request from `peer` in `network` may make the node probe now.
    pub fn allow(&mut self, network: NetworkId, peer: NodePublicKey, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&(network, peer)) {
            self.forget_full(now);
        }
        let bucket = self.buckets.entry((network, peer)).or_insert(Bucket {
            tokens: CALL_ME_MAYBE_BURST,
            since: now,
        });
        let elapsed = now.saturating_duration_since(bucket.since);
        let refills = u32::try_from(elapsed.as_millis() / CALL_ME_MAYBE_REFILL.as_millis())
            .unwrap_or(u32::MAX);
        if refills > 0 {
            bucket.tokens = bucket
                .tokens
                .saturating_add(refills)
                .min(CALL_ME_MAYBE_BURST);
            bucket.since += CALL_ME_MAYBE_REFILL * refills.min(CALL_ME_MAYBE_BURST);
            if bucket.tokens == CALL_ME_MAYBE_BURST {
                bucket.since = now;
            }
        }
        if bucket.tokens == 0 {
            return false;
        }
        bucket.tokens -= 1;
        true
    }

    /// Forgets every bucket that would be full by now, or, if none is,
    /// all of them: memory stays bounded whatever the peers send.
    fn forget_full(&mut self, now: Instant) {
        let full_after = CALL_ME_MAYBE_REFILL * CALL_ME_MAYBE_BURST;
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.since) < full_after);
        if self.buckets.len() >= MAX_TRACKED {
            self.buckets.clear();
        }
    }

    /// Forgets a network's peers (on leave).
    pub fn forget_network(&mut self, network: NetworkId) {
        self.buckets.retain(|(n, _), _| *n != network);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::NodePrivateKey;

    fn overlay() -> Overlay {
        Overlay {
            pool: Some("10.147.0.0/16".parse().unwrap()),
            ula: "fd80:56c2:e21c::/64".parse().unwrap(),
        }
    }

    fn key() -> NodePublicKey {
        NodePrivateKey::generate().public_key()
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_hostile_controllers_candidates_are_not_probed() {
        let net = NetworkId::from_bytes([7; 8]);
        let given = addrs(&[
            "192.0.2.7:41641",
            "127.0.0.1:22",
            "[::1]:22",
            "169.254.169.254:80",
            "[fe80::1]:51820",
            "224.0.0.251:5353",
            "0.0.0.0:53",
            "192.0.2.8:0",
            "10.147.0.9:51820",
            "[fd80:56c2:e21c::9]:51820",
            "[2001:db8::7]:51820",
        ]);
        assert_eq!(
            keep_valid(net, &key(), &given, &overlay()),
            addrs(&["192.0.2.7:41641", "[2001:db8::7]:51820"])
        );
    }

    #[test]
    fn at_most_max_candidates_are_kept() {
        let net = NetworkId::from_bytes([7; 8]);
        let many: Vec<SocketAddr> = (1..=100u16)
            .map(|p| SocketAddr::from(([192, 0, 2, 1], p)))
            .collect();
        assert_eq!(
            keep_valid(net, &key(), &many, &overlay()).len(),
            MAX_CANDIDATES
        );
    }

    #[test]
    fn the_overlay_comes_from_the_nodes_own_addresses() {
        let mut map = super::super::validate::tests::map("lab.warren.internal");
        map.self_node.addresses = vec![
            "10.147.3.4/16".parse().unwrap(),
            "fd80:56c2:e21c::3:4/64".parse().unwrap(),
        ];
        assert_eq!(Overlay::of(&map), overlay());
        map.self_node.addresses.clear();
        let bare = Overlay::of(&map);
        assert_eq!(bare.pool, None);
        assert_eq!(bare.ula, map.network_id.ula_prefix());
        // Without a pool, only the generic rules and the ULA apply.
        assert!(bare.check(&"10.147.0.9:51820".parse().unwrap()).is_ok());
        assert!(bare.check(&"127.0.0.1:1".parse().unwrap()).is_err());
    }

    #[test]
    fn call_me_maybe_is_limited_per_peer() {
        let net = NetworkId::from_bytes([7; 8]);
        let (a, b) = (key(), key());
        let mut limit = CallMeMaybeLimit::default();
        let t0 = Instant::now();
        for _ in 0..CALL_ME_MAYBE_BURST {
            assert!(limit.allow(net, a, t0));
        }
        assert!(!limit.allow(net, a, t0), "a burst past the limit");
        assert!(
            !limit.allow(net, a, t0 + CALL_ME_MAYBE_REFILL / 2),
            "before a refill"
        );
        // Another peer has its own allowance.
        assert!(limit.allow(net, b, t0));
        // One more per refill period, and no more.
        let t1 = t0 + CALL_ME_MAYBE_REFILL;
        assert!(limit.allow(net, a, t1));
        assert!(!limit.allow(net, a, t1));
        // A flood over a minute gets through about once per period.
        let mut allowed = 0;
        for ms in (0..60_000).step_by(100) {
            if limit.allow(net, a, t1 + Duration::from_millis(ms)) {
                allowed += 1;
            }
        }
        assert!((11..=13).contains(&allowed), "{allowed} in a minute");
        // A long quiet time gives back the burst, not more.
        let later = t1 + Duration::from_secs(3600);
        let burst = (0..10).filter(|_| limit.allow(net, a, later)).count();
        assert_eq!(burst, CALL_ME_MAYBE_BURST as usize);
    }

    #[test]
    fn tracked_peers_are_bounded() {
        let net = NetworkId::from_bytes([7; 8]);
        let mut limit = CallMeMaybeLimit::default();
        let t0 = Instant::now();
        for _ in 0..MAX_TRACKED + 10 {
            limit.allow(net, key(), t0);
        }
        assert!(limit.buckets.len() <= MAX_TRACKED);
        limit.forget_network(net);
        assert!(limit.buckets.is_empty());
    }
}
