#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use warren_proto::control::NatHint;
use warren_proto::NodePrivateKey;

use super::*;
use crate::disco::tests::{engine, transmits};
use crate::engine::{Event, NetworkAction};
use crate::path::{PathKind, Via};

/// The hard side's public address, and the ports two STUN servers saw.
const HARD_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
/// The easy side's one public endpoint.
const EASY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 40_000);

fn stun(engine: &mut Engine, mapped: [SocketAddr; 2]) {
    let servers = ["192.0.2.1:3478", "192.0.2.1:3479"].map(|s| s.parse::<SocketAddr>().unwrap());
    for (server, mapped) in servers.into_iter().zip(mapped) {
        engine.stun_mut().mapped.insert(server, mapped);
    }
}

fn keys(seed: u8) -> (NodePrivateKey, NodePrivateKey) {
    (
        NodePrivateKey::from_bytes([seed; 32]),
        NodePrivateKey::from_bytes([seed + 1; 32]),
    )
}

/// The hard side, with the easy one as its peer (a candidate at `EASY`).
fn hard(own: &NodePrivateKey, peer: &NodePrivateKey, now: Instant) -> Engine {
    let mut e = engine(own, peer, EASY, 1);
    stun(
        &mut e,
        [
            SocketAddr::new(HARD_IP, 50_001),
            SocketAddr::new(HARD_IP, 61_234),
        ],
    );
    e.set_local_endpoints(vec![SocketAddr::new(HARD_IP, 50_001)], now);
    e
}

/// The easy side, with the hard one as its peer.
fn easy(own: &NodePrivateKey, peer: &NodePrivateKey, now: Instant) -> Engine {
    let mut e = engine(own, peer, SocketAddr::new(HARD_IP, 50_001), 1_000);
    stun(&mut e, [EASY, EASY]);
    e.set_local_endpoints(vec![EASY], now);
    e
}

fn births(engine: &mut Engine) -> Vec<Birthday> {
    std::iter::from_fn(|| engine.poll_birthday()).collect()
}

fn tick(engine: &mut Engine, at: Instant) {
    engine.handle_timeout(at);
    // The tick is 250 ms: run every one up to `at`.
    engine.handle_timeout(at + Duration::from_millis(300));
}

#[test]
fn the_mapping_is_read_from_two_or_more_answers() {
    let a: SocketAddr = "198.51.100.7:5000".parse().unwrap();
    let b: SocketAddr = "198.51.100.7:6000".parse().unwrap();
    let c: SocketAddr = "198.51.100.8:6000".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
    assert_eq!(mapping([a].iter()), Mapping::Unknown);
    assert_eq!(mapping([a, v6].iter()), Mapping::Unknown);
    assert_eq!(mapping([a, a].iter()), Mapping::Independent);
    assert_eq!(mapping([a, b].iter()), Mapping::PerDestination(a.ip()));
    assert_eq!(mapping([a, c].iter()), Mapping::Unknown);
}

#[test]
fn a_hard_side_fans_out_to_an_easy_peer_once_plain_probing_failed() {
    let (own, peer) = keys(10);
    let start = Instant::now();
    let mut a = hard(&own, &peer, start);
    tick(&mut a, start);
    // The peer has not said it is easy: no try.
    tick(&mut a, start + Duration::from_secs(5));
    assert!(births(&mut a).is_empty());
    a.handle_call_me_maybe(
        peer.public_key(),
        &[EASY],
        Some(NatHint::Independent),
        start + Duration::from_secs(5),
    );
    let at = start + Duration::from_secs(6);
    tick(&mut a, at);
    let sent = births(&mut a);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(matches!(&sent[0], Birthday::FanOut { to, .. } if *to == EASY));
    let asked = std::iter::from_fn(|| a.poll_event()).find_map(|e| match e {
        Event::CallMeMaybe { nat, .. } => nat,
        _ => None,
    });
    assert_eq!(asked, Some(NatHint::PerDestination { ip: HARD_IP }));
    assert_eq!(a.counters().hard_nat_fanouts, 1);
    // The next try waits.
    tick(&mut a, at + Duration::from_secs(5));
    assert!(births(&mut a).is_empty());
    tick(&mut a, at + RETRY_AFTER + Duration::from_secs(1));
    assert_eq!(births(&mut a).len(), 1);
    assert_eq!(a.counters().hard_nat_fanouts, 2);
}

