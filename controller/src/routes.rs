//! Subnet routes and exit routes (pure): which prefixes a network may
//! approve, which of several advertisers of one prefix is primary, and
//! what netmaps carry. Also the controller addresses nodes reach it at,
//! which no route may capture.
//!
//! A route is *served* when its member is authorized, its node advertises
//! it and it is approved. Exit routes (`0.0.0.0/0`, `::/0`) go to every
//! peer's map on every approved exit node; each other prefix goes only on
//! its *primary*: among the online advertisers the one online longest (so a
//! router that comes back does not take over again), or, with none online,
//! the one seen last (a controller restart does not empty every map).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use ipnet::IpNet;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use warren_proto::netmap::{Netmap, NetmapPeer};
use warren_proto::routes::{check_prefix, is_exit, overlaps, PrefixError, SelfRoute};
use warren_proto::{NetworkId, NodeId};

use crate::store::{Member, MemberState, Network, NetworkSnapshot, Route, RouteChecks};

/// Why a prefix cannot be approved (or advertised) in a network.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RouteRefusal {
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    #[error("{prefix} overlaps the network's overlay prefix {pool}")]
    OverlayPool { prefix: IpNet, pool: IpNet },
    #[error(
        "{prefix} overlaps {other}, approved for {name} ({node}); only identical prefixes \
         may have several routers (one primary, the others standing by)"
    )]
    Overlap {
        prefix: IpNet,
        other: IpNet,
        node: NodeId,
        name: String,
    },
    #[error(
        "{prefix} contains the controller's address {ip}: nodes would send their \
         control traffic into the tunnel"
    )]
    ControllerAddress { prefix: IpNet, ip: IpAddr },
    #[error(
        "{prefix} contains {endpoint}, where member {name} ({node}) is reached: its \
         tunnel packets would be routed into the tunnel"
    )]
    PeerEndpoint {
        prefix: IpNet,
        endpoint: SocketAddr,
        node: NodeId,
        name: String,
    },
}

/// What any advertisement must pass: a usable prefix outside the overlay.
pub fn check_advertised(prefix: &IpNet, network: &Network) -> Result<(), RouteRefusal> {
    check_prefix(prefix)?;
    if is_exit(prefix) {
        return Ok(());
    }
    for pool in [
        IpNet::V4(network.pool.trunc()),
        IpNet::V6(network.ipv6_prefix),
    ] {
        if overlaps(prefix, &pool) {
            return Err(RouteRefusal::OverlayPool {
                prefix: *prefix,
                pool,
            });
        }
    }
    Ok(())
}

/// What approving `prefix` for `node` must pass, against the network's
/// other approved routes, its members' endpoints and the controller.
/// Exit routes only need a usable prefix: agents keep their own traffic
/// (and the controller's) out of a default route with policy routing.
pub fn check_approval(
    node: NodeId,
    prefix: &IpNet,
    network: &Network,
    members: &[Member],
    routes: &[Route],
    checks: &RouteChecks,
) -> Result<(), RouteRefusal> {
    check_advertised(prefix, network)?;
    if is_exit(prefix) {
        return Ok(());
    }
    let name_of = |id: &NodeId| {
        members
            .iter()
            .find(|m| m.node_id == *id)
            .map(|m| m.display_name().to_string())
            .unwrap_or_default()
    };
    for other in routes.iter().filter(|r| r.approved && !is_exit(&r.prefix)) {
        let same_row = other.node_id == node && other.prefix == *prefix;
        let standby = other.node_id != node && other.prefix == *prefix;
        if !same_row && !standby && overlaps(prefix, &other.prefix) {
            return Err(RouteRefusal::Overlap {
                prefix: *prefix,
                other: other.prefix,
                node: other.node_id,
                name: name_of(&other.node_id),
            });
        }
    }
    if let Some(ip) = warren_proto::routes::captures(prefix, &checks.controller_ips) {
        return Err(RouteRefusal::ControllerAddress {
            prefix: *prefix,
            ip,
        });
    }
    // The advertiser's own endpoints may sit inside what it routes (a
    // master's LAN address in its node subnet): peers reach it there only
    // from that LAN, where the LAN's own route wins.
    for member in members.iter().filter(|m| m.node_id != node) {
        if let Some(endpoint) = member.endpoints.iter().find(|e| prefix.contains(&e.ip())) {
            return Err(RouteRefusal::PeerEndpoint {
                prefix: *prefix,
                endpoint: *endpoint,
                node: member.node_id,
                name: member.display_name().to_string(),
            });
        }
    }
    Ok(())
}

