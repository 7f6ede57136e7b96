//! What the system should look like (pure): from the user's choices and the
//! netmaps of the networks that are up, the routes each engine sends to each
//! peer, the routes and policy rules of Warren's routing table, and the
//! stateful filter.
//!
//! Policy routing, as wg-quick and Tailscale do it: the agent's own UDP
//! sockets carry [`FWMARK`] and always use the main table; everything else
//! first tries the main table without its default route (so local networks
//! and anything more specific win), then Warren's table ([`TABLE`]) with the
//! accepted subnet routes and, with an exit node, a default route; then the
//! main table's default route. Exclusions (the controller, `--exclude`
//! prefixes) go straight to the main table.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use warren_proto::netmap::Netmap;
use warren_proto::routes::{
    captures, check_prefix, is_exit, overlaps, ExitNodeOffer, ExitNodeStatus, PeerRoute,
};
use warren_proto::{NetworkId, NodePublicKey};

use super::settings::Settings;

/// Warren's routing table ("WR").
pub const TABLE: u32 = 0x5752;
/// The firewall mark of the agent's own sockets.
pub const FWMARK: u32 = 0x5752;
/// Rule priorities, before the main table's 32766.
pub const PRIO_MARK: u32 = 5110;
pub const PRIO_EXCLUDE: u32 = 5120;
pub const PRIO_MAIN: u32 = 5130;
pub const PRIO_TABLE: u32 = 5140;
/// Every priority Warren's rules use; rules there are Warren's.
pub const PRIORITIES: [u32; 4] = [PRIO_MARK, PRIO_EXCLUDE, PRIO_MAIN, PRIO_TABLE];

/// One network that is up.
#[derive(Debug, Clone)]
pub struct NetInput<'a> {
    pub id: NetworkId,
    pub interface: &'a str,
    pub map: &'a Netmap,
    /// Where this network's controller is reached.
    pub controller_ips: &'a [IpAddr],
}

/// A policy rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub v6: bool,
    pub priority: u32,
    pub selector: Selector,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Selector {
    /// `fwmark FWMARK lookup main`: the agent's own packets.
    Mark,
    /// `to PREFIX lookup main`: kept off the tunnel.
    To(IpNet),
    /// `lookup main suppress_prefixlength 0`: main's routes but its default.
    MainWithoutDefault,
    /// `lookup TABLE`.
    Table,
}

impl Rule {
    fn new(v6: bool, selector: Selector) -> Rule {
        let priority = match selector {
            Selector::Mark => PRIO_MARK,
            Selector::To(_) => PRIO_EXCLUDE,
            Selector::MainWithoutDefault => PRIO_MAIN,
            Selector::Table => PRIO_TABLE,
        };
        Rule {
            v6,
            priority,
            selector,
        }
    }

    /// `ip` arguments after `ip -4|-6 rule add|del`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["priority".to_owned(), self.priority.to_string()];
        let tail: Vec<String> = match &self.selector {
            Selector::Mark => vec![
                "fwmark".into(),
                format!("{FWMARK:#x}"),
                "lookup".into(),
                "main".into(),
            ],
            Selector::To(p) => vec!["to".into(), p.to_string(), "lookup".into(), "main".into()],
            Selector::MainWithoutDefault => vec![
                "lookup".into(),
                "main".into(),
                "suppress_prefixlength".into(),
                "0".into(),
            ],
            Selector::Table => vec!["lookup".into(), TABLE.to_string()],
        };
        args.extend(tail);
        args
    }
}

/// An address prefix as one overlay interface (one network) sees it.
pub type OnTun = (String, IpNet);

/// The stateful filter of a node that forwards between the overlay and
/// elsewhere (see `nft.rs`). Every prefix belongs to the interface of the
/// network it came from, so that a node in several networks keeps them
/// apart: what network A allows never admits a packet of network B.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firewall {
    /// The overlay interfaces.
    pub tuns: Vec<String>,
    /// Sources peers may send from: their addresses and the subnet routes
    /// this node accepted from them (what the engines let in).
    pub members: Vec<OnTun>,
    /// This node's approved subnet routes: where overlay traffic may go.
    pub own: Vec<OnTun>,
    /// Accepted subnet routes of peers: where the LAN may start
    /// connections to (site to site), from `own` of the same network only.
    pub remote: Vec<OnTun>,
    /// Interfaces of networks where this node is an approved exit node for
    /// IPv4 / IPv6: their members' traffic may go anywhere.
    pub exit_v4: Vec<String>,
    pub exit_v6: Vec<String>,
    pub masquerade: bool,
    /// This node sends its default traffic to an exit node: replies to its
    /// own marked sockets get their mark back for reverse-path checks.
    pub exit_client: bool,
}

