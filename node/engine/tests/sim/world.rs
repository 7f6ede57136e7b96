//! The simulated world: engines on one virtual clock, joined by links with latency, loss and an MTU.
//!
//! Datagrams go to whichever node owns the destination address when they
//! arrive, so a node that moves (roams) stops receiving at its old address and
//! sends from its new one. A node may sit behind a NAT ([`crate::nat`]): its
//! packets are mapped as they leave and filtered as they arrive, and its
//! private address is reachable only from its own LAN. Everything the links
//! and the relay carry is recorded in [`World::wire`], so that a test can
//! count handshakes or replay a datagram.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use mock_instant::MockClock;
use warren_engine::{
    Engine, EngineConfig, Event, NetworkAction, PacketError, PeerConfig, PeerSnapshot,
    DATA_OVERHEAD,
};
use warren_proto::{NodePrivateKey, NodePublicKey};

use crate::control::{ControlMsg, Controller};
use crate::ip;
use crate::link::{Link, Scheduled, Wire};
use crate::nat::Nat;
use crate::rng::Rng;

/// boringtun's mock clock starts here rather than at zero, because boringtun
/// subtracts durations from "now" and a zero `Instant` would underflow.
const CLOCK_OFFSET: Duration = Duration::from_secs(3600);
/// Room for the largest UDP payload, which is what the engine asks of `out`.
const BUFFER_LEN: usize = 65_536 + DATA_OVERHEAD;

/// Index of a node in the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeId(pub(crate) usize);

/// Index of a NAT box in the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NatId(pub(crate) usize);

/// What the world has in flight.
pub(crate) enum Delivery {
    Udp {
        from: SocketAddr,
        to: SocketAddr,
        payload: Vec<u8>,
    },
    Relay {
        from: NodeId,
        to: NodeId,
        payload: Vec<u8>,
    },
    /// The controller tells a node something (a netmap change, a call-me-maybe).
    Control(NodeId, ControlMsg),
}

/// A node: one engine, its underlay address and what it handed to its TUN.
pub struct Node {
    pub name: &'static str,
    pub engine: Engine,
    pub addr: SocketAddr,
    pub overlay4: Ipv4Addr,
    pub overlay6: Ipv6Addr,
    /// IP packets the engine delivered to the TUN, in order.
    pub tun: Vec<Vec<u8>>,
    pub events: Vec<(Duration, Event)>,
    /// Datagrams from the links that the engine refused.
    pub errors: Vec<(Duration, PacketError)>,
    /// The NAT in front of the node, if any.
    pub nat: Option<NatId>,
    /// What the STUN servers saw, as the shell keeps it.
    pub reflexive: BTreeMap<SocketAddr, SocketAddr>,
    /// The endpoints the shell reports: its own address and the reflexive ones.
    pub endpoints: Vec<SocketAddr>,
}

pub struct World {
    seed: u64,
    /// The engines' `now` is `t0 + now`; boringtun's is `CLOCK_OFFSET + now`.
    t0: Instant,
    pub(crate) now: Duration,
    pub(crate) nodes: Vec<Node>,
    pub(crate) default_link: Link,
    pub(crate) links: BTreeMap<(NodeId, NodeId), Link>,
    /// Between two nodes behind the same NAT.
    pub lan_link: Link,
    pub(crate) nats: Vec<Nat>,
    queue: BinaryHeap<Reverse<Scheduled<Delivery>>>,
    next_seq: u64,
    pub(crate) rng: Rng,
    pub(crate) wire: Vec<Wire>,
    pub(crate) buf: Vec<u8>,
    pub(crate) controller: Option<Controller>,
    /// (node, peer): `node` has `peer` as a disco peer from the controller's netmap.
    pub(crate) disco_peers: BTreeSet<(NodeId, NodeId)>,
}

