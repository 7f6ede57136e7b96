//! Hard-NAT traversal, birthday-paradox style.
//!
//! A NAT that maps per destination (a "symmetric" NAT) gives each
//! destination a new public port, so the peer cannot know the port to
//! answer; a peer whose NAT filters on address and port (port-restricted)
//! drops everything from a port it has not sent to. Plain probing never
//! meets. Here the two sides meet by chance, with many tries at once:
//!
//! - The *hard* side (its STUN answers differ by server) opens
//!   [`Birthday::FanOut`]: the same ping to the peer from many local
//!   sockets, hence many public ports, each now open for the peer.
//! - It tells the peer, through the controller, with a call-me-maybe that
//!   carries [`NatHint::PerDestination`].
//! - The *easy* side (one public port for every destination) answers with
//!   [`Birthday::Spray`]: one ping to many random ports of the hard side's
//!   public address. Each opens its own filter for that port; one that hits
//!   a port the fan-out opened reaches the hard side, whose pong (from the
//!   socket it was heard on) comes back through the now open filter.
//!
//! With k sockets and n sprayed ports out of about 64,500, a try succeeds
//! with probability 1 - (1 - k/64,500)^n: 98% for k = 256, n = 1,024.
//! The hard side tries again after [`RETRY_AFTER`], a few times, then
//! rarely ([`RETRY_LATE`]); the easy side sprays for one peer at most
//! every [`SPRAY_EVERY`] and for all at most [`SPRAYS_PER_MINUTE`] a minute.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use warren_proto::control::NatHint;
use warren_proto::disco::{self, DiscoMessage};
use warren_proto::NodePublicKey;

use crate::engine::{Engine, Event};
use crate::path::{Probe, ProbeTarget};
use crate::peer::PeerId;

/// Ports of the hard side's public address one spray sends to.
pub const SPRAY_PORTS: u16 = 1024;
/// Sprayed ports are drawn from here: where Linux and most NATs pick
/// public ports for an unprivileged source port.
pub const SPRAY_RANGE: std::ops::RangeInclusive<u16> = 1024..=65535;
/// A hard side tries once plain probing has searched this long.
pub const SEARCH_FIRST: Duration = Duration::from_secs(3);
/// The first tries come this far apart...
pub const RETRY_AFTER: Duration = Duration::from_secs(15);
/// ...this many of them...
pub const QUICK_TRIES: u32 = 3;
/// ...and later ones this far apart, while the pair stays relayed.
pub const RETRY_LATE: Duration = Duration::from_secs(300);
/// An easy side sprays for one peer at most this often.
pub const SPRAY_EVERY: Duration = Duration::from_secs(10);
/// And for all peers together at most this many times a minute.
pub const SPRAYS_PER_MINUTE: usize = 6;
/// A fan-out pings at most this many of the peer's candidates.
const FANOUT_TARGETS: usize = 4;

/// What the data plane sends for a birthday try, besides the usual transmits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Birthday {
    /// Send `payload` to `to` from each of the extra sockets (opening them
    /// first), and route what any of them hears back out through it.
    FanOut { to: SocketAddr, payload: Vec<u8> },
    /// Send `payload` from the main socket to `ports` distinct random
    /// ports in [`SPRAY_RANGE`] of `ip`, paced.
    Spray {
        ip: IpAddr,
        ports: u16,
        payload: Vec<u8>,
    },
}

/// How our NAT maps, as the STUN answers show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mapping {
    Unknown,
    Independent,
    PerDestination(IpAddr),
}

/// Birthday state of the engine as a whole.
#[derive(Debug)]
pub(crate) struct BirthdayState {
    pub(crate) enabled: bool,
    pub(crate) queue: std::collections::VecDeque<Birthday>,
    /// When the recent sprays (for any peer) went, for [`SPRAYS_PER_MINUTE`].
    sprays: std::collections::VecDeque<Instant>,
}

impl Default for BirthdayState {
    fn default() -> Self {
        Self {
            enabled: true,
            queue: std::collections::VecDeque::new(),
            sprays: std::collections::VecDeque::new(),
        }
    }
}

