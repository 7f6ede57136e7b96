//! Subnet routes as stored, and the part of the [`super::Store`] that keeps
//! them: what members advertise, what admins (or auto-approval rules)
//! approved, and the rules themselves.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net};
use serde::{Serialize, Serializer};
use warren_proto::site::{SiteDns, SiteSpec};
use warren_proto::{NetworkId, NodeId, NodePublicKey};

use super::{Actor, StoreError};

/// One prefix of one member.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Route {
    pub network_id: NetworkId,
    pub node_id: NodeId,
    pub prefix: IpNet,
    /// The site it routes for (one per member and network), if any.
    pub site: Option<String>,
    /// The member's node offers it now.
    pub advertised: bool,
    /// An admin or an auto-approval rule approved it.
    pub approved: bool,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    pub created_at: String,
}

/// Whose advertisements an auto-approval rule approves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Approvee {
    /// Any member of the network (`*`).
    Any,
    Node(NodeId),
}

impl Approvee {
    pub fn matches(&self, node: &NodeId) -> bool {
        match self {
            Approvee::Any => true,
            Approvee::Node(n) => n == node,
        }
    }
}

impl fmt::Display for Approvee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Approvee::Any => f.write_str("*"),
            Approvee::Node(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Approvee {
    type Err = warren_proto::IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            Ok(Approvee::Any)
        } else {
            s.parse().map(Approvee::Node)
        }
    }
}

impl Serialize for Approvee {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A network's rule: advertisements of `prefix` (or anything inside it)
/// by `node` are approved without an admin.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AutoApprover {
    pub network_id: NetworkId,
    pub prefix: IpNet,
    pub node: Approvee,
    pub created_by: String,
    pub created_at: String,
}

impl AutoApprover {
    /// True if this rule approves `prefix` from `node`.
    pub fn approves(&self, node: &NodeId, prefix: &IpNet) -> bool {
        self.node.matches(node) && self.prefix.contains(prefix)
    }
}

/// What the controller knows outside the database that a route is checked
/// against.
#[derive(Debug, Clone)]
pub struct RouteChecks {
    /// Addresses nodes reach the controller at.
    pub controller_ips: Vec<IpAddr>,
    /// Where mapped prefixes of overlapping sites' routes come from
    /// (`--site-mapped-range`).
    pub site_mapped_range: Ipv4Net,
}

/// The default `--site-mapped-range`: the shared address space (RFC 6598).
pub const DEFAULT_SITE_MAPPED_RANGE: Ipv4Net =
    Ipv4Net::new_assert(std::net::Ipv4Addr::new(100, 64, 0, 0), 10);

impl Default for RouteChecks {
    fn default() -> Self {
        RouteChecks {
            controller_ips: Vec::new(),
            site_mapped_range: DEFAULT_SITE_MAPPED_RANGE,
        }
    }
}

/// A site's route and the unique prefix members use for it instead.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SiteMapping {
    pub site: String,
    pub real: Ipv4Net,
    pub mapped: Ipv4Net,
}

/// What a network's snapshot holds of its sites besides the routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteState {
    /// The site DNS each member declared with its routes.
    pub dns: std::collections::BTreeMap<NodeId, SiteDns>,
    /// Every stored mapping of the network, by site then real prefix.
    pub mappings: Vec<SiteMapping>,
}

/// What became of an advertisement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertised {
    /// Netmaps change (a served route came or went, or the advertiser's own map).
    pub changed: bool,
    /// Prefixes an auto-approval rule covered but that could not be
    /// approved, with why; they wait for an admin.
    pub not_auto_approved: Vec<(IpNet, String)>,
}

/// Storage of routes and auto-approval rules. Every change writes its audit
/// entry and bumps the network's netmap version in the same transaction.
#[async_trait]
pub trait RouteStore: Send + Sync {
    /// Every route row of a network, by node then prefix. `NotFound` if the
    /// network does not exist.
    async fn list_routes(&self, net: NetworkId) -> Result<Vec<Route>, StoreError>;

    /// Replaces what `node` advertises in `net` (its node said so), for
    /// `site` or none, and applies the network's auto-approval rules to
    /// what is new. `Invalid` if a prefix can never be a route there or the
    /// site is malformed; `NotFound` if not a member.
    async fn set_advertised_routes(
        &self,
        net: NetworkId,
        node_key: &NodePublicKey,
        prefixes: &[IpNet],
        site: Option<&SiteSpec>,
        checks: &RouteChecks,
    ) -> Result<Advertised, StoreError>;

    /// Approves `prefix` for `node` (advertised yet or not). `Conflict`
    /// with the reason if it overlaps another route, would capture the
    /// controller or a member's endpoint; `Invalid` for a bad prefix.
    async fn approve_route(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        prefix: IpNet,
        checks: &RouteChecks,
    ) -> Result<Route, StoreError>;

    /// Withdraws an approval; `NotFound` if it was not approved.
    async fn unapprove_route(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        prefix: IpNet,
    ) -> Result<(), StoreError>;

    async fn list_auto_approvers(&self, net: NetworkId) -> Result<Vec<AutoApprover>, StoreError>;

    /// Adds a rule and approves what it covers that is advertised already
    /// (those that pass the checks); returns the rule and those routes.
    async fn add_auto_approver(
        &self,
        actor: &Actor,
        net: NetworkId,
        prefix: IpNet,
        node: Approvee,
        checks: &RouteChecks,
    ) -> Result<(AutoApprover, Vec<Route>), StoreError>;

    /// Removes a rule (routes it approved stay approved).
    async fn remove_auto_approver(
        &self,
        actor: &Actor,
        net: NetworkId,
        prefix: IpNet,
        node: Approvee,
    ) -> Result<(), StoreError>;
}
