//! Access-policy filter benchmark: nanoseconds per packet for tracked
//! flows and for first packets against 1,000 rules, and the flow table's
//! memory at 10,000 flows.
//!
//! ```sh
//! cargo bench -p warren-engine --bench filter        # ROUNDS=5
//! ```
//!
//! Packets are built once; each measurement runs the filter over them in a
//! loop and prints the best of `ROUNDS` rounds (the least disturbed by the
//! other work on the machine).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use warren_engine::filter::{Filter, FLOW_LIMIT};
use warren_proto::filter::{FilterRule, PacketFilter, PortRange, Protocol};

const RULES: u32 = 1_000;
const FLOWS: u32 = 10_000;
const OWN: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let t0 = Instant::now();

    // Tracked flows: 10,000 admitted connections, then their next segments.
    let mut filter = Filter::new(FLOW_LIMIT, (1, 2));
    filter.replace(Some(policy(RuleShape::OnePortEach)), t0);
    let syns: Vec<Vec<u8>> = (0..FLOWS).map(|i| flow_packet(i, 0x02)).collect();
    for p in &syns {
        if filter.handle_inbound(p, t0).is_err() {
            eprintln!("error: a SYN of the set-up was refused");
            std::process::exit(1);
        }
    }
    let acks: Vec<Vec<u8>> = (0..FLOWS).map(|i| flow_packet(i, 0x10)).collect();
    let tracked = best(rounds, &acks, |p| filter.handle_inbound(p, t0).is_ok());
    println!(
        "tracked flow, next packet ({FLOWS} flows):           {:>7.1} ns/packet",
        tracked
    );
    let busy: Vec<Vec<u8>> = (0..FLOWS).map(|_| flow_packet(7, 0x10)).collect();
    let one = best(rounds, &busy, |p| filter.handle_inbound(p, t0).is_ok());
    println!(
        "tracked flow, next packet (one busy flow):        {:>7.1} ns/packet",
        one
    );
    let flows = filter.stats(t0).tracked_flows;
    println!(
        "flow table memory at {flows} flows:                {:>7.1} KiB ({:.0} bytes/flow)",
        filter.memory() as f64 / 1024.0,
        filter.memory() as f64 / flows as f64
    );

    // First packets: a SYN that the last of 1,000 rules admits, and one
    // that none does. With a fresh source port each time, so none is tracked.
    for (shape, label) in [
        (RuleShape::OnePortEach, "1,000 rules of one port each"),
        (
            RuleShape::AllPorts,
            "1,000 rules of tcp:* from one host each",
        ),
        (
            RuleShape::WideSources,
            "1,000 rules of tcp:* from a /24 each",
        ),
        (
            RuleShape::SharedSource,
            "1,000 rules from one /8 to a /24 route each",
        ),
    ] {
        let mut filter = Filter::new(FLOW_LIMIT, (1, 2));
        filter.replace(Some(policy(shape)), t0);
        let admitted: Vec<Vec<u8>> = (0..FLOWS)
            .map(|i| first_packet(shape, i, RULES - 1))
            .collect();
        // Each round starts from an empty table (its memory kept), so that
        // every packet is a first one and is tracked, as in real use.
        let mut ns = f64::MAX;
        for _ in 0..rounds {
            filter.replace(None, t0);
            filter.replace(Some(policy(shape)), t0);
            ns = ns.min(best(1, &admitted, |p| filter.handle_inbound(p, t0).is_ok()));
        }
        println!("first packet, admitted by the last rule, {label}: {ns:>7.1} ns/packet");
        let denied: Vec<Vec<u8>> = (0..FLOWS)
            .map(|i| first_packet(shape, i, RULES + 7))
            .collect();
        let ns = best(rounds, &denied, |p| filter.handle_inbound(p, t0).is_err());
        println!("first packet, denied, {label}: {ns:>7.1} ns/packet");
    }
}

#[derive(Clone, Copy)]
enum RuleShape {
    /// Rule `i` admits peer `i` to tcp port 2000 + i.
    OnePortEach,
    /// Rule `i` admits peer `i` to every tcp port.
    AllPorts,
    /// Rule `i` admits peer `i`'s /24 to every tcp port: no host to index by.
    WideSources,
    /// Rule `i` admits 10.0.0.0/8 to route `i` (a subnet router's many
    /// routes): the source buckets them all together, the routes apart.
    SharedSource,
}

/// Peer `i`: 10.(1 + i / 256).(i % 256).1, each in a /24 of its own.
fn peer(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 1 + (i >> 8) as u8, i as u8, 1)
}

fn policy(shape: RuleShape) -> PacketFilter {
    let inbound = (0..RULES)
        .map(|i| FilterRule {
            rule: format!("allow[{i}]"),
            src: vec![match shape {
                RuleShape::WideSources => net(peer(i), 24),
                RuleShape::SharedSource => net(peer(i), 8),
                _ => IpNet::from(IpAddr::V4(peer(i))),
            }],
            dst: vec![match shape {
                RuleShape::SharedSource => net(route(i), 24),
                _ => IpNet::from(IpAddr::V4(OWN)),
            }],
            ports: vec![match shape {
                RuleShape::OnePortEach => PortRange {
                    protocol: Protocol::Tcp,
                    first: 2000 + i as u16,
                    last: 2000 + i as u16,
                },
                _ => PortRange {
                    protocol: Protocol::Tcp,
                    first: 1,
                    last: u16::MAX,
                },
            }],
        })
        .collect();
    PacketFilter {
        policy_version: 1,
        inbound,
        outbound: vec![],
    }
}

/// Segment `flags` of flow `i`: peer `i % 1,000` to its rule's port, from
/// source port 10,000 + `i / 1,000`.
fn flow_packet(i: u32, flags: u8) -> Vec<u8> {
    let rule = i % RULES;
    let sport = 10_000 + (i / RULES) as u16;
    tcp(peer(rule), sport, OWN, 2000 + rule as u16, flags)
}

fn net(addr: Ipv4Addr, len: u8) -> IpNet {
    IpNet::new(IpAddr::V4(addr), len).expect("a valid IPv4 prefix length")
}

/// Route `i`: 172.(16 + i / 256).(i % 256).1, in a /24 of its own.
fn route(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(172, 16 + (i >> 8) as u8, i as u8, 1)
}

/// A SYN from rule `rule`'s peer to its port (to its route for
/// `SharedSource`), from source port 20,000 + `i`; no rule names the peer
/// or route when `rule` is past the last.
fn first_packet(shape: RuleShape, i: u32, rule: u32) -> Vec<u8> {
    let (src, dst) = match shape {
        RuleShape::SharedSource => (peer(0), route(rule)),
        _ => (peer(rule), OWN),
    };
    tcp(src, 20_000 + i as u16, dst, 2000 + rule as u16, 0x02)
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        5 << 4,
        flags,
        0xff,
        0xff,
        0,
        0,
        0,
        0,
    ]);
    p
}

/// The best of `rounds` runs of `check` over `packets`, in ns per packet.
/// `check` must hold for every packet, or the figure would time the wrong path.
fn best(rounds: usize, packets: &[Vec<u8>], mut check: impl FnMut(&[u8]) -> bool) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for p in packets {
            if !check(black_box(p)) {
                eprintln!("error: a packet took the wrong path");
                std::process::exit(1);
            }
        }
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / packets.len() as f64
}
