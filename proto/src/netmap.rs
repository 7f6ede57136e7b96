//! The network map: what a controller tells a member about its network.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::filter::PacketFilter;
use crate::{NetworkId, NodeId, NodePublicKey};

mod sent_peers;

pub use sent_peers::PeerDigests;
use sent_peers::SentPeers;

/// One network as one member sees it. Versions only grow; a node ignores
/// a map or delta older than what it has.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Netmap {
    pub network_id: NetworkId,
    pub network_name: String,
    pub version: u64,
    pub self_node: SelfNode,
    /// Sorted by node ID. Empty unless `self_node.authorized`.
    pub peers: Vec<NetmapPeer>,
    pub dns: DnsConfig,
    pub settings: NetworkSettings,
    /// The access policy compiled for this member: what its engine lets in
    /// and out. `None` (a controller without policy) lets everything pass.
    #[serde(default)]
    pub filter: Option<PacketFilter>,
}

/// The member itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SelfNode {
    pub node_id: NodeId,
    pub name: String,
    /// `name.zone`.
    pub fqdn: String,
    /// Its overlay addresses with the network's prefix lengths, e.g.
    /// `10.147.0.5/16` and `fd..::xx/64`. Empty until authorized.
    pub addresses: Vec<IpNet>,
    pub authorized: bool,
    /// The routes it advertised and what the network made of them.
    #[serde(default)]
    pub routes: Vec<crate::routes::SelfRoute>,
    /// The person who signed the device in (their e-mail address); none
    /// for a device that joined with a pre-auth key or an admin's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When the owner's sign-in runs out (RFC 3339); none for devices
    /// without an owner, which do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The sign-in ran out: no peers until the owner signs in again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// Another member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct NetmapPeer {
    pub node_id: NodeId,
    pub name: String,
    pub public_key: NodePublicKey,
    /// Host prefixes: `/32` and `/128`.
    pub addresses: Vec<IpNet>,
    /// Subnet routes it serves that the network approved.
    #[serde(default)]
    pub routes: Vec<IpNet>,
    /// Where it may be reached: its reported candidates.
    #[serde(default)]
    pub endpoints: Vec<SocketAddr>,
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsConfig {
    pub zone: String,
    /// Services that authorized members published, sorted: SRV (and TXT)
    /// records at `_name._proto.zone`. Members' A/AAAA records come from
    /// `self_node` and `peers`.
    #[serde(default)]
    pub services: Vec<crate::service::ServiceRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkSettings {
    pub mtu: u16,
    /// UDP ports on the controller's address that answer STUN; two ports
    /// let a node tell whether its NAT maps per destination.
    #[serde(default)]
    pub stun_ports: Vec<u16>,
    /// The network's sites (clusters behind subnet routers), sorted by
    /// name; left out when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<crate::site::Site>,
}

/// The change from one version of a member's netmap to the next.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetmapDelta {
    pub network_id: NetworkId,
    /// The version this delta applies to.
    pub base_version: u64,
    pub version: u64,
    /// Present when the member itself, the name, DNS or settings changed.
    pub self_node: Option<SelfNode>,
    pub network_name: Option<String>,
    pub dns: Option<DnsConfig>,
    pub settings: Option<NetworkSettings>,
    /// Present when the member's compiled filter changed, whole.
    #[serde(default)]
    pub filter: Option<PacketFilter>,
    /// The map went from a filter to none (everything passes), which an
    /// absent `filter` cannot say. Left out when false, so nodes that
    /// predate it read deltas as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub filter_removed: bool,
    /// Peers added or changed, whole.
    pub upsert_peers: Vec<NetmapPeer>,
    pub remove_peers: Vec<NodeId>,
}

/// Why a delta could not be applied; the node then asks for a full map.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeltaError {
    #[error("delta for network {delta} applied to map of {map}")]
    WrongNetwork { map: NetworkId, delta: NetworkId },
    #[error("delta from version {base} applied to map at version {have}")]
    VersionGap { have: u64, base: u64 },
}

impl Netmap {
    /// The delta that turns `self` into `next`.
    pub fn diff(&self, next: &Netmap) -> NetmapDelta {
        SentNetmap::of(self).diff(next)
    }

