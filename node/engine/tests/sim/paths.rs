//! The underlay path: a peer that roams, a lossy link, a link with a small MTU.

use warren_engine::{Event, PacketError, DATA_OVERHEAD};

use crate::link::{Fate, Link};
use crate::rng::Rng;
use crate::{addr, all_distinct, establish, ip, ms, secs, two_nodes};

#[test]
fn endpoint_follows_a_roaming_peer_but_not_forgeries() {
    let (mut world, a, b) = two_nodes(11);
    establish(&mut world, a, b);
    for seq in 1..=3 {
        world.send_app(a, b, seq);
        world.send_app(b, a, seq);
        world.run_for(secs(1));
    }
    let old = world.node(b).addr;
    let a_addr = world.node(a).addr;
    let from_b = world
        .wire()
        .iter()
        .rfind(|w| w.from == old && w.message_type() == 4 && w.payload.len() > DATA_OVERHEAD)
        .expect("b sent data")
        .payload
        .clone();

    // An attacker elsewhere replays b's data and sends garbage in b's session.
    let attacker = addr("203.0.113.66:4444");
    let replay = world.inject(attacker, a_addr, &from_b);
    assert!(matches!(replay, Err(PacketError::Replay)), "{replay:?}");
    let mut garbage = from_b.clone();
    Rng::new(1).fill(&mut garbage[16..]);
    garbage[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // a counter never seen
    assert!(world.inject(attacker, a_addr, &garbage).is_err());
    assert_eq!(
        world.peer(a, b).endpoint,
        Some(old),
        "forgeries do not move the endpoint"
    );
    assert_eq!(
        world.count_events(a, |e| matches!(e, Event::EndpointChanged { .. })),
        0
    );

    let new = addr("203.0.113.9:40000");
    world.move_node(b, new);
    world.send_app(b, a, 4);
    assert!(world.run_until(|w| w.received(a).contains(&4), secs(1)));
    assert_eq!(
        world.peer(a, b).endpoint,
        Some(new),
        "followed b's authenticated packet"
    );
    let moved = Event::EndpointChanged {
        peer: world.engine(b).public_key(),
        endpoint: new,
    };
    assert!(world.node(a).events.iter().any(|(_, e)| *e == moved));

    for seq in 4..=8 {
        world.send_app(a, b, seq);
        if seq > 4 {
            world.send_app(b, a, seq);
        }
        world.run_for(secs(1));
    }
    let expected: Vec<u32> = (0..=8).collect();
    assert_eq!(
        world.received(b),
        expected,
        "a now sends to b's new address"
    );
    assert_eq!(world.received(a), expected);
    assert_eq!(world.initiations(), 1, "roaming needs no new handshake");
    assert!(
        world.wire().iter().all(|w| w.fate == Fate::Delivered),
        "nothing went to the old address"
    );
}

#[test]
fn lossy_link_still_handshakes_and_delivers_most_packets_once() {
    const PACKETS: u32 = 200;
    let (mut world, a, b) = two_nodes(12);
    // The link is down for the first second, so the first initiation is surely lost
    // and the handshake must come from a retry.
    let down = Link {
        loss: 1.0,
        ..Link::default()
    };
    world.set_link(a, b, down);
    let (mut sent_a, mut sent_b) = (0, 0);
    while sent_a < PACKETS || sent_b < PACKETS {
        if world.now() >= secs(1) {
            let lossy = Link {
                loss: 0.25,
                ..Link::default()
            };
            world.set_link(a, b, lossy);
        }
        if sent_a < PACKETS {
            world.send_app(a, b, sent_a);
            sent_a += 1;
        }
        // b answers once it has heard from a, as a server would.
        if sent_b < PACKETS && !world.tun(b).is_empty() {
            world.send_app(b, a, sent_b);
            sent_b += 1;
        }
        world.run_for(ms(100));
        assert!(world.now() < secs(120), "b never heard from a");
    }
    world.run_for(secs(2));

    let initiation_times: Vec<_> = world
        .wire()
        .iter()
        .filter(|w| w.message_type() == 1)
        .map(|w| w.at)
        .collect();
    assert!(
        initiation_times.len() >= 2,
        "the first initiation was lost and retried"
    );
    for pair in initiation_times.windows(2) {
        assert!(
            pair[1] - pair[0] >= secs(5),
            "retries wait REKEY_TIMEOUT: {initiation_times:?}"
        );
    }
    let (got_b, got_a) = (world.received(b), world.received(a));
    assert!(
        all_distinct(&got_b) && all_distinct(&got_a),
        "nothing delivered twice"
    );
    assert!(
        got_b.len() >= 120,
        "a->b delivered {} of {PACKETS}",
        got_b.len()
    );
    assert!(
        got_a.len() >= 120,
        "b->a delivered {} of {PACKETS}",
        got_a.len()
    );
    assert!(
        got_b.len() < PACKETS as usize,
        "the link really lost packets"
    );
}

#[test]
fn datagrams_over_the_path_mtu_are_lost_and_wireguard_adds_exactly_32_bytes() {
    const MTU: usize = 1280;
    let (mut world, a, b) = two_nodes(13);
    world.set_link(
        a,
        b,
        Link {
            mtu: Some(MTU),
            ..Link::default()
        },
    );
    establish(&mut world, a, b);
    let (a4, b4) = (world.node(a).overlay4, world.node(b).overlay4);
    let fits = ip::ipv4(a4, b4, 1, MTU - DATA_OVERHEAD);
    let too_big = ip::ipv4(a4, b4, 2, MTU - DATA_OVERHEAD + 1);
    world.send_ip(a, &fits).expect("routed");
    world.send_ip(a, &too_big).expect("routed");
    world.run_for(ms(50));
    assert_eq!(world.received(b), [0, 1]);
    assert_eq!(world.tun(b)[1], fits);
    let dropped: Vec<_> = world
        .wire()
        .iter()
        .filter(|w| w.fate == Fate::TooBig)
        .collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].payload.len(), MTU + 1);
}
