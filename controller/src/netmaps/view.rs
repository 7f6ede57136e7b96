//! What every member of a network shares of one snapshot, and what
//! changed since the views before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;
use warren_proto::control::SharedPeers;
use warren_proto::netmap::{peer_digest, DnsConfig, Netmap, NetmapPeer, PeerDigests};
use warren_proto::site::Site;
use warren_proto::NodeId;

use super::peer;
use crate::policy::Compiled;
use crate::store::{MemberState, NetworkSnapshot};

/// What the members of a network see of the others, built once per
/// snapshot and shared by all of its members' sessions: each authorized
/// member as a peer (with the routes it serves) and its digest, sorted by
/// node ID; the network's DNS data; and the access policy compiled for
/// every member, which says which of those peers each one sees. A change
/// then costs each session a comparison of digests, not a netmap of its own.
#[derive(Debug)]
pub struct SharedView {
    /// Unique in this process: what a session's last map was made from.
    pub id: u64,
    pub peers: Vec<(NetmapPeer, u64)>,
    /// `peers` as node IDs and digests: what a session keeps of the peers
    /// it sent a member that sees every other
    /// ([`SentNetmap::advance_to_shared`](warren_proto::netmap::SentNetmap::advance_to_shared)).
    pub digests: PeerDigests,
    pub dns: DnsConfig,
    pub policy: Compiled,
    /// The routes each member is primary for (real prefixes).
    primaries: std::collections::BTreeMap<NodeId, std::collections::BTreeSet<IpNet>>,
    /// `NetworkSettings.sites`, the same for every authorized member.
    pub sites: Vec<Site>,
    /// Where each member is in the snapshot's list, by node ID.
    pub(super) members: HashMap<NodeId, usize>,
    /// What changed since each of the last few views before it, the
    /// latest first (none if it was made after none).
    pub changes: Vec<ViewChange>,
}

/// How many views back a view keeps what changed: a session that missed
/// fewer views than this (changes that came while it was busy) still
/// diffs only the peers they changed.
pub(super) const CHANGE_HISTORY: usize = 4;

/// The peers one view changed against a view before it: a session whose
/// last map was made from that view diffs only these.
#[derive(Debug)]
pub struct ViewChange {
    /// The view before.
    pub from: u64,
    /// Peers added, dropped or changed (by digest), sorted.
    pub peers: Vec<NodeId>,
    /// Each of `peers`' digest in the view before (`None`: it had not the
    /// peer), to carry the change over to the next view.
    base: Vec<Option<u64>>,
    /// Both views let every member see every other, so no member's
    /// visibility changed with them.
    pub everyone_sees_everyone: bool,
    /// When everyone sees everyone: the peers part of the delta for every
    /// member whose last map came from `from`, was and is authorized, and
    /// is not itself among `peers`, encoded once for all of them.
    pub shared: Option<SharedPeers>,
}

impl ViewChange {
    /// The shared peers part ([`ViewChange::shared`]) for `member`, if it
    /// is not itself one of the peers that changed.
    pub fn shared_for(&self, member: &NodeId) -> Option<&SharedPeers> {
        self.shared
            .as_ref()
            .filter(|_| self.peers.binary_search(member).is_err())
    }
}

static VIEW_IDS: AtomicU64 = AtomicU64::new(1);