    pub fn apply(&mut self, delta: &NetmapDelta) -> Result<(), DeltaError> {
        if delta.network_id != self.network_id {
            return Err(DeltaError::WrongNetwork {
                map: self.network_id,
                delta: delta.network_id,
            });
        }
        if delta.base_version != self.version {
            return Err(DeltaError::VersionGap {
                have: self.version,
                base: delta.base_version,
            });
        }
        self.apply_peers(&delta.remove_peers, &delta.upsert_peers);
        if let Some(s) = &delta.self_node {
            self.self_node = s.clone();
        }
        if let Some(n) = &delta.network_name {
            self.network_name = n.clone();
        }
        if let Some(d) = &delta.dns {
            self.dns = d.clone();
        }
        if let Some(s) = &delta.settings {
            self.settings = s.clone();
        }
        if let Some(f) = &delta.filter {
            self.filter = Some(f.clone());
        } else if delta.filter_removed {
            self.filter = None;
        }
        self.version = delta.version;
        Ok(())
    }
}

impl Netmap {
    /// Removes `removed` and upserts `upserted` (the last of one ID wins),
    /// leaving the peers sorted by node ID with no ID twice. A map whose
    /// peers are so already (every map a controller sends) costs a search
    /// per changed peer, not a rebuild of every peer: a one-peer delta to a
    /// map of 10,000 peers should not move all 10,000.
    fn apply_peers(&mut self, removed: &[NodeId], upserted: &[NetmapPeer]) {
        let sorted = self.peers.windows(2).all(|w| w[0].node_id < w[1].node_id);
        if !sorted {
            let mut peers: BTreeMap<NodeId, NetmapPeer> = std::mem::take(&mut self.peers)
                .into_iter()
                .map(|p| (p.node_id, p))
                .collect();
            for id in removed {
                peers.remove(id);
            }
            for peer in upserted {
                peers.insert(peer.node_id, peer.clone());
            }
            self.peers = peers.into_values().collect();
            return;
        }
        let find =
            |peers: &[NetmapPeer], id: &NodeId| peers.binary_search_by_key(id, |p| p.node_id);
        for id in removed {
            if let Ok(i) = find(&self.peers, id) {
                self.peers.remove(i);
            }
        }
        for peer in upserted {
            match find(&self.peers, &peer.node_id) {
                Ok(i) => self.peers[i] = peer.clone(),
                Err(i) => self.peers.insert(i, peer.clone()),
            }
        }
    }
}

/// What a sender keeps of a map it sent, to diff the next one against:
/// all of it but the peers, which shrink to a 64-bit digest each. A
/// controller keeps one per member and network, so its memory grows with
/// members × peers × 16 bytes rather than with whole peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNetmap {
    pub network_id: NetworkId,
    pub network_name: String,
    pub version: u64,
    pub self_node: SelfNode,
    pub dns: DnsConfig,
    pub settings: NetworkSettings,
    /// The digest of the filter sent ([`filter_digest`]).
    filter: u64,
    peers: SentPeers,
}

impl SentNetmap {
    pub fn of(map: &Netmap) -> SentNetmap {
        Self::of_parts(map, map.peers.iter().map(|p| (p.node_id, peer_digest(p))))
    }

    /// What is kept of `header` (whose own `peers` are ignored) sent with
    /// peers whose IDs and digests ([`peer_digest`]) are `peers`: for a
    /// sender that digests each peer once for all its members.
    pub fn of_parts(header: &Netmap, peers: impl Iterator<Item = (NodeId, u64)>) -> SentNetmap {
        SentNetmap {
            network_id: header.network_id,
            network_name: header.network_name.clone(),
            version: header.version,
            self_node: header.self_node.clone(),
            dns: header.dns.clone(),
            settings: header.settings.clone(),
            filter: filter_digest(header.filter.as_ref()),
            peers: SentPeers::of(peers),
        }
    }

    /// The delta that turns the map this was taken of into `next`. A peer
    /// whose digest is unchanged is unchanged (a collision of 64-bit
    /// digests is not a practical concern).
    pub fn diff(&self, next: &Netmap) -> NetmapDelta {
        let kept: std::collections::BTreeSet<NodeId> =
            next.peers.iter().map(|p| p.node_id).collect();
        self.diff_with(
            next,
            |id| kept.contains(id),
            next.peers.iter().map(|p| (p, peer_digest(p))),
        )
    }

