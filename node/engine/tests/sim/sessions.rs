//! Session life cycle: the first handshake, the rekey after two minutes, expiry after silence.

use std::net::IpAddr;

use warren_engine::Event;

use crate::link::Link;
use crate::{establish, ip, ms, secs, two_nodes};

#[test]
fn first_packet_waits_for_a_handshake_then_traffic_flows_both_ways() {
    let (mut world, a, b) = two_nodes(1);
    let (a4, b4) = (world.node(a).overlay4, world.node(b).overlay4);
    let first = ip::packet(a4.into(), b4.into(), 7);
    world.send_ip(a, &first).expect("b's address is routed");
    assert!(world.run_until(|w| !w.tun(b).is_empty(), secs(1)));
    assert_eq!(world.tun(b), [first], "delivered unchanged, once");
    // Initiation, response, then keepalive and the queued packet: three one-way trips.
    assert_eq!(world.now(), ms(30));

    world.send_app(b, a, 8);
    assert!(world.run_until(|w| !w.tun(a).is_empty(), secs(1)));
    assert_eq!(world.received(a), [8]);
    assert_eq!(
        world.now(),
        ms(40),
        "the answer needs no handshake of its own"
    );

    let (a6, b6) = (world.node(a).overlay6, world.node(b).overlay6);
    world
        .send_ip(a, &ip::packet(a6.into(), b6.into(), 9))
        .expect("b's IPv6 address is routed");
    world
        .send_ip(b, &ip::packet(b6.into(), a6.into(), 10))
        .expect("a's IPv6 address is routed");
    world.run_for(ms(20));
    assert_eq!(world.received(b), [7, 9]);
    assert_eq!(world.received(a), [8, 10]);
    assert_eq!(ip::source(&world.tun(a)[1]), IpAddr::from(b6));

    assert_eq!(world.initiations(), 1);
    for (node, peer) in [(a, b), (b, a)] {
        let snapshot = world.peer(node, peer);
        assert!(snapshot.since_last_handshake.is_some());
        assert!(snapshot.rx_bytes > 0 && snapshot.tx_bytes > 0);
        let c = snapshot.counters;
        assert_eq!(c.handshakes, 1, "{c:?}");
        // A handshake message and two data packets each way, at least.
        assert!(c.rx_packets >= 3 && c.tx_packets >= 3, "{c:?}");
        assert_eq!((c.relay_rx_bytes, c.relay_tx_bytes), (0, 0));
        let net = world.engine(node).counters();
        assert!(net.udp_rx_bytes >= snapshot.rx_bytes && net.udp_tx_bytes >= snapshot.tx_bytes);
        assert_eq!(world.handshakes_completed(node), 1);
        assert!(
            world.node(node).errors.is_empty(),
            "a clean run refuses nothing"
        );
    }
    let key_b = world.engine(b).public_key();
    assert!(world
        .node(a)
        .events
        .iter()
        .any(|(_, e)| *e == Event::HandshakeCompleted { peer: key_b }));
}

#[test]
fn steady_traffic_rekeys_after_two_minutes_without_loss() {
    let (mut world, a, b) = two_nodes(2);
    establish(&mut world, a, b);
    for seq in 1..=135 {
        world.send_app(a, b, seq);
        world.send_app(b, a, seq);
        world.run_for(secs(1));
    }
    let expected: Vec<u32> = (0..=135).collect();
    assert_eq!(
        world.received(b),
        expected,
        "every packet once, in order, across the rekey"
    );
    assert_eq!(world.received(a), expected);

    let initiations: Vec<_> = world
        .wire()
        .iter()
        .filter(|w| w.message_type() == 1)
        .collect();
    assert_eq!(initiations.len(), 2, "the first handshake and one rekey");
    let rekey = initiations[1];
    assert!(
        (secs(120)..secs(122)).contains(&rekey.at),
        "rekey at REKEY_AFTER_TIME, not {:?}",
        rekey.at
    );
    assert_eq!(rekey.from, world.node(a).addr, "the initiator rekeys");
    assert_eq!(world.handshakes_completed(a), 2);
    assert_eq!(world.handshakes_completed(b), 2);
    let age = world.peer(a, b).since_last_handshake.expect("a session");
    assert!(age < secs(20), "the new session is in use, age {age:?}");
}