/// Birthday state of one peer.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PeerBirthday {
    /// What the peer last said of its NAT.
    pub(crate) peer_nat: Option<NatHint>,
    /// Our fan-outs to it since it last had a direct path, and the last one.
    tries: u32,
    last_try: Option<Instant>,
    /// Our last spray for it.
    last_spray: Option<Instant>,
}

impl PeerBirthday {
    /// A direct path works: the next search starts over.
    pub(crate) fn reset(&mut self) {
        self.tries = 0;
        self.last_try = None;
    }

    fn try_due(&self, now: Instant) -> bool {
        let wait = if self.tries < QUICK_TRIES {
            RETRY_AFTER
        } else {
            RETRY_LATE
        };
        self.last_try
            .is_none_or(|t| now.saturating_duration_since(t) >= wait)
    }
}

/// The mapping the STUN answers (server -> mapped address) show: IPv4 only,
/// as IPv6 needs no NAT, and at least two servers.
pub(crate) fn mapping<'a>(mapped: impl Iterator<Item = &'a SocketAddr>) -> Mapping {
    let v4: Vec<&SocketAddr> = mapped.filter(|m| m.is_ipv4()).collect();
    let Some(first) = v4.first() else {
        return Mapping::Unknown;
    };
    if v4.len() < 2 {
        Mapping::Unknown
    } else if v4.iter().all(|m| m == first) {
        Mapping::Independent
    } else if v4.iter().all(|m| m.ip() == first.ip()) {
        Mapping::PerDestination(first.ip())
    } else {
        // Two public addresses: a multi-homed NAT, not one to spray.
        Mapping::Unknown
    }
}

impl Engine {
    /// Whether to try birthday probing with peers that plain probing does
    /// not reach (on by default).
    pub fn set_hard_nat_probing(&mut self, on: bool) {
        self.birthday.enabled = on;
        if !on {
            self.birthday.queue.clear();
        }
    }

    /// The next birthday send ([`Birthday`]).
    pub fn poll_birthday(&mut self) -> Option<Birthday> {
        self.birthday.queue.pop_front()
    }

    pub(crate) fn nat_mapping(&self) -> Mapping {
        mapping(self.stun().mapped.values())
    }

    /// The hint our periodic call-me-maybe requests carry: only an easy
    /// mapping is worth telling before a try.
    pub(crate) fn plain_nat_hint(&self) -> Option<NatHint> {
        (self.birthday.enabled && self.nat_mapping() == Mapping::Independent)
            .then_some(NatHint::Independent)
    }

    /// Our mapping just became known (or changed): peers still searching
    /// hear of it now rather than at their next call-me-maybe, 10 s away,
    /// so a hard peer can try at once.
    pub(crate) fn tell_mapping(&mut self) {
        let Some(nat) = self.plain_nat_hint() else {
            return;
        };
        if self.local_endpoints.is_empty() {
            return;
        }
        let searching: Vec<_> = self
            .peers_mut()
            .filter(|p| p.paths.as_ref().is_some_and(|p| p.best.is_none()))
            .map(|p| p.config.public_key)
            .collect();
        for peer in searching {
            self.push_event(Event::CallMeMaybe {
                peer,
                endpoints: self.local_endpoints.clone(),
                nat: Some(nat),
            });
        }
    }

