//! Policy versions and member tags as stored, and the part of the
//! [`super::Store`] that keeps them. Setting a policy checks it (syntax,
//! names, compilation, its own tests) inside the transaction that stores it.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use warren_proto::filter::PortRange;
use warren_proto::{NetworkId, NodeId};

use super::{Actor, Network, NewNetwork, StoreError};
use crate::policy::{NetworkView, PolicyError, Rule, TestOutcome};

/// The most tags one member may hold.
pub const MAX_TAGS_PER_MEMBER: usize = 32;

/// One version of a network's policy document.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicyVersion {
    pub network_id: NetworkId,
    pub version: u64,
    pub text: String,
    pub created_by: String,
    pub created_at: String,
}

/// The current policy and the network it applies to, read together.
#[derive(Debug, Clone)]
pub struct PolicyState {
    pub current: PolicyVersion,
    pub view: NetworkView,
    /// Grants active at the time of the read.
    pub grants: Vec<Grant>,
}

impl PolicyState {
    /// The active grants as extra rules for the compiler.
    pub fn grant_rules(&self) -> Vec<Rule> {
        grant_rules(&self.grants)
    }
}

/// What a network's packets are judged by, as a snapshot carries it: the
/// current document, its members' tags and the grants active when read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyInForce {
    /// The current version; `None`: the default document, never replaced.
    pub current: Option<PolicyVersion>,
    pub tags: BTreeMap<NodeId, BTreeSet<String>>,
    pub grants: Vec<Grant>,
}

impl PolicyInForce {
    /// The document's text and version (the default one is version 1).
    pub fn text_and_version(&self) -> (&str, u64) {
        match &self.current {
            Some(v) => (v.text.as_str(), v.version),
            None => (crate::policy::DEFAULT_POLICY, 1),
        }
    }

    /// The active grants as extra rules for the compiler.
    pub fn grant_rules(&self) -> Vec<Rule> {
        grant_rules(&self.grants)
    }
}

/// Grants as extra rules for the compiler; a grant whose stored names no
/// longer parse admits nothing.
fn grant_rules(grants: &[Grant]) -> Vec<Rule> {
    grants.iter().filter_map(|g| g.rule().ok()).collect()
}

/// Temporary access: a rule with an end time.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub network_id: NetworkId,
    pub from: String,
    pub to: String,
    pub ports: Vec<PortRange>,
    pub reason: String,
    pub created_by: String,
    pub created_at: String,
    pub ends_at: String,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<String>,
    /// Not revoked and not ended when it was read.
    pub active: bool,
}

impl Grant {
    /// The rule the compiler adds while the grant is active: `grant:<id>`.
    pub fn rule(&self) -> Result<Rule, PolicyError> {
        Rule::from_selectors(
            format!("grant:{}", self.id),
            &self.from,
            &self.to,
            self.ports.clone(),
        )
    }
}

/// A grant to make (validated for syntax; the store checks names).
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub from: String,
    pub to: String,
    pub ports: Vec<PortRange>,
    pub reason: String,
    pub ends_at: OffsetDateTime,
}

/// Where a grant request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Withdrawn,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Withdrawn => "withdrawn",
        }
    }
}

impl std::str::FromStr for RequestState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [Self::Pending, Self::Approved, Self::Denied, Self::Withdrawn]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or(())
    }
}

/// A person's request for temporary access to a service: an admin's
/// approval turns it into a grant from `user:<requester>` that lasts
/// `duration_secs` from the approval.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GrantRequest {
    pub id: String,
    pub network_id: NetworkId,
    /// The e-mail address the person signs in with.
    pub requester: String,
    pub to: String,
    pub ports: Vec<PortRange>,
    pub duration_secs: u64,
    pub reason: String,
    pub created_at: String,
    pub state: RequestState,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// The grant an approval made.
    pub grant_id: Option<String>,
}

/// A grant request to make (validated for syntax; the store checks names).
#[derive(Debug, Clone)]
pub struct NewGrantRequest {
    pub requester: String,
    pub to: String,
    pub ports: Vec<PortRange>,
    pub duration: std::time::Duration,
    pub reason: String,
}

/// What becomes of a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An admin makes the grant.
    Approve,
    /// An admin says no.
    Deny,
    /// The person who asked takes it back.
    Withdraw,
}

/// Pending requests one person may have at once, over every network.
pub const MAX_PENDING_REQUESTS: i64 = 10;

/// Which requests [`PolicyStore::list_grant_requests`] returns.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub network: Option<NetworkId>,
    pub requester: Option<String>,
    pub pending_only: bool,
    pub limit: u32,
}