    /// [`SentNetmap::diff`] against `header` (whose own `peers` are
    /// ignored) with those of `peers` that `visible` admits; `peers` come
    /// each with its digest and sorted by node ID, and `visible` leaves out
    /// the member itself and whoever policy hides from it. Only changed
    /// peers are cloned, and nothing is digested again.
    pub fn diff_parts(
        &self,
        header: &Netmap,
        peers: &[(NetmapPeer, u64)],
        visible: impl Fn(&NodeId) -> bool,
    ) -> NetmapDelta {
        self.diff_with(
            header,
            |id| visible(id) && peers.binary_search_by_key(id, |(p, _)| p.node_id).is_ok(),
            peers
                .iter()
                .filter(|(p, _)| visible(&p.node_id))
                .map(|(p, digest)| (p, *digest)),
        )
    }

    /// [`SentNetmap::diff_parts`] when only the peers in `changed` can
    /// differ from what was sent: those the view added, dropped or changed
    /// since the view this map was sent from, under a visibility that did
    /// not change. It costs the number of changed peers, not of all peers.
    pub fn diff_changed(
        &self,
        header: &Netmap,
        peers: &[(NetmapPeer, u64)],
        changed: &[NodeId],
        visible: impl Fn(&NodeId) -> bool,
    ) -> NetmapDelta {
        let find = |id: &NodeId| {
            peers
                .binary_search_by_key(id, |(p, _)| p.node_id)
                .ok()
                .map(|i| &peers[i])
        };
        let now: Vec<&(NetmapPeer, u64)> = changed
            .iter()
            .filter(|id| visible(id))
            .filter_map(&find)
            .collect();
        let mut delta = self.header_delta(header);
        delta.remove_peers = changed
            .iter()
            .filter(|id| self.peers.contains_key(id) && !(visible(id) && find(id).is_some()))
            .copied()
            .collect();
        delta.upsert_peers = now
            .into_iter()
            .filter(|(p, digest)| self.peers.get(&p.node_id) != Some(digest))
            .map(|(p, _)| p.clone())
            .collect();
        delta
    }

    /// What is kept after `delta` (made by this map's `diff*`) went out
    /// with `header`: the same as [`SentNetmap::of_parts`] of the whole new
    /// map, at the cost of the delta. `digest_of` gives an upserted peer's
    /// digest (the sender's, computed once per peer).
    pub fn advance(
        &mut self,
        header: &Netmap,
        delta: &NetmapDelta,
        digest_of: impl Fn(&NetmapPeer) -> u64,
    ) {
        self.advance_with(
            header,
            &delta.remove_peers,
            delta.upsert_peers.iter().map(|p| (p.node_id, digest_of(p))),
        );
    }

    /// [`SentNetmap::advance`] for a delta sent with `header` whose peers
    /// part is `removed` and `upserted` (node IDs with digests): for a
    /// sender that shares one peers part among members and so has no
    /// [`NetmapDelta`] of its own to hand.
    pub fn advance_with(
        &mut self,
        header: &Netmap,
        removed: &[NodeId],
        upserted: impl Iterator<Item = (NodeId, u64)>,
    ) {
        self.advance_header(header);
        let peers = self.peers.own();
        for id in removed {
            peers.remove(id);
        }
        peers.extend(upserted);
    }

    /// Everything [`SentNetmap::advance_with`] keeps but the peers.
    fn advance_header(&mut self, header: &Netmap) {
        self.network_name.clone_from(&header.network_name);
        self.version = header.version;
        self.self_node.clone_from(&header.self_node);
        self.dns.clone_from(&header.dns);
        self.settings.clone_from(&header.settings);
        self.filter = filter_digest(header.filter.as_ref());
    }

    /// [`SentNetmap::advance_with`] for a sender whose member sees every
    /// other member: the peers are then every peer of `table` but the
    /// member itself, kept as that shared table rather than a digest per
    /// peer. The sender vouches for it; debug builds check it.
    pub fn advance_to_shared(
        &mut self,
        header: &Netmap,
        removed: &[NodeId],
        upserted: impl Iterator<Item = (NodeId, u64)>,
        table: &PeerDigests,
    ) {
        let shared = SentPeers::shared(table, header.self_node.node_id);
        if cfg!(debug_assertions) {
            self.advance_with(header, removed, upserted);
            assert!(
                self.peers == shared,
                "the peers sent to {} are not the shared table's",
                header.self_node.node_id
            );
        } else {
            self.advance_header(header);
        }
        self.peers = shared;
    }

    /// Whether the peers sent are kept in a shared table
    /// ([`SentNetmap::advance_to_shared`]); for tests.
    #[cfg(test)]
    fn is_shared(&self) -> bool {
        self.peers.is_shared()
    }

