//! The engine: peers, routing, sessions and timers, driven by `handle_*` and drained by `poll_*`.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use warren_proto::filter::{Direction, PacketFilter};
use warren_proto::local_api::Counters;
use warren_proto::{NodePrivateKey, NodePublicKey};

use rand_core::RngCore;
use warren_proto::disco;

use crate::error::{ConfigError, PacketError};
use crate::filter::Filter;
use crate::packet;
use crate::path::{PathKind, Paths, ProbeTarget, Via};
use crate::peer::{Peer, PeerConfig, PeerId, PeerSnapshot};
use crate::routing::RoutingTable;
use crate::site_nat::SiteNat;
use crate::tunnel::{Session, SessionOutput, DATA_OVERHEAD, MIN_OUTPUT_BUFFER};

mod datagrams;

/// How often boringtun's timers run, as its own device does.
const TIMER_TICK: Duration = Duration::from_millis(250);
/// The handshake rate limiter's window.
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(1);
/// Scratch space for packets that leave the data path (handshakes, queued packets).
const SCRATCH_LEN: usize = 65_536 + DATA_OVERHEAD;
/// Peer ids live in the upper 24 bits of a session index.
const MAX_PEER_ID: u32 = (1 << 24) - 1;
const COOKIE_REPLY_LEN: usize = 64;

/// Engine-wide settings.
pub struct EngineConfig {
    pub private_key: NodePrivateKey,
    /// Handshake messages accepted per second before cookies are demanded.
    pub handshakes_per_second: u64,
    /// The first peer id; inject a random one so that session indices are not guessable.
    pub first_peer_id: u32,
    /// Randomness for disco transaction IDs and nonces: the OS in the agent,
    /// a seeded generator in the simulated world, so that runs replay.
    pub rng: Box<dyn RngCore + std::marker::Send>,
    /// The wall clock (ms since the Unix epoch) when the engine starts, as
    /// the shell reads it: disco pings carry it, moved on by `now`, so
    /// peers can refuse replayed pings. 0 in the simulated world.
    pub clock_ms: u64,
}

impl EngineConfig {
    pub fn new(private_key: NodePrivateKey, rng: Box<dyn RngCore + std::marker::Send>) -> Self {
        let mut rng = rng;
        let first_peer_id = rng.next_u32();
        Self {
            private_key,
            handshakes_per_second: 100,
            first_peer_id,
            rng,
            clock_ms: 0,
        }
    }
}

/// The packet to send after a TUN packet was encrypted: `len` bytes of the output buffer to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Send {
    pub peer: PeerId,
    pub to: Via,
    /// The local address to send from (see [`Transmit::src_ip`]).
    pub src_ip: Option<IpAddr>,
    pub len: usize,
}

/// What to do with a datagram after the engine has handled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkAction {
    /// `len` bytes of the output buffer are an IP packet for the TUN.
    Tunnel { len: usize },
    /// `len` bytes of the output buffer go back over the network to `to`.
    Reply { to: Via, len: usize },
    /// The message was handled and needs nothing more (a keepalive, a cookie).
    Nothing,
}

/// A datagram the engine wants sent, off the hot path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Via,
    /// The local address to send from, so that a host with several
    /// addresses sends from the one its peer reaches it at: for an answer
    /// (a disco pong), the address the datagram answered was sent to; on a
    /// direct path, the address the peer's packets on it arrive at. `None`
    /// (nothing known, the relay) leaves the choice to the routing table.
    pub src_ip: Option<IpAddr>,
    pub payload: Vec<u8>,
}

/// Where a datagram came from: a UDP address, or a peer through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Udp(SocketAddr),
    Relay(NodePublicKey),
}

impl Source {
    /// The address the handshake rate limiter accounts it to.
    fn ip(&self) -> IpAddr {
        match self {
            Source::Udp(a) => a.ip(),
            Source::Relay(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        }
    }

    pub(crate) fn reply_via(&self) -> Via {
        match self {
            Source::Udp(a) => Via::Udp(*a),
            Source::Relay(k) => Via::Relay(*k),
        }
    }
}

/// A user-visible change of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    HandshakeCompleted {
        peer: NodePublicKey,
    },
    EndpointChanged {
        peer: NodePublicKey,
        endpoint: SocketAddr,
    },
    SessionExpired {
        peer: NodePublicKey,
    },
    /// The way a disco peer is reached changed.
    PathChanged {
        peer: NodePublicKey,
        path: PathKind,
        via: Option<Via>,
    },
    /// Ask the peer, through the controller, to probe these addresses of ours now.
    CallMeMaybe {
        peer: NodePublicKey,
        endpoints: Vec<SocketAddr>,
        /// What our NAT does, for birthday probing (`crate::birthday`).
        nat: Option<warren_proto::control::NatHint>,
    },
    /// A STUN server saw our packets come from `mapped`.
    Reflexive {
        server: SocketAddr,
        mapped: SocketAddr,
    },
    /// The answer to [`Engine::ping`]: the first path that answered, or none.
    PingResult {
        peer: NodePublicKey,
        via: Option<Via>,
        rtt: Option<Duration>,
    },
}

