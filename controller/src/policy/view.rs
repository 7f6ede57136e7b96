//! What the compiler knows of a network: members with their names, tags and
//! addresses, the routes each serves, the services each publishes; and the
//! check that a document names only what exists there.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use warren_proto::service::ServiceSpec;
use warren_proto::site::MappedPrefix;
use warren_proto::NodeId;

use super::document::{GroupEntry, Location, Policy, Source, Target, TestTarget};
use super::PolicyError;
use crate::store::NetworkSnapshot;

/// One member as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMember {
    pub node_id: NodeId,
    pub name: String,
    pub tags: BTreeSet<String>,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// Only authorized members are sources, destinations or peers.
    pub authorized: bool,
    /// The e-mail address (lowercase) of the person who signed it in.
    pub owner: Option<String>,
    /// That person's groups at the provider.
    pub owner_groups: BTreeSet<String>,
}

impl PolicyMember {
    /// The member's own overlay addresses as host prefixes.
    pub fn addresses(&self) -> [IpNet; 2] {
        [
            IpNet::from(IpAddr::V4(self.ipv4)),
            IpNet::from(IpAddr::V6(self.ipv6)),
        ]
    }
}

/// A network's facts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkView {
    pub members: Vec<PolicyMember>,
    /// The approved routes each member serves now (the primary for each
    /// prefix and site).
    pub routes: BTreeMap<NodeId, BTreeSet<IpNet>>,
    /// The site each router among those serves.
    pub sites: BTreeMap<NodeId, String>,
    /// The mapped prefixes of routes in `routes`: (real, mapped) per router.
    pub mapped: BTreeMap<NodeId, Vec<MappedPrefix>>,
    /// Services members publish.
    pub services: Vec<(NodeId, ServiceSpec)>,
    /// The network's address pools (IPv4 pool, IPv6 /64): every member's
    /// overlay address lies in them, so a rule about every member can name
    /// them instead of listing each member.
    pub pools: Vec<IpNet>,
}

impl NetworkView {
    /// The view of a stored network; `tags` are its members' tags.
    pub fn from_snapshot(
        snapshot: &NetworkSnapshot,
        tags: &BTreeMap<NodeId, BTreeSet<String>>,
    ) -> NetworkView {
        // A member that was never authorized holds no name and no address:
        // nothing a policy can name or reach.
        let mut members: Vec<PolicyMember> = snapshot
            .members
            .iter()
            .filter_map(|m| {
                let (name, ipv4, ipv6) = m.assigned()?;
                Some(PolicyMember {
                    node_id: m.node_id,
                    name: name.to_string(),
                    tags: tags.get(&m.node_id).cloned().unwrap_or_default(),
                    ipv4,
                    ipv6,
                    authorized: m.authorized,
                    owner: m.owner.as_ref().map(|o| o.to_ascii_lowercase()),
                    owner_groups: m.owner_groups.iter().cloned().collect(),
                })
            })
            .collect();
        members.sort_by_key(|m| m.node_id);
        let routes = crate::routes::primaries(snapshot);
        let (sites, mapped) = crate::routes::sites::routers(snapshot, &routes);
        NetworkView {
            sites,
            mapped,
            pools: vec![
                IpNet::V4(snapshot.network.pool),
                IpNet::V6(snapshot.network.ipv6_prefix),
            ],
            members,
            routes,
            services: snapshot
                .services
                .iter()
                .map(|s| (s.node_id, s.spec.clone()))
                .collect(),
        }
    }

    pub fn member_named(&self, name: &str) -> Option<&PolicyMember> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Refuses an extra rule (a grant) that names a group `policy` lacks,
    /// or a member, tag or service this network lacks.
    pub fn check_rule(&self, policy: &Policy, rule: &super::Rule) -> Result<(), PolicyError> {
        let strip = |e: PolicyError| match e {
            PolicyError::Unknown { what, name, .. } => PolicyError::Unknown {
                at: None,
                what,
                name,
            },
            other => other,
        };
        super::document::check_groups_defined(rule, &policy.groups).map_err(strip)?;
        let alone = Policy {
            groups: BTreeMap::new(),
            declared_tags: policy.declared_tags.clone(),
            provider_groups: policy.provider_groups.clone(),
            rules: vec![rule.clone()],
            tests: Vec::new(),
        };
        self.check_names(&alone).map_err(strip)
    }

    /// Refuses a document that names a member, tag or service this network
    /// does not have. A tag is known if a member holds it or the document
    /// declares it under `tags`.
    pub fn check_names(&self, policy: &Policy) -> Result<(), PolicyError> {
        let known_tags: BTreeSet<&str> = self
            .members
            .iter()
            .flat_map(|m| m.tags.iter().map(String::as_str))
            .chain(policy.declared_tags.iter().map(String::as_str))
            .collect();
        let member = |name: &str, at: Location| -> Result<(), PolicyError> {
            match self.member_named(name) {
                Some(_) => Ok(()),
                None => Err(PolicyError::Unknown {
                    at: Some(at),
                    what: "member",
                    name: name.to_string(),
                }),
            }
        };
        let tag = |name: &str, at: Location| -> Result<(), PolicyError> {
            if known_tags.contains(name) {
                Ok(())
            } else {
                Err(PolicyError::Unknown {
                    at: Some(at),
                    what: "tag (no member holds it and `tags` does not declare it)",
                    name: format!("tag:{name}"),
                })
            }
        };
        for entries in policy.groups.values() {
            for (entry, at) in entries {
                match entry {
                    GroupEntry::Member(m) => member(m, *at)?,
                    GroupEntry::Tag(t) => tag(t, *at)?,
                }
            }
        }
        for rule in &policy.rules {
            for (source, at) in &rule.from {
                match source {
                    Source::Member(m) => member(m, *at)?,
                    Source::Tag(t) => tag(t, *at)?,
                    // A person or provider group may have no device yet.
                    Source::Any | Source::Group(_) | Source::User(_) => {}
                }
            }
            for (target, at) in &rule.to {
                match target {
                    Target::Member(m) => member(m, *at)?,
                    Target::Tag(t) => tag(t, *at)?,
                    Target::Site(s) if !self.sites.values().any(|site| site == s) => {
                        return Err(PolicyError::Unknown {
                            at: Some(*at),
                            what: "site (no member routes for it)",
                            name: format!("site:{s}"),
                        })
                    }
                    Target::Service(s)
                        if !self.services.iter().any(|(_, spec)| &spec.name == s) =>
                    {
                        return Err(PolicyError::Unknown {
                            at: Some(*at),
                            what: "service (no member publishes it)",
                            name: format!("service:{s}"),
                        })
                    }
                    _ => {}
                }
            }
        }
        for test in &policy.tests {
            member(&test.from, test.at)?;
            if let TestTarget::Member(m) = &test.to {
                member(m, test.at)?;
            }
        }
        Ok(())
    }
}