fn parse_time(text: Option<&str>) -> Option<OffsetDateTime> {
    text.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

/// The routes that are served: advertised, approved, member authorized.
/// One pass over the members, and none without routes: netmaps are built
/// once per member on every change, so this stays linear.
fn served(snapshot: &NetworkSnapshot) -> Vec<(&Route, &Member)> {
    let candidates: BTreeSet<NodeId> = snapshot
        .routes
        .iter()
        .filter(|r| r.advertised && r.approved)
        .map(|r| r.node_id)
        .collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    let members: BTreeMap<NodeId, &Member> = snapshot
        .members
        .iter()
        .filter(|m| m.state == MemberState::Authorized && candidates.contains(&m.node_id))
        .map(|m| (m.node_id, m))
        .collect();
    snapshot
        .routes
        .iter()
        .filter(|r| r.advertised && r.approved)
        .filter_map(|r| members.get(&r.node_id).map(|m| (r, *m)))
        .collect()
}

/// Who serves each prefix now: node -> the prefixes peers route to it.
pub fn primaries(snapshot: &NetworkSnapshot) -> BTreeMap<NodeId, BTreeSet<IpNet>> {
    let mut candidates: BTreeMap<IpNet, Vec<&Member>> = BTreeMap::new();
    let mut out: BTreeMap<NodeId, BTreeSet<IpNet>> = BTreeMap::new();
    for (route, member) in served(snapshot) {
        if is_exit(&route.prefix) {
            out.entry(member.node_id).or_default().insert(route.prefix);
        } else {
            candidates.entry(route.prefix).or_default().push(member);
        }
    }
    for (prefix, members) in candidates {
        if let Some(primary) = elect(&members) {
            out.entry(primary).or_default().insert(prefix);
        }
    }
    out
}

/// The primary among the advertisers of one prefix.
pub fn elect(members: &[&Member]) -> Option<NodeId> {
    let online = members
        .iter()
        .filter(|m| m.online)
        // Online since the earliest `last_seen` (set when it came online);
        // ties go to the lowest node ID.
        .min_by_key(|m| (parse_time(m.last_seen.as_deref()), m.node_id));
    if let Some(m) = online {
        return Some(m.node_id);
    }
    members
        .iter()
        .max_by_key(|m| {
            (
                parse_time(m.last_seen.as_deref()),
                std::cmp::Reverse(m.node_id),
            )
        })
        .map(|m| m.node_id)
}

/// Gives each peer the routes it is primary for.
pub fn fill_peer_routes(snapshot: &NetworkSnapshot, peers: &mut [NetmapPeer]) {
    if snapshot.routes.is_empty() {
        return;
    }
    let primaries = primaries(snapshot);
    for peer in peers {
        peer.routes = primaries
            .get(&peer.node_id)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
    }
}

/// Tells the member of `map` what became of the routes it advertises;
/// `primary` are the routes it is primary for (its own entry of
/// [`fill_peer_routes`]).
pub fn fill_self_routes(
    snapshot: &NetworkSnapshot,
    node: NodeId,
    primary: &[IpNet],
    map: &mut Netmap,
) {
    if !map.self_node.authorized {
        return;
    }
    let mut routes: Vec<SelfRoute> = snapshot
        .routes
        .iter()
        .filter(|r| r.node_id == node && r.advertised)
        .map(|r| SelfRoute {
            prefix: r.prefix,
            approved: r.approved,
            primary: primary.contains(&r.prefix),
        })
        .collect();
    routes.sort();
    map.self_node.routes = routes;
}

/// One route as the API lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteView {
    #[serde(flatten)]
    pub route: Route,
    pub name: String,
    pub online: bool,
    pub exit: bool,
    /// Peers route this prefix to this member now.
    pub primary: bool,
}

/// Every route row of the snapshot's network with its standing.
pub fn views(snapshot: &NetworkSnapshot) -> Vec<RouteView> {
    let primaries = primaries(snapshot);
    snapshot
        .routes
        .iter()
        .map(|r| {
            let member = snapshot.members.iter().find(|m| m.node_id == r.node_id);
            RouteView {
                route: r.clone(),
                name: member
                    .map(|m| m.display_name().to_string())
                    .unwrap_or_default(),
                online: member.is_some_and(|m| m.online),
                exit: is_exit(&r.prefix),
                primary: primaries
                    .get(&r.node_id)
                    .is_some_and(|p| p.contains(&r.prefix)),
            }
        })
        .collect()
}

