//! Hostile input: replayed datagrams, spoofed inner sources, garbage, keys nobody configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use warren_engine::{PacketError, DATA_OVERHEAD};

use crate::link::Fate;
use crate::rng::Rng;
use crate::world::{NodeId, World};
use crate::{addr, establish, ip, ms, secs, two_nodes};

/// The last datagram `from` delivered to `to` with the given message type and more than `min_len` bytes.
fn captured(world: &World, from: NodeId, to: NodeId, kind: u8, min_len: usize) -> Vec<u8> {
    let (from, to) = (world.node(from).addr, world.node(to).addr);
    world
        .wire()
        .iter()
        .rfind(|w| {
            w.from == from
                && w.to == to
                && w.fate == Fate::Delivered
                && w.message_type() == kind
                && w.payload.len() > min_len
        })
        .expect("such a datagram was delivered")
        .payload
        .clone()
}

#[test]
fn replayed_data_and_handshakes_are_refused() {
    let (mut world, a, b) = two_nodes(21);
    establish(&mut world, a, b);
    for seq in 1..=3 {
        world.send_app(a, b, seq);
        world.run_for(ms(100));
    }
    let (a_addr, b_addr) = (world.node(a).addr, world.node(b).addr);
    let data = captured(&world, a, b, 4, DATA_OVERHEAD);
    let initiation = captured(&world, a, b, 1, 0);

    let replay = world.inject(a_addr, b_addr, &data);
    assert!(matches!(replay, Err(PacketError::Replay)), "{replay:?}");
    assert_eq!(world.engine(b).counters().dropped_replay, 1);

    for seq in 4..=10 {
        world.send_app(a, b, seq);
        world.run_for(secs(1));
    }
    let replay = world.inject(a_addr, b_addr, &data);
    assert!(matches!(replay, Err(PacketError::Replay)), "{replay:?}");
    assert_eq!(world.engine(b).counters().dropped_replay, 2);

    // A replayed initiation carries an old timestamp: no new session, no response.
    let responses = |w: &World| w.wire().iter().filter(|d| d.message_type() == 2).count();
    let before = (responses(&world), world.handshakes_completed(b));
    let invalid = world.engine(b).counters().dropped_invalid;
    let attacker = addr("203.0.113.66:4444");
    for from in [a_addr, attacker] {
        let replay = world.inject(from, b_addr, &initiation);
        assert!(
            matches!(replay, Err(PacketError::WireGuard(_))),
            "{replay:?}"
        );
    }
    world.run_for(secs(1));
    assert_eq!((responses(&world), world.handshakes_completed(b)), before);
    assert_eq!(world.engine(b).counters().dropped_invalid, invalid + 2);
    assert_eq!(
        world.peer(b, a).endpoint,
        Some(a_addr),
        "a replay does not move the endpoint"
    );

    // Past the 1024-packet window the counter is simply too old.
    for burst in 0..11 {
        for seq in 11 + burst * 100..11 + (burst + 1) * 100 {
            world.send_app(a, b, seq);
        }
        world.run_for(ms(10));
    }
    world.run_for(ms(50));
    let replay = world.inject(a_addr, b_addr, &data);
    assert!(matches!(replay, Err(PacketError::Replay)), "{replay:?}");
    assert_eq!(world.engine(b).counters().dropped_replay, 3);

    let expected: Vec<u32> = (0..1111).collect();
    assert_eq!(
        world.received(b),
        expected,
        "nothing delivered twice, and the session lives on"
    );
    assert_eq!(world.initiations(), 1);
}

