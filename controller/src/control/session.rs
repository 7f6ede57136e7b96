//! A node's authenticated session: requests bound to its key, and netmap
//! pushes after every change to a network it joined.
//!
//! Every request acts on the node that authenticated on this connection:
//! no message names a node, so none can act for another.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use quinn::SendStream;
use tokio::sync::mpsc;
use warren_proto::control::{ControllerMessage, JoinOutcome, NatHint, NodeMessage};
use warren_proto::{NetworkId, NodeId, NodePublicKey};

use super::admission::Buckets;
use super::frames::{write_message, FrameIoError};
use super::{ControlContext, Role};
use crate::hub::{Inbox, Watch};
use crate::store::{JoinDecision, JoinRequest, MemberState, StoreError};

mod pushes;

use pushes::Sent;

/// More endpoint candidates than this is not a real node.
pub const MAX_ENDPOINTS: usize = 32;

/// Call-me-maybe requests one connection may send: to one peer (a burst,
/// then one per 2 s) and to all peers together (a burst, then 20 a second).
/// Each one makes a peer send probes, so no member may drive them.
const CALL_ME_PER_PEER: (f64, f64) = (5.0, 0.5);
const CALL_ME_TOTAL: (f64, f64) = (256.0, 20.0);
/// Requests that start a birthday try (a `PerDestination` hint) have a
/// bucket per peer of their own, so the plain requests of a busy start do
/// not crowd out the one that matters: two, then one per 10 s (the peer's
/// agent sprays at most every 10 s anyway).
const CALL_ME_BIRTHDAY: (f64, f64) = (2.0, 0.1);
/// Path reports one connection may send per network: a burst, then one
/// per 2 s. Agents send at most one per 5 s; each report may wake every
/// live watcher of the network.
const PATHS_PER_NETWORK: (f64, f64) = (5.0, 0.5);

pub(super) struct Session {
    context: Arc<ControlContext>,
    send: SendStream,
    node_key: NodePublicKey,
    node_id: NodeId,
    /// The hub's ID of this session: what it records (reported paths) only
    /// it removes.
    id: u64,
    version: String,
    /// Where the connection comes from, for the per-source join limit.
    remote: SocketAddr,
    /// The node's last reported endpoints per network, for joins after them.
    endpoints: BTreeMap<NetworkId, Vec<SocketAddr>>,
    /// Networks joined on this connection, with what is kept of the last
    /// map sent (its peers as digests): the base for the next delta.
    joined: BTreeMap<NetworkId, Sent>,
    /// Networks this connection counts as online in; kept apart from
    /// `joined` so a failure between the two never leaks presence.
    present: BTreeSet<NetworkId>,
    call_me_per_peer: Buckets<[u8; 32]>,
    call_me_total: Buckets<()>,
    call_me_birthday: Buckets<[u8; 32]>,
    paths_limit: Buckets<NetworkId>,
    /// The networks whose changes this session follows (those joined).
    watch: Watch,
}

impl Session {
    pub(super) fn new(
        context: Arc<ControlContext>,
        send: SendStream,
        node_key: NodePublicKey,
        id: u64,
        version: String,
        remote: SocketAddr,
    ) -> Self {
        Self {
            watch: context.hub.watch(id),
            context,
            send,
            node_key,
            node_id: NodeId::from_key(&node_key),
            id,
            version,
            remote,
            endpoints: BTreeMap::new(),
            joined: BTreeMap::new(),
            present: BTreeSet::new(),
            call_me_per_peer: Buckets::new(CALL_ME_PER_PEER.0, CALL_ME_PER_PEER.1),
            call_me_total: Buckets::new(CALL_ME_TOTAL.0, CALL_ME_TOTAL.1),
            call_me_birthday: Buckets::new(CALL_ME_BIRTHDAY.0, CALL_ME_BIRTHDAY.1),
            paths_limit: Buckets::new(PATHS_PER_NETWORK.0, PATHS_PER_NETWORK.1),
        }
    }

    pub(super) fn into_send(self) -> SendStream {
        self.send
    }