    /// Everything of the delta to `header` but the peers (left empty).
    pub fn header_delta(&self, header: &Netmap) -> NetmapDelta {
        NetmapDelta {
            network_id: header.network_id,
            base_version: self.version,
            version: header.version,
            self_node: (self.self_node != header.self_node).then(|| header.self_node.clone()),
            network_name: (self.network_name != header.network_name)
                .then(|| header.network_name.clone()),
            dns: (self.dns != header.dns).then(|| header.dns.clone()),
            settings: (self.settings != header.settings).then(|| header.settings.clone()),
            filter: header
                .filter
                .as_ref()
                .filter(|f| filter_digest(Some(f)) != self.filter)
                .cloned(),
            filter_removed: header.filter.is_none() && self.filter != filter_digest(None),
            upsert_peers: Vec::new(),
            remove_peers: Vec::new(),
        }
    }

    /// The delta to `header` and `next_peers`; `kept` says whether a peer
    /// sent before is still among them.
    fn diff_with<'a>(
        &self,
        header: &Netmap,
        kept: impl Fn(&NodeId) -> bool,
        next_peers: impl Iterator<Item = (&'a NetmapPeer, u64)>,
    ) -> NetmapDelta {
        let mut delta = self.header_delta(header);
        delta.remove_peers = self.peers.keys().filter(|id| !kept(id)).collect();
        delta.upsert_peers = next_peers
            .filter(|(p, digest)| self.peers.get(&p.node_id) != Some(digest))
            .map(|(p, _)| p.clone())
            .collect();
        delta
    }

    /// The delta that ends the membership: the member unauthorized, with no
    /// addresses and no peers, at a version past this one (and `version`).
    pub fn tombstone(&self, version: u64) -> NetmapDelta {
        let mut self_node = self.self_node.clone();
        self_node.authorized = false;
        self_node.addresses.clear();
        NetmapDelta {
            network_id: self.network_id,
            base_version: self.version,
            version: version.max(self.version.saturating_add(1)),
            self_node: Some(self_node),
            network_name: None,
            dns: None,
            settings: None,
            filter: None,
            filter_removed: false,
            upsert_peers: Vec::new(),
            remove_peers: self.peers.keys().collect(),
        }
    }
}

/// A filter's digest: what [`SentNetmap`] keeps of it.
pub fn filter_digest(filter: Option<&PacketFilter>) -> u64 {
    let mut hasher = DefaultHasher::new();
    filter.hash(&mut hasher);
    hasher.finish()
}

