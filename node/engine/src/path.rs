//! Path discovery for one peer: its candidate addresses, the probes in
//! flight, and the best direct path that answered.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use warren_proto::disco::TxId;
use warren_proto::NodePublicKey;

/// While no direct path is known, probe every candidate this often...
pub const PROBE_SEARCHING: Duration = Duration::from_secs(2);
/// ...after the first rounds of a search, which come faster: this long
/// after the first, then twice as long each time up to [`PROBE_SEARCHING`]
/// (0, 0.25, 0.75, 1.75, 3.75 s, ...). A first ping that reached the peer's
/// filter a moment before the peer's own ping opened it is sent again
/// within a quarter second instead of two.
pub const PROBE_RETRY_FIRST: Duration = Duration::from_millis(250);
/// With a direct path, probe every candidate this often, to find a better
/// one and to notice a dead one before its timeout.
pub const PROBE_DIRECT: Duration = Duration::from_secs(10);
/// A direct path with nothing heard on it for this long is dead.
pub const PATH_TIMEOUT: Duration = Duration::from_secs(15);
/// A ping with no pong after this long is forgotten.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// A path that leaves a ping unanswered this long, with nothing heard on it
/// since, is dead. [`PROBE_DIRECT`] plus this must stay well inside the 15 s
/// after which WireGuard starts a new handshake with a peer that went silent,
/// so that a NAT rebinding moves the session rather than restarting it.
pub const PONG_WAIT: Duration = Duration::from_secs(2);
/// At most this often, ask the peer (through the controller) to probe us too.
pub const CALL_ME_MAYBE_EVERY: Duration = Duration::from_secs(10);
/// While no direct path is known, a ping from the peer is answered with a
/// ping back to where it came from (its arrival proves our side's filter
/// is open towards it, and our ping opens the peer's side), but to one
/// address at most this often, so that two agents that both lack a path
/// do not ping each other back and forth.
pub const PROBE_BACK_EVERY: Duration = Duration::from_millis(250);
/// While we send to a peer on a direct path that has been silent this long,
/// the path is checked with a ping of its own: unanswered within
/// [`PONG_WAIT`], it is dead and traffic falls back to the relay, without
/// waiting for the next [`PROBE_DIRECT`] round.
pub const TRUST_SILENT_PATH: Duration = Duration::from_secs(3);
/// Candidates learnt from packets beyond this many push out the oldest.
const MAX_CANDIDATES: usize = 16;
/// A new path must be this much faster to replace a working one, so that
/// jitter does not flap the path.
const SWITCH_MARGIN: Duration = Duration::from_micros(500);

/// Where a packet goes: straight to an address, or through the relay to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    Udp(SocketAddr),
    Relay(NodePublicKey),
}

impl Via {
    /// Counts one datagram of `len` bytes sent this way: on the UDP socket
    /// or through the relay.
    pub(crate) fn count_tx(&self, counters: &mut warren_proto::local_api::Counters, len: usize) {
        match self {
            Via::Udp(_) => {
                counters.udp_tx_datagrams += 1;
                counters.udp_tx_bytes += len as u64;
            }
            Via::Relay(_) => {
                counters.relay_tx_datagrams += 1;
                counters.relay_tx_bytes += len as u64;
            }
        }
    }
}

/// How a peer is reached now, as `warren status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Direct,
    Relay,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) last_heard: Option<Instant>,
    pub(crate) rtt: Option<Duration>,
    /// Learnt from the peer's own packets rather than from the controller.
    pub(crate) learned_at: Option<Instant>,
    /// Our address that the peer's packets from here were last sent to:
    /// what we send to it from, since a NAT or firewall in front of the
    /// peer may let through only what comes from where it sent.
    pub(crate) local: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    pub(crate) to: ProbeTarget,
    pub(crate) sent: Instant,
    /// Asked for by `warren ping`: its answer becomes an event.
    pub(crate) asked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeTarget {
    Udp(SocketAddr),
    Relay,
    /// Many ports of this address at once (`crate::birthday`): any port
    /// of it may answer.
    Spray(IpAddr),
}

