//! Netmaps and deltas from a controller, applied as the agent applies them:
//! a delta on the map held, the agent's checks (`validate::judge`), then
//! what an accepted map configures: the engine's filter and peers (with
//! endpoint candidates screened by `endpoints`) and the network's DNS zone.
//! Call-me-maybe requests go through the same screen into the engine.
//!
//! The input is what the controller's stream carries: control frames (a
//! 4-byte length, then JSON), read until one does not decode. After each
//! delta that applies, the map is the old one with the delta's peers
//! upserted and removed, sorted and unique, at the delta's version; the
//! delta between any two maps held turns the first into the second; and
//! the engine holds exactly the peers of the map it was last given.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use warren_engine::{Engine, EngineConfig, PeerConfig};
use warren_proto::control::{self, ControllerMessage};
use warren_proto::netmap::{Netmap, NetmapDelta, SentNetmap};
use warren_proto::{NodeId, NodePrivateKey};

use crate::daemon::managed::endpoints::{self, Overlay, MAX_CANDIDATES};
use crate::daemon::managed::validate::{self, Verdict};
use crate::dns::zone::{self, ZoneView};

/// The simulated world's seeded generator: the engine's randomness replays.
#[allow(dead_code)]
#[path = "../../node/engine/tests/sim/rng.rs"]
mod rng;

/// The agent's persistent keepalive for netmap peers.
const KEEPALIVE: Duration = Duration::from_secs(25);

struct Agent {
    held: Option<Netmap>,
    engine: Engine,
    now: Instant,
}

pub fn run(data: &[u8]) {
    let mut agent = Agent {
        held: None,
        engine: Engine::new(EngineConfig::new(
            NodePrivateKey::from_bytes([0x5e; 32]),
            Box::new(rng::Rng::new(0x5e)),
        )),
        now: Instant::now(),
    };
    let mut stream = data;
    while let Some((prefix, rest)) = stream.split_first_chunk::<4>() {
        let Ok(len) = control::frame_len(*prefix) else {
            return;
        };
        let Some((body, after)) = rest.split_at_checked(len) else {
            return;
        };
        let Ok(message) = control::decode_frame::<ControllerMessage>(body) else {
            return;
        };
        agent.now += Duration::from_millis(100);
        match message {
            ControllerMessage::Netmap(map) => agent.accept(map, true),
            ControllerMessage::NetmapDelta(delta) => agent.delta(&delta),
            ControllerMessage::CallMeMaybe {
                network_id,
                from,
                endpoints,
                nat,
            } => {
                if let Some(map) = agent.held.as_ref().filter(|m| m.network_id == network_id) {
                    let kept = screened(map, &from, &endpoints);
                    agent
                        .engine
                        .handle_call_me_maybe(from, &kept, nat, agent.now);
                }
            }
            _ => {}
        }
        stream = after;
    }
}

impl Agent {
    fn delta(&mut self, delta: &NetmapDelta) {
        // The daemon asks for a full map when it holds none.
        let Some(old) = &self.held else {
            return;
        };
        let mut map = old.clone();
        if map.apply(delta).is_err() {
            assert_eq!(map, *old, "a delta that does not apply changes nothing");
            return;
        }
        applied(old, delta, &map);
        self.accept(map, false);
    }

    fn accept(&mut self, map: Netmap, full: bool) {
        let held = self.held.as_ref().map(|m| m.version);
        match validate::judge(&map, full, held, &[]) {
            Verdict::Apply => {}
            Verdict::IgnoreOlder { held } => {
                assert!(full && map.version < held);
                return;
            }
            Verdict::Refuse(_) => return,
        }
        if let Some(old) = &self.held {
            diff_reaches(old, &map);
        }
        self.configure(&map);
        // The DNS zone is rebuilt from the map; a zone that does not load is logged.
        let _ = zone::load(&ZoneView::of(&map), 1);
        self.held = Some(map);
    }

    /// What `apply` in the daemon gives the engine.
    fn configure(&mut self, map: &Netmap) {
        self.engine.set_filter(map.filter.clone(), self.now);
        let peers: Vec<PeerConfig> = map
            .peers
            .iter()
            .map(|p| PeerConfig {
                public_key: p.public_key,
                endpoint: None,
                allowed_ips: p.addresses.clone(),
                persistent_keepalive: Some(KEEPALIVE),
                disco: true,
                candidates: screened(map, &p.public_key, &p.endpoints),
            })
            .collect();
        let wanted: BTreeSet<_> = peers.iter().map(|p| p.public_key).collect();
        for key in self.engine.peer_keys() {
            if !wanted.contains(&key) {
                self.engine.remove_peer(&key);
            }
        }
        for peer in peers {
            // A peer the engine refuses (our own key) is logged and left out.
            let _ = self.engine.upsert_peer(peer, self.now);
        }
        let held: BTreeSet<_> = self.engine.peer_keys().into_iter().collect();
        assert!(
            held.is_subset(&wanted),
            "the engine holds only the map's peers"
        );
        self.engine.handle_timeout(self.now);
        while self.engine.poll_transmit().is_some() {}
        while self.engine.poll_event().is_some() {}
    }
}

