//! Paths that change under a session: relay to direct, NAT rebinding, UDP blocked but for the controller, peers on one LAN.

use std::time::Duration;

use warren_engine::PathKind;

use crate::link::Fate;
use crate::nat::Behaviour;
use crate::traversal::{both, paths};
use crate::world::{NodeId, World};
use crate::{add_site, establish, ms, nat_of, nat_pair, secs, CONTROLLER};

const PACE: Duration = Duration::from_millis(500);

/// `a` and `b` send each other the next sequence number every [`PACE`] for
/// `duration`; returns the next unused sequence number.
fn talk(world: &mut World, a: NodeId, b: NodeId, mut seq: u32, duration: Duration) -> u32 {
    let end = world.now() + duration;
    while world.now() < end {
        world.send_app(a, b, seq);
        world.send_app(b, a, seq);
        seq += 1;
        world.run_for(PACE);
    }
    seq
}

/// Runs until both sides see `kind`, for at most `limit`; when it came.
fn time_until(
    world: &mut World,
    a: NodeId,
    b: NodeId,
    kind: PathKind,
    limit: Duration,
) -> Option<Duration> {
    let start = world.now();
    world
        .run_until(|w| both(w, a, b, kind), limit)
        .then(|| world.now() - start)
}

/// Only the controller's STUN ports get through `node`'s NAT.
fn block_udp(world: &mut World, node: NodeId) {
    let stun = world.controller().stun.clone();
    let nat = nat_of(world, node);
    world.nat_mut(nat).allow_only = Some(stun);
}

/// WireGuard data packets that went straight between two addresses (not relayed), from `since`.
fn direct_data(world: &World, since: Duration) -> usize {
    world
        .wire()
        .iter()
        .filter(|w| w.at >= since && !w.relayed && w.message_type() == 4)
        .count()
}

#[test]
fn with_udp_blocked_but_for_the_controller_traffic_flows_through_the_relay() {
    let (mut world, a, b) = nat_pair(31, Behaviour::PortRestricted, Behaviour::FullCone);
    block_udp(&mut world, a);
    block_udp(&mut world, b);
    establish(&mut world, a, b);
    let sent = talk(&mut world, a, b, 1, secs(90));
    world.run_for(secs(1));
    let all: Vec<u32> = (0..sent).collect();
    assert_eq!(world.received(b), all, "every packet, once, in order");
    assert_eq!(world.received(a), all);
    assert!(
        both(&world, a, b, PathKind::Relay),
        "{:?}",
        paths(&world, a, b)
    );
    assert_eq!(direct_data(&world, Duration::ZERO), 0);
    assert_eq!(world.initiations(), 1, "the relay carries one long session");
    for (node, peer) in [(a, b), (b, a)] {
        // Everything the peers exchanged went through the relay.
        let p = world.peer(node, peer);
        assert_eq!(p.counters.relay_rx_bytes, p.rx_bytes, "{:?}", p.counters);
        assert_eq!(p.counters.relay_tx_bytes, p.tx_bytes, "{:?}", p.counters);
        assert!(p.counters.rx_packets >= u64::from(sent));
        let net = world.engine(node).counters();
        assert!(net.relay_tx_bytes >= p.tx_bytes && net.relay_rx_bytes >= p.rx_bytes);
    }
    let blocked = world
        .wire()
        .iter()
        .filter(|w| w.fate == Fate::Blocked)
        .count();
    assert!(blocked > 0, "the engines kept probing direct paths");
    // STUN still works, so each side knows its reflexive address.
    assert!(world.node(a).reflexive.len() == 2 && world.node(b).reflexive.len() == 2);
}