    /// On every tick, as the hard side: a fan-out and a call-me-maybe for
    /// each easy peer that plain probing has not reached in [`SEARCH_FIRST`].
    pub(crate) fn handle_birthday_timers(&mut self, now: Instant) {
        let Mapping::PerDestination(ip) = self.nat_mapping() else {
            return;
        };
        if !self.birthday.enabled || self.local_endpoints.is_empty() {
            return;
        }
        let mut due = Vec::new();
        for (id, peer) in self.peers_iter_mut() {
            let Some(paths) = peer.paths.as_mut() else {
                continue;
            };
            let searched = paths
                .search_began
                .is_some_and(|t| now.saturating_duration_since(t) >= SEARCH_FIRST);
            let easy = paths.birthday.peer_nat == Some(NatHint::Independent);
            if paths.best.is_none() && searched && easy && paths.birthday.try_due(now) {
                paths.birthday.tries = paths.birthday.tries.saturating_add(1);
                paths.birthday.last_try = Some(now);
                // The try's call-me-maybe is this round's plain one too.
                paths.last_call_me_maybe = Some(now);
                let targets: Vec<SocketAddr> = paths
                    .candidates
                    .keys()
                    .filter(|a| a.is_ipv4())
                    .take(FANOUT_TARGETS)
                    .copied()
                    .collect();
                due.push((id, peer.config.public_key, targets));
            }
        }
        for (id, key, targets) in due {
            for to in targets {
                if let Some(payload) = self.birthday_ping(id, ProbeTarget::Udp(to), now) {
                    self.birthday
                        .queue
                        .push_back(Birthday::FanOut { to, payload });
                }
            }
            self.counters_mut().hard_nat_fanouts += 1;
            self.push_event(Event::CallMeMaybe {
                peer: key,
                endpoints: self.local_endpoints.clone(),
                nat: Some(NatHint::PerDestination { ip }),
            });
        }
    }

    /// [`Self::answer_fan_out`] for a peer's call-me-maybe that was over
    /// the rate of plain ones: only the spray, within its own rates.
    pub fn handle_spray_request(&mut self, from: &NodePublicKey, ip: IpAddr, now: Instant) {
        if let Some(id) = self.peer_id(from) {
            self.answer_fan_out(id, ip, now);
        }
    }

    /// As the easy side, a peer's call-me-maybe said it maps per
    /// destination at `ip` and has just fanned out: spray, if we map
    /// independently, have no direct path to it and are within our rates.
    pub(crate) fn answer_fan_out(&mut self, id: PeerId, ip: IpAddr, now: Instant) {
        if !self.birthday.enabled || self.nat_mapping() != Mapping::Independent {
            return;
        }
        let sprays = &mut self.birthday.sprays;
        while sprays
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(60))
        {
            sprays.pop_front();
        }
        if sprays.len() >= SPRAYS_PER_MINUTE {
            return;
        }
        let Some(paths) = self.peer_mut(id).and_then(|p| p.paths.as_mut()) else {
            return;
        };
        let recent = paths
            .birthday
            .last_spray
            .is_some_and(|t| now.saturating_duration_since(t) < SPRAY_EVERY);
        // Only an address the peer gave as its own (the controller checks
        // this too): a spray elsewhere would be a flood at a stranger.
        let its_own = paths.candidates.keys().any(|a| a.ip() == ip);
        if paths.best.is_some() || recent || !its_own {
            return;
        }
        paths.birthday.last_spray = Some(now);
        self.birthday.sprays.push_back(now);
        if let Some(payload) = self.birthday_ping(id, ProbeTarget::Spray(ip), now) {
            self.counters_mut().hard_nat_sprays += 1;
            self.birthday.queue.push_back(Birthday::Spray {
                ip,
                ports: SPRAY_PORTS,
                payload,
            });
        }
    }

    /// A disco ping to `to`, recorded as in flight, for the data plane to
    /// send in its birthday way.
    fn birthday_ping(&mut self, id: PeerId, to: ProbeTarget, now: Instant) -> Option<Vec<u8>> {
        let mut tx = [0u8; 12];
        self.rng.fill_bytes(&mut tx);
        let mut nonce = [0u8; 12];
        self.rng.fill_bytes(&mut nonce);
        let sent_at = self.ping_clock.stamp(now);
        let own = self.public_key();
        let peer = self.peer_mut(id)?;
        let key = peer.disco_key.clone()?;
        let paths = peer.paths.as_mut()?;
        paths.pings.insert(
            tx,
            Probe {
                to,
                sent: now,
                asked: false,
            },
        );
        Some(disco::encode(
            &key,
            &own,
            nonce,
            &DiscoMessage::Ping { tx, sent_at },
        ))
    }
}

#[cfg(test)]
#[path = "birthday_tests.rs"]
mod tests;