impl SharedView {
    /// [`SharedView::of`], with what changed since `before` (a view of an
    /// earlier snapshot of the same network): one pass over both, made
    /// once per change and network, not once per session.
    pub fn after(snapshot: &NetworkSnapshot, before: Option<&SharedView>) -> SharedView {
        let mut view = SharedView::of(snapshot);
        let Some(before) = before else {
            return view;
        };
        // The step from `before`, each of its peers with its digest there.
        let step: Vec<(NodeId, Option<u64>)> = changed_peers(&before.peers, &view.peers)
            .into_iter()
            .map(|id| (id, before.peer(&id).map(|(_, d)| *d)))
            .collect();
        let mut changes = vec![view.change(before.id, step.clone(), before.policy.all_peers)];
        // From an older view: what changed up to `before`, then this step;
        // a peer that changed back is left out.
        for older in before.changes.iter().take(CHANGE_HISTORY - 1) {
            let mut since = step.clone();
            since.retain(|(id, _)| older.peers.binary_search(id).is_err());
            since.extend(older.peers.iter().copied().zip(older.base.iter().copied()));
            since.sort_unstable_by_key(|(id, _)| *id);
            since.retain(|(id, base)| view.peer(id).map(|(_, d)| *d) != *base);
            changes.push(view.change(older.from, since, older.everyone_sees_everyone));
        }
        view.changes = changes;
        view
    }

    /// The change to this view from view `from`, whose digests of the
    /// peers that differ are `since` (sorted); `all_peers_then` says
    /// whether every view from `from` to the one before this let everyone
    /// see everyone.
    fn change(
        &self,
        from: u64,
        since: Vec<(NodeId, Option<u64>)>,
        all_peers_then: bool,
    ) -> ViewChange {
        let (peers, base): (Vec<NodeId>, Vec<Option<u64>>) = since.into_iter().unzip();
        let everyone_sees_everyone = all_peers_then && self.policy.all_peers;
        ViewChange {
            from,
            shared: everyone_sees_everyone
                .then(|| self.shared_peers(&peers))
                .flatten(),
            peers,
            base,
            everyone_sees_everyone,
        }
    }

    /// What changed since view `from`, if this view still knows.
    pub fn change_from(&self, from: u64) -> Option<&ViewChange> {
        self.changes.iter().find(|c| c.from == from)
    }

    /// The peers part of the delta from the view before this one to this
    /// one, for a member that sees every peer but itself and is not among
    /// `changed`: those of `changed` this view has are upserted, the others
    /// (the view before had them) removed; the order is `changed`'s, as
    /// [`SentNetmap::diff_changed`](warren_proto::netmap::SentNetmap::diff_changed)
    /// lists them.
    fn shared_peers(&self, changed: &[NodeId]) -> Option<SharedPeers> {
        let (upserted, removed): (Vec<_>, Vec<_>) = changed
            .iter()
            .map(|id| (id, self.peer(id)))
            .partition(|(_, peer)| peer.is_some());
        let upserted = upserted.into_iter().filter_map(|(_, peer)| peer);
        let removed = removed.into_iter().map(|(id, _)| *id).collect();
        match SharedPeers::new(upserted, removed) {
            Ok(shared) => Some(shared),
            Err(error) => {
                // Each session then encodes its own delta, as before.
                tracing::warn!(%error, "could not encode a shared netmap change");
                None
            }
        }
    }

    /// The view's peer `id`, with its digest.
    fn peer(&self, id: &NodeId) -> Option<&(NetmapPeer, u64)> {
        self.peers
            .binary_search_by_key(id, |(p, _)| p.node_id)
            .ok()
            .map(|i| &self.peers[i])
    }