#[test]
fn a_direct_path_found_later_replaces_the_relay_without_a_new_handshake() {
    let (mut world, a, b) = nat_pair(32, Behaviour::PortRestricted, Behaviour::PortRestricted);
    block_udp(&mut world, a);
    block_udp(&mut world, b);
    establish(&mut world, a, b);
    let seq = talk(&mut world, a, b, 1, secs(20));
    assert!(both(&world, a, b, PathKind::Relay));
    let opened = world.now();
    for n in [a, b] {
        let nat = nat_of(&world, n);
        world.nat_mut(nat).allow_only = None;
    }
    world.send_app(a, b, seq);
    world.send_app(b, a, seq);
    let took = time_until(&mut world, a, b, PathKind::Direct, secs(15));
    println!("relay -> direct {took:?} after the firewall opened");
    assert!(took.is_some_and(|t| t <= secs(3)), "direct after {took:?}");
    let sent = talk(&mut world, a, b, seq + 1, secs(20));
    world.run_for(secs(1));
    let all: Vec<u32> = (0..sent).collect();
    assert_eq!(world.received(b), all, "nothing lost in the switch");
    assert_eq!(world.received(a), all);
    assert_eq!(world.initiations(), 1, "the session survived the switch");
    let switched = opened + took.unwrap_or_default() + secs(1);
    let relayed_data = world
        .wire()
        .iter()
        .filter(|w| w.at > switched && w.relayed && w.message_type() == 4)
        .count();
    assert_eq!(relayed_data, 0, "data left the relay");
    assert!(direct_data(&world, switched) > 0);
}

#[test]
fn after_a_nat_rebinding_the_path_is_direct_again_without_a_new_handshake() {
    let pairs = [
        (Behaviour::FullCone, Behaviour::PortRestricted),
        (Behaviour::PortRestricted, Behaviour::FullCone),
        (Behaviour::PortRestricted, Behaviour::PortRestricted),
        (Behaviour::Restricted, Behaviour::Symmetric),
        (Behaviour::Symmetric, Behaviour::Public),
    ];
    // Rebind at several points of the 10 s probe and 20 s STUN cycles: the
    // dead path must be noticed before WireGuard's 15 s patience runs out
    // whenever it happens.
    for phase in [0, 3, 9, 15] {
        for (ab, bb) in pairs {
            let (mut world, a, b) = nat_pair(33, ab, bb);
            establish(&mut world, a, b);
            let mut seq = talk(&mut world, a, b, 1, secs(10 + phase));
            assert!(
                both(&world, a, b, PathKind::Direct),
                "{ab:?}/{bb:?} direct first"
            );
            let before = world.peer(b, a).endpoint;
            let nat = nat_of(&world, a);
            world.nat_mut(nat).rebind();
            let rebound = world.now();
            let mut recovered = None;
            while world.now() < rebound + secs(30) {
                seq = talk(&mut world, a, b, seq, PACE);
                let moved = world.peer(b, a).endpoint != before;
                if recovered.is_none() && moved && both(&world, a, b, PathKind::Direct) {
                    recovered = Some((world.now() - rebound, seq));
                }
            }
            world.run_for(secs(1));
            let case = format!("{ab:?}/{bb:?} rebound at {rebound:?}");
            let Some((took, since)) = recovered else {
                panic!("{case}: never direct again: {:?}", paths(&world, a, b));
            };
            println!("{case}: direct again after {took:?}");
            assert!(
                took <= secs(25),
                "{case}: STUN refresh, netmap and a probe round"
            );
            assert!(both(&world, a, b, PathKind::Direct), "{case}: stays direct");
            assert_eq!(world.initiations(), 1, "{case}: no new handshake");
            for n in [a, b] {
                let got = world.received(n);
                assert!(
                    (since..seq).all(|s| got.contains(&s)),
                    "{case}: traffic flows again"
                );
            }
        }
    }
}

