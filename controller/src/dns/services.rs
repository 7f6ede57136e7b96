//! Services nodes publish over the control connection, bound to the node
//! that authenticated: a request can only ever change its own services.

use warren_proto::service::{validate_list, ServiceError, ServiceSpec};
use warren_proto::{NetworkId, NodeId, NodePublicKey};

use crate::hub::Hub;
use crate::store::StoreError;

/// Why a node's service list was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(#[from] ServiceError),
    #[error("not a member of network {0}")]
    NotAMember(NetworkId),
    #[error("{0}")]
    NotAuthorized(&'static str),
    #[error("storing services: {0}")]
    Store(StoreError),
}

impl PublishError {
    /// The `code` of the control protocol's `Error` message.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Invalid(_) => "bad_request",
            PublishError::NotAMember(_) => "not_a_member",
            PublishError::NotAuthorized(_) => "not_authorized",
            PublishError::Store(_) => "internal",
        }
    }

    /// What the node is told: internal causes stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            PublishError::Store(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

/// Replaces what `node` publishes in `net` and, if that changed anything,
/// tells every session and the DNS server.
pub async fn publish(
    hub: &Hub,
    node_key: &NodePublicKey,
    net: NetworkId,
    services: &[ServiceSpec],
) -> Result<(), PublishError> {
    validate_list(services)?;
    let node = NodeId::from_key(node_key);
    match hub.store().set_services(net, node_key, services).await {
        Ok(true) => {
            tracing::info!(%node, network = %net, count = services.len(), "services published");
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(StoreError::NotFound(_)) => Err(PublishError::NotAMember(net)),
        Err(StoreError::NotAuthorized(why)) => Err(PublishError::NotAuthorized(why)),
        Err(e) => {
            tracing::error!(%node, network = %net, error = %e, "could not store services");
            Err(PublishError::Store(e))
        }
    }
}
