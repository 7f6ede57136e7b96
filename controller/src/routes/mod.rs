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
//! Advertisers of one prefix for different sites ([`sites`]) are different
//! destinations: each site has its own primary.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use warren_proto::netmap::{Netmap, NetmapPeer};
use warren_proto::routes::{check_prefix, is_exit, overlaps, PrefixError, SelfRoute};
use warren_proto::{NetworkId, NodeId};

use crate::store::{Member, MemberState, Network, NetworkSnapshot, Route, RouteChecks};

pub mod sites;

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
        "{prefix} overlaps {other}, approved for {name} ({node}); a route of a site and \
         a route without one may not overlap: advertise both for a site"
    )]
    SiteAndNoSite {
        prefix: IpNet,
        other: IpNet,
        node: NodeId,
        name: String,
    },
    #[error(
        "{prefix} overlaps {other} of site {site}; only IPv4 prefixes of different sites \
         get mapped prefixes"
    )]
    SitesOverlapV6 {
        prefix: IpNet,
        other: IpNet,
        site: String,
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
/// Routes of one site (or of none) may share only identical prefixes
/// (fail-over); IPv4 routes of different sites may overlap, as mapped
/// prefixes tell them apart. The node's site is its rows' (one per node).
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
    let site = routes
        .iter()
        .find(|r| r.node_id == node && r.site.is_some())
        .and_then(|r| r.site.as_deref());
    for other in routes.iter().filter(|r| r.approved && !is_exit(&r.prefix)) {
        let same_row = other.node_id == node && other.prefix == *prefix;
        if same_row || !overlaps(prefix, &other.prefix) {
            continue;
        }
        match (site, other.site.as_deref()) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                if !matches!(prefix, IpNet::V4(_)) {
                    return Err(RouteRefusal::SitesOverlapV6 {
                        prefix: *prefix,
                        other: other.prefix,
                        site: theirs.to_string(),
                    });
                }
            }
            (mine, theirs) if mine == theirs => {
                if other.node_id == node || other.prefix != *prefix {
                    return Err(RouteRefusal::Overlap {
                        prefix: *prefix,
                        other: other.prefix,
                        node: other.node_id,
                        name: name_of(&other.node_id),
                    });
                }
            }
            _ => {
                return Err(RouteRefusal::SiteAndNoSite {
                    prefix: *prefix,
                    other: other.prefix,
                    node: other.node_id,
                    name: name_of(&other.node_id),
                })
            }
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

/// Who serves each prefix now, one per prefix and site: node -> the
/// prefixes it is primary for (real ones; see [`fill_peer_routes`]).
pub fn primaries(snapshot: &NetworkSnapshot) -> BTreeMap<NodeId, BTreeSet<IpNet>> {
    let mut candidates: BTreeMap<(IpNet, Option<&str>), Vec<&Member>> = BTreeMap::new();
    let mut out: BTreeMap<NodeId, BTreeSet<IpNet>> = BTreeMap::new();
    for (route, member) in served(snapshot) {
        if is_exit(&route.prefix) {
            out.entry(member.node_id).or_default().insert(route.prefix);
        } else {
            candidates
                .entry((route.prefix, route.site.as_deref()))
                .or_default()
                .push(member);
        }
    }
    for ((prefix, _), members) in candidates {
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

/// Gives each peer the routes it is primary for, as peers route them: a
/// mapped route's mapped prefix instead of its own, and nothing for a
/// route that waits for a mapped prefix. `primaries` are [`primaries`].
pub fn fill_peer_routes(
    snapshot: &NetworkSnapshot,
    primaries: &BTreeMap<NodeId, BTreeSet<IpNet>>,
    peers: &mut [NetmapPeer],
) {
    if snapshot.routes.is_empty() {
        return;
    }
    let mappings = sites::Mappings::of(snapshot);
    let mut routed: BTreeMap<NodeId, BTreeSet<IpNet>> = BTreeMap::new();
    for (route, member) in served(snapshot) {
        let primary = primaries
            .get(&member.node_id)
            .is_some_and(|p| p.contains(&route.prefix));
        if let Some(prefix) = mappings.as_routed(route).filter(|_| primary) {
            routed.entry(member.node_id).or_default().insert(prefix);
        }
    }
    for peer in peers {
        peer.routes = routed
            .get(&peer.node_id)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
    }
}

/// Tells the member of `map` what became of the routes it advertises (by
/// their real prefixes); `primary` are the routes it is primary for (its
/// entry of [`primaries`]).
pub fn fill_self_routes(
    snapshot: &NetworkSnapshot,
    node: NodeId,
    primary: &BTreeSet<IpNet>,
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
    /// The prefix peers use instead, where it overlaps another site's.
    pub mapped_prefix: Option<Ipv4Net>,
    /// It overlaps another site's route but the mapped range had no room
    /// for it: peers do not route it until there is.
    pub mapping_exhausted: bool,
}

/// Every route row of the snapshot's network with its standing.
pub fn views(snapshot: &NetworkSnapshot) -> Vec<RouteView> {
    let primaries = primaries(snapshot);
    let mappings = sites::Mappings::of(snapshot);
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
                mapped_prefix: mappings.mapped(r),
                mapping_exhausted: mappings.missing(r),
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
            ..RouteChecks::default()
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

/// The audit log's JSON for a route change.
pub fn audit_json(net: NetworkId, route: &Route) -> serde_json::Value {
    serde_json::json!({
        "network_id": net,
        "node_id": route.node_id,
        "prefix": route.prefix,
        "site": route.site,
        "advertised": route.advertised,
        "approved": route.approved,
        "approved_by": route.approved_by,
    })
}

#[cfg(test)]
mod tests;
