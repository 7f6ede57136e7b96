//! What the networks look like from outside: `warren status`, `warren ping` and `warren netcheck`.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use warren_proto::control::RefusalKind;
use warren_proto::local_api::{
    ControllerError, Counters, Effect, Netcheck, NetcheckNetwork, NetworkState, NetworkStatus,
    PathKind, PeerStatus, ReflexiveAddress, Status,
};
use warren_proto::netmap::{Netmap, NetmapPeer};
use warren_proto::{NetworkId, NodeId, NodePublicKey};

use super::super::network::{NetworkHandle, NetworkReport};
use super::super::{refusal, Refusal};
use super::{Joined, Managed};

impl Managed {
    pub(super) async fn network_status(&self, id: &NetworkId) -> NetworkStatus {
        match self.nets.get(id) {
            Some(net) => joined_status(net, self.seen(net), report(net.runner.as_ref()).await),
            None => static_status(None),
        }
    }

    /// What the rest of the agent knows of a joined network.
    fn seen(&self, net: &Joined) -> Seen<'_> {
        let controller = &net.config.controller;
        let running = !net.config.down;
        let id = net.config.network_id;
        Seen {
            transport: self.links.transport(controller).filter(|_| running),
            error: self.links.error(controller).filter(|_| running),
            down_for: self
                .links
                .down_since(controller)
                .filter(|_| running)
                .map(|since| since.elapsed()),
            routes_withheld: self.routes.withheld(),
            dns: self.dns.effect(id),
            routes: self.routes.effect(id),
        }
    }

    /// What the metrics endpoint shows: the status, with the DNS stubs'
    /// query counts and the routes in force.
    pub async fn metrics(&self) -> crate::metrics::Snapshot {
        crate::metrics::Snapshot {
            status: self.status().await,
            dns: self.dns.query_counts(),
            routes: self.routes.metrics().await,
        }
    }

    pub async fn status(&self) -> Status {
        let public_key = self.key.public_key();
        let mut networks = Vec::new();
        let mut peers = Vec::new();
        let mut counters = Counters::default();
        if let Some(s) = &self.static_net {
            let r = report(Some(s)).await;
            if let Some(r) = &r {
                counters.add(&r.counters);
                peers.extend(r.peers.iter().map(|p| peer_status("static", p, None)));
            }
            let mut status = static_status(r.as_ref());
            status.addresses = s.spec.addresses.clone();
            status.mtu = s.spec.mtu;
            status.data_plane = self.static_health();
            networks.push(status);
        } else if let Some(spec) = &self.static_spec {
            // Dead, waiting for its restart or given up on.
            let mut status = static_status(None);
            status.addresses = spec.addresses.clone();
            status.mtu = spec.mtu;
            status.data_plane = self.static_health();
            networks.push(status);
        }
        for (id, net) in &self.nets {
            let r = report(net.runner.as_ref()).await;
            if let Some(r) = &r {
                counters.add(&r.counters);
                let label = id.to_string();
                // By key, once: a search per peer made a status of 10,000
                // peers cost 50 million key comparisons.
                let meta: HashMap<&NodePublicKey, &NetmapPeer> = net
                    .netmap
                    .iter()
                    .flat_map(|m| &m.peers)
                    .map(|p| (&p.public_key, p))
                    .collect();
                peers.extend(
                    r.peers
                        .iter()
                        .map(|p| peer_status(&label, p, meta.get(&p.public_key).copied())),
                );
            }
            networks.push(joined_status(net, self.seen(net), r));
        }
        Status {
            public_key,
            node_id: NodeId::from_key(&public_key),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            networks,
            peers,
            counters,
            task_failures: self.tasks.failures(),
        }
    }
}

async fn report(runner: Option<&NetworkHandle>) -> Option<NetworkReport> {
    match runner {
        Some(r) => r.report().await,
        None => None,
    }
}

fn static_status(report: Option<&NetworkReport>) -> NetworkStatus {
    NetworkStatus {
        id: "static".into(),
        name: None,
        controller: None,
        controller_connected: false,
        controller_transport: None,
        state: NetworkState::Static,
        message: None,
        fqdn: None,
        interface: report.map(|r| r.interface.clone()),
        listen_port: report.map(|r| r.listen_port),
        addresses: Vec::new(),
        mtu: crate::config::DEFAULT_MTU,
        offload: report.is_some_and(|r| r.offload),
        netmap_version: None,
        netmap_apply_us: None,
        counters: report.map(|r| r.counters.clone()).unwrap_or_default(),
        filter: report.map(|r| r.filter.clone()).unwrap_or_default(),
        sign_in_url: None,
        owner: None,
        expires_at: None,
        sign_in_refused: None,
        fingerprint: None,
        refusal: None,
        controller_error: None,
        controller_down_secs: None,
        dns: Effect::default(),
        routes: Effect::default(),
        data_plane: None,
        site: None,
    }
}

