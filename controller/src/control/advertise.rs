//! A node's `Routes` message: what it advertises, stored through the
//! store's route checks. Here rather than in `crate::routes`, which the
//! hub and the netmaps depend on and which must not depend on the hub.

use ipnet::IpNet;
use warren_proto::{NetworkId, NodeId};

use crate::hub::Hub;

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

/// A node's `Routes` request: stores what it advertises (for itself only,
/// for `site` or none) and tells every member when netmaps change.
pub async fn advertise(
    hub: &Hub,
    node_key: &warren_proto::NodePublicKey,
    net: NetworkId,
    prefixes: &[IpNet],
    site: Option<&warren_proto::site::SiteSpec>,
) -> Result<(), AdvertiseError> {
    use crate::store::StoreError;
    let node = NodeId::from_key(node_key);
    let checks = hub.route_checks();
    match hub
        .store()
        .set_advertised_routes(net, node_key, prefixes, site, &checks)
        .await
    {
        Ok(done) => {
            for (prefix, why) in &done.not_auto_approved {
                tracing::info!(%node, network = %net, %prefix, reason = %why, "route left for an admin");
            }
            if done.changed {
                let site = site.map(|s| s.name.as_str());
                tracing::info!(%node, network = %net, routes = ?prefixes, ?site, "routes advertised");
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