#[test]
fn peers_behind_one_nat_meet_on_their_lan_and_share_its_public_address() {
    let mut world = World::new(34);
    world.add_controller(CONTROLLER.parse().expect("an IP literal"));
    let a1 = add_site(&mut world, "a1", Behaviour::PortRestricted, "203.0.113", 1);
    let nat = nat_of(&world, a1);
    // A second agent on the same LAN and the same default port.
    let a2 = world.add_node(
        "a2",
        crate::addr("10.0.1.3:51820"),
        std::net::Ipv4Addr::new(10, 99, 0, 3),
    );
    world.place_behind(a2, nat);
    let c = add_site(&mut world, "c", Behaviour::Restricted, "198.51.100", 2);
    for n in [a1, a2, c] {
        world.join(n);
    }
    for (x, y) in [(a1, a2), (a1, c), (a2, c)] {
        world.connect_disco(x, y);
    }
    let mut seq = 1;
    for (x, y) in [(a1, a2), (a1, c), (a2, c)] {
        establish(&mut world, x, y);
        seq = talk(&mut world, x, y, seq, secs(10));
    }
    for (x, y) in [(a1, a2), (a1, c), (a2, c)] {
        assert!(
            both(&world, x, y, PathKind::Direct),
            "{:?}",
            paths(&world, x, y)
        );
    }
    assert_eq!(
        world.peer(a1, a2).endpoint,
        Some(world.node(a2).addr),
        "the LAN path"
    );
    let (p1, p2) = (world.peer(c, a1).endpoint, world.peer(c, a2).endpoint);
    assert!(
        p1.is_some() && p2.is_some() && p1 != p2,
        "one public address, two ports: {p1:?} {p2:?}"
    );
}

#[test]
fn a_direct_path_that_dies_under_traffic_falls_back_to_the_relay_within_seconds() {
    let (mut world, a, b) = nat_pair(33, Behaviour::FullCone, Behaviour::FullCone);
    establish(&mut world, a, b);
    let mut seq = talk(&mut world, a, b, 1, secs(15));
    assert!(
        both(&world, a, b, PathKind::Direct),
        "{:?}",
        paths(&world, a, b)
    );
    // A firewall starts dropping the direct path; the controller stays reachable.
    let cut = world.now();
    block_udp(&mut world, a);
    block_udp(&mut world, b);
    while !both(&world, a, b, PathKind::Relay) && world.now() - cut < secs(30) {
        world.send_app(a, b, seq);
        world.send_app(b, a, seq);
        seq += 1;
        world.run_for(PACE);
    }
    let took = world.now() - cut;
    println!("direct -> relay {took:?} after the direct path died");
    // Silent for TRUST_SILENT_PATH while we send, then a ping unanswered for
    // PONG_WAIT: about 5 s, not the next 10 s probe round.
    assert!(took <= secs(6), "relay after {took:?}");
    let resumed = talk(&mut world, a, b, seq, secs(10));
    world.run_for(secs(1));
    let received = world.received(b);
    assert!(
        (seq..resumed).all(|n| received.contains(&n)),
        "traffic after the fallback arrives"
    );
    assert_eq!(world.initiations(), 1, "the session moved to the relay");
}

#[test]
fn an_echo_across_a_dying_direct_path_resumes_through_the_relay_within_seconds() {
    // As `ping` does: a sends, b only answers what arrives. b sends nothing
    // while the path is dead, so it learns of the death from a's packets
    // arriving through the relay.
    let (mut world, a, b) = nat_pair(34, Behaviour::PortRestricted, Behaviour::FullCone);
    establish(&mut world, a, b);
    let mut seq = talk(&mut world, a, b, 1, secs(15));
    assert!(both(&world, a, b, PathKind::Direct));
    let cut = world.now();
    block_udp(&mut world, a);
    block_udp(&mut world, b);
    let (mut answered_b, mut echoed) = (world.received(b).len(), None);
    while echoed.is_none() && world.now() - cut < secs(30) {
        let before = world.received(a).len();
        world.send_app(a, b, seq);
        seq += 1;
        world.run_for(ms(100));
        let got = world.received(b);
        for &n in &got[answered_b..] {
            world.send_app(b, a, n);
        }
        answered_b = got.len();
        world.run_for(ms(100));
        if world.received(a).len() > before {
            echoed = Some(world.now() - cut);
        }
    }
    println!("echo through the relay {echoed:?} after the direct path died");
    assert!(
        echoed.is_some_and(|t| t <= secs(6)),
        "echo resumed after {echoed:?}"
    );
    assert!(
        both(&world, a, b, PathKind::Relay),
        "{:?}",
        paths(&world, a, b)
    );
}