#[test]
fn nothing_is_tried_when_probing_is_off_or_the_nat_is_not_hard() {
    let (own, peer) = keys(20);
    let start = Instant::now();
    let mut off = hard(&own, &peer, start);
    off.set_hard_nat_probing(false);
    let mut unknown = engine(&own, &peer, EASY, 1);
    unknown.set_local_endpoints(vec![SocketAddr::new(HARD_IP, 1)], start);
    for e in [&mut off, &mut unknown] {
        tick(e, start);
        e.handle_call_me_maybe(
            peer.public_key(),
            &[EASY],
            Some(NatHint::Independent),
            start,
        );
        tick(e, start + Duration::from_secs(10));
        assert!(births(e).is_empty());
        assert_eq!(e.counters().hard_nat_fanouts, 0);
    }
    // Nor does a node that is off say it is easy.
    let mut easy_off = easy(&own, &peer, start);
    easy_off.set_hard_nat_probing(false);
    assert_eq!(easy_off.plain_nat_hint(), None);
    assert_eq!(
        easy(&own, &peer, start).plain_nat_hint(),
        Some(NatHint::Independent)
    );
}

#[test]
fn an_easy_side_sprays_only_its_peers_own_address_within_its_rates() {
    let (own, peer) = keys(30);
    let now = Instant::now();
    let mut b = easy(&own, &peer, now);
    let hint = |ip| Some(NatHint::PerDestination { ip });
    // An address that is none of the peer's: no spray.
    let stranger = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200));
    b.handle_call_me_maybe(peer.public_key(), &[], hint(stranger), now);
    assert!(births(&mut b).is_empty());
    b.handle_call_me_maybe(peer.public_key(), &[], hint(HARD_IP), now);
    let sent = births(&mut b);
    assert!(
        matches!(&sent[..], [Birthday::Spray { ip, ports, .. }] if *ip == HARD_IP && *ports == SPRAY_PORTS),
        "{sent:?}"
    );
    assert_eq!(b.counters().hard_nat_sprays, 1);
    // Again at once: over the per-peer rate.
    b.handle_call_me_maybe(
        peer.public_key(),
        &[],
        hint(HARD_IP),
        now + Duration::from_secs(1),
    );
    assert!(births(&mut b).is_empty());
    b.handle_call_me_maybe(peer.public_key(), &[], hint(HARD_IP), now + SPRAY_EVERY);
    assert_eq!(births(&mut b).len(), 1);
    // A hard side does not spray.
    let mut a = hard(&own, &peer, now);
    a.handle_call_me_maybe(peer.public_key(), &[], hint(HARD_IP), now);
    assert!(births(&mut a).is_empty());
}

#[test]
fn sprays_for_all_peers_are_capped_per_minute() {
    let (own, peer) = keys(40);
    let now = Instant::now();
    let mut b = easy(&own, &peer, now);
    for i in 0..(SPRAYS_PER_MINUTE as u64 + 3) {
        let at = now + SPRAY_EVERY * u32::try_from(i).unwrap() / 4;
        // Forget the per-peer rate: only the global cap is under test.
        if let Some(paths) = b.peers_mut().next().and_then(|p| p.paths.as_mut()) {
            paths.birthday.last_spray = None;
        }
        b.handle_call_me_maybe(
            peer.public_key(),
            &[],
            Some(NatHint::PerDestination { ip: HARD_IP }),
            at,
        );
    }
    assert_eq!(births(&mut b).len(), SPRAYS_PER_MINUTE);
}

/// A hard side A and an easy side B that has just answered A's fan-out:
/// both engines, and the ping B sprays.
fn sprayed(seed: u8, now: Instant) -> (Engine, Engine, Vec<u8>) {
    let (a_key, b_key) = keys(seed);
    let a = hard(&a_key, &b_key, now);
    let mut b = easy(&b_key, &a_key, now);
    b.handle_call_me_maybe(
        a_key.public_key(),
        &[],
        Some(NatHint::PerDestination { ip: HARD_IP }),
        now,
    );
    let Some(Birthday::Spray { payload, .. }) = b.poll_birthday() else {
        panic!("no spray");
    };
    transmits(&mut b);
    (a, b, payload)
}

