//! The engine's datagram path, driven as a sequence: node B's engine (under
//! test) gets datagrams off its UDP socket and the relay, and its peer A's
//! engine makes real WireGuard and disco traffic for the fuzzer to send,
//! cut, replay and corrupt. What either engine wants sent goes to the
//! other, so handshakes complete and sessions carry data.
//!
//! Each step starts with an opcode byte:
//! - 0: raw datagram to B from A's address, a stranger or the STUN server;
//! - 1: raw datagram to B through the relay, from A or from a stranger;
//! - 2: an IPv4 packet into A's TUN (source A or a spoofed one); what A
//!   sends goes to B;
//! - 3: time passes for both (by a byte's worth of 50 ms steps);
//! - 4: the last datagram A sent, with one byte changed, to B;
//! - 5: the last datagram A sent again, from A's address or another one;
//! - 6: a disco ping or pong sealed by A, to B by UDP or the relay;
//! - 7: an answer to B's last STUN request, with a mapped address;
//! - 8: a call-me-maybe from A with candidates;
//! - 9: an IPv4 packet into B's TUN, for A.
//!
//! B never panics; what it writes fits its buffer; a packet it delivers
//! to its TUN comes from an address routed to the peer that sent it, and
//! never through the relay under another peer's key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use warren_engine::{Engine, EngineConfig, NetworkAction, PeerConfig, Send, Via, DATA_OVERHEAD};
use warren_proto::control::NatHint;
use warren_proto::disco::{self, DiscoKey, DiscoMessage};
use warren_proto::{stun, NodePrivateKey, NodePublicKey};

#[allow(dead_code)]
#[path = "../../node/engine/tests/sim/rng.rs"]
mod rng;

/// The agent's scratch buffer: room for any WireGuard datagram.
const SCRATCH: usize = 65_536 + DATA_OVERHEAD;
/// Datagrams passed back and forth per step at most (the engines can ping-pong).
const EXCHANGES: usize = 16;

const A_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 51820);
const B_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)), 51820);
const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66)), 4444);
const STUN_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 3478);
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 147, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 147, 0, 2);

struct World {
    a: Engine,
    b: Engine,
    a_key: NodePublicKey,
    stranger_key: NodePublicKey,
    /// What A seals disco messages to B with.
    disco_ab: DiscoKey,
    now: Instant,
    /// The last datagram A sent towards B.
    last: Vec<u8>,
    /// The last STUN request B sent.
    stun_tx: Option<stun::StunTxId>,
    out: Vec<u8>,
}

/// Reads the fuzzer's bytes, with zeros past the end.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken.to_vec()
    }

    /// A length-prefixed slice (two bytes of length).
    fn chunk(&mut self) -> Vec<u8> {
        let len = u16::from_be_bytes([self.byte(), self.byte()]);
        self.bytes(usize::from(len))
    }

    fn addr(&mut self) -> SocketAddr {
        let b = self.bytes(6);
        let mut o = [0u8; 6];
        o[..b.len()].copy_from_slice(&b);
        SocketAddr::from(([o[0], o[1], o[2], o[3]], u16::from_be_bytes([o[4], o[5]])))
    }
}

pub fn run(data: &[u8]) {
    let mut world = World::new();
    let mut input = Cursor(data);
    while !input.0.is_empty() {
        world.step(&mut input);
    }
}

fn engine(seed: u8, peer: NodePublicKey, peer_ip: Ipv4Addr, peer_at: SocketAddr) -> Engine {
    let mut config = EngineConfig::new(
        NodePrivateKey::from_bytes([seed; 32]),
        Box::new(rng::Rng::new(u64::from(seed))),
    );
    config.clock_ms = 1_764_000_000_000;
    let mut engine = Engine::new(config);
    let now = Instant::now();
    engine
        .add_peer(
            PeerConfig {
                public_key: peer,
                endpoint: None,
                allowed_ips: vec![ipnet::IpNet::from(ipnet::Ipv4Net::from(peer_ip))],
                persistent_keepalive: Some(Duration::from_secs(25)),
                disco: true,
                candidates: vec![peer_at],
            },
            now,
        )
        .expect("a valid peer");
    engine.set_relay_available(true, now);
    engine
}