    /// Handles requests and change notices until the connection ends;
    /// returns why.
    pub(super) async fn serve(
        &mut self,
        mut frames: mpsc::Receiver<Result<NodeMessage, FrameIoError>>,
        mut inbox: Inbox,
    ) -> &'static str {
        let changes = self.watch.changes();
        loop {
            let step = tokio::select! {
                frame = frames.recv() => match frame {
                    Some(Ok(message)) => self.handle(message).await,
                    None | Some(Err(FrameIoError::Closed)) => return "closed by node",
                    Some(Err(FrameIoError::Read(_))) => return "connection lost",
                    Some(Err(e)) => {
                        tracing::debug!(node = %self.node_id, error = %e, "bad frame");
                        return "bad frame";
                    }
                },
                nets = changes.changed() => self.push_each(nets).await,
                Some(relayed) = inbox.recv() => self.relay_in(relayed).await,
            };
            if step.is_err() {
                return "connection lost";
            }
        }
    }

    async fn send(&mut self, message: &ControllerMessage) -> Result<(), FrameIoError> {
        write_message(&mut self.send, message).await
    }

    pub(super) fn context(&self) -> &Arc<ControlContext> {
        &self.context
    }

    pub(super) fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub(super) fn node_key(&self) -> NodePublicKey {
        self.node_key
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Whether this connection counts as an authorized member of `net`.
    pub(super) fn is_present(&self, net: NetworkId) -> bool {
        self.present.contains(&net)
    }

    /// Takes a token for one path report about `net`; false if over the rate.
    pub(super) fn take_paths_token(&mut self, net: NetworkId) -> bool {
        self.paths_limit.take(net, std::time::Instant::now())
    }

    pub(super) async fn error(&mut self, code: &str, message: &str) -> Result<(), FrameIoError> {
        let error = ControllerMessage::Error {
            code: code.to_string(),
            message: message.to_string(),
            fatal: false,
        };
        self.send(&error).await
    }

    pub(super) async fn internal(&mut self, error: StoreError) -> Result<(), FrameIoError> {
        tracing::error!(node = %self.node_id, %error, "control request failed");
        self.error("internal", "internal error").await
    }

    async fn handle(&mut self, message: NodeMessage) -> Result<(), FrameIoError> {
        match message {
            NodeMessage::Hello { .. } | NodeMessage::Auth { .. } => {
                self.error("unexpected_message", "already authenticated")
                    .await
            }
            _ if self.context.role == Role::RelayOnly => {
                self.error(
                    "relay_only",
                    "this is a relay-only instance: send control requests to the controller",
                )
                .await
            }
            NodeMessage::Join {
                network_id,
                name,
                preauth_key,
            } => self.join(network_id, name, preauth_key).await,
            NodeMessage::Leave { network_id } => self.leave(network_id).await,
            NodeMessage::SignIn { network_id } => self.sign_in_again(network_id).await,
            NodeMessage::Endpoints {
                network_id,
                endpoints,
            } => self.set_endpoints(network_id, endpoints).await,
            NodeMessage::CallMeMaybe {
                network_id,
                peer,
                endpoints,
                nat,
            } => self.call_me_maybe(network_id, peer, endpoints, nat).await,
            // DNS service directory: acts on this session's node only.
            NodeMessage::Services {
                network_id,
                services,
            } => {
                let hub = self.context.hub.clone();
                match crate::dns::services::publish(&hub, &self.node_key, network_id, &services)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => self.error(e.code(), &e.public_message()).await,
                }
            }
            // Subnet and exit routes: acts on this session's node only.
            NodeMessage::Routes {
                network_id,
                routes,
                site,
            } => {
                let hub = self.context.hub.clone();
                let site = site.as_ref();
                match super::advertise::advertise(&hub, &self.node_key, network_id, &routes, site)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => self.error(e.code(), &e.to_string()).await,
                }
            }
            NodeMessage::GrantUsed { network_id, grant } => {
                self.grant_used(network_id, grant).await
            }
            NodeMessage::Paths { network_id, paths } => self.report_paths(network_id, paths).await,
            // A newer agent's message: refused, but the session goes on.
            NodeMessage::Unknown => {
                self.error(
                    "unknown_message",
                    "this controller does not know that message type",
                )
                .await
            }
            NodeMessage::Resync { network_id } => {
                if self.joined.contains_key(&network_id) {
                    self.send_full(network_id).await
                } else {
                    self.error("not_joined", "join the network first").await
                }
            }
        }
    }

    /// `warren login`: a page where the device's owner signs it in again,
    /// before its sign-in runs out or after.
    async fn sign_in_again(&mut self, net: NetworkId) -> Result<(), FrameIoError> {
        let Some(sign_in) = self.context.sign_in.clone() else {
            return self
                .error(
                    "sign_in_off",
                    "people do not sign devices in on this controller",
                )
                .await;
        };
        let member = match self.context.hub.store().get_member(net, self.node_id).await {
            Ok(m) => m,
            Err(crate::store::StoreError::NotFound(_)) => {
                return self.error("not_joined", "join the network first").await
            }
            Err(e) => return self.internal(e).await,
        };
        let result = match (member.state, &member.owner) {
            (MemberState::Authorized, None) => {
                return self
                    .error(
                        "no_owner",
                        "this device joined with a key: it carries tags, not an owner, and does not expire",
                    )
                    .await
            }
            (MemberState::Revoked, _) => {
                return self.error("revoked", "this device is revoked").await
            }
            (MemberState::Authorized, Some(_)) => JoinOutcome::Authorized,
            (MemberState::Pending, _) => JoinOutcome::Pending,
        };
        let Some(url) = sign_in.device_page(net, self.node_id, member.display_name()) else {
            return self
                .error(
                    "sign_in_off",
                    "people do not sign devices in on this network",
                )
                .await;
        };
        tracing::info!(node = %self.node_id, network = %net, "sign-in page for warren login");
        self.send(&ControllerMessage::JoinResult {
            network_id: net,
            result,
            sign_in_url: Some(url),
            sign_in_refused: None,
        })
        .await
    }

    async fn join(
        &mut self,
        net: NetworkId,
        name: String,
        preauth_key: Option<String>,
    ) -> Result<(), FrameIoError> {
        let admitted = self.context.admission.join(
            self.remote.ip(),
            self.node_key.as_bytes(),
            std::time::Instant::now(),
        );
        if let Err(refusal) = admitted {
            tracing::debug!(node = %self.node_id, remote = %self.remote, %refusal, "join refused");
            self.context.hub.metrics().count_admission_refusal();
            return self.error("rate_limited", &refusal.to_string()).await;
        }
        let asked: String = name.chars().take(63).collect();
        let request = JoinRequest {
            network_id: net,
            node_key: self.node_key,
            name,
            preauth_key,
            agent_version: self.version.clone(),
            endpoints: self.endpoints.get(&net).cloned().unwrap_or_default(),
        };
        let hub = self.context.hub.clone();
        let result = match hub.store().join(request).await {
            Ok(result) => result,
            Err(e) => return self.internal(e).await,
        };
        let outcome = match &result.decision {
            JoinDecision::Authorized => JoinOutcome::Authorized,
            JoinDecision::Pending => JoinOutcome::Pending,
            JoinDecision::Refused(reason) => JoinOutcome::Refused {
                reason: reason.clone(),
            },
        };
        // A network where people sign devices in: the pending node gets
        // its owner's page.
        let sign_in_url = match (&outcome, &self.context.sign_in) {
            (JoinOutcome::Pending, Some(sign_in)) => sign_in.device_page(net, self.node_id, &asked),
            _ => None,
        };
        tracing::info!(node = %self.node_id, network = %net, ?outcome, sign_in = sign_in_url.is_some(), "join");
        self.send(&ControllerMessage::JoinResult {
            network_id: net,
            result: outcome,
            sign_in_url,
            sign_in_refused: None,
        })
        .await?;
        if let JoinDecision::Refused(_) = result.decision {
            return Ok(());
        }
        self.send_full(net).await
    }

    /// Counts this connection as present in `net` while the member is
    /// authorized there, and no longer once it is not: a pending node
    /// writes no presence, and one approved while connected comes online.
    async fn follow_presence(&mut self, net: NetworkId, authorized: bool) {
        let hub = self.context.hub.clone();
        let result = if authorized && self.present.insert(net) {
            hub.node_online(net, &self.node_key).await
        } else if !authorized && self.present.remove(&net) {
            hub.forget_paths(net, self.node_id, self.id);
            hub.node_offline(net, &self.node_key).await
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::error!(node = %self.node_id, error = %e, "could not record presence");
        }
    }

    async fn leave(&mut self, net: NetworkId) -> Result<(), FrameIoError> {
        let hub = self.context.hub.clone();
        self.endpoints.remove(&net);
        let left = hub.store().leave(net, &self.node_key).await;
        self.forget(net).await?;
        match left {
            Ok(()) => {
                tracing::info!(node = %self.node_id, network = %net, "left");
                Ok(())
            }
            Err(StoreError::NotFound(_)) => Ok(()),
            Err(StoreError::Conflict(why)) => {
                tracing::info!(node = %self.node_id, network = %net, "revoked member tried to leave");
                self.error("revoked", &why).await
            }
            Err(e) => self.internal(e).await,
        }
    }

    async fn set_endpoints(
        &mut self,
        net: NetworkId,
        endpoints: Vec<SocketAddr>,
    ) -> Result<(), FrameIoError> {
        if endpoints.len() > MAX_ENDPOINTS {
            let message = format!("at most {MAX_ENDPOINTS} endpoints");
            return self.error("bad_request", &message).await;
        }
        let endpoints = match self.valid_endpoints(net, endpoints).await {
            Ok(e) => e,
            Err(e) => return self.internal(e).await,
        };
        let hub = self.context.hub.clone();
        let changed = hub
            .store()
            .set_endpoints(net, &self.node_key, &endpoints)
            .await;
        self.endpoints.insert(net, endpoints);
        match changed {
            Ok(_) => Ok(()),
            Err(e) => self.internal(e).await,
        }
    }

    /// Forwards a call-me-maybe to `peer`, only between authorized members
    /// of a network this connection joined.
    async fn call_me_maybe(
        &mut self,
        net: NetworkId,
        peer: NodePublicKey,
        endpoints: Vec<SocketAddr>,
        nat: Option<NatHint>,
    ) -> Result<(), FrameIoError> {
        if endpoints.len() > MAX_ENDPOINTS {
            let message = format!("at most {MAX_ENDPOINTS} endpoints");
            return self.error("bad_request", &message).await;
        }
        if !self.joined.contains_key(&net) {
            return self.error("not_joined", "join the network first").await;
        }
        let snapshot = match self.context.hub.snapshot(net).await {
            Ok(s) => s,
            Err(e) => return self.internal(e).await,
        };
        let authorized = |key: &NodePublicKey| {
            snapshot.as_ref().is_some_and(|s| {
                s.members
                    .iter()
                    .any(|m| m.public_key == *key && m.state == MemberState::Authorized)
            })
        };
        if peer == self.node_key || !authorized(&self.node_key) || !authorized(&peer) {
            return self
                .error("not_a_peer", "both nodes must be authorized members")
                .await;
        }
        let now = std::time::Instant::now();
        let per_peer = match nat {
            Some(NatHint::PerDestination { .. }) => &mut self.call_me_birthday,
            _ => &mut self.call_me_per_peer,
        };
        if !per_peer.take(*peer.as_bytes(), now) || !self.call_me_total.take((), now) {
            tracing::debug!(node = %self.node_id, peer = %peer.short(), "call-me-maybe over its rate");
            return self
                .error("rate_limited", "too many call-me-maybe requests; slow down")
                .await;
        }
        let endpoints = match &snapshot {
            Some(s) => endpoint_rules(endpoints, &s.network),
            None => Vec::new(),
        };
        if endpoints.is_empty() {
            return Ok(());
        }
        let nat = forwarded_hint(nat, &endpoints, self.remote.ip());
        let message = ControllerMessage::CallMeMaybe {
            network_id: net,
            from: self.node_key,
            endpoints,
            nat,
        };
        // Best effort: an offline peer simply does not get it.
        self.context.hub.deliver(&peer, &message);
        Ok(())
    }

    /// The candidates of `endpoints` that peers may be asked to probe in
    /// `net`; the rest are dropped (and logged), so one bad candidate (a
    /// link-local address a node picked up) does not cost the others.
    async fn valid_endpoints(
        &self,
        net: NetworkId,
        endpoints: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, StoreError> {
        let snapshot = self.context.hub.snapshot(net).await?;
        Ok(match snapshot {
            Some(s) => endpoint_rules(endpoints, &s.network),
            None => endpoints,
        })
    }

    /// A message for this node from elsewhere in the controller (a peer's
    /// call-me-maybe, a refused sign-in on its page): passed on only for
    /// networks this connection joined.
    async fn relay_in(&mut self, message: ControllerMessage) -> Result<(), FrameIoError> {
        match &message {
            ControllerMessage::CallMeMaybe { network_id, .. }
                if self.joined.contains_key(network_id) =>
            {
                self.send(&message).await
            }
            // A refused sign-in on this node's page (identity::pages).
            ControllerMessage::JoinResult {
                network_id,
                sign_in_refused: Some(_),
                ..
            } if self.joined.contains_key(network_id) => self.send(&message).await,
            _ => Ok(()),
        }
    }

    async fn forget(&mut self, net: NetworkId) -> Result<(), FrameIoError> {
        self.joined.remove(&net);
        self.watch.unfollow(net);
        self.context.hub.forget_paths(net, self.node_id, self.id);
        if self.present.remove(&net) {
            if let Err(e) = self.context.hub.node_offline(net, &self.node_key).await {
                tracing::error!(node = %self.node_id, error = %e, "could not record presence");
            }
        }
        Ok(())
    }

    fn count_push(&self) {
        self.context
            .hub
            .metrics()
            .netmap_pushes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The connection ended: the node goes offline in every network it joined here.
    pub(super) async fn disconnect(&mut self) {
        for net in std::mem::take(&mut self.joined).into_keys() {
            self.context.hub.forget_paths(net, self.node_id, self.id);
        }
        for net in std::mem::take(&mut self.present) {
            if let Err(e) = self.context.hub.node_offline(net, &self.node_key).await {
                tracing::error!(node = %self.node_id, error = %e, "could not record presence");
            }
        }
    }
}

/// Keeps the endpoints [`warren_proto::endpoint::check_in`] allows in
/// `network`.
fn endpoint_rules(endpoints: Vec<SocketAddr>, network: &crate::store::Network) -> Vec<SocketAddr> {
    endpoints
        .into_iter()
        .filter(|e| {
            let verdict = warren_proto::endpoint::check_in(e, &network.pool, &network.ipv6_prefix);
            if let Err(why) = verdict {
                tracing::debug!(endpoint = %e, %why, "endpoint candidate dropped");
            }
            verdict.is_ok()
        })
        .collect()
}

/// The NAT hint of a call-me-maybe as the peer gets it. A peer told that
/// the sender maps per destination sends to many ports of its address:
/// only the address this connection comes from passes (the sender's NAT
/// is the one in front of it), and only if it is among the sender's own
/// (valid) candidates. Through an HTTPS proxy the two differ, and no
/// birthday try is made.
fn forwarded_hint(
    nat: Option<NatHint>,
    endpoints: &[SocketAddr],
    remote: std::net::IpAddr,
) -> Option<NatHint> {
    nat.filter(|hint| match hint {
        NatHint::Independent => true,
        NatHint::PerDestination { ip } => {
            *ip == remote.to_canonical() && endpoints.iter().any(|e| e.ip() == *ip)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spray_hint_passes_only_for_the_senders_own_address() {
        let own: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let other: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let hint = |ip: &str| {
            Some(NatHint::PerDestination {
                ip: ip.parse().unwrap(),
            })
        };
        let remote = own.ip();
        // As the controller sees it on a dual-stack socket, too.
        let mapped: std::net::IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        for from in [remote, mapped] {
            assert_eq!(
                forwarded_hint(hint("198.51.100.7"), &[own], from),
                hint("198.51.100.7")
            );
        }
        // Among the candidates, but not where the connection comes from.
        assert_eq!(
            forwarded_hint(hint("192.0.2.1"), &[own, other], remote),
            None
        );
        assert_eq!(forwarded_hint(hint("198.51.100.7"), &[], remote), None);
        assert_eq!(
            forwarded_hint(Some(NatHint::Independent), &[own], remote),
            Some(NatHint::Independent)
        );
        assert_eq!(forwarded_hint(None, &[own], remote), None);
    }
}
