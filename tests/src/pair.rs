//! Two overlay nodes on the [`TwoHosts`] topology, each either a `warren`
//! agent or wireguard-go, configured as each other's peer. Node a is
//! overlay node 1 (10.99.0.1, fd99::1), node b is node 2.

use std::net::SocketAddr;

use crate::error::{LabError, Result};
use crate::keys::KeyPair;
use crate::lab::Lab;
use crate::netns::Netns;
use crate::node_spec::{overlay, NodeSpec, PeerSpec};
use crate::topology::TwoHosts;
use crate::warren::{self, Agent};
use crate::wggo::WgGo;

/// Which implementation runs a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    Warren,
    WireguardGo,
}

/// A running node of either kind.
#[derive(Debug)]
pub enum Node {
    Warren(Agent),
    WireguardGo(WgGo),
}

impl Node {
    /// The agent, for checks only `warren status` can answer.
    pub fn agent(&self) -> Result<&Agent> {
        match self {
            Node::Warren(agent) => Ok(agent),
            Node::WireguardGo(_) => Err(LabError::Invalid(
                "this node is wireguard-go, not a warren agent".to_owned(),
            )),
        }
    }

    pub fn agent_mut(&mut self) -> Result<&mut Agent> {
        match self {
            Node::Warren(agent) => Ok(agent),
            Node::WireguardGo(_) => Err(LabError::Invalid(
                "this node is wireguard-go, not a warren agent".to_owned(),
            )),
        }
    }

    /// Errors with the log tail if the node's process has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self {
            Node::Warren(agent) => agent.ensure_running(),
            Node::WireguardGo(wg) => wg.process().ensure_running(),
        }
    }
}

/// How to build a [`Pair`].
#[derive(Debug, Clone)]
pub struct PairOptions {
    pub a: Implementation,
    pub b: Implementation,
    /// Whether a is configured with b's endpoint (and so can initiate).
    pub a_knows_b: bool,
    pub b_knows_a: bool,
    /// Use the IPv6 underlay (2001:db8::/64) for endpoints.
    pub underlay_v6: bool,
    /// Persistent keepalive b sends towards a, in seconds.
    pub b_keepalive: Option<u32>,
    pub port_a: u16,
    pub port_b: u16,
}

impl PairOptions {
    /// Two warren agents that know each other's IPv4 endpoint.
    pub fn warren() -> PairOptions {
        PairOptions::of(Implementation::Warren, Implementation::Warren)
    }

    pub fn of(a: Implementation, b: Implementation) -> PairOptions {
        PairOptions {
            a,
            b,
            a_knows_b: true,
            b_knows_a: true,
            underlay_v6: false,
            b_keepalive: None,
            port_a: 51820,
            port_b: 51820,
        }
    }
}

/// Two nodes and the namespaces they run in. Fields drop in order: the
/// nodes stop before their namespaces are deleted.
#[derive(Debug)]
pub struct Pair {
    pub a: Node,
    pub b: Node,
    pub hosts: TwoHosts,
    pub key_a: KeyPair,
    pub key_b: KeyPair,
    pub options: PairOptions,
}

fn key_for(lab: &Lab, which: Implementation, name: &str) -> Result<KeyPair> {
    match which {
        Implementation::Warren => warren::generate_key(lab, name),
        Implementation::WireguardGo => {
            let dir = lab.subdir(&format!("wg-{name}"))?;
            KeyPair::generate_with_wg(&dir.join("node.key"))
        }
    }
}

fn start(lab: &Lab, ns: &Netns, which: Implementation, spec: &NodeSpec) -> Result<Node> {
    Ok(match which {
        Implementation::Warren => Node::Warren(Agent::start(lab, ns, spec)?),
        Implementation::WireguardGo => Node::WireguardGo(WgGo::start(lab, ns, spec)?),
    })
}

impl Pair {
    pub fn build(lab: &Lab, options: PairOptions) -> Result<Pair> {
        let hosts = TwoHosts::build(lab)?;
        let key_a = key_for(lab, options.a, "a")?;
        let key_b = key_for(lab, options.b, "b")?;
        let v6 = options.underlay_v6;
        let endpoint_a = SocketAddr::new(TwoHosts::a_addr(v6), options.port_a);
        let endpoint_b = SocketAddr::new(TwoHosts::b_addr(v6), options.port_b);
        let spec_a = NodeSpec {
            name: "a".to_owned(),
            key: key_a.clone(),
            listen_port: options.port_a,
            addresses: overlay::addresses(1),
            peers: vec![PeerSpec {
                public_key: key_b.public_key.clone(),
                endpoint: options.a_knows_b.then_some(endpoint_b),
                allowed_ips: overlay::allowed_ips(2),
                persistent_keepalive: None,
            }],
        };
        let spec_b = NodeSpec {
            name: "b".to_owned(),
            key: key_b.clone(),
            listen_port: options.port_b,
            addresses: overlay::addresses(2),
            peers: vec![PeerSpec {
                public_key: key_a.public_key.clone(),
                endpoint: options.b_knows_a.then_some(endpoint_a),
                allowed_ips: overlay::allowed_ips(1),
                persistent_keepalive: options.b_keepalive,
            }],
        };
        let a = start(lab, &hosts.a, options.a, &spec_a)?;
        let b = start(lab, &hosts.b, options.b, &spec_b)?;
        Ok(Pair {
            a,
            b,
            hosts,
            key_a,
            key_b,
            options,
        })
    }

    /// Errors if either node's process has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.a.ensure_running()?;
        self.b.ensure_running()
    }
}
