//! Sites (pure): what a node may say of its site, which approved routes of
//! different sites overlap and so need a mapped prefix, where mapped
//! prefixes come from, what peers route to a site's router, and the sites
//! a netmap lists.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use warren_proto::routes::is_exit;
use warren_proto::site::{check_site_name, MappedPrefix, Site, SiteSpec};
use warren_proto::text::printable;
use warren_proto::{NetworkId, NodeId};

use crate::store::{NetworkSnapshot, Route, SiteMapping};

/// Refuses a malformed site: a name that is not one DNS label, a DNS
/// domain that is not a name, or a DNS server no packet can go to.
pub fn check_spec(spec: &SiteSpec) -> Result<(), String> {
    check_site_name(&spec.name).map_err(|e| e.to_string())?;
    let Some(dns) = &spec.dns else {
        return Ok(());
    };
    if !crate::names::is_zone(&dns.domain) {
        return Err(format!(
            "site DNS domain {:?} is not a DNS name (lowercase labels of letters, digits \
             and '-', such as cluster.local)",
            printable(&dns.domain)
        ));
    }
    let unusable = match dns.server {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if unusable {
        return Err(format!(
            "site DNS server {} is not an address a query can be sent to",
            dns.server
        ));
    }
    Ok(())
}

/// The (site, real prefix) of every approved IPv4 route that overlaps an
/// approved route of another site: each needs a mapped prefix. Routes
/// without a site never overlap another's (approval refuses it), and
/// IPv6 prefixes of different sites may not overlap (no 4via6 yet).
pub fn needing_mapping(routes: &[Route]) -> BTreeSet<(String, Ipv4Net)> {
    let sited: Vec<(&str, Ipv4Net)> = routes
        .iter()
        .filter(|r| r.approved && !is_exit(&r.prefix))
        .filter_map(|r| match (r.site.as_deref(), r.prefix) {
            (Some(site), IpNet::V4(p)) => Some((site, p)),
            _ => None,
        })
        .collect();
    sited
        .iter()
        .filter(|(site, p)| {
            sited
                .iter()
                .any(|(other, q)| other != site && overlap(p, q))
        })
        .map(|(site, p)| (site.to_string(), *p))
        .collect()
}

fn overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The lowest prefix of `len` bits in `range` that overlaps none of
/// `taken`; `None` when the range has no room for one.
pub fn allocate(range: Ipv4Net, len: u8, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    if len < range.prefix_len() || len > 32 {
        return None;
    }
    let size = 1u64 << (32 - u32::from(len));
    let end = u64::from(u32::from(range.broadcast())) + 1;
    let mut start = u64::from(u32::from(range.network()));
    while start + size <= end {
        let candidate = Ipv4Net::new(Ipv4Addr::from(u32::try_from(start).ok()?), len).ok()?;
        // Past the furthest block in the way, aligned to the prefix size.
        let past = taken
            .iter()
            .filter(|t| overlap(&candidate, t))
            .map(|t| u64::from(u32::from(t.broadcast())) + 1)
            .max();
        match past {
            None => return Some(candidate),
            Some(past) => start = past.div_ceil(size) * size,
        }
    }
    None
}

/// The audit log's JSON for a mapped prefix allocated or freed: its
/// network, site, real and mapped prefixes, and the routers with the real
/// prefix approved in `routes` (the routes as they are after an
/// allocation, as they were before a release).
pub fn mapping_audit_json(
    net: NetworkId,
    mapping: &SiteMapping,
    routes: &[Route],
) -> serde_json::Value {
    let node_ids: BTreeSet<NodeId> = routes
        .iter()
        .filter(|r| {
            r.approved
                && r.prefix == IpNet::V4(mapping.real)
                && r.site.as_deref() == Some(mapping.site.as_str())
        })
        .map(|r| r.node_id)
        .collect();
    serde_json::json!({
        "network_id": net,
        "site": mapping.site,
        "node_ids": node_ids,
        "prefix": mapping.real,
        "mapped_prefix": mapping.mapped,
    })
}

/// A snapshot's mapped prefixes: each stored mapping whose site still has
/// its route approved, and the routes that need one.
#[derive(Debug, Default)]
pub struct Mappings {
    mapped: BTreeMap<(String, Ipv4Net), Ipv4Net>,
    needed: BTreeSet<(String, Ipv4Net)>,
}

impl Mappings {
    pub fn of(snapshot: &NetworkSnapshot) -> Mappings {
        let approved: BTreeSet<(&str, IpNet)> = snapshot
            .routes
            .iter()
            .filter(|r| r.approved)
            .filter_map(|r| r.site.as_deref().map(|s| (s, r.prefix)))
            .collect();
        Mappings {
            mapped: snapshot
                .sites
                .mappings
                .iter()
                .filter(|m| approved.contains(&(m.site.as_str(), IpNet::V4(m.real))))
                .map(|m| ((m.site.clone(), m.real), m.mapped))
                .collect(),
            needed: needing_mapping(&snapshot.routes),
        }
    }

    fn key(route: &Route) -> Option<(String, Ipv4Net)> {
        match (&route.site, route.prefix) {
            (Some(site), IpNet::V4(p)) => Some((site.clone(), p)),
            _ => None,
        }
    }

    /// The mapped prefix of a route, if it has one.
    pub fn mapped(&self, route: &Route) -> Option<Ipv4Net> {
        Self::key(route).and_then(|k| self.mapped.get(&k).copied())
    }

    /// True for a route that overlaps another site's but got no mapped
    /// prefix (the range is full): peers do not route it at all, rather
    /// than send one site's traffic to the other.
    pub fn missing(&self, route: &Route) -> bool {
        Self::key(route).is_some_and(|k| self.needed.contains(&k) && !self.mapped.contains_key(&k))
    }

    /// What peers route to the router of `route`: its mapped prefix, its
    /// own, or nothing while it waits for a mapped prefix.
    pub fn as_routed(&self, route: &Route) -> Option<IpNet> {
        if let Some(mapped) = self.mapped(route) {
            return Some(IpNet::V4(mapped));
        }
        (!self.missing(route)).then_some(route.prefix)
    }

    /// A site's mapped pairs, by real prefix.
    fn of_site(&self, site: &str) -> Vec<MappedPrefix> {
        self.mapped
            .iter()
            .filter(|((s, _), _)| s == site)
            .map(|((_, real), mapped)| MappedPrefix {
                real: *real,
                mapped: *mapped,
            })
            .collect()
    }
}

/// Every site with a served route, for `NetworkSettings.sites`: its
/// routers, its DNS (a primary router's, else any router's, lowest node ID
/// first) and its mapped pairs. `primaries` are [`super::primaries`].
pub fn sites(
    snapshot: &NetworkSnapshot,
    primaries: &BTreeMap<NodeId, BTreeSet<IpNet>>,
) -> Vec<Site> {
    let mut routers: BTreeMap<&str, BTreeSet<NodeId>> = BTreeMap::new();
    for (route, member) in super::served(snapshot) {
        if let Some(site) = route.site.as_deref() {
            routers.entry(site).or_default().insert(member.node_id);
        }
    }
    if routers.is_empty() {
        return Vec::new();
    }
    let mappings = Mappings::of(snapshot);
    routers
        .into_iter()
        .map(|(name, routers)| {
            let declared = |primary: bool| {
                routers
                    .iter()
                    .filter(|n| !primary || primaries.contains_key(n))
                    .find_map(|n| snapshot.sites.dns.get(n))
            };
            Site {
                name: name.to_string(),
                dns: declared(true).or_else(|| declared(false)).cloned(),
                mapped: mappings.of_site(name),
                routers: routers.into_iter().collect(),
            }
        })
        .collect()
}

/// What policy knows of the routers serving `primaries`: each one's site,
/// and the mapped prefixes of the routes it is primary for.
pub fn routers(
    snapshot: &NetworkSnapshot,
    primaries: &BTreeMap<NodeId, BTreeSet<IpNet>>,
) -> (
    BTreeMap<NodeId, String>,
    BTreeMap<NodeId, Vec<MappedPrefix>>,
) {
    let mut sites = BTreeMap::new();
    let mut mapped: BTreeMap<NodeId, Vec<MappedPrefix>> = BTreeMap::new();
    if snapshot.routes.is_empty() {
        return (sites, mapped);
    }
    let mappings = Mappings::of(snapshot);
    for (route, member) in super::served(snapshot) {
        let node = member.node_id;
        if !primaries
            .get(&node)
            .is_some_and(|p| p.contains(&route.prefix))
        {
            continue;
        }
        if let Some(site) = &route.site {
            sites.insert(node, site.clone());
        }
        if let (IpNet::V4(real), Some(m)) = (route.prefix, mappings.mapped(route)) {
            mapped
                .entry(node)
                .or_default()
                .push(MappedPrefix { real, mapped: m });
        }
    }
    (sites, mapped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::site::SiteDns;

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn allocation_takes_the_lowest_free_aligned_block() {
        let range = v4("100.64.0.0/10");
        assert_eq!(allocate(range, 12, &[]), Some(v4("100.64.0.0/12")));
        // A small block in the way pushes a /12 to the next /12.
        assert_eq!(
            allocate(range, 12, &[v4("100.64.3.0/24")]),
            Some(v4("100.80.0.0/12"))
        );
        // A /24 fits next to it.
        assert_eq!(
            allocate(range, 24, &[v4("100.64.0.0/24")]),
            Some(v4("100.64.1.0/24"))
        );
        // Full, or too large for the range.
        let full = [v4("100.64.0.0/11"), v4("100.96.0.0/11")];
        assert_eq!(allocate(range, 12, &full), None);
        assert_eq!(allocate(range, 8, &[]), None);
        assert_eq!(
            allocate(v4("100.64.0.0/31"), 32, &[v4("100.64.0.0/32")]),
            Some(v4("100.64.0.1/32"))
        );
        assert_eq!(
            allocate(v4("255.255.255.254/31"), 32, &[v4("255.255.255.254/31")]),
            None
        );
    }

    #[test]
    fn bad_sites_are_refused() {
        let spec = |name: &str, domain: &str, server: &str| SiteSpec {
            name: name.into(),
            dns: (!domain.is_empty()).then(|| SiteDns {
                domain: domain.into(),
                server: server.parse().unwrap(),
            }),
        };
        assert!(check_spec(&spec("m", "", "")).is_ok());
        assert!(check_spec(&spec("m", "cluster.local", "10.96.0.10")).is_ok());
        for (name, domain, server) in [
            ("M", "", ""),
            ("", "", ""),
            ("a.b", "", ""),
            ("m", "Cluster.Local", "10.96.0.10"),
            ("m", "cluster..local", "10.96.0.10"),
            ("m", "cluster.local", "0.0.0.0"),
            ("m", "cluster.local", "224.0.0.1"),
        ] {
            let err = check_spec(&spec(name, domain, server)).unwrap_err();
            assert!(err.contains("site"), "{name} {domain} {server}: {err}");
        }
    }
}