impl World {
    fn new() -> World {
        let a_private = NodePrivateKey::from_bytes([0xa1; 32]);
        let b_private = NodePrivateKey::from_bytes([0xb2; 32]);
        let (a_key, b_key) = (a_private.public_key(), b_private.public_key());
        let now = Instant::now();
        let a = engine(0xa1, b_key, B_IP, B_ADDR);
        let mut b = engine(0xb2, a_key, A_IP, A_ADDR);
        b.set_stun_servers(vec![STUN_SERVER], now);
        World {
            a,
            b,
            a_key,
            stranger_key: NodePrivateKey::from_bytes([0x66; 32]).public_key(),
            disco_ab: DiscoKey::derive(&a_private, &b_key).expect("contributory keys"),
            now,
            last: Vec::new(),
            stun_tx: None,
            out: vec![0; SCRATCH],
        }
    }

    fn step(&mut self, input: &mut Cursor) {
        match input.byte() % 10 {
            0 => {
                let from = [A_ADDR, STRANGER, STUN_SERVER][usize::from(input.byte() % 3)];
                let datagram = input.chunk();
                self.deliver_to_b(Via::Udp(from), &datagram);
            }
            1 => {
                let from = if input.byte() & 1 == 0 {
                    self.a_key
                } else {
                    self.stranger_key
                };
                let datagram = input.chunk();
                self.deliver_to_b(Via::Relay(from), &datagram);
            }
            2 => {
                let source = if input.byte() & 1 == 0 {
                    A_IP
                } else {
                    Ipv4Addr::new(10, 147, 0, 9)
                };
                let mut packet = ipv4(source, B_IP, &input.chunk());
                let mut out = vec![0; SCRATCH];
                if let Ok(Some(Send { to, len, .. })) =
                    self.a.handle_tun_packet(&mut packet, &mut out, self.now)
                {
                    self.last = out[..len].to_vec();
                    let datagram = self.last.clone();
                    self.deliver_to_b(seen_from_a(to, self.a_key), &datagram);
                }
            }
            3 => {
                self.now += Duration::from_millis(50) * u32::from(input.byte());
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
            4 => {
                let at = usize::from(u16::from_be_bytes([input.byte(), input.byte()]));
                let xor = input.byte().max(1);
                let mut datagram = self.last.clone();
                let at = at % datagram.len().max(1);
                if let Some(b) = datagram.get_mut(at) {
                    *b ^= xor;
                }
                self.deliver_to_b(Via::Udp(A_ADDR), &datagram);
            }
            5 => {
                let from = if input.byte() & 1 == 0 {
                    A_ADDR
                } else {
                    input.addr()
                };
                let datagram = self.last.clone();
                self.deliver_to_b(Via::Udp(from), &datagram);
            }
            6 => {
                let kind = input.byte();
                let mut tx = [0u8; 12];
                let b = input.bytes(12);
                tx[..b.len()].copy_from_slice(&b);
                let message = if kind & 1 == 0 {
                    let mut at = [0u8; 8];
                    let b = input.bytes(8);
                    at[..b.len()].copy_from_slice(&b);
                    DiscoMessage::Ping {
                        tx,
                        sent_at: u64::from_be_bytes(at),
                    }
                } else {
                    DiscoMessage::Pong {
                        tx,
                        observed: input.addr(),
                    }
                };
                let nonce = [input.byte(); 12];
                let datagram = disco::encode(&self.disco_ab, &self.a_key, nonce, &message);
                let via = match kind & 6 {
                    0 => Via::Relay(self.a_key),
                    2 => Via::Udp(A_ADDR),
                    _ => Via::Udp(input.addr()),
                };
                self.last = datagram.clone();
                self.deliver_to_b(via, &datagram);
            }
            7 => {
                let from = if input.byte() & 1 == 0 {
                    STUN_SERVER
                } else {
                    STRANGER
                };
                let mapped = input.addr();
                if let Some(tx) = self.stun_tx {
                    self.deliver_to_b(Via::Udp(from), &stun::binding_response(&tx, mapped));
                }
            }
            8 => {
                let n = usize::from(input.byte() % 8);
                let candidates: Vec<SocketAddr> = (0..n).map(|_| input.addr()).collect();
                let nat = match input.byte() % 3 {
                    0 => None,
                    1 => Some(NatHint::Independent),
                    _ => Some(NatHint::PerDestination {
                        ip: input.addr().ip(),
                    }),
                };
                self.b
                    .handle_call_me_maybe(self.a_key, &candidates, nat, self.now);
                // A spray is bounded whatever the peer says.
                while let Some(birthday) = self.b.poll_birthday() {
                    if let warren_engine::Birthday::Spray { ports, .. } = birthday {
                        assert!(ports <= warren_engine::birthday::SPRAY_PORTS);
                    }
                }
            }
            _ => {
                let mut packet = ipv4(B_IP, A_IP, &input.chunk());
                let mut out = vec![0; SCRATCH];
                if let Ok(Some(Send { len, .. })) =
                    self.b.handle_tun_packet(&mut packet, &mut out, self.now)
                {
                    assert!(len <= out.len());
                    let datagram = out[..len].to_vec();
                    self.deliver_to_a(Via::Udp(B_ADDR), &datagram, 0);
                }
            }
        }
        self.exchange();
    }

    /// B handles a datagram; what it answers goes to A.
    fn deliver_to_b(&mut self, via: Via, datagram: &[u8]) {
        self.deliver_to_b_at(via, datagram, 0);
    }

    fn deliver_to_b_at(&mut self, via: Via, datagram: &[u8], depth: usize) {
        let result = match via {
            Via::Udp(from) => self.b.handle_network_packet(
                from,
                Some(B_ADDR.ip()),
                datagram,
                &mut self.out,
                self.now,
            ),
            Via::Relay(from) => self
                .b
                .handle_relay_packet(from, datagram, &mut self.out, self.now),
        };
        match result {
            Ok(NetworkAction::Tunnel { len }) => {
                assert!(len <= self.out.len());
                let packet = &self.out[..len];
                let source = source(packet).expect("the TUN gets IP packets");
                assert_eq!(
                    self.b.route(source),
                    Some(self.a_key),
                    "delivered from {source}"
                );
                if let Via::Relay(key) = via {
                    assert_eq!(key, self.a_key, "the relay vouches for the sender");
                }
            }
            Ok(NetworkAction::Reply { to, len }) => {
                assert!(len <= self.out.len());
                let reply = self.out[..len].to_vec();
                if depth < EXCHANGES && to == via {
                    let from_b = self.seen_from_b(to);
                    self.deliver_to_a(from_b, &reply, depth + 1);
                }
            }
            Ok(NetworkAction::Nothing) | Err(_) => {}
        }
    }

    /// A handles a datagram from B; what it answers goes back to B.
    fn deliver_to_a(&mut self, via: Via, datagram: &[u8], depth: usize) {
        let mut out = vec![0; SCRATCH];
        let result = match via {
            Via::Udp(from) => {
                self.a
                    .handle_network_packet(from, Some(A_ADDR.ip()), datagram, &mut out, self.now)
            }
            Via::Relay(from) => self
                .a
                .handle_relay_packet(from, datagram, &mut out, self.now),
        };
        if let Ok(NetworkAction::Reply { to, len }) = result {
            if depth < EXCHANGES {
                self.last = out[..len].to_vec();
                let reply = self.last.clone();
                self.deliver_to_b_at(seen_from_a(to, self.a_key), &reply, depth + 1);
            }
        }
    }

    /// Everything the engines queued goes to the other one, a few rounds at most.
    fn exchange(&mut self) {
        for _ in 0..EXCHANGES {
            let mut moved = false;
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                assert!(!t.payload.is_empty() && t.payload.len() <= SCRATCH);
                match t.to {
                    Via::Udp(STUN_SERVER) => {
                        self.stun_tx = stun::parse_request(&t.payload).ok().or(self.stun_tx);
                    }
                    Via::Udp(A_ADDR) | Via::Relay(_) => {
                        let from_b = self.seen_from_b(t.to);
                        self.deliver_to_a(from_b, &t.payload, EXCHANGES)
                    }
                    Via::Udp(_) => {}
                }
            }
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                self.last = t.payload.clone();
                self.deliver_to_b_at(seen_from_a(t.to, self.a_key), &t.payload, EXCHANGES);
            }
            while self.b.poll_event().is_some() {}
            while self.a.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }
}

