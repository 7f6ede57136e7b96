//! Netmap pushes: the whole map when a member joins, then after every
//! change to its network what changed since the last map it was sent.

use std::collections::BTreeSet;

use warren_proto::control::{encode_delta_frame, ControllerMessage, SharedPeers};
use warren_proto::netmap::{Netmap, NetmapDelta, SentNetmap};
use warren_proto::{NetworkId, NodeId};

use super::super::frames::{write_frame, FrameIoError};
use super::Session;
use crate::netmaps;

/// What a session keeps of the last map it sent a member: the map's
/// digest form, and the shared view it was made from.
pub(super) struct Sent {
    map: SentNetmap,
    view: u64,
}

impl Session {
    /// Sends the whole map of `net` and makes it the base for later deltas.
    pub(super) async fn send_full(&mut self, net: NetworkId) -> Result<(), FrameIoError> {
        // Followed before the read: a change after it is pushed later.
        self.watch.follow(net);
        let snapshot = match self.context.hub.snapshot(net).await {
            Ok(s) => s,
            Err(e) => return self.internal(e).await,
        };
        let stun_ports = &self.context.stun_ports;
        let built = snapshot.and_then(|s| {
            let view = self.context.hub.view(&s);
            let map = netmaps::build_from(&s, &view, self.node_id, stun_ports)?;
            let mut sent = Sent {
                map: SentNetmap::of_parts(&map, digests(&view, &map)),
                view: view.id,
            };
            keep(&mut sent.map, &map, &view, &[], std::iter::empty());
            Some((map, sent))
        });
        match built {
            Some((map, sent)) => {
                // Presence first: once a node sees itself authorized, the
                // others see it online.
                self.follow_presence(net, map.self_node.authorized).await;
                self.send(&ControllerMessage::Netmap(map)).await?;
                self.count_push();
                self.joined.insert(net, sent);
                Ok(())
            }
            // Deleted between the join and now; the change notice told others.
            None => self.forget(net).await,
        }
    }

    /// A change notice for `net`: send what changed since the last map.
    async fn push(&mut self, net: NetworkId) -> Result<(), FrameIoError> {
        if !self.joined.contains_key(&net) {
            return Ok(());
        }
        let snapshot = match self.context.hub.snapshot(net).await {
            Ok(s) => s,
            Err(e) => return self.internal(e).await,
        };
        let version = snapshot
            .as_ref()
            .map(|s| s.network.netmap_version)
            .unwrap_or(0);
        let stun_ports = &self.context.stun_ports;
        let next = snapshot.and_then(|s| {
            let view = self.context.hub.view(&s);
            netmaps::header(&s, &view, self.node_id, stun_ports).map(|header| (header, view))
        });
        let Some(last) = self.joined.get(&net) else {
            return Ok(());
        };
        let Some((next, view)) = next else {
            // Deleted, or the network is gone: an empty, unauthorized map
            // makes the node tear down, then the network is forgotten here.
            let gone = last.map.tombstone(version);
            self.send(&ControllerMessage::NetmapDelta(gone)).await?;
            self.count_push();
            tracing::info!(node = %self.node_id, network = %net, "membership ended");
            return self.forget(net).await;
        };
        if next.version < last.map.version {
            // An older snapshot than what the node has; a newer notice follows.
            return Ok(());
        }
        let visible = view.visibility(&next);
        // The shortcut: the view knows what changed since the one the last
        // map came from, and nobody's visibility moved, so only the peers
        // it names can differ. Otherwise every peer is compared.
        let shortcut = view.change_from(last.view).filter(|c| {
            c.everyone_sees_everyone && last.map.self_node.authorized == next.self_node.authorized
        });
        // The common case: an authorized member that sees everyone, and is
        // not itself what changed, gets the peers part every such member
        // gets, encoded once; it adds its own header.
        if let Some(peers) = shortcut
            .filter(|_| next.self_node.authorized)
            .and_then(|c| c.shared_for(&self.node_id))
        {
            let header = last.map.header_delta(&next);
            return self.push_shared(net, &next, header, &view, peers).await;
        }
        let delta = match shortcut {
            Some(change) => last
                .map
                .diff_changed(&next, &view.peers, &change.peers, |p| visible.sees(p)),
            None => last.map.diff_parts(&next, &view.peers, |p| visible.sees(p)),
        };
        if netmaps::is_empty(&delta) {
            // Nothing to send: the node keeps its version, and what was
            // sent equals this view's part.
            if let Some(sent) = self.joined.get_mut(&net) {
                sent.view = view.id;
            }
            return Ok(());
        }
        self.follow_presence(net, next.self_node.authorized).await;
        if let Some(sent) = self.joined.get_mut(&net) {
            let upserted = delta.upsert_peers.iter();
            let upserted = upserted.map(|p| (p.node_id, view.digest_of(p)));
            keep(&mut sent.map, &next, &view, &delta.remove_peers, upserted);
            sent.view = view.id;
        }
        self.send(&ControllerMessage::NetmapDelta(delta)).await?;
        self.count_push();
        Ok(())
    }

    /// Sends `header` (this member's part of the delta to `next`) with the
    /// peers part `view` shares among its members.
    async fn push_shared(
        &mut self,
        net: NetworkId,
        next: &Netmap,
        header: NetmapDelta,
        view: &netmaps::SharedView,
        peers: &SharedPeers,
    ) -> Result<(), FrameIoError> {
        let Some(sent) = self.joined.get_mut(&net) else {
            return Ok(());
        };
        sent.view = view.id;
        if netmaps::is_empty(&header) && peers.is_empty() {
            return Ok(());
        }
        let upserted = peers.upserted.iter().copied();
        keep(&mut sent.map, next, view, &peers.removed, upserted);
        self.follow_presence(net, next.self_node.authorized).await;
        let frame = encode_delta_frame(&header, peers)?;
        write_frame(&mut self.send, &frame).await?;
        self.count_push();
        Ok(())
    }

    /// Pushes each network that changed: a burst of changes (a hundred
    /// nodes coming online) becomes one delta per network, not one per
    /// change.
    pub(super) async fn push_each(
        &mut self,
        nets: BTreeSet<NetworkId>,
    ) -> Result<(), FrameIoError> {
        for net in nets {
            self.push(net).await?;
        }
        Ok(())
    }
}

/// Keeps in `sent` what went out with `next` from `view`: the delta's
/// `removed` and `upserted` peers (node IDs with digests) applied. A
/// member that sees every other member was sent every peer of the view
/// but itself, so it shares the view's table of digests instead.
fn keep(
    sent: &mut SentNetmap,
    next: &Netmap,
    view: &netmaps::SharedView,
    removed: &[NodeId],
    upserted: impl Iterator<Item = (NodeId, u64)>,
) {
    match view.visibility(next) {
        netmaps::Visibility::Everyone { .. } => {
            sent.advance_to_shared(next, removed, upserted, &view.digests)
        }
        _ => sent.advance_with(next, removed, upserted),
    }
}

/// The node IDs and digests of the peers the member of `header` sees.
fn digests<'a>(
    view: &'a netmaps::SharedView,
    header: &'a Netmap,
) -> impl Iterator<Item = (NodeId, u64)> + 'a {
    view.others_of(header)
        .map(|(p, digest)| (p.node_id, *digest))
}