#[test]
fn packets_from_outside_a_peers_allowed_ips_are_dropped() {
    let (mut world, a, b) = two_nodes(22);
    let c = world.add_node("c", addr("203.0.113.3:51820"), Ipv4Addr::new(10, 99, 0, 3));
    world.connect(a, c);
    world.connect(b, c);
    establish(&mut world, a, b);
    let (a4, a6) = (world.node(a).overlay4, world.node(a).overlay6);
    // b's engine routes by destination only, so it encrypts whatever source it is given.
    let spoofed: [(IpAddr, IpAddr); 3] = [
        (Ipv4Addr::new(10, 99, 0, 77).into(), a4.into()),
        (world.node(c).overlay4.into(), a4.into()), // another peer's address
        (
            Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x77).into(),
            a6.into(),
        ),
    ];
    for (seq, (src, dst)) in (1..).zip(spoofed) {
        world
            .send_ip(b, &ip::packet(src, dst, seq))
            .expect("routed to a");
    }
    world.run_for(ms(50));
    assert_eq!(world.received(a), [0], "no spoofed packet reached a's TUN");
    assert_eq!(world.engine(a).counters().dropped_spoofed, 3);
    let refused = world.node(a).errors.iter();
    assert_eq!(
        refused
            .filter(|(_, e)| matches!(e, PacketError::Spoofed { .. }))
            .count(),
        3
    );

    world.send_app(b, a, 4);
    world.run_for(ms(50));
    assert_eq!(world.received(a), [0, 4], "b's own source is accepted");
}