impl World {
    /// A world with no nodes. `seed` fixes the keys, the peer ids and every loss.
    pub fn new(seed: u64) -> Self {
        // The clock is thread-local: each test thread gets its own.
        MockClock::set_time(CLOCK_OFFSET);
        Self {
            seed,
            t0: Instant::now(),
            now: Duration::ZERO,
            nodes: Vec::new(),
            default_link: Link::default(),
            links: BTreeMap::new(),
            lan_link: Link {
                latency: Duration::from_millis(1),
                ..Link::default()
            },
            nats: Vec::new(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            rng: Rng::new(seed),
            wire: Vec::new(),
            buf: vec![0; BUFFER_LEN],
            controller: None,
            disco_peers: BTreeSet::new(),
        }
    }

    /// Adds a node whose key and first peer id derive from the seed and its index.
    pub fn add_node(&mut self, name: &'static str, addr: SocketAddr, overlay4: Ipv4Addr) -> NodeId {
        let mut rng =
            Rng::new(self.seed ^ (self.nodes.len() as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f));
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let engine = Engine::new(EngineConfig::new(
            NodePrivateKey::from_bytes(key),
            Box::new(rng.clone()),
        ));
        let host = u16::from(overlay4.octets()[3]);
        self.nodes.push(Node {
            name,
            engine,
            addr,
            overlay4,
            overlay6: Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, host),
            tun: Vec::new(),
            events: Vec::new(),
            errors: Vec::new(),
            nat: None,
            reflexive: BTreeMap::new(),
            endpoints: vec![addr],
        });
        NodeId(self.nodes.len() - 1)
    }

    /// Adds a NAT box; its port choices derive from the seed and its index.
    pub fn add_nat(&mut self, public_ip: IpAddr, behaviour: crate::nat::Behaviour) -> NatId {
        let seed = self.seed ^ (self.nats.len() as u64 + 1).wrapping_mul(0x5851_f42d_4c95_7f2d);
        self.nats.push(Nat::new(public_ip, behaviour, seed));
        NatId(self.nats.len() - 1)
    }

    /// Puts `node` (whose address should be private) behind `nat`.
    pub fn place_behind(&mut self, node: NodeId, nat: NatId) {
        self.nodes[node.0].nat = Some(nat);
    }

    pub fn nat(&self, nat: NatId) -> &Nat {
        &self.nats[nat.0]
    }

    pub fn nat_mut(&mut self, nat: NatId) -> &mut Nat {
        &mut self.nats[nat.0]
    }

    /// How `node` would be configured as a peer: its endpoint and both overlay addresses.
    pub fn peer_config(&self, node: NodeId) -> PeerConfig {
        let n = self.node(node);
        PeerConfig::fixed(
            n.engine.public_key(),
            Some(n.addr),
            vec![
                IpNet::from(IpAddr::V4(n.overlay4)),
                IpNet::from(IpAddr::V6(n.overlay6)),
            ],
            None,
        )
    }

    pub fn add_peer(&mut self, node: NodeId, config: PeerConfig) {
        let now = self.instant();
        self.nodes[node.0]
            .engine
            .add_peer(config, now)
            .expect("the simulation configures valid peers");
        self.drain(node.0);
    }

    /// Makes `a` and `b` peers of each other, each knowing the other's endpoint.
    pub fn connect(&mut self, a: NodeId, b: NodeId) {
        self.add_peer(a, self.peer_config(b));
        self.add_peer(b, self.peer_config(a));
    }

    pub fn set_default_link(&mut self, link: Link) {
        self.default_link = link;
    }

    /// Sets the link both ways between `a` and `b`.
    pub fn set_link(&mut self, a: NodeId, b: NodeId, link: Link) {
        self.set_link_one_way(a, b, link);
        self.set_link_one_way(b, a, link);
    }

    /// Sets the link from `from` to `to` only.
    pub fn set_link_one_way(&mut self, from: NodeId, to: NodeId, link: Link) {
        self.links.insert((from, to), link);
    }

    /// Moves a node to a new underlay address, as a NAT rebinding or a network change would.
    pub fn move_node(&mut self, node: NodeId, addr: SocketAddr) {
        self.nodes[node.0].addr = addr;
    }

    /// Virtual time since the world was created.
    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn node(&self, node: NodeId) -> &Node {
        &self.nodes[node.0]
    }

    pub fn engine(&self, node: NodeId) -> &Engine {
        &self.nodes[node.0].engine
    }

    pub fn tun(&self, node: NodeId) -> &[Vec<u8>] {
        &self.nodes[node.0].tun
    }

    /// The sequence numbers of what `node` received on its TUN, in order.
    pub fn received(&self, node: NodeId) -> Vec<u32> {
        self.tun(node).iter().map(|p| ip::seq(p)).collect()
    }

    pub fn count_events(&self, node: NodeId, wanted: impl Fn(&Event) -> bool) -> usize {
        self.node(node)
            .events
            .iter()
            .filter(|(_, e)| wanted(e))
            .count()
    }

    pub fn handshakes_completed(&self, node: NodeId) -> usize {
        self.count_events(node, |e| matches!(e, Event::HandshakeCompleted { .. }))
    }

