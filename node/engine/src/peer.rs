//! A configured peer: its keys, allowed IPs, endpoint, session and counters.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use warren_proto::disco::DiscoKey;
use warren_proto::local_api::PeerCounters;
use warren_proto::NodePublicKey;

use crate::engine::Event;
use crate::path::{PathKind, Paths, Via};
use crate::tunnel::Session;

/// Identifies a peer inside one engine. It is also the upper 24 bits of every
/// WireGuard session index the engine hands out, so that an incoming message
/// finds its peer without a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub(crate) u32);

impl PeerId {
    /// The peer an incoming receiver index belongs to.
    pub(crate) fn from_receiver_index(index: u32) -> Self {
        Self(index >> 8)
    }
}

/// How a peer is configured: the static-mode `[[peer]]` table, or later a netmap entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: NodePublicKey,
    /// A fixed endpoint (static peers): followed when the peer roams.
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<Duration>,
    /// Find the path with disco probes (netmap peers, which run Warren).
    /// Static peers may be stock WireGuard, which would not answer.
    pub disco: bool,
    /// Addresses to probe: the peer's reported endpoints.
    pub candidates: Vec<SocketAddr>,
}

impl PeerConfig {
    /// A peer as in a `[[peer]]` table: fixed endpoint, no disco.
    pub fn fixed(
        public_key: NodePublicKey,
        endpoint: Option<SocketAddr>,
        allowed_ips: Vec<IpNet>,
        persistent_keepalive: Option<Duration>,
    ) -> Self {
        Self {
            public_key,
            endpoint,
            allowed_ips,
            persistent_keepalive,
            disco: false,
            candidates: Vec::new(),
        }
    }
}

/// A read-only view of a peer for status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub id: PeerId,
    pub public_key: NodePublicKey,
    pub allowed_ips: Vec<IpNet>,
    pub endpoint: Option<SocketAddr>,
    /// How long ago the last handshake completed, if one has.
    pub since_last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: Option<Duration>,
    pub path: PathKind,
    /// Round-trip time of the current path, from disco probes.
    pub latency: Option<Duration>,
    pub counters: PeerCounters,
}

pub(crate) struct Peer {
    pub(crate) config: PeerConfig,
    pub(crate) session: Session,
    /// The peer's UDP address: fixed or roamed (static), or the best direct path (disco).
    pub(crate) endpoint: Option<SocketAddr>,
    /// Our address that a peer without disco (a static one) sends to at
    /// `endpoint`: where we send to it from, as [`Paths`] records per
    /// candidate for disco peers. `None`: the routing table picks.
    pub(crate) endpoint_local: Option<IpAddr>,
    /// Where its packets go now; derived from the above, cached for the hot path.
    pub(crate) via: Option<Via>,
    pub(crate) paths: Option<Paths>,
    pub(crate) disco_key: Option<DiscoKey>,
    /// The disco pings it sent lately, to refuse replayed ones.
    pub(crate) ping_replay: crate::disco_replay::PingReplay,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
    /// Packets, handshakes, relay bytes and drops: plain integers, as the
    /// engine has one owner (the data plane's task) and no lock.
    pub(crate) counters: PeerCounters,
    /// Set once the session expired, so that the event is raised once per expiry.
    pub(crate) expired: bool,
}

impl Peer {
    /// Counts an authenticated message of `len` bytes from the peer.
    pub(crate) fn count_rx(&mut self, len: usize, relayed: bool) {
        self.rx_bytes += len as u64;
        self.counters.rx_packets += 1;
        if relayed {
            self.counters.relay_rx_bytes += len as u64;
        }
    }

    /// Counts a message of `len` bytes sent to the peer over `via`.
    pub(crate) fn count_tx(&mut self, len: usize, via: Via) {
        self.tx_bytes += len as u64;
        self.counters.tx_packets += 1;
        if let Via::Relay(_) = via {
            self.counters.relay_tx_bytes += len as u64;
        }
    }

    /// Recomputes where packets go: the live direct path, else the relay,
    /// else (with no relay) the first candidate on the chance it works.
    pub(crate) fn refresh_via(&mut self, relay: bool, now: Instant) {
        self.via = match &self.paths {
            None => self.endpoint.map(Via::Udp),
            Some(paths) => match paths.best.filter(|b| paths.alive(b, now)) {
                Some(best) => Some(Via::Udp(best)),
                None if relay => Some(Via::Relay(self.config.public_key)),
                None => self.endpoint.map(Via::Udp),
            },
        };
    }

    /// The best direct path changed: packets follow it (or, with none, the
    /// relay), and the returned event tells the shell.
    pub(crate) fn follow_best(&mut self, relay: bool, now: Instant) -> Event {
        if let Some(best) = self.paths.as_ref().and_then(|p| p.best) {
            self.endpoint = Some(best);
        }
        self.refresh_via(relay, now);
        self.path_event()
    }

    /// The address to send to the peer from: the one its packets on the
    /// current direct path reach us at, else `None` (the routing table picks).
    pub(crate) fn src_ip(&self) -> Option<IpAddr> {
        match (self.via, &self.paths) {
            (Some(Via::Udp(addr)), Some(paths)) => paths.local_for(&addr),
            (Some(Via::Udp(addr)), None) if self.endpoint == Some(addr) => self.endpoint_local,
            _ => None,
        }
    }

    pub(crate) fn path_kind(&self) -> PathKind {
        match (&self.paths, self.via) {
            (_, None) => PathKind::None,
            (_, Some(Via::Relay(_))) => PathKind::Relay,
            (None, Some(Via::Udp(_))) => PathKind::Direct,
            // Sending to a candidate nobody confirmed is a hope, not a path.
            (Some(paths), Some(Via::Udp(addr))) => {
                if paths.best == Some(addr) {
                    PathKind::Direct
                } else {
                    PathKind::None
                }
            }
        }
    }

    pub(crate) fn path_event(&self) -> Event {
        Event::PathChanged {
            peer: self.config.public_key,
            path: self.path_kind(),
            via: self.via,
        }
    }
}
