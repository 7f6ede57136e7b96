//! `warren login`: a device's owner signs it in again, before the sign-in
//! runs out or after, and what the node does when it has run out.

use warren_proto::local_api::{NetworkState, NetworkStatus};
use warren_proto::netmap::{Netmap, SelfNode};
use warren_proto::NetworkId;

use super::{Joined, Managed};
use crate::daemon::control::ControlCommand;
use crate::daemon::{refusal, Refusal};

impl Managed {
    /// Asks the network's controller for a page where the owner signs
    /// this device in again; the page arrives in the status moments later.
    pub async fn login(&mut self, id: NetworkId) -> Result<NetworkStatus, Refusal> {
        let Some(net) = self.nets.get_mut(&id) else {
            return Err(refusal(
                404,
                "not_joined",
                format!("network {id} is not joined: `warren join` it first"),
            ));
        };
        let me = net.netmap.as_ref().map(|m| &m.self_node);
        if me.is_some_and(|me| me.authorized && me.owner.is_none()) {
            return Err(refusal(
                409,
                "no_owner",
                "this device joined with a key: it carries tags, not an owner, and does not expire"
                    .to_string(),
            ));
        }
        net.login = Some(me.and_then(|me| me.expires_at.clone()));
        net.sign_in_url = None;
        net.sign_in_refused = None;
        let Some(control) = self.controllers.get(&net.config.controller) else {
            return Err(refusal(
                503,
                "not_connected",
                format!("no connection to {} yet", net.config.controller),
            ));
        };
        control.send(ControlCommand::SignIn(id));
        Ok(self.network_status(&id).await)
    }

    /// The owner's sign-in ran out: no peers, and a status that says how
    /// to come back. The map is kept for its owner and expiry.
    pub(super) async fn expired(&mut self, map: Netmap) {
        let id = map.network_id;
        let owner = map.self_node.owner.as_deref().unwrap_or("its owner");
        let message =
            format!("the sign-in of {owner} ran out: run `warren login {id}` to sign in again");
        tracing::warn!(network = %id, "device sign-in expired");
        self.fail_closed(id, NetworkState::Expired, message).await;
        if let Some(net) = self.nets.get_mut(&id) {
            net.netmap = Some(map);
        }
    }
}

/// The longest refusal kept from a controller (it is shown to people).
const MAX_REASON: usize = 300;

/// A sign-in on the device's page was refused: `warren join` and `warren
/// login` stop waiting and say why.
pub(super) fn refused(net: Option<&mut Joined>, reason: &str) {
    let Some(net) = net else {
        return;
    };
    let reason: String = reason.chars().take(MAX_REASON).collect();
    tracing::warn!(network = %net.config.network_id, %reason, "a sign-in for this device was refused");
    net.sign_in_url = None;
    net.sign_in_refused = Some(reason);
}

/// A `warren login` is done once a netmap shows the sign-in renewed; a
/// page shown while pending is done once the device is on.
pub(super) fn settle(net: Option<&mut Joined>, me: &SelfNode) {
    let Some(net) = net else {
        return;
    };
    let on = me.authorized && !me.expired;
    match &net.login {
        Some(before) if on && me.expires_at != *before => {
            net.login = None;
            net.sign_in_url = None;
        }
        None if on => net.sign_in_url = None,
        _ => {}
    }
}
