//! The compiler: a policy and a network's facts in, per authorized member
//! the packet filter it enforces and the peers it may exchange packets with.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use warren_proto::filter::{FilterRule, PacketFilter, PortRange};
use warren_proto::service::ServiceProto;
use warren_proto::site::MappedPrefix;
use warren_proto::NodeId;

use super::document::{GroupEntry, Policy, Rule, Source, Target};
use super::view::{NetworkView, PolicyMember};

/// What one member receives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPolicy {
    pub filter: PacketFilter,
    /// Members it may exchange packets with, in either direction. Any other
    /// member stays out of its netmap.
    pub peers: BTreeSet<NodeId>,
}

/// The compiled policy of a network: an entry for every authorized member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    pub version: u64,
    pub members: BTreeMap<NodeId, MemberPolicy>,
    /// Some rule lets every member reach every member (the default
    /// policy): then every authorized member sees every other, and the
    /// per-member peer sets, which would hold everyone, stay empty.
    pub all_peers: bool,
}

impl Compiled {
    /// What `node` enforces; a member that is not authorized gets nothing.
    pub fn member(&self, node: &NodeId) -> MemberPolicy {
        self.members
            .get(node)
            .cloned()
            .unwrap_or_else(|| MemberPolicy {
                filter: PacketFilter {
                    policy_version: self.version,
                    ..PacketFilter::default()
                },
                peers: BTreeSet::new(),
            })
    }

    /// The filter `node` enforces (one that denies everything for a member
    /// that is not authorized).
    pub fn filter_of(&self, node: &NodeId) -> PacketFilter {
        match self.members.get(node) {
            Some(m) => m.filter.clone(),
            None => PacketFilter {
                policy_version: self.version,
                ..PacketFilter::default()
            },
        }
    }

    /// Whether `a` may exchange packets with `b`: both authorized, not the
    /// same, and some rule between them.
    pub fn sees(&self, a: &NodeId, b: &NodeId) -> bool {
        a != b
            && self.members.contains_key(b)
            && self
                .members
                .get(a)
                .is_some_and(|m| self.all_peers || m.peers.contains(b))
    }

    /// The members `node` sees, in order.
    pub fn peers_of(&self, node: &NodeId) -> Vec<NodeId> {
        self.members
            .keys()
            .filter(|other| self.sees(node, other))
            .copied()
            .collect()
    }
}

/// Compiles the document's rules, then `extra` (active grants), for the
/// network's authorized members. Names that match nothing (a member that
/// left, a tag nobody holds any more) admit nothing: a stored policy always
/// compiles, whatever membership did since.
///
/// A rule from `*` admits the network's pools (and the routes members
/// serve) rather than each member's addresses, and a rule to `*` the same
/// on the way out: the default policy then compiles to a few prefixes per
/// member, not to the whole membership per member.
pub fn compile(policy: &Policy, extra: &[Rule], view: &NetworkView, version: u64) -> Compiled {
    let authorized: BTreeMap<NodeId, &PolicyMember> = view
        .members
        .iter()
        .filter(|m| m.authorized)
        .map(|m| (m.node_id, m))
        .collect();
    let mut out = Compiled {
        version,
        all_peers: false,
        members: authorized
            .keys()
            .map(|node| {
                let filter = PacketFilter {
                    policy_version: version,
                    ..PacketFilter::default()
                };
                (
                    *node,
                    MemberPolicy {
                        filter,
                        peers: BTreeSet::new(),
                    },
                )
            })
            .collect(),
    };
    let resolver = Resolver {
        policy,
        view,
        authorized: &authorized,
    };
    for rule in policy.rules.iter().chain(extra) {
        compile_rule(&resolver, rule, &mut out);
    }
    out
}

