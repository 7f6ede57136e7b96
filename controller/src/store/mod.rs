//! The controller's storage: one trait, implemented once in SQL for
//! SQLite and PostgreSQL ([`sql`]). Every change writes its audit entry in
//! the same transaction.

pub mod changes;
mod model;
mod policy;
mod routes;
pub mod sql;
mod users;

use async_trait::async_trait;
use time::OffsetDateTime;
use warren_proto::{NetworkId, NodeId, NodePublicKey};

pub use crate::audit_action::AuditAction;
pub use changes::{Change, ChangeFeed, ChangeKind};
pub use model::*;
pub use policy::*;
pub use routes::*;
pub use sql::{is_postgres_url, SqlStore, MAX_PENDING};
pub use users::*;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// A write a node makes for itself, refused because its membership is
    /// not (or no longer) authorized.
    #[error("{0}")]
    NotAuthorized(&'static str),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A policy document was refused (syntax, names, or its own tests).
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
}

/// Everything the controller keeps. Methods that change state take the
/// [`Actor`] the audit log records.
#[async_trait]
pub trait Store: RouteStore + PolicyStore + UserStore + Send + Sync + 'static {
    /// Every committed change, as typed records: see [`changes`].
    fn changes(&self) -> &std::sync::Arc<ChangeFeed>;

    // API tokens. Lookups are never cached, so a revocation holds at once
    // on every replica that shares the database.
    async fn create_token(&self, actor: &Actor, spec: TokenSpec) -> Result<NewToken, StoreError>;
    /// The token with this secret, whatever its state (the caller decides).
    async fn find_token(&self, secret: &str) -> Result<Option<Token>, StoreError>;
    async fn list_tokens(&self) -> Result<Vec<Token>, StoreError>;
    /// Revokes a token; revoking a revoked token changes nothing.
    async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<Token, StoreError>;
    /// Records a use at `at` unless one was recorded in the last
    /// [`TOKEN_TOUCH_INTERVAL`]; true if it wrote. Not audited.
    async fn touch_token(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError>;

    // Networks.
    async fn create_network(&self, actor: &Actor, new: NewNetwork) -> Result<Network, StoreError>;
    async fn list_networks(&self) -> Result<Vec<Network>, StoreError>;
    async fn get_network(&self, id: NetworkId) -> Result<Network, StoreError>;
    async fn update_network(
        &self,
        actor: &Actor,
        id: NetworkId,
        patch: NetworkPatch,
    ) -> Result<Network, StoreError>;
    async fn delete_network(&self, actor: &Actor, id: NetworkId) -> Result<(), StoreError>;
    async fn network_snapshot(&self, id: NetworkId) -> Result<Option<NetworkSnapshot>, StoreError>;

    // Members, as the admin sees them.
    async fn list_members(&self, net: NetworkId) -> Result<Vec<Member>, StoreError>;
    async fn get_member(&self, net: NetworkId, node: NodeId) -> Result<Member, StoreError>;
    async fn set_member_state(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        state: MemberState,
    ) -> Result<Member, StoreError>;
    async fn rename_member(
        &self,
        actor: &Actor,
        net: NetworkId,
        node: NodeId,
        name: &str,
    ) -> Result<Member, StoreError>;
    /// An admin removes a membership, whatever its state.
    async fn delete_member(
        &self,
        actor: &Actor,
        action: AuditAction,
        net: NetworkId,
        node: NodeId,
    ) -> Result<(), StoreError>;
    /// A node leaves: found by its full key. A revoked membership stays
    /// (`Conflict`), so leaving and joining again cannot undo a revocation.
    async fn leave(&self, net: NetworkId, node_key: &NodePublicKey) -> Result<(), StoreError>;

    // Members, as their nodes act.
    async fn join(&self, request: JoinRequest) -> Result<JoinResult, StoreError>;
    /// Records a presence transition of the member with this full key;
    /// true if it changed anything. Only an authorized member goes online.
    async fn set_presence(
        &self,
        net: NetworkId,
        node_key: &NodePublicKey,
        online: bool,
    ) -> Result<bool, StoreError>;
    /// Stores a node's endpoints for one network; true if they changed.
    async fn set_endpoints(
        &self,
        net: NetworkId,
        node_key: &NodePublicKey,
        endpoints: &[std::net::SocketAddr],
    ) -> Result<bool, StoreError>;
    /// Marks offline every member online at no running replica: after a
    /// restart on SQLite, every member (nobody is connected yet).
    async fn reset_presence(&self) -> Result<Vec<NetworkId>, StoreError>;
    /// The controller replicas running on this database, oldest first;
    /// empty where there is one process (SQLite).
    async fn replicas(&self) -> Result<Vec<Replica>, StoreError>;
    /// Whether other replicas share this database.
    fn is_shared(&self) -> bool;
    /// Where agents reach the other running replica holding a connection
    /// of the node with `key` (relayed packets for it go there).
    async fn replica_holding(&self, key: &NodePublicKey) -> Result<Option<String>, StoreError>;
    /// Hands `body`, a message for the node `to`, to the other replicas:
    /// the one holding `to`'s connection delivers it.
    async fn forward(&self, to: &NodePublicKey, body: &str) -> Result<(), StoreError>;
    /// Messages other replicas forwarded (see [`Store::forward`]).
    fn forwarded(&self) -> tokio::sync::broadcast::Receiver<sql::Forwarded>;
    /// Replaces the services a member publishes in its network's DNS zone;
    /// true if they changed. `NotFound` if the key is not a member's,
    /// `NotAuthorized` if the member is not authorized.
    async fn set_services(
        &self,
        net: NetworkId,
        node_key: &NodePublicKey,
        services: &[warren_proto::service::ServiceSpec],
    ) -> Result<bool, StoreError>;

    // Pre-auth keys.
    async fn create_preauth_key(
        &self,
        actor: &Actor,
        net: NetworkId,
        spec: PreauthKeySpec,
    ) -> Result<NewPreauthKey, StoreError>;
    async fn list_preauth_keys(&self, net: NetworkId) -> Result<Vec<PreauthKey>, StoreError>;
    async fn delete_preauth_key(
        &self,
        actor: &Actor,
        net: NetworkId,
        key_id: &str,
    ) -> Result<(), StoreError>;

    // Audit log.
    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// The newest entry's id and hash ([`AuditHead::empty`] for none).
    async fn audit_head(&self) -> Result<AuditHead, StoreError>;
    /// Recomputes the whole chain and, given an anchor, checks that its
    /// entry is in the chain with its hash.
    async fn audit_verify(
        &self,
        anchor: Option<&AuditHead>,
    ) -> Result<AuditVerification, StoreError>;
}