/// Counts `payload` as sent to `peer` over `to`, and queues it for
/// [`Engine::poll_transmit`].
fn queue_transmit(
    peer: &mut Peer,
    to: Via,
    payload: &[u8],
    counters: &mut Counters,
    transmits: &mut VecDeque<Transmit>,
) {
    peer.count_tx(payload.len(), to);
    to.count_tx(counters, payload.len());
    let src_ip = if Some(to) == peer.via {
        peer.src_ip()
    } else {
        None
    };
    transmits.push_back(Transmit {
        to,
        src_ip,
        payload: payload.to_vec(),
    });
}

/// Warren's sans-IO data plane. Feed it TUN packets, datagrams and time;
/// it returns what to send and what to deliver.
pub struct Engine {
    private_key: NodePrivateKey,
    public_key: NodePublicKey,
    limiter: Arc<RateLimiter>,
    peers: BTreeMap<PeerId, Peer>,
    by_key: BTreeMap<NodePublicKey, PeerId>,
    routes: RoutingTable<PeerId>,
    next_peer_id: u32,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    next_tick: Option<Instant>,
    next_limiter_reset: Option<Instant>,
    scratch: Vec<u8>,
    pub(crate) rng: Box<dyn RngCore + std::marker::Send>,
    /// Whether the relay can carry packets now.
    pub(crate) relay: bool,
    /// Our own endpoint candidates, for call-me-maybe.
    pub(crate) local_endpoints: Vec<SocketAddr>,
    stun: crate::stun::StunState,
    /// The access policy; `None` until the first one, when everything passes.
    filter: Option<Filter>,
    /// The mapped prefixes of the site this node routes for.
    site_nat: SiteNat,
    pub(crate) ping_clock: crate::disco_replay::PingClock,
    pub(crate) birthday: crate::birthday::BirthdayState,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        let public_key = config.private_key.public_key();
        // Every initiation passes the limiter twice: once in `find_initiator`,
        // before any DH is spent on it, and again inside boringtun.
        let limiter = RateLimiter::new(
            &public_key.to_x25519(),
            config.handshakes_per_second.saturating_mul(2),
        );
        Self {
            private_key: config.private_key,
            public_key,
            limiter: Arc::new(limiter),
            peers: BTreeMap::new(),
            by_key: BTreeMap::new(),
            routes: RoutingTable::default(),
            next_peer_id: config.first_peer_id & MAX_PEER_ID,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            next_tick: None,
            next_limiter_reset: None,
            scratch: vec![0; SCRATCH_LEN],
            rng: config.rng,
            relay: false,
            local_endpoints: Vec::new(),
            stun: crate::stun::StunState::default(),
            filter: None,
            site_nat: SiteNat::default(),
            ping_clock: crate::disco_replay::PingClock::new(config.clock_ms),
            birthday: crate::birthday::BirthdayState::default(),
        }
    }

    pub fn public_key(&self) -> NodePublicKey {
        self.public_key
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Enforces a new access policy (`None`: let everything pass). Open
    /// flows it no longer allows are cut at once.
    pub fn set_filter(&mut self, filter: Option<PacketFilter>, now: Instant) {
        crate::filter::set(&mut self.filter, filter, &mut *self.rng, now);
    }

    /// The mapped prefixes of the site this node routes for (see
    /// [`crate::site_nat`]); empty when it routes for none or nothing of
    /// its site is mapped.
    pub fn set_site_mappings(&mut self, pairs: Vec<warren_proto::site::MappedPrefix>) {
        let nat = SiteNat::new(pairs);
        if nat != self.site_nat {
            tracing::info!(mapped = nat.len(), "site mappings changed");
            self.site_nat = nat;
        }
    }

    /// The access-policy filter, for its stats and `explain`, once it has had a policy.
    pub fn filter(&self) -> Option<&Filter> {
        self.filter.as_ref()
    }

    /// A packet for the TUN: ICMP administratively prohibited, or a TCP
    /// reset, for an outbound packet the policy denied.
    pub fn poll_tun_packet(&mut self) -> Option<Vec<u8>> {
        self.filter.as_mut()?.poll_tun_packet()
    }

    /// Adds a peer. A prefix already routed to another peer moves to this one,
    /// as `wg set` does. A peer with a keepalive and an endpoint starts its
    /// handshake at once, so that it is reachable from behind a NAT.
    pub fn add_peer(&mut self, config: PeerConfig, now: Instant) -> Result<PeerId, ConfigError> {
        if config.public_key == self.public_key {
            return Err(ConfigError::OwnKey(config.public_key));
        }
        if self.by_key.contains_key(&config.public_key) {
            return Err(ConfigError::DuplicatePeer(config.public_key));
        }
        let id = self.allocate_peer_id()?;
        let session = Session::new(
            &self.private_key,
            &config.public_key,
            config.persistent_keepalive,
            id.0,
            Arc::clone(&self.limiter),
        );
        for net in &config.allowed_ips {
            self.routes.insert(*net, id);
        }
        self.by_key.insert(config.public_key, id);
        let starts_now = config.persistent_keepalive.is_some() && config.endpoint.is_some();
        let (paths, disco_key) = if config.disco {
            let mut paths = Paths::default();
            paths.set_candidates(&config.candidates);
            paths.next_probe = Some(now);
            let key = disco::DiscoKey::derive(&self.private_key, &config.public_key).ok();
            (Some(paths), key)
        } else {
            (None, None)
        };
        let endpoint = config
            .endpoint
            .or_else(|| config.candidates.first().copied());
        let mut peer = Peer {
            endpoint,
            endpoint_local: None,
            via: None,
            config,
            session,
            rx_bytes: 0,
            tx_bytes: 0,
            counters: Default::default(),
            expired: false,
            paths,
            disco_key,
            ping_replay: Default::default(),
        };
        peer.refresh_via(self.relay, now);
        self.peers.insert(id, peer);
        if starts_now {
            self.send_keepalive(id);
        }
        self.schedule_tick(now);
        Ok(id)
    }

    /// Adds a peer, or updates one in place without touching its session:
    /// its allowed IPs are replaced, and a configured endpoint is taken only
    /// while the peer has none (one learnt from its packets is more current).
    pub fn upsert_peer(&mut self, config: PeerConfig, now: Instant) -> Result<PeerId, ConfigError> {
        let Some(&id) = self.by_key.get(&config.public_key) else {
            return self.add_peer(config, now);
        };
        if let Some(old) = self.peers.get(&id) {
            self.routes.remove_owned(&old.config.allowed_ips, &id);
        }
        for net in &config.allowed_ips {
            self.routes.insert(*net, id);
        }
        let mut probe_now = false;
        if let Some(peer) = self.peers.get_mut(&id) {
            if peer.endpoint.is_none() {
                peer.endpoint = config
                    .endpoint
                    .or_else(|| config.candidates.first().copied());
            }
            if let Some(paths) = &mut peer.paths {
                // New addresses (the peer's STUN answer reached the controller
                // after its first netmap) are probed now, not at the next round.
                probe_now = paths.set_candidates(&config.candidates) && paths.best.is_none();
            }
            peer.config = config;
            peer.refresh_via(self.relay, now);
        }
        if probe_now {
            self.probe_afresh(id, now);
        }
        Ok(id)
    }

    /// The keys of all configured peers.
    pub fn peer_keys(&self) -> Vec<NodePublicKey> {
        self.by_key.keys().copied().collect()
    }

    pub fn remove_peer(&mut self, key: &NodePublicKey) -> bool {
        let Some(id) = self.by_key.remove(key) else {
            return false;
        };
        if let Some(peer) = self.peers.remove(&id) {
            self.routes.remove_owned(&peer.config.allowed_ips, &id);
        }
        // Prefixes the removed peer had taken over are not handed back:
        // re-adding the other peers restores them, as with `wg`.
        true
    }

    fn allocate_peer_id(&mut self) -> Result<PeerId, ConfigError> {
        for _ in 0..=MAX_PEER_ID {
            let id = PeerId(self.next_peer_id);
            self.next_peer_id = (self.next_peer_id + 1) & MAX_PEER_ID;
            if !self.peers.contains_key(&id) {
                return Ok(id);
            }
        }
        Err(ConfigError::TooManyPeers)
    }

    pub(crate) fn schedule_tick(&mut self, now: Instant) {
        if self.next_tick.is_none() {
            self.next_tick = Some(now + TIMER_TICK);
            self.next_limiter_reset = Some(now + RATE_LIMIT_WINDOW);
        }
    }

    /// Encrypts a packet read from the TUN into `out` (which must hold the
    /// packet plus 32 bytes, and at least 148). `Ok(None)` means the packet
    /// waits for a handshake that is under way. A source in a mapped prefix
    /// of this node's site is rewritten in `packet` first.
    pub fn handle_tun_packet(
        &mut self,
        packet: &mut [u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<Option<Send>, PacketError> {
        self.counters.tun_rx_packets += 1;
        let Some(destination) = packet::destination(packet) else {
            self.counters.dropped_invalid += 1;
            return Err(PacketError::NotIp);
        };
        let Some(&id) = self.routes.lookup(destination) else {
            self.counters.dropped_no_route += 1;
            return Err(PacketError::NoRoute(destination));
        };
        let need = (packet.len() + DATA_OVERHEAD).max(MIN_OUTPUT_BUFFER);
        if out.len() < need {
            return Err(PacketError::BufferTooSmall {
                have: out.len(),
                need,
            });
        }
        // Before the filter, which sees the mapped source inbound too.
        self.site_nat.translate_outbound(packet);
        if let Err(e) = crate::filter::check(&mut self.filter, Direction::Outbound, packet, now) {
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.counters.dropped_filter += 1;
            }
            return Err(e);
        }
        self.schedule_tick(now);
        let Some(peer) = self.peers.get_mut(&id) else {
            self.counters.dropped_no_route += 1;
            return Err(PacketError::NoRoute(destination));
        };
        match peer.session.encapsulate(packet, out) {
            Ok(SessionOutput::Network(len)) => match peer.via {
                Some(to) => {
                    peer.count_tx(len, to);
                    to.count_tx(&mut self.counters, len);
                    Ok(Some(Send {
                        peer: id,
                        to,
                        src_ip: peer.src_ip(),
                        len,
                    }))
                }
                None => {
                    peer.counters.dropped_no_endpoint += 1;
                    self.counters.dropped_no_endpoint += 1;
                    Err(PacketError::NoEndpoint(peer.config.public_key))
                }
            },
            Ok(SessionOutput::Done | SessionOutput::Tunnel { .. }) => Ok(None),
            Err(e) => Err(PacketError::WireGuard(e)),
        }
    }

    /// Runs the timers that are due: handshake retries, rekeys, keepalives, expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(filter) = &mut self.filter {
            filter.handle_timeout(now);
        }
        if self.next_limiter_reset.is_some_and(|t| now >= t) {
            self.limiter.reset_count();
            self.next_limiter_reset = Some(now + RATE_LIMIT_WINDOW);
        }
        let Some(due) = self.next_tick else {
            return;
        };
        if now < due {
            return;
        }
        self.next_tick = Some(now + TIMER_TICK);
        self.handle_disco_timers(now);
        self.handle_birthday_timers(now);
        self.handle_stun_timers(now);
        for peer in self.peers.values_mut() {
            match peer.session.update_timers(&mut self.scratch) {
                Ok(SessionOutput::Network(len)) => {
                    if let Some(to) = peer.via {
                        let payload = &self.scratch[..len];
                        queue_transmit(peer, to, payload, &mut self.counters, &mut self.transmits);
                    }
                }
                Err(WireGuardError::ConnectionExpired) if !peer.expired => {
                    peer.expired = true;
                    self.events.push_back(Event::SessionExpired {
                        peer: peer.config.public_key,
                    });
                }
                _ => {}
            }
        }
    }

    /// When the engine next wants `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let filter = self.filter.as_ref().and_then(Filter::poll_timeout);
        [self.next_tick, self.next_limiter_reset, filter]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn peers(&self, now: Instant) -> Vec<PeerSnapshot> {
        self.peers
            .iter()
            .map(|(id, peer)| PeerSnapshot {
                path: peer.path_kind(),
                latency: peer.paths.as_ref().and_then(|p| p.latency(now)),
                id: *id,
                public_key: peer.config.public_key,
                allowed_ips: peer.config.allowed_ips.clone(),
                endpoint: peer.endpoint,
                since_last_handshake: peer.session.time_since_last_handshake(),
                rx_bytes: peer.rx_bytes,
                tx_bytes: peer.tx_bytes,
                persistent_keepalive: peer.config.persistent_keepalive,
                counters: peer.counters,
            })
            .collect()
    }

    pub(crate) fn peer_id(&self, key: &NodePublicKey) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    pub(crate) fn peer_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(&id)
    }

    pub(crate) fn peers_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.peers.values_mut()
    }

    pub(crate) fn peers_iter_mut(&mut self) -> impl Iterator<Item = (PeerId, &mut Peer)> {
        self.peers.iter_mut().map(|(id, p)| (*id, p))
    }

    pub(crate) fn stun(&self) -> &crate::stun::StunState {
        &self.stun
    }

    pub(crate) fn stun_mut(&mut self) -> &mut crate::stun::StunState {
        &mut self.stun
    }

    pub(crate) fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    pub(crate) fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    pub(crate) fn push_transmit(&mut self, transmit: Transmit) {
        self.transmits.push_back(transmit);
    }

    /// The peer that serves `destination`, if any.
    pub fn route(&self, destination: IpAddr) -> Option<NodePublicKey> {
        let id = self.routes.lookup(destination)?;
        self.peers.get(id).map(|p| p.config.public_key)
    }
}

enum Found {
    Peer(PeerId),
    CookieReply(usize),
}