fn compile_rule(resolver: &Resolver<'_>, rule: &Rule, out: &mut Compiled) {
    let sources = resolver.sources(rule);
    if sources.is_empty() {
        return;
    }
    if rule.to.iter().any(|(t, _)| matches!(t, Target::OwnDevices)) {
        compile_own_devices(resolver, rule, &sources, out);
    }
    let pools = &resolver.view.pools;
    let any_source = !pools.is_empty() && rule.from.iter().any(|(s, _)| matches!(s, Source::Any));
    let any_target = !pools.is_empty() && rule.to.iter().any(|(t, _)| matches!(t, Target::Any));
    let destinations = resolver.destinations(rule);
    compile_flows(
        resolver,
        rule,
        (&sources, any_source),
        (&destinations, any_target),
        out,
    );
}

/// `autogroup:self`: each person's devices among the sources reach that
/// person's devices, once per person.
fn compile_own_devices(
    resolver: &Resolver<'_>,
    rule: &Rule,
    sources: &BTreeSet<NodeId>,
    out: &mut Compiled,
) {
    let mut by_owner: BTreeMap<&str, BTreeSet<NodeId>> = BTreeMap::new();
    for node in sources {
        if let Some(owner) = resolver
            .authorized
            .get(node)
            .and_then(|m| m.owner.as_deref())
        {
            by_owner.entry(owner).or_default().insert(*node);
        }
    }
    for (owner, own) in by_owner {
        let theirs = Rule {
            to: vec![(Target::User(owner.to_string()), rule.to[0].1)],
            ..rule.clone()
        };
        let destinations = resolver.destinations(&theirs);
        compile_flows(resolver, rule, (&own, false), (&destinations, false), out);
    }
}

type Destinations = BTreeMap<(NodeId, Vec<PortRange>), BTreeSet<IpNet>>;

/// Fills the receivers' inbound rules, the senders' outbound rules and
/// both sides' peers for one rule between `sources` and `destinations`
/// (each with whether the rule named `*` there).
fn compile_flows(
    resolver: &Resolver<'_>,
    rule: &Rule,
    (sources, any_source): (&BTreeSet<NodeId>, bool),
    (destinations, any_target): (&Destinations, bool),
    out: &mut Compiled,
) {
    let pools = &resolver.view.pools;
    // What the sources send from, once for the rule.
    let src: Vec<IpNet> = if any_source {
        resolver.every_member_nets()
    } else {
        sources
            .iter()
            .flat_map(|s| resolver.source_nets(*s))
            .collect()
    };
    let mut outbound: BTreeMap<Vec<PortRange>, BTreeSet<IpNet>> = BTreeMap::new();
    for ((node, ports), nets) in destinations {
        // A member is not its own source.
        if sources.len() == 1 && sources.contains(node) {
            continue;
        }
        if let Some(receiver) = out.members.get_mut(node) {
            receiver.filter.inbound.push(FilterRule {
                rule: rule.name.clone(),
                src: src.clone(),
                dst: nets.iter().copied().collect(),
                ports: ports.clone(),
            });
        }
        outbound
            .entry(ports.clone())
            .or_default()
            .extend(nets.iter().copied());
    }
    if any_source && any_target {
        out.all_peers = true;
    } else if !out.all_peers {
        for (node, _) in destinations.keys() {
            for source in sources.iter().filter(|s| *s != node) {
                if let Some(m) = out.members.get_mut(source) {
                    m.peers.insert(*node);
                }
                if let Some(m) = out.members.get_mut(node) {
                    m.peers.insert(*source);
                }
            }
        }
    }
    if any_target {
        for nets in outbound.values_mut() {
            nets.retain(|n| !pools.iter().any(|p| p.contains(n)));
            nets.extend(pools.iter().copied());
        }
    }
    for source in sources {
        let own = resolver.source_nets(*source);
        let Some(m) = out.members.get_mut(source) else {
            continue;
        };
        for (ports, nets) in &outbound {
            m.filter.outbound.push(FilterRule {
                rule: rule.name.clone(),
                src: own.clone(),
                dst: nets.iter().copied().collect(),
                ports: ports.clone(),
            });
        }
    }
}

/// `net`, inside the real prefix of `pair`, at the same place in its
/// mapped prefix.
fn to_mapped(pair: &MappedPrefix, net: &IpNet) -> Option<IpNet> {
    let IpNet::V4(v4) = net else {
        return None;
    };
    if !IpNet::V4(pair.real).contains(net) {
        return None;
    }
    let start = pair.to_mapped(v4.network())?;
    ipnet::Ipv4Net::new(start, v4.prefix_len())
        .ok()
        .map(IpNet::V4)
}