/// A peer's candidates as the agent lets the engine probe them.
fn screened(
    map: &Netmap,
    peer: &warren_proto::NodePublicKey,
    candidates: &[SocketAddr],
) -> Vec<SocketAddr> {
    let overlay = Overlay::of(map);
    let kept = endpoints::keep_valid(map.network_id, peer, candidates, &overlay);
    assert!(kept.len() <= MAX_CANDIDATES);
    for c in &kept {
        assert!(candidates.contains(c));
        assert!(c.port() != 0 && !c.ip().is_loopback() && !c.ip().is_multicast());
        assert!(!c.ip().is_unspecified());
        assert!(!map
            .self_node
            .addresses
            .iter()
            .any(|a| a.trunc().contains(&c.ip())));
    }
    kept
}

/// `new` is `old` with the delta's peers removed and upserted, in order.
fn applied(old: &Netmap, delta: &NetmapDelta, new: &Netmap) {
    assert_eq!(new.version, delta.version);
    let ids: Vec<NodeId> = new.peers.iter().map(|p| p.node_id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "peers sorted and unique"
    );
    let mut expected: BTreeMap<NodeId, _> = old.peers.iter().map(|p| (p.node_id, p)).collect();
    for id in &delta.remove_peers {
        expected.remove(id);
    }
    for p in &delta.upsert_peers {
        expected.insert(p.node_id, p);
    }
    assert!(new.peers.iter().eq(expected.into_values()));
}

/// The delta a controller would send from `old` to `new` makes `new` again.
fn diff_reaches(old: &Netmap, new: &Netmap) {
    let sorted = new.peers.windows(2).all(|w| w[0].node_id < w[1].node_id);
    if old.network_id != new.network_id || !sorted {
        return;
    }
    for delta in [old.diff(new), SentNetmap::of(old).diff(new)] {
        let mut again = old.clone();
        again.apply(&delta).expect("a diff applies to its base");
        assert_eq!(
            &again, new,
            "the diff from version {} to {}",
            old.version, new.version
        );
    }
}

// Each check of a crate brings its own copy of the replay helpers.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[macro_use]
#[path = "inputs.rs"]
mod inputs;

#[cfg(test)]
replay_tests!("netmap", 4);

#[cfg(test)]
#[path = "samples.rs"]
mod samples;

#[cfg(test)]
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let frame = |m: ControllerMessage| control::encode_frame(&m).expect("a frame");
    let v1 = samples::netmap(1, &[2, 3]);
    let mut v2 = samples::netmap(2, &[3, 4, 5]);
    v2.peers[0].online = false;
    let mut v3 = samples::netmap(3, &[4, 5]);
    v3.dns.zone = "lab.warren.internal".into();
    v3.settings.mtu = 1380;
    let mut revoked = v3.clone();
    revoked.version = 4;
    revoked.self_node.authorized = false;
    let mut bad_zone = samples::netmap(5, &[4]);
    bad_zone.dns.zone = "com".into();
    let call = ControllerMessage::CallMeMaybe {
        network_id: v1.network_id,
        from: samples::peer(3, true).public_key,
        endpoints: vec![
            "198.51.100.3:51820".parse().expect("addr"),
            "127.0.0.1:1".parse().expect("addr"),
            "10.147.0.3:51820".parse().expect("addr"),
        ],
        nat: Some(control::NatHint::PerDestination {
            ip: "198.51.100.3".parse().expect("addr"),
        }),
    };
    let tombstone = SentNetmap::of(&v3).tombstone(4);
    vec![
        (
            "full-then-deltas",
            [
                frame(ControllerMessage::Netmap(v1.clone())),
                frame(ControllerMessage::NetmapDelta(v1.diff(&v2))),
                frame(call),
                frame(ControllerMessage::NetmapDelta(
                    SentNetmap::of(&v2).diff(&v3),
                )),
                frame(ControllerMessage::NetmapDelta(tombstone)),
            ]
            .concat(),
        ),
        (
            "older-and-refused",
            [
                frame(ControllerMessage::Netmap(v3.clone())),
                frame(ControllerMessage::Netmap(v1.clone())),
                frame(ControllerMessage::Netmap(bad_zone)),
                frame(ControllerMessage::Netmap(revoked)),
            ]
            .concat(),
        ),
        (
            "delta-gap",
            [
                frame(ControllerMessage::Netmap(v1.clone())),
                frame(ControllerMessage::NetmapDelta(v2.diff(&v3))),
            ]
            .concat(),
        ),
    ]
}