impl World {
    /// Where a datagram B sends `to` arrives from, as A sees it.
    fn seen_from_b(&self, to: Via) -> Via {
        match to {
            Via::Udp(_) => Via::Udp(B_ADDR),
            Via::Relay(_) => Via::Relay(self.b.public_key()),
        }
    }
}

/// Where a datagram A sends `to` arrives from, as B sees it.
fn seen_from_a(to: Via, a_key: NodePublicKey) -> Via {
    match to {
        Via::Udp(_) => Via::Udp(A_ADDR),
        Via::Relay(_) => Via::Relay(a_key),
    }
}

/// An IPv4 packet: a 20-byte header with a valid length, then `payload`.
fn ipv4(source: Ipv4Addr, destination: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(1400)];
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let protocol = payload
        .first()
        .map_or(17, |p| [1, 6, 17][usize::from(*p % 3)]);
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&destination.octets());
    packet.extend_from_slice(payload);
    packet
}

/// The source address of an IP packet.
fn source(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(packet.get(12..16)?).ok()?)),
        6 => Some(IpAddr::from(<[u8; 16]>::try_from(packet.get(8..24)?).ok()?)),
        _ => None,
    }
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("engine", 0);

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let chunk = |bytes: &[u8]| [&(bytes.len() as u16).to_be_bytes()[..], bytes].concat();
    let tun_a = |spoofed: u8, payload: &[u8]| [&[2, spoofed][..], &chunk(payload)].concat();
    let tun_b = |payload: &[u8]| [&[9][..], &chunk(payload)].concat();
    let udp_payload = [17u8, 0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, b'h', b'i', b'!'];
    let addr = [198, 51, 100, 9, 0xca, 0x6c];
    let handshake = [tun_a(0, &udp_payload), vec![3, 1], tun_b(&udp_payload)].concat();
    let ping = [
        &[6, 0][..],
        &[1; 12],
        &[0, 0, 1, 0x9a, 0xc5, 0x1e, 0x5c, 0],
        &[4],
    ]
    .concat();
    let pong = [&[6, 3][..], &[2; 12], &addr, &[5]].concat();
    vec![
        ("handshake-and-data", handshake.clone()),
        (
            "replay-corrupt-roam",
            [
                handshake.clone(),
                tun_a(0, &udp_payload),
                vec![5, 0],
                vec![4, 0, 20, 0x80],
                [&[5, 1][..], &addr].concat(),
            ]
            .concat(),
        ),
        (
            "spoofed-source",
            [handshake.clone(), tun_a(1, &udp_payload)].concat(),
        ),
        (
            "disco",
            [
                ping,
                pong,
                vec![8, 2],
                addr.to_vec(),
                addr.to_vec(),
                vec![3, 200],
            ]
            .concat(),
        ),
        (
            "stun",
            [
                vec![3, 1],
                vec![7, 0],
                addr.to_vec(),
                vec![7, 1],
                addr.to_vec(),
            ]
            .concat(),
        ),
        (
            "strangers",
            [
                vec![0, 1],
                chunk(&[1, 0, 0, 0, 9, 9, 9, 9]),
                vec![1, 1],
                chunk(&[4, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]),
                vec![1, 0],
                chunk(&[]),
            ]
            .concat(),
        ),
        (
            "timers",
            [handshake, vec![3, 255, 3, 255, 3, 255, 3, 255]].concat(),
        ),
    ]
}