/// The addresses nodes reach this controller at, learnt from its listeners
/// and from the local address of every control connection.
#[derive(Debug, Default)]
pub struct ControllerAddresses {
    ips: Mutex<BTreeSet<IpAddr>>,
}

/// More distinct addresses than this is not a real host; later ones are ignored.
const MAX_CONTROLLER_IPS: usize = 64;

impl ControllerAddresses {
    /// Remembers an address nodes reached us at (wildcards are ignored).
    pub fn note(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip.map(canonical) else {
            return;
        };
        if ip.is_unspecified() || ip.is_loopback() {
            return;
        }
        let mut ips = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        if ips.len() < MAX_CONTROLLER_IPS {
            ips.insert(ip);
        }
    }

    pub fn checks(&self) -> RouteChecks {
        let ips = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        RouteChecks {
            controller_ips: ips.iter().copied().collect(),
        }
    }
}

/// An IPv4 address seen by a dual-stack socket as `::ffff:a.b.c.d` is IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why a node's advertisement was refused (sent back as a non-fatal error).
#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    #[error("{0}")]
    Invalid(String),
    #[error("not a member of network {0}")]
    NotMember(NetworkId),
    #[error("{0}")]
    NotAuthorized(&'static str),
    #[error("internal error")]
    Internal,
}

impl AdvertiseError {
    pub fn code(&self) -> &'static str {
        match self {
            AdvertiseError::Invalid(_) => "bad_route",
            AdvertiseError::NotMember(_) => "not_joined",
            AdvertiseError::NotAuthorized(_) => "not_authorized",
            AdvertiseError::Internal => "internal",
        }
    }
}

/// A node's `Routes` request: stores what it advertises (for itself only)
/// and tells every member when netmaps change.
pub async fn advertise(
    hub: &crate::hub::Hub,
    node_key: &warren_proto::NodePublicKey,
    net: NetworkId,
    prefixes: &[IpNet],
) -> Result<(), AdvertiseError> {
    use crate::store::StoreError;
    let node = NodeId::from_key(node_key);
    let checks = hub.controller_addresses.checks();
    match hub
        .store()
        .set_advertised_routes(net, node_key, prefixes, &checks)
        .await
    {
        Ok(done) => {
            for (prefix, why) in &done.not_auto_approved {
                tracing::info!(%node, network = %net, %prefix, reason = %why, "route left for an admin");
            }
            if done.changed {
                tracing::info!(%node, network = %net, routes = ?prefixes, "routes advertised");
            }
            Ok(())
        }
        Err(StoreError::Invalid(m)) => Err(AdvertiseError::Invalid(m)),
        Err(StoreError::NotFound(_)) => Err(AdvertiseError::NotMember(net)),
        Err(StoreError::NotAuthorized(why)) => Err(AdvertiseError::NotAuthorized(why)),
        Err(e) => {
            tracing::error!(%node, network = %net, error = %e, "storing advertised routes failed");
            Err(AdvertiseError::Internal)
        }
    }
}

