//! The simulated controller and the shell's part in path discovery: STUN, the relay, netmap pushes and call-me-maybe.
//!
//! The controller sits on the public side. Its STUN ports answer binding
//! requests with the source they saw; its relay carries datagrams between
//! nodes, as the QUIC relay does, over control connections that no NAT
//! filters. The world also plays each node's shell: it turns `Reflexive`
//! events into the endpoint list the engine and the peers' netmaps get, and
//! forwards `CallMeMaybe` through the controller.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use warren_engine::{Event, PeerConfig};
use warren_proto::{stun, NodePublicKey};

use crate::link::Fate;
use crate::world::{Delivery, NodeId, World};

/// The shell's keepalive for netmap peers (`NETMAP_KEEPALIVE`).
const NETMAP_KEEPALIVE: Duration = Duration::from_secs(25);

/// The controller: where its STUN ports are and how far away it is.
#[derive(Debug, Clone)]
pub struct Controller {
    pub stun: Vec<SocketAddr>,
    /// One way between a node and the controller, for control messages and
    /// each leg of the relay.
    pub latency: Duration,
}

/// What the controller tells a node.
pub enum ControlMsg {
    /// A peer asks to be probed at these endpoints now.
    CallMeMaybe {
        from: NodePublicKey,
        endpoints: Vec<SocketAddr>,
        nat: Option<warren_proto::control::NatHint>,
    },
    /// A netmap change: this peer, with its current candidates.
    Peer(PeerConfig),
}

impl World {
    /// Puts a controller at `ip` with STUN on two ports, 10 ms from everyone.
    pub fn add_controller(&mut self, ip: IpAddr) {
        self.controller = Some(Controller {
            stun: vec![SocketAddr::new(ip, 3478), SocketAddr::new(ip, 3479)],
            latency: Duration::from_millis(10),
        });
    }

    pub fn controller(&self) -> &Controller {
        self.controller
            .as_ref()
            .expect("the world has a controller")
    }

    /// The node joins through the controller: it reports its own address,
    /// asks the STUN ports, and may use the relay.
    pub fn join(&mut self, node: NodeId) {
        let now = self.instant();
        let servers = self.controller().stun.clone();
        let endpoints = vec![self.nodes[node.0].addr];
        let engine = &mut self.nodes[node.0].engine;
        engine.set_local_endpoints(endpoints.clone(), now);
        engine.set_stun_servers(servers, now);
        engine.set_relay_available(true, now);
        self.nodes[node.0].endpoints = endpoints;
        self.drain(node.0);
    }

    /// Makes `a` and `b` disco peers of each other, as a netmap would, each
    /// knowing the other's endpoints as reported so far.
    pub fn connect_disco(&mut self, a: NodeId, b: NodeId) {
        for (node, peer) in [(a, b), (b, a)] {
            let config = self.disco_config(peer);
            let now = self.instant();
            self.nodes[node.0]
                .engine
                .upsert_peer(config, now)
                .expect("the simulation configures valid peers");
            self.disco_peers.insert((node, peer));
            self.drain(node.0);
        }
    }

    /// How the controller's netmap presents `node` to its peers.
    pub fn disco_config(&self, node: NodeId) -> PeerConfig {
        let n = self.node(node);
        PeerConfig {
            public_key: n.engine.public_key(),
            endpoint: None,
            allowed_ips: vec![
                IpNet::from(IpAddr::V4(n.overlay4)),
                IpNet::from(IpAddr::V6(n.overlay6)),
            ],
            persistent_keepalive: Some(NETMAP_KEEPALIVE),
            disco: true,
            candidates: n.endpoints.clone(),
        }
    }

    /// Through the relay, `from` sends `payload` to the node that holds `key`.
    /// Nobody holds it (or no controller): the frame is lost, as the relay would refuse it.
    pub(crate) fn relay(&mut self, from: NodeId, key: NodePublicKey, payload: Vec<u8>) {
        let to = self
            .nodes
            .iter()
            .position(|n| n.engine.public_key() == key)
            .map(NodeId);
        match (to, self.controller.as_ref()) {
            (Some(to), Some(c)) => {
                let at = self.now() + c.latency * 2;
                self.schedule(at, Delivery::Relay { from, to, payload });
            }
            _ => {
                let addr = self.nodes[from.0].addr;
                self.record(addr, addr, payload, Fate::NoHost, true);
            }
        }
    }

    pub(crate) fn deliver_relayed(&mut self, from: NodeId, to: NodeId, payload: Vec<u8>) {
        let (src, dst) = (self.nodes[from.0].addr, self.nodes[to.0].addr);
        self.record(src, dst, payload.clone(), Fate::Delivered, true);
        if let Err(e) = self.receive_relayed(to, from, &payload) {
            let now = self.now();
            self.nodes[to.0].errors.push((now, e));
        }
    }

    /// A STUN port answers a binding request with the source it saw.
    pub(crate) fn answer_stun(&mut self, from: SocketAddr, server: SocketAddr, request: &[u8]) {
        if let Ok(tx) = stun::parse_request(request) {
            let link = crate::link::Link {
                latency: self.controller().latency,
                ..crate::link::Link::default()
            };
            self.put_on_link(server, from, stun::binding_response(&tx, from), link);
        }
    }

    /// The shell's reaction to an engine event: new reflexive addresses are
    /// reported (and reach the peers' netmaps); call-me-maybe goes through
    /// the controller to the peer.
    pub(crate) fn on_event(&mut self, node: NodeId, event: &Event) {
        let Some(latency) = self.controller.as_ref().map(|c| c.latency) else {
            return;
        };
        let at = self.now() + latency * 2;
        let now = self.instant();
        match event {
            Event::Reflexive { server, mapped } => {
                let n = &mut self.nodes[node.0];
                n.reflexive.insert(*server, *mapped);
                let mut endpoints: Vec<SocketAddr> = Some(n.addr)
                    .into_iter()
                    .chain(n.reflexive.values().copied())
                    .collect();
                endpoints.sort();
                endpoints.dedup();
                if endpoints == n.endpoints {
                    return;
                }
                n.engine.set_local_endpoints(endpoints.clone(), now);
                n.endpoints = endpoints;
                let config = self.disco_config(node);
                let peers: Vec<NodeId> = self
                    .disco_peers
                    .iter()
                    .filter(|(_, p)| *p == node)
                    .map(|(n, _)| *n)
                    .collect();
                for peer in peers {
                    self.schedule(
                        at,
                        Delivery::Control(peer, ControlMsg::Peer(config.clone())),
                    );
                }
            }
            Event::CallMeMaybe {
                peer,
                endpoints,
                nat,
            } => {
                let from = self.nodes[node.0].engine.public_key();
                let to = self
                    .nodes
                    .iter()
                    .position(|n| n.engine.public_key() == *peer);
                if let Some(to) = to {
                    let msg = ControlMsg::CallMeMaybe {
                        from,
                        endpoints: endpoints.clone(),
                        nat: *nat,
                    };
                    self.schedule(at, Delivery::Control(NodeId(to), msg));
                }
            }
            _ => {}
        }
    }

    pub(crate) fn apply_control(&mut self, to: NodeId, msg: ControlMsg) {
        let now = self.instant();
        let engine = &mut self.nodes[to.0].engine;
        match msg {
            ControlMsg::CallMeMaybe {
                from,
                endpoints,
                nat,
            } => {
                engine.handle_call_me_maybe(from, &endpoints, nat, now);
            }
            ControlMsg::Peer(config) => {
                engine
                    .upsert_peer(config, now)
                    .expect("the controller sends valid peers");
            }
        }
        self.drain(to.0);
    }
}
