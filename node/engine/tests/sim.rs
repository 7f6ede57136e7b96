//! Simulation tests: engines in a deterministic virtual world with a clock, latency, loss, an MTU, roaming, NATs and a relay.
//!
//! Run with `cargo test -p warren-engine --features mock-time --test sim`.
//! Without the feature this file compiles to nothing: boringtun would read
//! the real clock and minutes of protocol time would take minutes.
//!
//! # Layout
//! - `world`: the simulated world and its event loop.
//! - `underlay`: datagrams through NATs, links and the relay into engines.
//! - `link`: latency, loss and MTU, and the record of what the links carried.
//! - `nat`: NAT boxes (full cone, restricted, port-restricted, symmetric).
//! - `control`: the controller (STUN, relay, netmaps, call-me-maybe) and the shell's part.
//! - `ip`, `rng`: hand-built IP packets and the seeded PRNG.
//! - `sessions`: handshakes (first, crossing, rekey) and expiry.
//! - `paths`: roaming, loss, MTU.
//! - `hostile`: replays, spoofed sources, garbage, unknown keys.
//! - `traversal`: every pair of NAT behaviours, direct or relayed as `NATLAB.md` expects.
//! - `policy`: the access-policy filter between two engines: admitted flows, rejects, cut flows.
//! - `sites`: a site's router translating mapped prefixes between a member and its cluster.
//! - `recovery`: relay to direct, NAT rebinding, blocked UDP, peers on one LAN.
#![cfg(feature = "mock-time")]

#[path = "sim/control.rs"]
mod control;
#[path = "sim/hostile.rs"]
mod hostile;
#[path = "sim/ip.rs"]
mod ip;
#[path = "sim/link.rs"]
mod link;
#[path = "sim/nat.rs"]
mod nat;
#[path = "sim/paths.rs"]
mod paths;
#[path = "sim/policy.rs"]
mod policy;
#[path = "sim/recovery.rs"]
mod recovery;
#[path = "sim/rng.rs"]
mod rng;
#[path = "sim/sessions.rs"]
mod sessions;
#[path = "sim/sites.rs"]
mod sites;
#[path = "sim/traversal.rs"]
mod traversal;
#[path = "sim/underlay.rs"]
mod underlay;
#[path = "sim/world.rs"]
mod world;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nat::Behaviour;
use world::{NatId, NodeId, World};

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a valid socket address literal")
}

/// Two nodes that are each other's peers, 10 ms apart, neither having spoken yet.
pub fn two_nodes(seed: u64) -> (World, NodeId, NodeId) {
    let mut world = World::new(seed);
    let a = world.add_node("a", addr("192.0.2.1:51820"), Ipv4Addr::new(10, 99, 0, 1));
    let b = world.add_node("b", addr("198.51.100.2:51820"), Ipv4Addr::new(10, 99, 0, 2));
    world.connect(a, b);
    (world, a, b)
}

/// `a` sends packet 0 to `b` and `b` answers with packet 0, so that `a` is the
/// initiator and both have a current session.
pub fn establish(world: &mut World, a: NodeId, b: NodeId) {
    let (seen_a, seen_b) = (world.tun(a).len(), world.tun(b).len());
    world.send_app(a, b, 0);
    assert!(
        world.run_until(|w| w.tun(b).len() > seen_b, secs(1)),
        "a's first packet reached b"
    );
    world.send_app(b, a, 0);
    assert!(
        world.run_until(|w| w.tun(a).len() > seen_a, secs(1)),
        "b's answer reached a"
    );
}

/// True when no sequence number appears twice.
pub fn all_distinct(seqs: &[u32]) -> bool {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len() == seqs.len()
}

/// Where the controller (STUN and relay) lives, as in the namespace lab.
pub const CONTROLLER: &str = "192.0.2.10";

/// Two joined nodes `a` and `b`, each behind a NAT of the given behaviour (or
/// on the public side), disco peers of each other through a controller.
/// Addresses follow the namespace lab (`NATLAB.md`).
pub fn nat_pair(seed: u64, a: Behaviour, b: Behaviour) -> (World, NodeId, NodeId) {
    let mut world = World::new(seed);
    world.add_controller(CONTROLLER.parse().expect("an IP literal"));
    let a = add_site(&mut world, "a", a, "203.0.113", 1);
    let b = add_site(&mut world, "b", b, "198.51.100", 2);
    world.join(a);
    world.join(b);
    world.connect_disco(a, b);
    (world, a, b)
}

/// A node on a public prefix, or on LAN 10.0.`lan`.0/24 behind a NAT at `.1` of that prefix.
pub fn add_site(
    world: &mut World,
    name: &'static str,
    behaviour: Behaviour,
    public: &str,
    lan: u8,
) -> NodeId {
    let overlay = Ipv4Addr::new(10, 99, 0, lan);
    if behaviour == Behaviour::Public {
        return world.add_node(name, addr(&format!("{public}.2:51820")), overlay);
    }
    let nat = world.add_nat(
        format!("{public}.1")
            .parse::<IpAddr>()
            .expect("an IP literal"),
        behaviour,
    );
    let node = world.add_node(name, addr(&format!("10.0.{lan}.2:51820")), overlay);
    world.place_behind(node, nat);
    node
}

/// The NAT in front of `node`.
pub fn nat_of(world: &World, node: NodeId) -> NatId {
    world.node(node).nat.expect("the node sits behind a NAT")
}