/// What the rest of the agent knows of a joined network: its controller's
/// connection, and its effects on the system.
struct Seen<'a> {
    /// What the controller connection runs over, while it is up.
    transport: Option<warren_proto::local_api::ControlTransport>,
    error: Option<&'a ControllerError>,
    down_for: Option<std::time::Duration>,
    /// Why no route is installed or advertised, said on authorized
    /// networks that have nothing else to say.
    routes_withheld: Option<String>,
    dns: Effect,
    routes: Effect,
}

fn joined_status(net: &Joined, seen: Seen<'_>, report: Option<NetworkReport>) -> NetworkStatus {
    let map = net.netmap.as_ref();
    let message = match (&net.message, net.state) {
        (None, NetworkState::Authorized) => seen.routes_withheld,
        (message, _) => message.clone(),
    };
    let refusal = match net.state {
        NetworkState::Refused => message.as_deref().map(RefusalKind::of),
        _ => None,
    };
    NetworkStatus {
        id: net.config.network_id.to_string(),
        name: map.map(|m| m.network_name.clone()),
        controller: Some(net.config.controller.clone()),
        controller_connected: seen.transport.is_some(),
        controller_transport: seen.transport,
        state: net.state,
        message,
        fqdn: map.map(|m| m.self_node.fqdn.clone()),
        interface: report.as_ref().map(|r| r.interface.clone()),
        listen_port: Some(net.config.listen_port),
        addresses: map
            .map(|m| m.self_node.addresses.clone())
            .unwrap_or_default(),
        mtu: map.map_or(crate::config::DEFAULT_MTU, |m| m.settings.mtu),
        offload: report.as_ref().is_some_and(|r| r.offload),
        netmap_version: map.map(|m| m.version),
        netmap_apply_us: net
            .applied_in
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        filter: report
            .as_ref()
            .map(|r| r.filter.clone())
            .unwrap_or_default(),
        counters: report.map(|r| r.counters).unwrap_or_default(),
        sign_in_url: net.sign_in_url.clone().filter(|_| {
            net.login.is_some()
                || matches!(net.state, NetworkState::Pending | NetworkState::Expired)
        }),
        owner: map.and_then(|m| m.self_node.owner.clone()),
        expires_at: map.and_then(|m| m.self_node.expires_at.clone()),
        sign_in_refused: net.sign_in_refused.clone(),
        fingerprint: net.config.fingerprint.clone(),
        refusal,
        controller_error: seen.error.filter(|_| seen.transport.is_none()).cloned(),
        controller_down_secs: seen
            .down_for
            .filter(|_| seen.transport.is_none())
            .map(|d| d.as_secs()),
        dns: seen.dns,
        routes: seen.routes,
        data_plane: net.plane.health(tokio::time::Instant::now()),
        site: map.and_then(|m| {
            m.settings
                .sites
                .iter()
                .find(|s| s.routers.contains(&m.self_node.node_id))
                .map(|s| s.name.clone())
        }),
    }
}

/// `meta`: what the netmap says of the peer (none for static peers).
fn peer_status(
    network: &str,
    p: &warren_engine::PeerSnapshot,
    meta: Option<&NetmapPeer>,
) -> PeerStatus {
    let now = time::OffsetDateTime::now_utc();
    PeerStatus {
        network: network.to_owned(),
        public_key: p.public_key,
        node_id: meta.map(|m| m.node_id),
        name: meta.map(|m| m.name.clone()),
        online: meta.map(|m| m.online),
        addresses: p.allowed_ips.clone(),
        // A relayed peer's `endpoint` is only a candidate address that does not
        // answer; what carries its traffic is the relay.
        endpoint: match p.path {
            warren_engine::PathKind::Relay => Some("relay".to_owned()),
            _ => p.endpoint.map(|e| e.to_string()),
        },
        // The engine knows only the age of the handshake: whole seconds keep
        // the time steady between reads (as `wg show` does).
        last_handshake: p.since_last_handshake.map(|d| {
            let at = now - d;
            at.replace_nanosecond(0).unwrap_or(at)
        }),
        rx_bytes: p.rx_bytes,
        tx_bytes: p.tx_bytes,
        persistent_keepalive: p.persistent_keepalive.map(|d| d.as_secs()),
        path: path_kind(p.path),
        latency_ms: p.latency.map(|d| d.as_secs_f64() * 1000.0),
        counters: p.counters,
    }
}