#[test]
fn a_sprayed_ping_that_gets_through_makes_a_direct_path_both_ways() {
    let now = Instant::now();
    let (mut a, mut b, payload) = sprayed(50, now);
    let payload = &payload;
    // One sprayed port was one the fan-out opened: A hears B's ping from
    // B's one endpoint, and answers it there.
    let mut out = vec![0; 65_536];
    let action = a
        .handle_network_packet(EASY, None, payload, &mut out, now)
        .unwrap();
    assert_eq!(action, NetworkAction::Nothing);
    let from_a = transmits(&mut a);
    assert!(from_a.iter().all(|t| t.to == Via::Udp(EASY)), "{from_a:?}");
    // The pong (and A's ping back) reach B from the port that opened.
    let opened = SocketAddr::new(HARD_IP, 47_113);
    for t in &from_a {
        b.handle_network_packet(
            opened,
            None,
            &t.payload,
            &mut out,
            now + Duration::from_millis(20),
        )
        .unwrap();
    }
    let snapshot = &b.peers(now)[0];
    assert_eq!(snapshot.path, PathKind::Direct);
    assert_eq!(snapshot.endpoint, Some(opened));
    // B's pong to A's ping back proves the path on A's side too.
    for t in transmits(&mut b)
        .iter()
        .filter(|t| t.to == Via::Udp(opened))
    {
        a.handle_network_packet(
            EASY,
            None,
            &t.payload,
            &mut out,
            now + Duration::from_millis(40),
        )
        .unwrap();
    }
    assert_eq!(a.peers(now)[0].path, PathKind::Direct);
}

#[test]
fn a_pong_to_a_spray_from_another_address_proves_nothing() {
    let now = Instant::now();
    let (mut a, mut b, payload) = sprayed(60, now);
    let payload = &payload;
    let mut out = vec![0; 65_536];
    a.handle_network_packet(EASY, None, payload, &mut out, now)
        .unwrap();
    let pong = transmits(&mut a).remove(0);
    let elsewhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)), 47_113);
    b.handle_network_packet(elsewhere, None, &pong.payload, &mut out, now)
        .unwrap();
    assert_ne!(b.peers(now)[0].endpoint, Some(elsewhere));
    assert_ne!(b.peers(now)[0].path, PathKind::Direct);
}

#[test]
fn an_easy_side_tells_searching_peers_as_soon_as_its_mapping_is_known() {
    let (own, peer) = keys(70);
    let now = Instant::now();
    let mut b = engine(&own, &peer, SocketAddr::new(HARD_IP, 50_001), 1_000);
    b.set_local_endpoints(vec!["10.0.0.2:51820".parse().unwrap()], now);
    let servers: Vec<SocketAddr> = ["192.0.2.1:3478", "192.0.2.1:3479"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    b.set_stun_servers(servers.clone(), now);
    tick(&mut b, now);
    let requests: Vec<(SocketAddr, Vec<u8>)> = transmits(&mut b)
        .into_iter()
        .filter_map(|t| match t.to {
            Via::Udp(to) if servers.contains(&to) => Some((to, t.payload)),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 2);
    std::iter::from_fn(|| b.poll_event()).for_each(drop);
    let hints = |b: &mut Engine| -> Vec<Option<NatHint>> {
        std::iter::from_fn(|| b.poll_event())
            .filter_map(|e| match e {
                Event::CallMeMaybe { nat, .. } => Some(nat),
                _ => None,
            })
            .collect()
    };
    let mut out = vec![0; 2048];
    for (i, (server, request)) in requests.iter().enumerate() {
        let tx = warren_proto::stun::parse_request(request).unwrap();
        let answer = warren_proto::stun::binding_response(&tx, EASY);
        b.handle_network_packet(*server, None, &answer, &mut out, now)
            .unwrap();
        let told = hints(&mut b);
        if i == 0 {
            // One answer tells nothing of the mapping yet.
            assert!(told.is_empty(), "{told:?}");
        } else {
            assert_eq!(told, vec![Some(NatHint::Independent)]);
        }
    }
}

#[test]
fn a_try_over_the_plain_rate_still_gets_its_spray() {
    let (own, peer) = keys(80);
    let now = Instant::now();
    let mut b = easy(&own, &peer, now);
    b.handle_spray_request(&peer.public_key(), HARD_IP, now);
    assert_eq!(births(&mut b).len(), 1);
    // Within the engine's own rate: no second one.
    b.handle_spray_request(&peer.public_key(), HARD_IP, now + Duration::from_secs(1));
    assert!(births(&mut b).is_empty());
    // An unknown key is nobody's peer.
    let stranger = NodePrivateKey::from_bytes([99; 32]).public_key();
    b.handle_spray_request(&stranger, HARD_IP, now + SPRAY_EVERY);
    assert!(births(&mut b).is_empty());
}