    pub fn of(snapshot: &NetworkSnapshot) -> SharedView {
        let mut peers: Vec<NetmapPeer> = snapshot
            .members
            .iter()
            .filter(|m| m.state == MemberState::Authorized)
            .filter_map(peer)
            .collect();
        peers.sort_by_key(|p| p.node_id);
        let primaries = crate::routes::primaries(snapshot);
        crate::routes::fill_peer_routes(snapshot, &primaries, &mut peers);
        let peers: Vec<(NetmapPeer, u64)> = peers
            .into_iter()
            .map(|p| {
                let digest = peer_digest(&p);
                (p, digest)
            })
            .collect();
        SharedView {
            sites: crate::routes::sites::sites(snapshot, &primaries),
            primaries,
            id: VIEW_IDS.fetch_add(1, Ordering::Relaxed),
            members: snapshot
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.node_id, i))
                .collect(),
            changes: Vec::new(),
            digests: peers.iter().map(|(p, d)| (p.node_id, *d)).collect(),
            peers,
            dns: DnsConfig {
                zone: snapshot.network.zone.clone(),
                services: crate::dns::snapshot::service_records(snapshot),
            },
            policy: crate::policy::in_force(snapshot),
        }
    }

    /// Which of the view's peers the member of `header` sees: never itself,
    /// nothing unless it is authorized, and only the peers its policy lets
    /// it exchange packets with. Looked up once per member, then asked per
    /// peer: a change costs each session no more than a comparison.
    pub fn visibility(&self, header: &Netmap) -> Visibility<'_> {
        let me = header.self_node.node_id;
        if !header.self_node.authorized {
            return Visibility::Nobody;
        }
        if self.policy.all_peers {
            // Every peer of the view is an authorized member.
            return Visibility::Everyone { me };
        }
        match self.policy.members.get(&me) {
            Some(m) => Visibility::These(&m.peers),
            None => Visibility::Nobody,
        }
    }

    /// The peers the member of `header` sees.
    pub fn others_of<'a>(
        &'a self,
        header: &'a Netmap,
    ) -> impl Iterator<Item = &'a (NetmapPeer, u64)> + 'a {
        let visible = self.visibility(header);
        self.peers
            .iter()
            .filter(move |(p, _)| visible.sees(&p.node_id))
    }

    /// A view of just these parts, for tests of what reads views.
    #[cfg(test)]
    pub(crate) fn of_parts(
        peers: Vec<(NetmapPeer, u64)>,
        dns: DnsConfig,
        policy: Compiled,
    ) -> Self {
        SharedView {
            id: VIEW_IDS.fetch_add(1, Ordering::Relaxed),
            digests: peers.iter().map(|(p, d)| (p.node_id, *d)).collect(),
            peers,
            dns,
            policy,
            primaries: Default::default(),
            sites: Vec::new(),
            members: HashMap::new(),
            changes: Vec::new(),
        }
    }

    /// The digest of `peer` as this view has it (computed again for a peer
    /// it does not have).
    pub fn digest_of(&self, peer: &NetmapPeer) -> u64 {
        self.peer(&peer.node_id)
            .map_or_else(|| peer_digest(peer), |(_, digest)| *digest)
    }

    /// The routes `node` is primary for (real prefixes).
    pub(super) fn primary_routes(&self, node: NodeId) -> &std::collections::BTreeSet<IpNet> {
        static NONE: std::collections::BTreeSet<IpNet> = std::collections::BTreeSet::new();
        self.primaries.get(&node).unwrap_or(&NONE)
    }
}

/// The node IDs in either sorted list whose digests differ, or that only
/// one of them has.
fn changed_peers(before: &[(NetmapPeer, u64)], after: &[(NetmapPeer, u64)]) -> Vec<NodeId> {
    let mut changed = Vec::new();
    let (mut a, mut b) = (before.iter().peekable(), after.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return changed,
            (Some((p, _)), None) => {
                changed.push(p.node_id);
                a.next();
            }
            (None, Some((q, _))) => {
                changed.push(q.node_id);
                b.next();
            }
            (Some((p, d)), Some((q, e))) => match p.node_id.cmp(&q.node_id) {
                std::cmp::Ordering::Less => {
                    changed.push(p.node_id);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    changed.push(q.node_id);
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if d != e {
                        changed.push(p.node_id);
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

/// Which peers one member sees ([`SharedView::visibility`]).
#[derive(Debug, Clone, Copy)]
pub enum Visibility<'a> {
    Nobody,
    /// Every peer but itself.
    Everyone {
        me: NodeId,
    },
    These(&'a std::collections::BTreeSet<NodeId>),
}

impl Visibility<'_> {
    pub fn sees(&self, peer: &NodeId) -> bool {
        match self {
            Visibility::Nobody => false,
            Visibility::Everyone { me } => peer != me,
            Visibility::These(set) => set.contains(peer),
        }
    }
}