/// A peer's digest: what [`SentNetmap`] keeps of it.
pub fn peer_digest(peer: &NetmapPeer) -> u64 {
    let mut hasher = DefaultHasher::new();
    peer.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodePrivateKey;

    fn peer(seed: u8, online: bool) -> NetmapPeer {
        let key = NodePrivateKey::from_bytes([seed; 32]).public_key();
        NetmapPeer {
            node_id: NodeId::from_key(&key),
            name: format!("n{seed}"),
            public_key: key,
            addresses: vec![format!("10.147.0.{seed}/32").parse().unwrap()],
            routes: vec![],
            endpoints: vec![],
            online,
        }
    }

    fn map(version: u64, peers: Vec<NetmapPeer>) -> Netmap {
        let me = peer(1, true);
        Netmap {
            network_id: "8056c2e21c000001".parse().unwrap(),
            network_name: "prod".into(),
            version,
            self_node: SelfNode {
                node_id: me.node_id,
                name: "me".into(),
                fqdn: "me.prod.warren.internal".into(),
                addresses: vec!["10.147.0.1/16".parse().unwrap()],
                authorized: true,
                owner: None,
                expires_at: None,
                expired: false,
                routes: vec![],
            },
            peers,
            dns: DnsConfig {
                zone: "prod.warren.internal".into(),
                services: vec![],
            },
            settings: NetworkSettings {
                mtu: 1420,
                stun_ports: vec![],
                sites: Vec::new(),
            },
            filter: None,
        }
    }

    #[test]
    fn applying_keeps_peers_sorted_and_unique_from_any_map() {
        let ids = |m: &Netmap| m.peers.iter().map(|p| p.node_id).collect::<Vec<_>>();
        let (a, b, c, d) = (peer(1, true), peer(2, true), peer(3, true), peer(4, true));
        let all_ids = [a.node_id, b.node_id, c.node_id, d.node_id];
        // A sorted map (the fast path) and the same peers out of order with
        // a duplicate (rebuilt) end the same.
        let mut fast = map(1, vec![a.clone(), b.clone(), c.clone()]);
        fast.peers.sort_by_key(|p| p.node_id);
        let mut slow = map(1, vec![c.clone(), a.clone(), b.clone(), a.clone()]);
        let mut b_offline = b.clone();
        b_offline.online = false;
        let delta = NetmapDelta {
            upsert_peers: vec![d.clone(), b_offline.clone(), d.clone()],
            remove_peers: vec![c.node_id, peer(9, true).node_id],
            ..fast.diff(&fast)
        };
        fast.apply(&delta).unwrap();
        slow.apply(&delta).unwrap();
        let mut want: Vec<NodeId> = all_ids
            .iter()
            .copied()
            .filter(|id| *id != c.node_id)
            .collect();
        want.sort();
        assert_eq!(ids(&fast), want);
        assert_eq!(ids(&slow), want);
        assert_eq!(fast.peers, slow.peers);
        let b_now = fast.peers.iter().find(|p| p.node_id == b.node_id).unwrap();
        assert!(!b_now.online);
    }

    #[test]
    fn diff_then_apply_reaches_the_new_map() {
        let old = map(1, vec![peer(2, true), peer(3, true)]);
        let mut new = map(2, vec![peer(3, false), peer(4, true)]);
        new.peers.sort_by_key(|p| p.node_id);
        let delta = old.diff(&new);
        assert_eq!(delta.remove_peers, vec![peer(2, true).node_id]);
        assert_eq!(delta.upsert_peers.len(), 2);
        assert!(delta.self_node.is_none());
        let mut applied = old.clone();
        applied.apply(&delta).unwrap();
        assert_eq!(applied, new);
    }

    #[test]
    fn a_sent_map_carries_only_what_changed() {
        let old = map(1, vec![peer(2, true), peer(3, true), peer(5, true)]);
        let mut renamed = peer(5, true);
        renamed.name = "five".into();
        let mut new = map(2, vec![peer(3, false), peer(4, true), renamed.clone()]);
        new.peers.sort_by_key(|p| p.node_id);
        new.self_node.name = "me2".into();
        let sent = SentNetmap::of(&old);
        let delta = sent.diff(&new);
        assert_eq!(delta.remove_peers, vec![peer(2, true).node_id]);
        let mut upserted: Vec<_> = delta.upsert_peers.clone();
        upserted.sort_by_key(|p| p.node_id);
        let mut expected = vec![peer(3, false), peer(4, true), renamed];
        expected.sort_by_key(|p| p.node_id);
        assert_eq!(upserted, expected);
        assert_eq!(delta.self_node, Some(new.self_node.clone()));
        assert!(delta.dns.is_none() && delta.settings.is_none() && delta.network_name.is_none());
        let same = sent.diff(&old);
        assert!(same.upsert_peers.is_empty() && same.remove_peers.is_empty());
        assert!(same.self_node.is_none());
    }

    /// The sender's shortcut: when only some peers changed, diffing just
    /// those and advancing what was kept gives what the full diff and a
    /// fresh copy give.
    #[test]
    fn diffing_only_the_changed_peers_matches_the_full_diff() {
        let with_digests = |peers: &[NetmapPeer]| -> Vec<(NetmapPeer, u64)> {
            let mut all: Vec<_> = peers.iter().map(|p| (p.clone(), peer_digest(p))).collect();
            all.sort_by_key(|(p, _)| p.node_id);
            all
        };
        let me = peer(1, true).node_id;
        let before = [peer(1, true), peer(2, true), peer(3, true), peer(5, true)];
        let mut renamed = peer(5, true);
        renamed.name = "five".into();
        // 2 leaves, 3 goes offline, 4 comes, 5 is renamed; 1 is the member.
        let after = [peer(1, true), peer(3, false), peer(4, true), renamed];
        let (old_view, new_view) = (with_digests(&before), with_digests(&after));
        let visible = |id: &NodeId| *id != me;
        let head = map(1, vec![]);
        let mut sent = SentNetmap::of_parts(
            &head,
            old_view
                .iter()
                .filter(|(p, _)| visible(&p.node_id))
                .map(|(p, d)| (p.node_id, *d)),
        );
        let next = map(2, vec![]);
        let changed: Vec<NodeId> = [2, 3, 4, 5].map(|s| peer(s, true).node_id).to_vec();
        let mut fast = sent.diff_changed(&next, &new_view, &changed, visible);
        let mut full = sent.diff_parts(&next, &new_view, visible);
        for delta in [&mut fast, &mut full] {
            delta.upsert_peers.sort_by_key(|p| p.node_id);
            delta.remove_peers.sort();
        }
        assert_eq!(fast, full);
        assert_eq!(fast.remove_peers, vec![peer(2, true).node_id]);
        assert_eq!(fast.upsert_peers.len(), 3);
        sent.advance(&next, &fast, peer_digest);
        let fresh = SentNetmap::of_parts(
            &next,
            new_view
                .iter()
                .filter(|(p, _)| visible(&p.node_id))
                .map(|(p, d)| (p.node_id, *d)),
        );
        assert_eq!(sent, fresh);
    }

    /// A member that sees every other keeps the sender's shared table; it
    /// diffs, advances and ends as its own digests would.
    #[test]
    fn a_shared_table_diffs_as_the_members_own_digests() {
        let table = |peers: &[NetmapPeer]| -> PeerDigests {
            let mut rows: Vec<_> = peers.iter().map(|p| (p.node_id, peer_digest(p))).collect();
            rows.sort_unstable();
            rows.into()
        };
        let others = vec![peer(2, true), peer(3, true), peer(4, true)];
        let mut all = others.clone();
        all.push(peer(1, true));
        let old = map(1, others);
        let own = SentNetmap::of(&old);
        let mut shared = own.clone();
        shared.advance_to_shared(&old, &[], std::iter::empty(), &table(&all));
        assert!(shared.is_shared() && !own.is_shared());
        assert_eq!(shared, own);
        let next = map(2, vec![peer(2, true), peer(3, false), peer(5, true)]);
        assert_eq!(shared.diff(&next), own.diff(&next));
        assert_eq!(shared.tombstone(7), own.tombstone(7));
        let delta = own.diff(&next);
        let (mut a, mut b) = (own.clone(), shared.clone());
        a.advance(&next, &delta, peer_digest);
        b.advance(&next, &delta, peer_digest);
        assert_eq!(a, b);
        assert_eq!(a, SentNetmap::of(&next));
    }

    /// Debug builds refuse a shared table that is not what was sent.
    #[test]
    #[should_panic(expected = "not the shared table's")]
    #[cfg(debug_assertions)]
    fn a_wrong_shared_table_is_caught_in_debug_builds() {
        let old = map(1, vec![peer(2, true), peer(3, true)]);
        let wrong: PeerDigests = vec![(peer(2, true).node_id, 0)].into();
        SentNetmap::of(&old).advance_to_shared(&old, &[], std::iter::empty(), &wrong);
    }

    #[test]
    fn a_tombstone_leaves_an_unauthorized_empty_map() {
        let old = map(4, vec![peer(2, true), peer(3, true)]);
        let delta = SentNetmap::of(&old).tombstone(4);
        assert_eq!(delta.version, 5);
        let mut applied = old.clone();
        applied.apply(&delta).unwrap();
        assert!(applied.peers.is_empty());
        assert!(!applied.self_node.authorized && applied.self_node.addresses.is_empty());
        assert_eq!(SentNetmap::of(&old).tombstone(9).version, 9);
    }

    /// Found by the `netmap` fuzz target (fuzz/regressions/netmap): a map
    /// that dropped its filter came out of the delta with the old one.
    #[test]
    fn a_delta_can_drop_the_filter() {
        let mut old = map(1, vec![peer(2, true)]);
        old.filter = Some(PacketFilter::default());
        let new = map(2, vec![peer(2, true)]);
        for delta in [old.diff(&new), SentNetmap::of(&old).diff(&new)] {
            assert!(delta.filter_removed);
            let mut applied = old.clone();
            applied.apply(&delta).unwrap();
            assert_eq!(applied, new);
        }
        let kept = old.diff(&old);
        assert!(!kept.filter_removed && kept.filter.is_none());
        let json = serde_json::to_string(&kept).unwrap();
        assert!(!json.contains("filter_removed"), "{json}");
    }

    #[test]
    fn deltas_out_of_order_are_refused() {
        let old = map(1, vec![]);
        let new = map(3, vec![peer(2, true)]);
        let delta = old.diff(&new);
        let mut stale = map(2, vec![]);
        assert_eq!(
            stale.apply(&delta),
            Err(DeltaError::VersionGap { have: 2, base: 1 })
        );
    }
}
