//! Simulation tests: engines in a deterministic virtual world with a clock, latency, loss, an MTU and roaming.
//!
//! Run with `cargo test -p warren-engine --features mock-time --test sim`.
//! Without the feature this file compiles to nothing: boringtun would read
//! the real clock and minutes of protocol time would take minutes.
//!
//! # Layout
//! - `world`: the simulated world and its event loop.
//! - `link`: latency, loss and MTU, and the record of what the links carried.
//! - `ip`, `rng`: hand-built IP packets and the seeded PRNG.
//! - `sessions`: handshakes (first, crossing, rekey) and expiry.
//! - `paths`: roaming, loss, MTU.
//! - `hostile`: replays, spoofed sources, garbage, unknown keys.
#![cfg(feature = "mock-time")]

#[path = "sim/hostile.rs"]
mod hostile;
#[path = "sim/ip.rs"]
mod ip;
#[path = "sim/link.rs"]
mod link;
#[path = "sim/paths.rs"]
mod paths;
#[path = "sim/rng.rs"]
mod rng;
#[path = "sim/sessions.rs"]
mod sessions;
#[path = "sim/world.rs"]
mod world;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use world::{NodeId, World};

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