/// What setting a policy did.
#[derive(Debug, Clone, Serialize)]
pub struct PolicySet {
    #[serde(flatten)]
    pub policy: PolicyVersion,
    /// False if the text was the current one (no new version).
    pub changed: bool,
    /// The document's tests, all passed.
    pub tests: Vec<TestOutcome>,
}

/// `tag:NAME` to NAME, if NAME is a DNS label.
pub fn tag_name(text: &str) -> Result<&str, StoreError> {
    text.strip_prefix("tag:")
        .filter(|name| crate::names::is_label(name))
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "{:?} is not a tag: write tag:NAME, NAME a DNS label (lowercase letters, digits, '-')",
                text.chars().take(80).collect::<String>()
            ))
        })
}

/// Storage of policy documents and member tags; every change is audited
/// and bumps the network's netmap version in its transaction.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Creates a network whose first policy is `text` instead of the
    /// default; `Policy` if the text does not pass on an empty network.
    async fn create_network_with_policy(
        &self,
        actor: &Actor,
        new: NewNetwork,
        text: &str,
    ) -> Result<Network, StoreError>;

    /// The current policy with the members, tags, routes and services it
    /// compiles against, from one read. `NotFound` without the network.
    async fn policy_state(&self, net: NetworkId) -> Result<PolicyState, StoreError>;

    /// Every version, newest first.
    async fn policy_history(&self, net: NetworkId) -> Result<Vec<PolicyVersion>, StoreError>;

    /// Stores `text` as the next version if it parses, names only what the
    /// network has, compiles and passes its own tests; otherwise `Policy`
    /// and the current version stays.
    async fn set_policy(
        &self,
        actor: &Actor,
        net: NetworkId,
        text: &str,
    ) -> Result<PolicySet, StoreError>;

    /// A member's tags as `tag:NAME`, sorted.
    async fn member_tags(&self, net: NetworkId, node: NodeId) -> Result<Vec<String>, StoreError>;

    /// Adds a tag (`tag:NAME`); returns the member's tags.
    async fn tag_member(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        tag: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Removes a tag; `NotFound` if the member does not hold it.
    async fn untag_member(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        tag: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Adds a grant; `Policy` if it names a group the current policy
    /// lacks, or a member, tag or service the network lacks.
    async fn add_grant(
        &self,
        actor: &Actor,
        net: NetworkId,
        new: NewGrant,
    ) -> Result<Grant, StoreError>;

    /// The network's grants, newest first: the active ones, or all.
    async fn list_grants(&self, net: NetworkId, all: bool) -> Result<Vec<Grant>, StoreError>;

    /// Records the end of every grant whose time is up and whose end is
    /// not recorded yet: audited as `grant.end`, the network's netmap
    /// version bumped. Returns them (none: nothing was written).
    async fn end_due_grants(&self) -> Result<Vec<Grant>, StoreError>;

    /// A member (by its full key) reports that grant `id` admitted a flow
    /// at it. The first report per grant and member is recorded and
    /// audited (`grant.use`, returns true); later ones change nothing.
    /// `NotFound` unless the node is an authorized member and the grant an
    /// active one of `net`.
    async fn record_grant_use(
        &self,
        net: NetworkId,
        node_key: &warren_proto::NodePublicKey,
        id: &str,
    ) -> Result<bool, StoreError>;

    /// Ends an active grant now; `NotFound` if there is no active grant `id`.
    async fn revoke_grant(
        &self,
        actor: &Actor,
        net: NetworkId,
        id: &str,
    ) -> Result<Grant, StoreError>;

    /// Records a person's request (audited as `grant.request`): `Policy`
    /// if it names what the network lacks, `Conflict` if the same request
    /// waits already or the person has [`MAX_PENDING_REQUESTS`] waiting.
    async fn request_grant(
        &self,
        net: NetworkId,
        new: NewGrantRequest,
    ) -> Result<GrantRequest, StoreError>;

    /// Requests, newest first: of one network or all, of one person or
    /// everyone, pending only or all; at most `limit`.
    async fn list_grant_requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<GrantRequest>, StoreError>;

    /// Decides a pending request in one transaction: an approval makes
    /// its grant (ending `duration_secs` from now) as `actor`. `NotFound`
    /// if request `id` of `net` is not pending. Who may decide is the
    /// caller's check.
    async fn decide_grant_request(
        &self,
        actor: &Actor,
        net: NetworkId,
        id: &str,
        decision: Decision,
    ) -> Result<(GrantRequest, Option<Grant>), StoreError>;
}