pub(crate) fn path_kind(path: warren_engine::PathKind) -> PathKind {
    match path {
        warren_engine::PathKind::Direct => PathKind::Direct,
        warren_engine::PathKind::Relay => PathKind::Relay,
        warren_engine::PathKind::None => PathKind::None,
    }
}

/// A peer found for `warren ping`, with the way to its data plane.
pub struct PingTarget {
    pub network: String,
    pub key: warren_proto::NodePublicKey,
    pub name: Option<String>,
    pub answer: tokio::sync::oneshot::Receiver<super::super::network::PingOutcome>,
}

impl Managed {
    /// Finds a peer by name, FQDN, node ID, overlay address or key, and starts a ping.
    pub async fn ping(&self, query: &str) -> Result<PingTarget, Refusal> {
        let query = query.trim();
        let ip: Option<std::net::IpAddr> = query.parse().ok();
        let mut runners: Vec<(String, &NetworkHandle, Option<&Netmap>)> = Vec::new();
        if let Some(s) = &self.static_net {
            runners.push(("static".into(), s, None));
        }
        for (id, net) in &self.nets {
            if let Some(r) = &net.runner {
                runners.push((id.to_string(), r, net.netmap.as_ref()));
            }
        }
        for (label, runner, map) in runners {
            let found = map.and_then(|m| {
                m.peers.iter().find(|p| {
                    p.name == query
                        || format!("{}.{}", p.name, m.dns.zone) == query.trim_end_matches('.')
                        || p.node_id.to_string() == query
                        || p.public_key.to_string() == query
                        || ip.is_some_and(|ip| p.addresses.iter().any(|a| a.addr() == ip))
                })
            });
            let target = match found {
                Some(p) => Some((p.public_key, Some(p.name.clone()))),
                None => {
                    let peers = runner.report().await.map(|r| r.peers).unwrap_or_default();
                    peers
                        .into_iter()
                        .find(|p| {
                            p.public_key.to_string() == query
                                || ip
                                    .is_some_and(|ip| p.allowed_ips.iter().any(|a| a.contains(&ip)))
                        })
                        .map(|p| (p.public_key, None))
                }
            };
            if let Some((key, name)) = target {
                let answer = runner
                    .ping(key)
                    .await
                    .ok_or_else(|| refusal(503, "stopping", "the data plane is stopping"))?;
                return Ok(PingTarget {
                    network: label,
                    key,
                    name,
                    answer,
                });
            }
        }
        Err(refusal(
            404,
            "unknown_peer",
            format!("no peer matches {query:?}"),
        ))
    }

    pub async fn netcheck(&self) -> Netcheck {
        let mut networks = Vec::new();
        for (id, net) in &self.nets {
            let Some(runner) = &net.runner else {
                continue;
            };
            let seen = runner.netcheck().await;
            let mapped: BTreeSet<SocketAddr> = seen.iter().map(|(_, m)| *m).collect();
            networks.push(NetcheckNetwork {
                network: id.to_string(),
                listen_port: Some(net.config.listen_port),
                reflexive: seen
                    .iter()
                    .map(|(s, m)| ReflexiveAddress {
                        server: s.to_string(),
                        mapped: m.to_string(),
                    })
                    .collect(),
                mapping_varies_by_destination: (seen.len() >= 2).then_some(mapped.len() > 1),
                relay: self.links.is_connected(&net.config.controller),
                relay_server: self.links.relay_server(&net.config.controller).cloned(),
                port_mapping: self.portmaps.mapping(net.config.listen_port).map(|m| {
                    warren_proto::local_api::PortMapping {
                        protocol: m.protocol.as_str().to_owned(),
                        gateway: m.gateway.to_string(),
                        external: m.external.to_string(),
                        lifetime_secs: m.lifetime.as_secs(),
                    }
                }),
            });
        }
        Netcheck { networks }
    }
}