/// The routes a member serves that its packets may come from: an exit
/// node's default routes are where it sends, not what it sends from.
fn sent_from(routes: &BTreeSet<IpNet>) -> impl Iterator<Item = IpNet> + '_ {
    routes.iter().filter(|r| r.prefix_len() > 0).copied()
}

struct Resolver<'a> {
    policy: &'a Policy,
    view: &'a NetworkView,
    authorized: &'a BTreeMap<NodeId, &'a PolicyMember>,
}

impl Resolver<'_> {
    fn named(&self, name: &str) -> impl Iterator<Item = NodeId> + '_ {
        let name = name.to_string();
        self.authorized
            .values()
            .filter(move |m| m.name == name)
            .map(|m| m.node_id)
    }

    fn tagged(&self, tag: &str) -> impl Iterator<Item = NodeId> + '_ {
        let tag = tag.to_string();
        self.authorized
            .values()
            .filter(move |m| m.tags.contains(&tag))
            .map(|m| m.node_id)
    }

    fn owned_by(&self, email: &str) -> impl Iterator<Item = NodeId> + '_ {
        let email = email.to_string();
        self.authorized
            .values()
            .filter(move |m| m.owner.as_deref() == Some(email.as_str()))
            .map(|m| m.node_id)
    }

    fn group(&self, group: &str) -> BTreeSet<NodeId> {
        let mut found = BTreeSet::new();
        if self.policy.provider_groups.contains(group) {
            found.extend(
                self.authorized
                    .values()
                    .filter(|m| m.owner_groups.contains(group))
                    .map(|m| m.node_id),
            );
        }
        for (entry, _) in self.policy.groups.get(group).into_iter().flatten() {
            match entry {
                GroupEntry::Member(m) => found.extend(self.named(m)),
                GroupEntry::Tag(t) => found.extend(self.tagged(t)),
            }
        }
        found
    }

    fn sources(&self, rule: &Rule) -> BTreeSet<NodeId> {
        let mut found = BTreeSet::new();
        for (source, _) in &rule.from {
            match source {
                Source::Any => found.extend(self.authorized.keys().copied()),
                Source::Member(m) => found.extend(self.named(m)),
                Source::Group(g) => found.extend(self.group(g)),
                Source::Tag(t) => found.extend(self.tagged(t)),
                Source::User(u) => found.extend(self.owned_by(u)),
            }
        }
        found
    }

    /// Who receives what the rule admits: (receiving member, ports) ->
    /// destination prefixes (its own addresses, or routes it serves).
    fn destinations(&self, rule: &Rule) -> Destinations {
        let mut found = Destinations::new();
        let mut add = |node: NodeId, ports: Vec<PortRange>, nets: &[IpNet]| {
            found
                .entry((node, ports))
                .or_default()
                .extend(nets.iter().copied());
        };
        let own = |node: NodeId| {
            self.authorized
                .get(&node)
                .map(|m| m.addresses().to_vec())
                .unwrap_or_default()
        };
        for (target, _) in &rule.to {
            let members: BTreeSet<NodeId> = match target {
                Target::Any => {
                    for (node, routes) in self.served_routes() {
                        add(
                            node,
                            rule.ports.clone(),
                            &routes.iter().copied().collect::<Vec<_>>(),
                        );
                    }
                    self.authorized.keys().copied().collect()
                }
                Target::Member(m) => self.named(m).collect(),
                Target::Group(g) => self.group(g),
                Target::Tag(t) => self.tagged(t).collect(),
                Target::User(u) => self.owned_by(u).collect(),
                // Per source: see compile_own_devices.
                Target::OwnDevices => BTreeSet::new(),
                Target::Cidr(cidr) => {
                    for (node, routes) in self.served_routes() {
                        for route in routes {
                            if route.contains(cidr) {
                                add(node, rule.ports.clone(), &[*cidr]);
                            } else if cidr.contains(route) {
                                add(node, rule.ports.clone(), &[*route]);
                            }
                        }
                    }
                    // Named by its mapped prefix: the router filters
                    // before it translates.
                    for (node, pairs) in &self.view.mapped {
                        for pair in pairs {
                            let mapped = IpNet::V4(pair.mapped);
                            if mapped.contains(cidr) {
                                add(*node, rule.ports.clone(), &[*cidr]);
                            } else if cidr.contains(&mapped) {
                                add(*node, rule.ports.clone(), &[mapped]);
                            }
                        }
                    }
                    for m in self.authorized.values() {
                        let inside: Vec<IpNet> = m
                            .addresses()
                            .into_iter()
                            .filter(|a| cidr.contains(a))
                            .collect();
                        if !inside.is_empty() {
                            add(m.node_id, rule.ports.clone(), &inside);
                        }
                    }
                    BTreeSet::new()
                }
                Target::Site(site) => {
                    for (node, routes) in self.served_routes() {
                        if self.view.sites.get(&node) == Some(site) {
                            let nets: Vec<IpNet> = sent_from(routes).collect();
                            add(node, rule.ports.clone(), &nets);
                        }
                    }
                    BTreeSet::new()
                }
                Target::Service(name) => {
                    for (node, spec) in self.view.services.iter().filter(|(_, s)| &s.name == name) {
                        let protocol = match spec.proto {
                            ServiceProto::Tcp => warren_proto::filter::Protocol::Tcp,
                            ServiceProto::Udp => warren_proto::filter::Protocol::Udp,
                        };
                        if spec.port == 0
                            || !rule.ports.iter().any(|p| p.admits(protocol, spec.port))
                        {
                            continue;
                        }
                        let port = PortRange {
                            protocol,
                            first: spec.port,
                            last: spec.port,
                        };
                        add(*node, vec![port], &own(*node));
                    }
                    BTreeSet::new()
                }
            };
            for node in members {
                add(node, rule.ports.clone(), &own(node));
            }
        }
        // A service of a member that is not authorized, or nothing at all.
        found.retain(|(node, _), nets| self.authorized.contains_key(node) && !nets.is_empty());
        // What a mapped route admits, its mapped prefix admits too: peers
        // send there, and the router filters before it translates.
        for ((node, _), nets) in found.iter_mut() {
            let Some(pairs) = self.view.mapped.get(node) else {
                continue;
            };
            let translated: Vec<IpNet> = nets
                .iter()
                .filter_map(|net| pairs.iter().find_map(|pair| to_mapped(pair, net)))
                .collect();
            nets.extend(translated);
        }
        found
    }

    /// What every member may send from: the network's pools and the routes
    /// members serve (see [`Self::source_nets`]).
    fn every_member_nets(&self) -> Vec<IpNet> {
        let mut nets: BTreeSet<IpNet> = self.view.pools.iter().copied().collect();
        for (node, routes) in self.served_routes() {
            nets.extend(sent_from(routes));
            nets.extend(self.mapped_of(node));
        }
        nets.into_iter().collect()
    }

    /// What a member may send from: its own addresses and the routes it
    /// serves (a subnet router forwards its LAN's packets, site to site).
    fn source_nets(&self, node: NodeId) -> Vec<IpNet> {
        let Some(member) = self.authorized.get(&node) else {
            return Vec::new();
        };
        let mut nets = member.addresses().to_vec();
        if let Some(routes) = self.view.routes.get(&node) {
            nets.extend(sent_from(routes));
        }
        // A router's site sends from its mapped prefixes, once translated.
        nets.extend(self.mapped_of(node));
        nets
    }

    fn mapped_of(&self, node: NodeId) -> impl Iterator<Item = IpNet> + '_ {
        self.view
            .mapped
            .get(&node)
            .into_iter()
            .flatten()
            .map(|pair| IpNet::V4(pair.mapped))
    }

    fn served_routes(&self) -> impl Iterator<Item = (NodeId, &BTreeSet<IpNet>)> + '_ {
        self.view
            .routes
            .iter()
            .filter(|(node, _)| self.authorized.contains_key(node))
            .map(|(node, routes)| (*node, routes))
    }
}