/// Per interface, the smallest list of prefixes that covers `list`.
fn aggregate_per_tun(list: &mut Vec<OnTun>) {
    let mut by_tun: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    for (tun, prefix) in list.drain(..) {
        by_tun.entry(tun).or_default().push(prefix);
    }
    for (tun, prefixes) in by_tun {
        list.extend(
            IpNet::aggregate(&prefixes)
                .into_iter()
                .map(|p| (tun.clone(), p)),
        );
    }
}

/// Everything the system should hold, and what to report about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Per network and peer: prefixes beyond its addresses that the engine
    /// routes to it (accepted subnet routes, exit routes).
    pub allowed: BTreeMap<NetworkId, BTreeMap<NodePublicKey, Vec<IpNet>>>,
    /// Routes of [`TABLE`]: prefix -> interface.
    pub table: BTreeMap<IpNet, String>,
    pub rules: BTreeSet<Rule>,
    pub firewall: Option<Firewall>,
    pub peer_routes: BTreeMap<NetworkId, Vec<PeerRoute>>,
    pub exit_offers: BTreeMap<NetworkId, Vec<ExitNodeOffer>>,
    pub exit: Option<ExitNodeStatus>,
}

/// Why an offered route is not installed, if it may not be.
fn refusal(
    prefix: &IpNet,
    overlays: &[IpNet],
    controller_ips: &[IpAddr],
    mine: &[IpNet],
    claimed: &[(IpNet, String)],
) -> Option<String> {
    if let Err(e) = check_prefix(prefix) {
        return Some(e.to_string());
    }
    if let Some(o) = overlays.iter().find(|o| overlaps(prefix, o)) {
        return Some(format!("overlaps the overlay prefix {o}"));
    }
    if let Some(ip) = captures(prefix, controller_ips) {
        return Some(format!("contains the controller's address {ip}"));
    }
    if let Some(m) = mine.iter().find(|m| overlaps(prefix, m)) {
        return Some(format!("overlaps {m}, which this node advertises"));
    }
    if let Some((c, from)) = claimed.iter().find(|(c, _)| overlaps(prefix, c)) {
        return Some(format!("overlaps {c}, accepted already from {from}"));
    }
    None
}

