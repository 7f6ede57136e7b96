//! The access-policy filter between two engines: a rule admits a flow and its replies, anything else is refused where it starts, and a withdrawn rule cuts an open connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use warren_engine::PacketError;
use warren_proto::filter::{Direction, DropReason, FilterRule, PacketFilter};

use crate::world::{NodeId, World};
use crate::{secs, two_nodes};

const TCP: u8 = 6;
const UDP: u8 = 17;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// A TCP segment (no checksum: nothing in the world checks one) with
/// sequence number 100 and acknowledgement 500.
fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = header(src, dst, TCP, 20);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&100u32.to_be_bytes());
    p.extend_from_slice(&500u32.to_be_bytes());
    p.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

/// An IPv6 TCP SYN (no checksum).
fn tcp6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 20, TCP, 64];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 5 << 4, SYN, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut p = header(src, dst, UDP, 8);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 8, 0, 0]);
    p
}

fn header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(20 + payload).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p
}

fn rule(name: &str, src: Ipv4Addr, dst: Ipv4Addr, ports: &[&str]) -> FilterRule {
    FilterRule {
        rule: name.into(),
        src: vec![IpAddr::V4(src).into()],
        dst: vec![IpAddr::V4(dst).into()],
        ports: ports
            .iter()
            .map(|p| p.parse().expect("a valid port range"))
            .collect(),
    }
}

/// What the controller would compile for "a may reach b on tcp:3000 and udp:53":
/// b admits it inbound, a lets it out.
fn web_policy(world: &World, a: NodeId, b: NodeId, version: u64) -> (PacketFilter, PacketFilter) {
    let (a4, b4) = (world.node(a).overlay4, world.node(b).overlay4);
    let ports = ["tcp:3000", "udp:53"];
    let for_a = PacketFilter {
        policy_version: version,
        inbound: vec![],
        outbound: vec![rule("allow[0]", a4, b4, &ports)],
    };
    let for_b = PacketFilter {
        policy_version: version,
        inbound: vec![rule("allow[0]", a4, b4, &ports)],
        outbound: vec![],
    };
    (for_a, for_b)
}

impl World {
    pub fn set_filter(&mut self, node: NodeId, filter: Option<PacketFilter>) {
        let now = self.instant();
        self.nodes[node.0].engine.set_filter(filter, now);
    }

    fn filter_stats(&self, node: NodeId) -> warren_proto::filter::FilterStats {
        self.engine(node)
            .filter()
            .expect("the node has a filter")
            .stats(self.instant())
    }
}

/// The TCP flags of the last packet on `node`'s TUN, if it is TCP.
fn last_tcp_flags(world: &World, node: NodeId) -> Option<u8> {
    let p = world.tun(node).last()?;
    (p[9] == TCP).then(|| p[33])
}

/// The (type, code) of the last packet on `node`'s TUN, if it is ICMP.
fn last_icmp(world: &World, node: NodeId) -> Option<(u8, u8)> {
    let p = world.tun(node).last()?;
    (p[9] == 1).then(|| (p[20], p[21]))
}