#[test]
fn idle_session_expires_and_the_next_packet_starts_a_fresh_handshake() {
    let (mut world, a, b) = two_nodes(3);
    establish(&mut world, a, b);
    let expired = |e: &Event| matches!(e, Event::SessionExpired { .. });

    world.run_for(secs(530));
    assert_eq!(
        world.count_events(a, expired),
        0,
        "not before REJECT_AFTER_TIME * 3"
    );
    world.run_for(secs(70));
    for node in [a, b] {
        let times: Vec<_> = world
            .node(node)
            .events
            .iter()
            .filter(|(_, e)| expired(e))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(times.len(), 1, "raised once per expiry");
        assert!(
            (secs(540)..secs(541)).contains(&times[0]),
            "expired at {:?}",
            times[0]
        );
    }
    assert_eq!(world.peer(a, b).since_last_handshake, None, "keys are gone");
    assert_eq!(world.peer(b, a).since_last_handshake, None);

    let start = world.now();
    world.send_app(a, b, 1);
    assert!(world.run_until(|w| w.tun(b).len() == 2, secs(1)));
    assert_eq!(
        world.now() - start,
        ms(30),
        "one fresh handshake, then delivery"
    );
    world.send_app(b, a, 1);
    assert!(world.run_until(|w| w.tun(a).len() == 2, secs(1)));
    assert_eq!(world.received(b), [0, 1]);
    assert_eq!(world.received(a), [0, 1]);
    assert_eq!(world.initiations(), 2);
    assert_eq!(world.handshakes_completed(a), 2);
    assert!(world.peer(b, a).since_last_handshake.is_some());
}

#[test]
fn crossing_initiations_make_one_handshake_each_way_not_a_storm() {
    let (mut world, a, b) = two_nodes(4);
    // Both know each other's endpoint and send at the same instant: the initiations cross.
    world.send_app(a, b, 1);
    world.send_app(b, a, 1);
    assert!(world.run_until(|w| !w.tun(a).is_empty() && !w.tun(b).is_empty(), secs(1)));
    assert_eq!(
        world.now(),
        ms(30),
        "a round trip for the handshakes, one trip for the data"
    );
    world.run_for(secs(1));
    assert_eq!(
        world.initiations(),
        2,
        "each side's first initiation, and no more"
    );
    for (node, peer) in [(a, b), (b, a)] {
        assert!(
            world.node(node).errors.is_empty(),
            "no response arrived unexpected"
        );
        assert_eq!(
            world.handshakes_completed(node),
            2,
            "one as responder, one as initiator"
        );
        world.send_app(node, peer, 2);
    }
    world.run_for(ms(20));
    assert_eq!(world.received(a), [1, 2]);
    assert_eq!(world.received(b), [1, 2]);
}

#[test]
fn responder_sends_its_queued_packet_once_the_initiators_session_is_confirmed() {
    let (mut world, a, b) = two_nodes(5);
    // b's own initiation is lost, so b's packet can only leave in a's session.
    world.set_link_one_way(
        b,
        a,
        Link {
            loss: 1.0,
            ..Link::default()
        },
    );
    world.send_app(a, b, 1);
    world.send_app(b, a, 1);
    world.set_link_one_way(b, a, Link::default());
    assert!(world.run_until(|w| !w.tun(a).is_empty(), secs(1)));
    assert_eq!(
        world.now(),
        ms(40),
        "after a's keepalive confirmed the session to b"
    );
    assert_eq!(world.received(b), [1]);
    assert_eq!(world.received(a), [1]);
    assert_eq!(world.initiations(), 2, "b started no second handshake");
}