/// The audit log's JSON for a route change.
pub fn audit_json(net: NetworkId, route: &Route) -> serde_json::Value {
    serde_json::json!({
        "network_id": net,
        "node_id": route.node_id,
        "prefix": route.prefix,
        "advertised": route.advertised,
        "approved": route.approved,
        "approved_by": route.approved_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::NodePrivateKey;

    fn net() -> NetworkId {
        "8056c2e21c000001".parse().unwrap()
    }

    fn prefix(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn member(seed: u8, online: bool, last_seen: &str) -> Member {
        let key = NodePrivateKey::from_bytes([seed; 32]).public_key();
        let node_id = NodeId::from_key(&key);
        Member {
            network_id: net(),
            node_id,
            name: Some(format!("n{seed}")),
            requested_name: String::new(),
            public_key: key,
            ipv4: Some(std::net::Ipv4Addr::new(10, 147, 0, seed)),
            ipv6: Some(net().ula_address(&node_id)),
            authorized: true,
            state: MemberState::Authorized,
            online,
            last_seen: Some(last_seen.to_owned()),
            endpoints: vec![format!("198.51.100.{seed}:41641").parse().unwrap()],
            agent_version: String::new(),
            created_at: String::new(),
            owner: None,
            owner_groups: Vec::new(),
            expires_at: None,
            expired: false,
        }
    }

    fn route(m: &Member, p: &str, advertised: bool, approved: bool) -> Route {
        Route {
            network_id: net(),
            node_id: m.node_id,
            prefix: prefix(p),
            advertised,
            approved,
            approved_by: None,
            approved_at: None,
            created_at: String::new(),
        }
    }

    fn network() -> Network {
        Network {
            id: net(),
            name: "prod".into(),
            pool: "10.147.0.0/16".parse().unwrap(),
            ipv6_prefix: net().ula_prefix(),
            zone: "prod.warren.internal".into(),
            mtu: 1420,
            netmap_version: 1,
            device_expiry_secs: 0,
            created_at: String::new(),
        }
    }

    fn snapshot(members: Vec<Member>, routes: Vec<Route>) -> NetworkSnapshot {
        NetworkSnapshot {
            network: network(),
            members,
            services: Vec::new(),
            routes,
            policy: Default::default(),
        }
    }

    const T1: &str = "2026-01-01T10:00:00Z";
    const T2: &str = "2026-01-01T11:00:00Z";

    #[test]
    fn overlay_pool_and_bad_prefixes_are_refused() {
        let n = network();
        assert!(check_advertised(&prefix("10.96.0.0/12"), &n).is_ok());
        assert!(check_advertised(&prefix("0.0.0.0/0"), &n).is_ok());
        for bad in ["10.0.0.0/8", "10.147.3.0/24", "10.147.0.0/16"] {
            let err = check_advertised(&prefix(bad), &n).unwrap_err();
            assert!(
                matches!(err, RouteRefusal::OverlayPool { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("overlay prefix 10.147.0.0/16"));
        }
        let ula = IpNet::V6(net().ula_prefix());
        assert!(matches!(
            check_advertised(&ula, &n),
            Err(RouteRefusal::OverlayPool { .. })
        ));
        assert!(matches!(
            check_advertised(&prefix("10.96.0.1/12"), &n),
            Err(RouteRefusal::Prefix(PrefixError::HostBits { .. }))
        ));
    }

    #[test]
    fn overlaps_are_refused_but_identical_prefixes_stand_by() {
        let a = member(1, true, T1);
        let b = member(2, true, T1);
        let members = vec![a.clone(), b.clone()];
        let routes = vec![route(&a, "10.96.0.0/12", true, true)];
        let checks = RouteChecks::default();
        let n = network();
        // The same prefix from another router: fail-over pair.
        assert!(check_approval(
            b.node_id,
            &prefix("10.96.0.0/12"),
            &n,
            &members,
            &routes,
            &checks
        )
        .is_ok());
        // Inside it, or around it: refused, naming the other route.
        for p in ["10.96.0.0/16", "10.64.0.0/10"] {
            let err =
                check_approval(b.node_id, &prefix(p), &n, &members, &routes, &checks).unwrap_err();
            assert!(matches!(err, RouteRefusal::Overlap { .. }), "{p}: {err}");
            assert!(err.to_string().contains("10.96.0.0/12"), "{err}");
            assert!(err.to_string().contains("n1"), "{err}");
        }
        // Also for the same node's own routes.
        assert!(check_approval(
            a.node_id,
            &prefix("10.96.1.0/24"),
            &n,
            &members,
            &routes,
            &checks
        )
        .is_err());
        // Not approved yet: no conflict.
        let pending = vec![route(&a, "10.96.0.0/12", true, false)];
        assert!(check_approval(
            b.node_id,
            &prefix("10.96.0.0/16"),
            &n,
            &members,
            &pending,
            &checks
        )
        .is_ok());
        // Exit routes overlap everything and conflict with nothing.
        assert!(check_approval(
            b.node_id,
            &prefix("0.0.0.0/0"),
            &n,
            &members,
            &routes,
            &checks
        )
        .is_ok());
    }

    #[test]
    fn routes_capturing_the_controller_or_a_peer_endpoint_are_refused() {
        let a = member(1, true, T1);
        let b = member(2, true, T1);
        let members = vec![a.clone(), b.clone()];
        let n = network();
        let checks = RouteChecks {
            controller_ips: vec!["192.0.2.10".parse().unwrap()],
        };
        let err = check_approval(
            a.node_id,
            &prefix("192.0.2.0/24"),
            &n,
            &members,
            &[],
            &checks,
        )
        .unwrap_err();
        assert!(
            matches!(err, RouteRefusal::ControllerAddress { .. }),
            "{err}"
        );
        // b is reached at 198.51.100.2: a may not route it...
        let err = check_approval(
            a.node_id,
            &prefix("198.51.100.0/24"),
            &n,
            &members,
            &[],
            &checks,
        )
        .unwrap_err();
        assert!(
            matches!(&err, RouteRefusal::PeerEndpoint { node, .. } if *node == b.node_id),
            "{err}"
        );
        // ...but its own endpoint inside its own route is fine (with no
        // other member there).
        let alone = vec![a.clone()];
        assert!(check_approval(
            a.node_id,
            &prefix("198.51.100.0/24"),
            &n,
            &alone,
            &[],
            &checks
        )
        .is_ok());
        // A default route captures everything by design.
        assert!(
            check_approval(a.node_id, &prefix("0.0.0.0/0"), &n, &members, &[], &checks).is_ok()
        );
    }

    #[test]
    fn one_primary_per_prefix_sticky_and_failing_over() {
        let a = member(1, true, T1);
        let b = member(2, true, T2);
        let routes = vec![
            route(&a, "10.96.0.0/12", true, true),
            route(&b, "10.96.0.0/12", true, true),
        ];
        // Both online: the one online longest (a) is primary.
        let p = primaries(&snapshot(vec![a.clone(), b.clone()], routes.clone()));
        assert_eq!(p.get(&a.node_id).map(|s| s.len()), Some(1));
        assert!(!p.contains_key(&b.node_id));
        // a goes offline: b takes over.
        let a_off = member(1, false, "2026-01-01T12:00:00Z");
        let p = primaries(&snapshot(vec![a_off.clone(), b.clone()], routes.clone()));
        assert!(p.contains_key(&b.node_id) && !p.contains_key(&a.node_id));
        // a comes back (online since later than b): b stays primary.
        let a_back = member(1, true, "2026-01-01T12:05:00Z");
        let p = primaries(&snapshot(vec![a_back, b.clone()], routes.clone()));
        assert!(p.contains_key(&b.node_id) && !p.contains_key(&a.node_id));
        // Nobody online: the one seen last keeps it, so maps never empty.
        let b_off = member(2, false, "2026-01-01T12:01:00Z");
        let p = primaries(&snapshot(vec![a_off, b_off], routes));
        assert!(
            p.contains_key(&b.node_id) && !p.contains_key(&a.node_id),
            "{p:?}"
        );
    }

    #[test]
    fn only_served_routes_reach_netmaps() {
        let a = member(1, true, T1);
        let b = member(2, true, T1);
        let mut revoked = member(3, true, T1);
        revoked.state = MemberState::Revoked;
        let routes = vec![
            route(&a, "10.96.0.0/12", true, true),
            route(&a, "10.112.0.0/12", true, false),
            route(&a, "0.0.0.0/0", true, true),
            route(&b, "172.16.0.0/16", false, true),
            route(&revoked, "192.168.0.0/16", true, true),
        ];
        let snap = snapshot(vec![a.clone(), b.clone(), revoked], routes);
        let map = crate::netmaps::build(&snap, b.node_id, &[]).unwrap();
        let a_peer = map.peers.iter().find(|p| p.node_id == a.node_id).unwrap();
        assert_eq!(
            a_peer.routes,
            vec![prefix("0.0.0.0/0"), prefix("10.96.0.0/12")]
        );
        // b approved but not advertised: nothing in its own map either.
        assert!(map.self_node.routes.is_empty());
        let a_map = crate::netmaps::build(&snap, a.node_id, &[]).unwrap();
        assert_eq!(
            a_map.self_node.routes,
            vec![
                SelfRoute {
                    prefix: prefix("0.0.0.0/0"),
                    approved: true,
                    primary: true
                },
                SelfRoute {
                    prefix: prefix("10.96.0.0/12"),
                    approved: true,
                    primary: true
                },
                SelfRoute {
                    prefix: prefix("10.112.0.0/12"),
                    approved: false,
                    primary: false
                },
            ]
        );
    }

    #[test]
    fn controller_addresses_skip_wildcards_and_unmap_v4() {
        let c = ControllerAddresses::default();
        c.note(Some("::ffff:192.0.2.10".parse().unwrap()));
        c.note(Some("0.0.0.0".parse().unwrap()));
        c.note(None);
        assert_eq!(
            c.checks().controller_ips,
            vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
        );
    }
}