#[test]
fn a_rule_admits_its_port_and_the_replies_and_anything_else_is_refused_at_the_sender() {
    let (mut world, a, b) = two_nodes(61);
    let (for_a, for_b) = web_policy(&world, a, b, 1);
    world.set_filter(a, Some(for_a));
    world.set_filter(b, Some(for_b));
    let (a4, b4) = (world.node(a).overlay4, world.node(b).overlay4);

    world
        .send_ip(a, &tcp(a4, 40000, b4, 3000, SYN))
        .expect("tcp:3000 may leave a");
    assert!(
        world.run_until(|w| w.tun(b).len() == 1, secs(2)),
        "the SYN to 3000 reached b"
    );
    assert_eq!(last_tcp_flags(&world, b), Some(SYN));
    // b has no outbound rule at all: only tracking lets its answer out and into a.
    world
        .send_ip(b, &tcp(b4, 3000, a4, 40000, SYN | ACK))
        .expect("the reply may leave b");
    assert!(
        world.run_until(|w| w.tun(a).len() == 1, secs(1)),
        "the SYN-ACK reached a"
    );
    assert_eq!(last_tcp_flags(&world, a), Some(SYN | ACK));

    // A connection to 443 is refused on a's own TUN and never crosses the wire.
    let wire_before = world.wire().len();
    let refused = world.send_ip(a, &tcp(a4, 40001, b4, 443, SYN));
    assert!(
        matches!(
            refused,
            Err(PacketError::Filtered {
                direction: Direction::Outbound,
                reason: DropReason::NoRule
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        last_icmp(&world, a),
        Some((3, 13)),
        "ICMP admin prohibited on a's TUN"
    );
    // IPv6 likewise: no rule names b's IPv6 address.
    let (a6, b6) = (world.node(a).overlay6, world.node(b).overlay6);
    assert!(world.send_ip(a, &tcp6(a6, 40003, b6, 3000)).is_err());
    let icmp6 = world.tun(a).last().expect("an ICMPv6 error on a's TUN");
    assert_eq!(
        (icmp6[6], icmp6[40], icmp6[41]),
        (58, 1, 1),
        "ICMPv6 admin prohibited"
    );
    assert_eq!(&icmp6[24..40], &a6.octets(), "addressed to the sender");
    world.run_for(secs(1));
    assert_eq!(
        world.wire().len(),
        wire_before,
        "nothing went out for the refused packets"
    );
    assert_eq!(world.tun(b).len(), 1);

    // Without a's filter, the packet goes out and b drops it, counted.
    world.set_filter(a, None);
    world
        .send_ip(a, &tcp(a4, 40002, b4, 443, SYN))
        .expect("no filter on a now");
    world.run_for(secs(1));
    assert_eq!(
        world.tun(b).len(),
        1,
        "b let nothing but the SYN to 3000 in"
    );
    let stats = world.filter_stats(b);
    assert_eq!(stats.dropped_inbound.no_rule, 1);
    assert_eq!(stats.recent_drops[0].port, 443);
    assert_eq!(stats.rule_hits[0].flows, 1);
    assert!(world.node(b).errors.iter().any(|(_, e)| matches!(
        e,
        PacketError::Filtered {
            direction: Direction::Inbound,
            ..
        }
    )));
}

#[test]
fn a_withdrawn_rule_cuts_the_open_connection_at_once() {
    let (mut world, a, b) = two_nodes(62);
    let (for_a, for_b) = web_policy(&world, a, b, 1);
    world.set_filter(a, Some(for_a));
    world.set_filter(b, Some(for_b));
    let (a4, b4) = (world.node(a).overlay4, world.node(b).overlay4);
    world
        .send_ip(a, &tcp(a4, 40000, b4, 3000, SYN))
        .expect("admitted");
    assert!(world.run_until(|w| w.tun(b).len() == 1, secs(2)));
    world
        .send_ip(b, &tcp(b4, 3000, a4, 40000, SYN | ACK))
        .expect("a reply");
    assert!(world.run_until(|w| w.tun(a).len() == 1, secs(1)));
    world
        .send_ip(a, &tcp(a4, 40000, b4, 3000, ACK))
        .expect("established");
    assert!(world.run_until(|w| w.tun(b).len() == 2, secs(1)));

    // Version 2 withdraws the rule on both sides.
    let (mut for_a, mut for_b) = web_policy(&world, a, b, 2);
    for_a.outbound.clear();
    for_b.inbound.clear();
    world.set_filter(b, Some(for_b));
    assert_eq!(world.filter_stats(b).flows_cut, 1);
    // b's app writes on the connection: refused on b's TUN with a reset.
    assert!(world.send_ip(b, &tcp(b4, 3000, a4, 40000, ACK)).is_err());
    let rst = world.tun(b).last().expect("a reset on b's TUN").clone();
    assert_eq!(
        rst[33], RST,
        "the reset carries no ACK: the segment had one"
    );
    assert_eq!(
        &rst[24..28],
        &[0, 0, 1, 244],
        "its seq is what b's socket acknowledged"
    );
    assert_eq!(last_icmp_before_last(&world, b), Some((3, 13)));
    // a (not yet told) still sends: b drops the segment.
    world
        .send_ip(a, &tcp(a4, 40000, b4, 3000, ACK))
        .expect("a has the old policy");
    world.run_for(secs(1));
    assert_eq!(
        world.tun(b).len(),
        4,
        "the SYN, the ACK and b's two rejects; no new segment"
    );
    assert_eq!(world.filter_stats(b).dropped_inbound.no_rule, 1);
    // Once a has the change too, its own next segment ends its socket.
    world.set_filter(a, Some(for_a));
    assert!(world.send_ip(a, &tcp(a4, 40000, b4, 3000, ACK)).is_err());
    assert_eq!(last_tcp_flags(&world, a), Some(RST));
}

/// The second-to-last packet on the TUN, as ICMP (type, code).
fn last_icmp_before_last(world: &World, node: NodeId) -> Option<(u8, u8)> {
    let tun = world.tun(node);
    let p = tun.get(tun.len().checked_sub(2)?)?;
    (p[9] == 1).then(|| (p[20], p[21]))
}

#[test]
fn an_idle_flow_times_out_through_the_engines_timer() {
    let (mut world, a, b) = two_nodes(63);
    let (for_a, for_b) = web_policy(&world, a, b, 1);
    world.set_filter(a, Some(for_a));
    world.set_filter(b, Some(for_b));
    let (a4, b4) = (world.node(a).overlay4, world.node(b).overlay4);
    world
        .send_ip(a, &udp(a4, 5353, b4, 53))
        .expect("udp:53 may leave a");
    assert!(world.run_until(|w| w.tun(b).len() == 1, secs(2)));
    world
        .send_ip(b, &udp(b4, 53, a4, 5353))
        .expect("the answer is tracked");
    assert!(world.run_until(|w| w.tun(a).len() == 1, secs(1)));
    assert_eq!(world.filter_stats(b).tracked_flows, 1);
    // The world runs each engine's timers when poll_timeout says.
    world.run_for(secs(121));
    assert_eq!(world.filter_stats(b).tracked_flows, 0);
    assert_eq!(world.filter_stats(b).flows_expired, 1);
    assert!(
        world.send_ip(b, &udp(b4, 53, a4, 5353)).is_err(),
        "too late for an answer"
    );
    assert_eq!(last_icmp(&world, b), Some((3, 13)));
}