/// The path state of one peer that takes part in disco.
#[derive(Debug, Default)]
pub(crate) struct Paths {
    pub(crate) candidates: BTreeMap<SocketAddr, Candidate>,
    pub(crate) best: Option<SocketAddr>,
    pub(crate) pings: BTreeMap<TxId, Probe>,
    pub(crate) next_probe: Option<Instant>,
    /// Probe rounds since the search for a direct path began.
    pub(crate) search_round: u32,
    pub(crate) last_call_me_maybe: Option<Instant>,
    pub(crate) relay_rtt: Option<Duration>,
    /// The peer's `tx_bytes` at the last timer check: more now means we are sending.
    pub(crate) tx_seen: u64,
    /// When we last pinged an address back (see [`Self::should_probe_back`]).
    probed_back: BTreeMap<SocketAddr, Instant>,
    /// Since when no direct path has been known (`None` while one is).
    pub(crate) search_began: Option<Instant>,
    pub(crate) birthday: crate::birthday::PeerBirthday,
}

impl Paths {
    /// When the probe round that starts `now` should be followed by the
    /// next, and counts the round.
    pub(crate) fn schedule_next_probe(&mut self, now: Instant) {
        let interval = if self.best.is_none() {
            self.search_began.get_or_insert(now);
            let backoff = PROBE_RETRY_FIRST.saturating_mul(1u32 << self.search_round.min(8));
            self.search_round = self.search_round.saturating_add(1);
            backoff.min(PROBE_SEARCHING)
        } else {
            self.search_round = 0;
            self.search_began = None;
            self.birthday.reset();
            PROBE_DIRECT
        };
        self.next_probe = Some(now + interval);
    }

    /// Replaces the candidates the controller gave, keeping what was learnt.
    /// True if one of them is new.
    pub(crate) fn set_candidates(&mut self, addrs: &[SocketAddr]) -> bool {
        self.candidates.retain(|addr, c| {
            c.learned_at.is_some() || addrs.contains(addr) || Some(*addr) == self.best
        });
        let mut added = false;
        for addr in addrs {
            self.candidates.entry(*addr).or_insert_with(|| {
                added = true;
                Candidate {
                    last_heard: None,
                    rtt: None,
                    learned_at: None,
                    local: None,
                }
            });
        }
        added
    }

    /// Whether a ping from `addr` should be answered with a ping back: no
    /// direct path yet, and no probe-back to `addr` in the last
    /// [`PROBE_BACK_EVERY`].
    /// Only probe-backs count against the rate: our own probe round may have
    /// pinged `addr` a moment ago, into the peer's still-closed filter, and
    /// the ping back is what gets through now that the peer's ping opened it.
    /// Records the probe-back when it says yes.
    pub(crate) fn should_probe_back(&mut self, addr: SocketAddr, now: Instant) -> bool {
        if self.best.is_some() {
            return false;
        }
        self.probed_back
            .retain(|_, at| now.saturating_duration_since(*at) < PROBE_BACK_EVERY);
        if self.probed_back.contains_key(&addr) {
            return false;
        }
        self.probed_back.insert(addr, now);
        true
    }

    /// The best path, if we are sending on it (`tx_bytes` grew since the
    /// last check) while it has been silent past [`TRUST_SILENT_PATH`] and
    /// no ping to it is awaiting its answer: it wants a ping now.
    pub(crate) fn silent_best(&mut self, tx_bytes: u64, now: Instant) -> Option<SocketAddr> {
        let sending = tx_bytes > self.tx_seen;
        self.tx_seen = tx_bytes;
        (sending && self.best_is_silent(now))
            .then(|| self.unchecked_best(now))
            .flatten()
    }

    /// The peer's packet came through the relay although we hold a direct
    /// path: the peer has given that path up. If it has been silent for
    /// [`TRUST_SILENT_PATH`] here too, it is dead now (the caller's
    /// [`Self::choose`] moves to the relay, so our answers reach the peer);
    /// otherwise returns it to be checked with a ping.
    pub(crate) fn peer_relayed(&mut self, now: Instant) -> Option<SocketAddr> {
        let best = self.best?;
        if self.best_is_silent(now) {
            if let Some(c) = self.candidates.get_mut(&best) {
                c.last_heard = None;
            }
            return None;
        }
        self.unchecked_best(now)
    }

    fn best_is_silent(&self, now: Instant) -> bool {
        self.best
            .and_then(|best| self.candidates.get(&best))
            .and_then(|c| c.last_heard)
            .is_some_and(|heard| now.saturating_duration_since(heard) >= TRUST_SILENT_PATH)
    }

    /// The best path, unless a ping to it still awaits its answer.
    fn unchecked_best(&self, now: Instant) -> Option<SocketAddr> {
        let best = self.best?;
        let pinged = self.pings.values().any(|p| {
            p.to == ProbeTarget::Udp(best) && now.saturating_duration_since(p.sent) < PONG_WAIT
        });
        (!pinged).then_some(best)
    }