    /// Everything the links carried, in the order it was delivered or dropped.
    pub fn wire(&self) -> &[Wire] {
        &self.wire
    }

    /// Handshake initiations sent by anyone, directly or through the relay, whatever became of them.
    pub fn initiations(&self) -> usize {
        self.wire.iter().filter(|w| w.message_type() == 1).count()
    }

    /// What `node` knows about its peer `of`.
    pub fn peer(&self, node: NodeId, of: NodeId) -> PeerSnapshot {
        let key: NodePublicKey = self.engine(of).public_key();
        self.engine(node)
            .peers(self.instant())
            .into_iter()
            .find(|p| p.public_key == key)
            .expect("the nodes are peers")
    }

    /// An app on `node` writes `packet` to its TUN.
    pub fn send_ip(&mut self, node: NodeId, packet: &[u8]) -> Result<(), PacketError> {
        let now = self.instant();
        // The engine may rewrite it (a site's mapped source), as on a TUN read.
        let mut packet = packet.to_vec();
        let result = self.nodes[node.0]
            .engine
            .handle_tun_packet(&mut packet, &mut self.buf, now);
        if let Ok(Some(send)) = &result {
            let payload = self.buf[..send.len].to_vec();
            self.send_via(node.0, send.to, payload);
        }
        self.drain(node.0);
        result.map(|_| ())
    }

    /// Sends `seq` in an IPv4 packet from `from`'s overlay address to `to`'s.
    pub fn send_app(&mut self, from: NodeId, to: NodeId, seq: u32) {
        let (src, dst) = (self.node(from).overlay4, self.node(to).overlay4);
        self.send_ip(from, &ip::packet(src.into(), dst.into(), seq))
            .expect("the destination is routed to a peer");
    }

    /// Hands `payload` straight to the node owning `to`, as an attacker on the
    /// path would, bypassing the links and the wire record.
    pub fn inject(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
    ) -> Result<NetworkAction, PacketError> {
        let node = self.owner(to).expect("some node owns the address");
        self.receive(node.0, from, payload)
    }

    /// Runs the world for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        while self.step(deadline) {}
    }

    /// Runs until `done` holds (true) or `limit` of virtual time passed (false).
    pub fn run_until(&mut self, done: impl Fn(&World) -> bool, limit: Duration) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(deadline) {
                return done(self);
            }
        }
    }

    /// Does the next thing due by `deadline`: a delivery, else the due timers.
    /// Returns false, with the clock at `deadline`, when nothing is due.
    fn step(&mut self, deadline: Duration) -> bool {
        let next_datagram = self.queue.peek().map(|Reverse(d)| d.at);
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.engine.poll_timeout())
            .map(|t| t.saturating_duration_since(self.t0))
            .min();
        let next = match (next_datagram, next_timer) {
            (Some(d), Some(t)) => d.min(t),
            (d, t) => d.or(t).unwrap_or(Duration::MAX),
        };
        if next > deadline {
            self.set_clock(deadline);
            return false;
        }
        self.set_clock(next.max(self.now));
        if next_datagram.is_some_and(|d| d <= next) {
            if let Some(Reverse(due)) = self.queue.pop() {
                match due.what {
                    Delivery::Udp { from, to, payload } => self.deliver(from, to, payload),
                    Delivery::Relay { from, to, payload } => {
                        self.deliver_relayed(from, to, payload)
                    }
                    Delivery::Control(to, msg) => self.apply_control(to, msg),
                }
            }
            return true;
        }
        let now = self.instant();
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .engine
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.nodes[i].engine.handle_timeout(now);
                // A timer that stays due would spin a real shell's event loop.
                let after = self.nodes[i].engine.poll_timeout();
                assert!(
                    after.is_none_or(|t| t > now),
                    "{}: poll_timeout() still due after handle_timeout()",
                    self.nodes[i].name
                );
                self.drain(i);
            }
        }
        true
    }

    fn set_clock(&mut self, now: Duration) {
        self.now = now;
        MockClock::set_time(CLOCK_OFFSET + now);
    }

    pub(crate) fn instant(&self) -> Instant {
        self.t0 + self.now
    }

    pub(crate) fn owner(&self, addr: SocketAddr) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.addr == addr).map(NodeId)
    }

    pub(crate) fn schedule(&mut self, at: Duration, what: Delivery) {
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.next_seq,
            what,
        }));
        self.next_seq += 1;
    }
}
