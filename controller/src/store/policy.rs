//! Policy versions and member tags as stored, and the part of the
//! [`super::Store`] that keeps them. Setting a policy checks it (syntax,
//! names, compilation, its own tests) inside the transaction that stores it.

use async_trait::async_trait;
use serde::Serialize;
use warren_proto::{NetworkId, NodeId};

use super::{Actor, Network, NewNetwork, StoreError};
use crate::policy::{NetworkView, TestOutcome};

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
}