#[test]
fn garbage_datagrams_are_counted_and_the_tunnel_survives() {
    const PER_NODE: usize = 3000;
    let (mut world, a, b) = two_nodes(23);
    establish(&mut world, a, b);
    for seq in 1..=5 {
        world.send_app(a, b, seq);
        world.send_app(b, a, seq);
        world.run_for(ms(300));
    }
    let mut rng = Rng::new(0x6a7b);
    for node in [a, b] {
        let to = world.node(node).addr;
        let samples: Vec<Vec<u8>> = world
            .wire()
            .iter()
            .filter(|w| w.to == to && w.fate == Fate::Delivered)
            .map(|w| w.payload.clone())
            .collect();
        let before = world.engine(node).counters().clone();
        let delivered = world.tun(node).len();
        for _ in 0..PER_NODE {
            let payload = garbage(&mut rng, &samples);
            let from = SocketAddr::from((
                Ipv4Addr::from(rng.next_u64() as u32),
                1 + rng.below(65_535) as u16,
            ));
            let result = world.inject(from, to, &payload);
            assert!(
                result.is_err(),
                "garbage accepted: {result:?} for {payload:02x?}"
            );
            // Spread the flood over time so that the handshake rate limiter is not the subject.
            world.run_for(ms(1));
        }
        let after = world.engine(node).counters();
        let dropped = |c: &warren_proto::local_api::Counters| {
            c.dropped_invalid + c.dropped_replay + c.dropped_unknown_peer
        };
        assert_eq!(
            dropped(after) - dropped(&before),
            PER_NODE as u64,
            "each counted once"
        );
        assert!(after.dropped_invalid - before.dropped_invalid > PER_NODE as u64 / 2);
        assert_eq!(
            world.tun(node).len(),
            delivered,
            "{} delivered garbage",
            world.node(node).name
        );
    }
    for (node, peer) in [(a, b), (b, a)] {
        let endpoint = world.peer(node, peer).endpoint;
        assert_eq!(
            endpoint,
            Some(world.node(peer).addr),
            "garbage moved no endpoint"
        );
    }
    world.send_app(a, b, 6);
    world.send_app(b, a, 6);
    world.run_for(ms(50));
    assert_eq!(world.received(b), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(world.received(a), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(
        world.initiations(),
        1,
        "garbage never tears the session down"
    );
}

/// One hostile datagram: random bytes, a truncated or bit-flipped real
/// message, or a well-formed header (right type and length) around garbage,
/// sometimes naming a real session index.
fn garbage(rng: &mut Rng, samples: &[Vec<u8>]) -> Vec<u8> {
    let sample = &samples[rng.below(samples.len() as u64) as usize];
    match rng.below(5) {
        0 => {
            let len = rng.below(300) as usize;
            rng.bytes(len)
        }
        1 => sample[..rng.below(sample.len() as u64) as usize].to_vec(),
        2 => {
            let mut flipped = sample.clone();
            let bit = rng.below(flipped.len() as u64 * 8) as usize;
            flipped[bit / 8] ^= 1 << (bit % 8);
            flipped
        }
        kind => {
            let message_type = 1 + rng.below(4) as u8;
            let len = match message_type {
                1 => 148,
                2 => 92,
                3 => 64,
                _ => DATA_OVERHEAD + rng.below(100) as usize,
            };
            let mut message = rng.bytes(len);
            message[..4].copy_from_slice(&[message_type, 0, 0, 0]);
            // A real index makes the engine reach the session, not just its lookup table.
            if kind == 4 && sample[0] == 4 && message_type != 1 {
                let at = if message_type == 2 { 8 } else { 4 };
                message[at..at + 4].copy_from_slice(&sample[4..8]);
            }
            message
        }
    }
}

#[test]
fn handshakes_from_unknown_keys_are_refused() {
    let (mut world, a, b) = two_nodes(24);
    let c = world.add_node("c", addr("203.0.113.3:51820"), Ipv4Addr::new(10, 99, 0, 3));
    // c knows b, but b was never told about c.
    world.add_peer(c, world.peer_config(b));
    world.send_app(c, b, 1);
    world.run_for(secs(30));

    let (b_addr, c_addr) = (world.node(b).addr, world.node(c).addr);
    let tried = world
        .wire()
        .iter()
        .filter(|w| w.from == c_addr && w.to == b_addr && w.message_type() == 1)
        .count();
    assert!(
        tried >= 5,
        "c keeps retrying every REKEY_TIMEOUT, tried {tried}"
    );
    assert_eq!(
        world.engine(b).counters().dropped_unknown_peer,
        tried as u64
    );
    assert!(
        world.wire().iter().all(|w| w.from != b_addr),
        "b never answered"
    );
    assert!(world.tun(b).is_empty());
    assert_eq!(world.handshakes_completed(c), 0);
    assert_eq!(world.peer(c, b).since_last_handshake, None);

    establish(&mut world, a, b);
    assert_eq!(world.received(b), [0], "b still serves its real peers");
}

/// A disco ping copied off the wire and sent again, from its own source or
/// from an attacker's, is refused: no pong and no probe go anywhere.
#[test]
fn replayed_disco_pings_are_refused() {
    use crate::nat::Behaviour;
    let (mut world, a, b) = crate::nat_pair(23, Behaviour::Public, Behaviour::Public);
    world.run_for(secs(3));
    let (a_addr, b_addr) = (world.node(a).addr, world.node(b).addr);
    let ping = world
        .wire()
        .iter()
        .rfind(|w| {
            // A ping: header 50, type + tx + clock 21, tag 16 (a pong is longer).
            w.from == a_addr
                && w.to == b_addr
                && w.fate == Fate::Delivered
                && warren_proto::disco::is_disco(&w.payload)
                && w.payload.len() == 87
        })
        .map(|w| w.payload.clone());
    let ping = ping.expect("a pinged b");
    let sent_before = world.wire().len();
    let replays_before = world.engine(b).counters().dropped_replay;
    let attacker = addr("203.0.113.66:4444");
    for from in [a_addr, attacker] {
        let replay = world.inject(from, b_addr, &ping);
        assert!(matches!(replay, Err(PacketError::Replay)), "{replay:?}");
    }
    assert_eq!(
        world.engine(b).counters().dropped_replay,
        replays_before + 2
    );
    world.run_for(ms(10));
    assert!(
        world.wire()[sent_before..].iter().all(|w| w.to != attacker),
        "b sent something to the attacker"
    );
    // Fresh pings still work: the direct path stays up.
    world.run_for(secs(30));
    assert_eq!(world.peer(a, b).path, warren_engine::PathKind::Direct);
    assert_eq!(world.peer(b, a).path, warren_engine::PathKind::Direct);
}