    /// Remembers an address the peer's packets came from.
    pub(crate) fn learn(&mut self, addr: SocketAddr, now: Instant) -> bool {
        if self.candidates.contains_key(&addr) {
            return false;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            let oldest = self
                .candidates
                .iter()
                .filter(|(a, _)| Some(**a) != self.best)
                .filter_map(|(a, c)| c.learned_at.map(|t| (t, *a)))
                .min();
            if let Some((_, addr)) = oldest {
                self.candidates.remove(&addr);
            }
        }
        self.candidates.insert(
            addr,
            Candidate {
                last_heard: None,
                rtt: None,
                learned_at: Some(now),
                local: None,
            },
        );
        true
    }

    /// Notes that a packet from `addr` was sent to our address `local`
    /// (where the socket can tell).
    pub(crate) fn reached_at(&mut self, addr: SocketAddr, local: Option<IpAddr>) {
        if let (Some(c), Some(local)) = (self.candidates.get_mut(&addr), local) {
            c.local = Some(local);
        }
    }

    /// The address to send to `addr` from: where its packets reach us, or
    /// `None` (the routing table picks) while we do not know.
    pub(crate) fn local_for(&self, addr: &SocketAddr) -> Option<IpAddr> {
        self.candidates.get(addr).and_then(|c| c.local)
    }

    /// Records that an authenticated packet came straight from `addr`, sent
    /// to our address `local`. Returns true if that made it the best path.
    pub(crate) fn heard(
        &mut self,
        addr: SocketAddr,
        local: Option<IpAddr>,
        rtt: Option<Duration>,
        now: Instant,
    ) -> bool {
        self.learn(addr, now);
        self.note_heard(addr, local, rtt, now);
        self.choose(now)
    }

    /// [`Self::heard`] for a packet on the best path, which cannot change
    /// the choice. Runs for every packet there, so it finds the candidate
    /// once: its `local` ([`Self::reached_at`]) and `last_heard` together.
    pub(crate) fn heard_on_best(&mut self, local: Option<IpAddr>, now: Instant) {
        if let Some(best) = self.best {
            self.note_heard(best, local, None, now);
        }
    }

