//! A site's router between a member and its cluster: the member reaches the mapped prefix, the cluster sees its real one, and the policy for the mapped prefix holds on the router.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use warren_engine::PeerConfig;
use warren_proto::filter::{FilterRule, PacketFilter};
use warren_proto::site::MappedPrefix;

use crate::world::{NodeId, World};
use crate::{addr, secs};

const UDP: u8 = 17;
const TCP: u8 = 6;

fn sum(data: &[u8], start: u32) -> u32 {
    let mut s = start;
    for chunk in data.chunks(2) {
        let hi = chunk[0];
        let lo = chunk.get(1).copied().unwrap_or(0);
        s += u32::from(u16::from_be_bytes([hi, lo]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

fn pseudo(p: &[u8]) -> u32 {
    let mut ph = p[12..20].to_vec();
    ph.extend_from_slice(&[0, p[9]]);
    ph.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
    sum(&ph, 0)
}

/// An IPv4 UDP or TCP packet with every checksum computed in full.
fn packet(protocol: u8, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let payload = b"members.default.svc";
    let transport = if protocol == TCP { 20 } else { 8 };
    let total = 20 + transport + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    let at = if protocol == TCP {
        p[32] = 5 << 4;
        p[33] = 0x02;
        36
    } else {
        p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        26
    };
    p[20 + transport..].copy_from_slice(payload);
    let c = !(sum(&p[..20], 0) as u16);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let c = !(sum(&p[20..], pseudo(&p)) as u16);
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
    p
}

fn checksums_hold(p: &[u8]) -> bool {
    sum(&p[..20], 0) == 0xffff && sum(&p[20..], pseudo(p)) == 0xffff
}

fn src(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[12], p[13], p[14], p[15])
}

fn dst(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[16], p[17], p[18], p[19])
}

fn net(s: &str) -> IpNet {
    s.parse().expect("a prefix literal")
}

/// `client` reaches `router`'s overlay address and, as members route a
/// site's mapped prefix, `mapped` through it.
fn site_world(seed: u64, mapped: &str) -> (World, NodeId, NodeId) {
    let mut world = World::new(seed);
    let client = world.add_node(
        "client",
        addr("192.0.2.1:51820"),
        Ipv4Addr::new(10, 99, 0, 1),
    );
    let router = world.add_node(
        "router",
        addr("198.51.100.2:51820"),
        Ipv4Addr::new(10, 99, 0, 2),
    );
    let mut to_router = world.peer_config(router);
    to_router.allowed_ips.push(net(mapped));
    world.add_peer(client, to_router);
    let to_client: PeerConfig = world.peer_config(client);
    world.add_peer(router, to_client);
    (world, client, router)
}

#[test]
fn the_router_translates_a_mapped_destination_and_the_replies_source() {
    let (mut world, client, router) = site_world(71, "100.64.0.0/12");
    let now = world.instant();
    let c4 = world.node(client).overlay4;
    let engine = &mut world.nodes[router.0].engine;
    engine.set_site_mappings(vec![MappedPrefix {
        real: "10.96.0.0/12".parse().expect("a prefix"),
        mapped: "100.64.0.0/12".parse().expect("a prefix"),
    }]);
    // The policy names the mapped prefix only (as the controller compiles
    // it): inbound it is checked before translation, and the reply finds
    // its flow because the outbound check comes after.
    engine.set_filter(
        Some(PacketFilter {
            policy_version: 1,
            inbound: vec![FilterRule {
                rule: "allow[0]".into(),
                src: vec![IpAddr::V4(c4).into()],
                dst: vec![net("100.64.0.0/12")],
                ports: vec!["udp:53".parse().expect("a port range")],
            }],
            outbound: vec![],
        }),
        now,
    );

    let service = Ipv4Addr::new(100, 64, 0, 10);
    let query = packet(UDP, c4, 40000, service, 53);
    world
        .send_ip(client, &query)
        .expect("the query leaves the client");
    assert!(
        world.run_until(|w| !w.tun(router).is_empty(), secs(2)),
        "the query reached the router's TUN"
    );
    let seen = world.tun(router)[0].clone();
    assert_eq!(dst(&seen), Ipv4Addr::new(10, 96, 0, 10), "the real address");
    assert_eq!(src(&seen), c4);
    assert!(checksums_hold(&seen), "IP and UDP checksums verify");

    // The cluster answers from its real address; the client sees the mapped one.
    let answer = packet(UDP, Ipv4Addr::new(10, 96, 0, 10), 53, c4, 40000);
    world
        .send_ip(router, &answer)
        .expect("the reply of a tracked flow leaves the router");
    assert!(
        world.run_until(|w| !w.tun(client).is_empty(), secs(2)),
        "the answer reached the client"
    );
    let got = world.tun(client)[0].clone();
    assert_eq!(
        src(&got),
        service,
        "the answer comes from the mapped address"
    );
    assert!(checksums_hold(&got), "IP and UDP checksums verify");

    // What the policy does not admit stays out, untranslated or not.
    world
        .send_ip(client, &packet(TCP, c4, 40001, service, 80))
        .expect("the client has no filter");
    world.run_for(secs(1));
    assert_eq!(world.tun(router).len(), 1, "tcp:80 was refused");
}

#[test]
fn without_mappings_nothing_is_translated() {
    let (mut world, client, router) = site_world(72, "10.96.0.0/12");
    let c4 = world.node(client).overlay4;
    let real = Ipv4Addr::new(10, 96, 0, 10);
    let query = packet(TCP, c4, 40000, real, 443);
    world.send_ip(client, &query).expect("the SYN leaves");
    assert!(
        world.run_until(|w| !w.tun(router).is_empty(), secs(2)),
        "the SYN reached the router"
    );
    assert_eq!(world.tun(router)[0], query, "delivered byte for byte");
}