/// The plan for `inputs` (networks that are up) under `settings`.
pub fn plan(inputs: &[NetInput<'_>], settings: &Settings) -> Plan {
    let mut out = Plan::default();
    let mut inputs: Vec<&NetInput<'_>> = inputs.iter().collect();
    inputs.sort_by_key(|i| i.id);
    let overlays: Vec<IpNet> = inputs
        .iter()
        .flat_map(|i| i.map.self_node.addresses.iter().map(IpNet::trunc))
        .collect();
    let controller_ips: Vec<IpAddr> = inputs
        .iter()
        .flat_map(|i| i.controller_ips.iter().copied())
        .collect();
    let mut claimed: Vec<(IpNet, String)> = Vec::new();
    let mut firewall = Firewall {
        masquerade: settings.masquerade,
        ..Firewall::default()
    };
    for input in &inputs {
        let id = input.id;
        let map = input.map;
        let accept = settings.accepts(&id);
        let mut mine = settings.advertised(&id);
        mine.extend(map.self_node.routes.iter().map(|r| r.prefix));
        mine.retain(|p| !is_exit(p));
        let tun = input.interface.to_owned();
        firewall.tuns.push(tun.clone());
        for r in map.self_node.routes.iter().filter(|r| r.approved) {
            match (is_exit(&r.prefix), r.prefix) {
                (true, IpNet::V4(_)) => firewall.exit_v4.push(tun.clone()),
                (true, IpNet::V6(_)) => firewall.exit_v6.push(tun.clone()),
                (false, p) => firewall.own.push((tun.clone(), p)),
            }
        }
        let mut statuses = Vec::new();
        let mut offers = Vec::new();
        for peer in &map.peers {
            firewall.members.extend(
                peer.addresses
                    .iter()
                    .filter(|a| !is_exit(a))
                    .map(|a| (tun.clone(), *a)),
            );
            let exits: Vec<IpNet> = peer.routes.iter().filter(|r| is_exit(r)).copied().collect();
            if !exits.is_empty() {
                offers.push(ExitNodeOffer {
                    node_id: peer.node_id,
                    name: peer.name.clone(),
                    online: peer.online,
                    prefixes: exits,
                });
            }
            for prefix in peer.routes.iter().filter(|r| !is_exit(r)) {
                let mut status = PeerRoute {
                    prefix: *prefix,
                    node_id: peer.node_id,
                    name: peer.name.clone(),
                    online: peer.online,
                    installed: false,
                    refused: None,
                };
                if accept {
                    status.refused = refusal(prefix, &overlays, &controller_ips, &mine, &claimed);
                    if status.refused.is_none() {
                        status.installed = true;
                        claimed.push((*prefix, peer.name.clone()));
                        out.allowed
                            .entry(id)
                            .or_default()
                            .entry(peer.public_key)
                            .or_default()
                            .push(*prefix);
                        out.table.insert(*prefix, input.interface.to_owned());
                        firewall.members.push((tun.clone(), *prefix));
                        firewall.remote.push((tun.clone(), *prefix));
                    }
                }
                statuses.push(status);
            }
        }
        out.peer_routes.insert(id, statuses);
        out.exit_offers.insert(id, offers);
    }
    let mut excludes: Vec<IpNet> = controller_ips.iter().map(|ip| IpNet::from(*ip)).collect();
    if let Some(choice) = &settings.exit_node {
        let input = inputs.iter().find(|i| i.id == choice.network);
        let peer = input.and_then(|i| i.map.peers.iter().find(|p| p.node_id == choice.node_id));
        let exits: Vec<IpNet> = peer
            .map(|p| p.routes.iter().filter(|r| is_exit(r)).copied().collect())
            .unwrap_or_default();
        let message = match (input, peer) {
            (None, _) => Some(format!("network {} is not up", choice.network)),
            (Some(_), None) => Some(format!("{} is not a peer in network {}", choice.node_id, choice.network)),
            (Some(_), Some(p)) if exits.is_empty() => Some(format!(
                "{} offers no approved exit route (it must advertise 0.0.0.0/0 or ::/0, and an admin approve it)",
                p.name
            )),
            _ => None,
        };
        if let (Some(input), Some(peer), None) = (input, peer, &message) {
            for prefix in &exits {
                out.allowed
                    .entry(input.id)
                    .or_default()
                    .entry(peer.public_key)
                    .or_default()
                    .push(*prefix);
                out.table.insert(*prefix, input.interface.to_owned());
            }
            firewall.exit_client = true;
            excludes.extend(choice.exclude.iter().copied());
        }
        out.exit = Some(ExitNodeStatus {
            network: choice.network,
            node_id: choice.node_id,
            name: peer.map(|p| p.name.clone()).unwrap_or_default(),
            exclude: choice.exclude.iter().copied().collect(),
            active: message.is_none(),
            message,
        });
    }
    for v6 in [false, true] {
        if !out.table.keys().any(|p| p.addr().is_ipv6() == v6) {
            continue;
        }
        out.rules.insert(Rule::new(v6, Selector::Mark));
        out.rules
            .insert(Rule::new(v6, Selector::MainWithoutDefault));
        out.rules.insert(Rule::new(v6, Selector::Table));
        for e in excludes.iter().filter(|e| e.addr().is_ipv6() == v6) {
            out.rules.insert(Rule::new(v6, Selector::To(e.trunc())));
        }
    }
    if !firewall.tuns.is_empty() {
        for list in [
            &mut firewall.members,
            &mut firewall.own,
            &mut firewall.remote,
        ] {
            aggregate_per_tun(list);
        }
        out.firewall = Some(firewall);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::routes::settings::{ExitChoice, NetworkChoice};
    use warren_proto::netmap::{DnsConfig, NetmapPeer, NetworkSettings, SelfNode};
    use warren_proto::routes::SelfRoute;
    use warren_proto::{NodeId, NodePrivateKey};

    pub(crate) fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    pub(crate) fn id() -> NetworkId {
        "8056c2e21c000001".parse().unwrap()
    }

    pub(crate) fn peer(seed: u8, routes: &[&str]) -> NetmapPeer {
        let key = NodePrivateKey::from_bytes([seed; 32]).public_key();
        NetmapPeer {
            node_id: NodeId::from_key(&key),
            name: format!("n{seed}"),
            public_key: key,
            addresses: vec![net(&format!("10.147.0.{seed}/32"))],
            routes: routes.iter().map(|r| net(r)).collect(),
            endpoints: vec![],
            online: true,
        }
    }

    pub(crate) fn map(peers: Vec<NetmapPeer>, own: &[(&str, bool)]) -> Netmap {
        Netmap {
            network_id: id(),
            network_name: "prod".into(),
            version: 1,
            self_node: SelfNode {
                node_id: NodeId::from_key(&NodePrivateKey::from_bytes([1; 32]).public_key()),
                name: "me".into(),
                fqdn: "me.prod.warren.internal".into(),
                addresses: vec![net("10.147.0.1/16")],
                authorized: true,
                owner: None,
                expires_at: None,
                expired: false,
                routes: own
                    .iter()
                    .map(|(p, approved)| SelfRoute {
                        prefix: net(p),
                        approved: *approved,
                        primary: *approved,
                    })
                    .collect(),
            },
            peers,
            dns: DnsConfig {
                zone: "prod.warren.internal".into(),
                services: vec![],
            },
            settings: NetworkSettings {
                mtu: 1420,
                stun_ports: vec![],
                sites: Vec::new(),
            },
            filter: None,
        }
    }

    pub(crate) fn accepting() -> Settings {
        let mut s = Settings::default();
        s.networks.insert(
            id(),
            NetworkChoice {
                advertise: Default::default(),
                accept: true,
                site: None,
            },
        );
        s
    }

    const CONTROLLER: [IpAddr; 1] = [IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10))];

    fn input(map: &Netmap) -> NetInput<'_> {
        NetInput {
            id: id(),
            interface: "warren0",
            map,
            controller_ips: &CONTROLLER,
        }
    }

    #[test]
    fn nothing_is_installed_without_accept() {
        let m = map(vec![peer(2, &["10.96.0.0/12", "0.0.0.0/0"])], &[]);
        let p = plan(&[input(&m)], &Settings::default());
        assert!(p.table.is_empty() && p.rules.is_empty() && p.allowed.is_empty());
        let routes = &p.peer_routes[&id()];
        assert_eq!(routes.len(), 1);
        assert!(!routes[0].installed && routes[0].refused.is_none());
        assert_eq!(p.exit_offers[&id()][0].prefixes, vec![net("0.0.0.0/0")]);
        // The filter is there all the same, with the peer as a member.
        let fw = p.firewall.unwrap();
        assert_eq!(fw.tuns, vec!["warren0"]);
        assert_eq!(
            fw.members,
            vec![("warren0".to_string(), net("10.147.0.2/32"))]
        );
        assert!(fw.own.is_empty() && fw.exit_v4.is_empty() && fw.masquerade);
    }

    #[test]
    fn accepted_routes_go_to_the_table_with_policy_rules() {
        let a = peer(2, &["10.96.0.0/12"]);
        let m = map(vec![a.clone()], &[]);
        let p = plan(&[input(&m)], &accepting());
        assert_eq!(
            p.table.get(&net("10.96.0.0/12")).map(String::as_str),
            Some("warren0")
        );
        assert_eq!(p.allowed[&id()][&a.public_key], vec![net("10.96.0.0/12")]);
        let rules: Vec<Vec<String>> = p.rules.iter().map(Rule::args).collect();
        assert_eq!(
            rules,
            vec![
                vec!["priority", "5110", "fwmark", "0x5752", "lookup", "main"],
                vec!["priority", "5120", "to", "192.0.2.10/32", "lookup", "main"],
                vec![
                    "priority",
                    "5130",
                    "lookup",
                    "main",
                    "suppress_prefixlength",
                    "0"
                ],
                vec!["priority", "5140", "lookup", "22354"],
            ]
        );
        assert!(
            p.rules.iter().all(|r| !r.v6),
            "no IPv6 routes, no IPv6 rules"
        );
        let fw = p.firewall.unwrap();
        assert_eq!(
            fw.remote,
            vec![("warren0".to_string(), net("10.96.0.0/12"))]
        );
        assert!(fw
            .members
            .contains(&("warren0".to_string(), net("10.96.0.0/12"))));
    }

    #[test]
    fn dangerous_routes_are_refused_with_reasons() {
        let mut s = accepting();
        if let Some(n) = s.networks.get_mut(&id()) {
            n.advertise.insert(net("10.112.0.0/12"));
        }
        let m = map(
            vec![
                peer(
                    2,
                    &[
                        "10.0.0.0/8",
                        "192.0.2.0/24",
                        "10.112.0.0/16",
                        "10.96.0.0/12",
                    ],
                ),
                peer(3, &["10.96.0.0/16"]),
            ],
            &[],
        );
        let p = plan(&[input(&m)], &s);
        let why = |prefix: &str| {
            p.peer_routes[&id()]
                .iter()
                .find(|r| r.prefix == net(prefix))
                .and_then(|r| r.refused.clone())
                .unwrap_or_default()
        };
        assert!(why("10.0.0.0/8").contains("overlay prefix 10.147.0.0/16"));
        assert!(why("192.0.2.0/24").contains("controller's address 192.0.2.10"));
        assert!(why("10.112.0.0/16").contains("which this node advertises"));
        assert!(why("10.96.0.0/16").contains("accepted already from n2"));
        assert_eq!(
            p.table.keys().collect::<Vec<_>>(),
            vec![&net("10.96.0.0/12")]
        );
    }

    #[test]
    fn an_exit_node_gets_default_routes_and_exclusions() {
        let exit = peer(2, &["0.0.0.0/0", "::/0"]);
        let m = map(vec![exit.clone()], &[]);
        let s = Settings {
            exit_node: Some(ExitChoice {
                network: id(),
                node_id: exit.node_id,
                exclude: [net("198.51.100.0/24")].into(),
            }),
            ..Settings::default()
        };
        let p = plan(&[input(&m)], &s);
        let status = p.exit.clone().unwrap();
        assert!(status.active, "{status:?}");
        assert_eq!(
            p.allowed[&id()][&exit.public_key],
            vec![net("0.0.0.0/0"), net("::/0")]
        );
        assert_eq!(p.table.len(), 2);
        assert!(p
            .rules
            .contains(&Rule::new(false, Selector::To(net("198.51.100.0/24")))));
        assert!(p
            .rules
            .contains(&Rule::new(false, Selector::To(net("192.0.2.10/32")))));
        assert!(p.rules.contains(&Rule::new(true, Selector::Table)));
        assert!(p.firewall.unwrap().exit_client);

        // A peer that offers no exit route: nothing changes, and we say why.
        let m = map(vec![peer(2, &[])], &[]);
        let p = plan(&[input(&m)], &s);
        let status = p.exit.unwrap();
        assert!(!status.active);
        assert!(status
            .message
            .unwrap()
            .contains("offers no approved exit route"));
        assert!(p.table.is_empty() && p.rules.is_empty());
    }

    #[test]
    fn a_router_forwards_only_its_approved_routes() {
        let m = map(
            vec![peer(2, &[])],
            &[
                ("10.96.0.0/12", true),
                ("10.112.0.0/12", false),
                ("0.0.0.0/0", true),
            ],
        );
        let fw = plan(&[input(&m)], &Settings::default()).firewall.unwrap();
        assert_eq!(fw.own, vec![("warren0".to_string(), net("10.96.0.0/12"))]);
        assert!(fw.exit_v4 == ["warren0"] && fw.exit_v6.is_empty());
    }
}