    fn note_heard(
        &mut self,
        addr: SocketAddr,
        local: Option<IpAddr>,
        rtt: Option<Duration>,
        now: Instant,
    ) {
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.last_heard = Some(now);
            if local.is_some() {
                c.local = local;
            }
            if rtt.is_some() {
                c.rtt = rtt;
            }
        }
    }

    pub(crate) fn alive(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.candidates
            .get(addr)
            .and_then(|c| c.last_heard)
            .is_some_and(|t| now.saturating_duration_since(t) < PATH_TIMEOUT)
    }

    /// Picks the fastest live path; returns true if the best path changed.
    pub(crate) fn choose(&mut self, now: Instant) -> bool {
        self.forget_unanswering(now);
        let current = self.best.filter(|b| self.alive(b, now));
        let fastest = self
            .candidates
            .iter()
            .filter(|(a, _)| self.alive(a, now))
            .min_by_key(|(a, c)| (c.rtt.unwrap_or(Duration::MAX), **a))
            .map(|(a, c)| (*a, c.rtt));
        let next = match (current, fastest) {
            (Some(cur), Some((fast, fast_rtt))) => {
                let cur_rtt = self.candidates.get(&cur).and_then(|c| c.rtt);
                match (cur_rtt, fast_rtt) {
                    (Some(c), Some(f)) if f + SWITCH_MARGIN < c => Some(fast),
                    (None, Some(_)) => Some(fast),
                    _ => Some(cur),
                }
            }
            (None, Some((fast, _))) => Some(fast),
            (cur, None) => cur,
        };
        let changed = next != self.best;
        self.best = next;
        changed
    }

    /// A path that stopped answering (a NAT rebinding, a dropped mapping) is
    /// not alive, however recently it was heard: otherwise the hysteresis in
    /// [`Self::choose`] keeps it over one that answers, and a dead best path
    /// holds the session until [`PATH_TIMEOUT`], past WireGuard's patience.
    fn forget_unanswering(&mut self, now: Instant) {
        for probe in self.pings.values() {
            let ProbeTarget::Udp(addr) = probe.to else {
                continue;
            };
            if let Some(c) = self.candidates.get_mut(&addr) {
                let unanswered = now.saturating_duration_since(probe.sent) >= PONG_WAIT;
                if unanswered && c.last_heard.is_some_and(|heard| heard < probe.sent) {
                    c.last_heard = None;
                }
            }
        }
    }

    /// Forgets pings that will not be answered; returns those a user asked for.
    pub(crate) fn expire_pings(&mut self, now: Instant) -> Vec<Probe> {
        let mut expired = Vec::new();
        self.pings.retain(|_, p| {
            let keep = now.saturating_duration_since(p.sent) < PING_TIMEOUT;
            if !keep && p.asked {
                expired.push(*p);
            }
            keep
        });
        expired
    }

    pub(crate) fn latency(&self, now: Instant) -> Option<Duration> {
        match self.best.filter(|b| self.alive(b, now)) {
            Some(best) => self.candidates.get(&best).and_then(|c| c.rtt),
            None => self.relay_rtt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_retries_fast_then_settles_and_a_direct_path_probes_slowly() {
        let t0 = Instant::now();
        let mut paths = Paths::default();
        let mut at = t0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            paths.schedule_next_probe(at);
            let next = paths.next_probe.unwrap();
            gaps.push(next - at);
            at = next;
        }
        let ms: Vec<u128> = gaps.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 2000, 2000]);
        paths.best = Some("192.0.2.1:51820".parse().unwrap());
        paths.schedule_next_probe(at);
        assert_eq!(paths.next_probe.unwrap() - at, PROBE_DIRECT);
        // A search after the direct path died starts fast again.
        paths.best = None;
        paths.schedule_next_probe(at);
        assert_eq!(paths.next_probe.unwrap() - at, PROBE_RETRY_FIRST);
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn fastest_live_path_wins_with_hysteresis() {
        let now = Instant::now();
        let mut p = Paths::default();
        p.set_candidates(&[addr("192.0.2.1:1"), addr("10.0.0.1:1")]);
        assert!(p.heard(
            addr("192.0.2.1:1"),
            None,
            Some(Duration::from_millis(20)),
            now
        ));
        assert_eq!(p.best, Some(addr("192.0.2.1:1")));
        // Slightly faster is not enough to switch.
        assert!(!p.heard(
            addr("10.0.0.1:1"),
            None,
            Some(Duration::from_micros(19_800)),
            now
        ));
        assert!(p.heard(
            addr("10.0.0.1:1"),
            None,
            Some(Duration::from_millis(1)),
            now
        ));
        assert_eq!(p.best, Some(addr("10.0.0.1:1")));
        // The best path dies: the other one takes over, then none.
        let later = now + Duration::from_secs(10);
        p.heard(addr("192.0.2.1:1"), None, None, later);
        assert!(p.choose(now + PATH_TIMEOUT + Duration::from_secs(1)));
        assert_eq!(p.best, Some(addr("192.0.2.1:1")));
        assert!(p.choose(later + PATH_TIMEOUT));
        assert_eq!(p.best, None);
    }

    #[test]
    fn pings_are_probed_back_at_a_bounded_rate_until_a_path_works() {
        let now = Instant::now();
        let peer = addr("192.0.2.1:1");
        let mut p = Paths::default();
        p.set_candidates(&[peer]);
        // Our own probe round pinged the peer a moment ago (into its closed
        // filter): its ping is still answered with a ping back.
        p.pings.insert(
            [1; 12],
            Probe {
                to: ProbeTarget::Udp(peer),
                sent: now,
                asked: false,
            },
        );
        assert!(p.should_probe_back(peer, now + Duration::from_millis(10)));
        // A second ping at once (the peer probing back too) is not answered
        // with another ping: no ping-pong storm between two searching agents.
        assert!(!p.should_probe_back(peer, now + Duration::from_millis(20)));
        assert!(p.should_probe_back(addr("192.0.2.1:2"), now));
        assert!(p.should_probe_back(peer, now + PROBE_BACK_EVERY + Duration::from_millis(10)));
        // Once a direct path works, the regular probe rounds take over.
        assert!(p.heard(peer, None, Some(Duration::from_millis(5)), now));
        assert!(!p.should_probe_back(peer, now + Duration::from_secs(1)));
    }

    #[test]
    fn a_silent_path_we_send_on_is_checked_at_once() {
        let now = Instant::now();
        let peer = addr("192.0.2.1:1");
        let mut p = Paths::default();
        p.set_candidates(&[peer]);
        assert!(p.heard(peer, None, Some(Duration::from_millis(5)), now));
        // Heard recently, or nothing sent: no check.
        assert_eq!(p.silent_best(100, now + Duration::from_secs(1)), None);
        let later = now + TRUST_SILENT_PATH;
        assert_eq!(p.silent_best(100, later), None);
        assert_eq!(p.silent_best(200, later), Some(peer));
        p.pings.insert(
            [2; 12],
            Probe {
                to: ProbeTarget::Udp(peer),
                sent: later,
                asked: false,
            },
        );
        // One check at a time; unanswered, it kills the path.
        assert_eq!(p.silent_best(300, later + Duration::from_secs(1)), None);
        assert!(p.choose(later + PONG_WAIT));
        assert_eq!(p.best, None);
    }

    #[test]
    fn a_peer_that_turns_to_the_relay_makes_us_check_or_drop_our_path() {
        let now = Instant::now();
        let peer = addr("192.0.2.1:1");
        let mut p = Paths::default();
        p.set_candidates(&[peer]);
        assert!(p.heard(peer, None, Some(Duration::from_millis(5)), now));
        // Heard a moment ago: check it.
        assert_eq!(p.peer_relayed(now + Duration::from_secs(1)), Some(peer));
        // Silent as long as we trust a path: dead at once.
        let later = now + TRUST_SILENT_PATH;
        assert_eq!(p.peer_relayed(later), None);
        assert!(p.choose(later));
        assert_eq!(p.best, None);
        assert_eq!(p.peer_relayed(later), None);
    }

    #[test]
    fn a_path_that_stops_answering_pings_gives_way() {
        let now = Instant::now();
        let (old, new) = (addr("192.0.2.1:1"), addr("192.0.2.1:2"));
        let mut p = Paths::default();
        p.set_candidates(&[old]);
        assert!(p.heard(old, None, Some(Duration::from_millis(20)), now));
        // The peer's NAT rebinds: its packets now come from `new`, as fast.
        let later = now + Duration::from_secs(1);
        assert!(!p.heard(new, None, Some(Duration::from_millis(20)), later));
        let ping = Probe {
            to: ProbeTarget::Udp(old),
            sent: later,
            asked: false,
        };
        p.pings.insert([1; 12], ping);
        assert!(
            !p.choose(later + PONG_WAIT / 2),
            "still waiting for the pong"
        );
        assert!(p.choose(later + PONG_WAIT), "the old path missed its pong");
        assert_eq!(p.best, Some(new));
        // Heard again, the old path is a candidate like any other.
        p.heard(old, None, None, later + PONG_WAIT);
        assert!(p.alive(&old, later + PONG_WAIT));
    }

    #[test]
    fn learnt_candidates_are_bounded_and_kept_across_netmaps() {
        let now = Instant::now();
        let mut p = Paths::default();
        for port in 0..40u16 {
            p.learn(
                SocketAddr::from(([198, 51, 100, 1], port)),
                now + Duration::from_secs(port.into()),
            );
        }
        assert_eq!(p.candidates.len(), MAX_CANDIDATES);
        assert!(p.candidates.contains_key(&addr("198.51.100.1:39")));
        p.set_candidates(&[addr("203.0.113.1:1")]);
        assert_eq!(p.candidates.len(), MAX_CANDIDATES + 1);
    }

    #[test]
    fn a_packet_on_the_best_path_refreshes_it_as_heard_does() {
        let now = Instant::now();
        let (best, local) = (addr("192.0.2.1:1"), IpAddr::from([198, 51, 100, 7]));
        let mut p = Paths::default();
        p.set_candidates(&[best]);
        assert!(p.heard(best, Some(local), Some(Duration::from_millis(5)), now));
        let later = now + Duration::from_secs(5);
        let mut twin = Paths::default();
        twin.set_candidates(&[best]);
        twin.heard(best, Some(local), Some(Duration::from_millis(5)), now);
        // Where the socket cannot tell, the known local address stays.
        p.heard_on_best(None, later);
        twin.heard(best, None, None, later);
        assert_eq!(p.candidates, twin.candidates);
        assert_eq!(p.local_for(&best), Some(local));
        // Arriving at another address of ours moves our side of the path.
        let other = IpAddr::from([203, 0, 113, 7]);
        p.heard_on_best(Some(other), later + Duration::from_secs(1));
        twin.heard(best, Some(other), None, later + Duration::from_secs(1));
        assert_eq!(p.candidates, twin.candidates);
        assert_eq!(p.local_for(&best), Some(other));
        assert_eq!(p.best, Some(best));
    }
}
