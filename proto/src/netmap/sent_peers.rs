//! The peers part of a [`SentNetmap`](super::SentNetmap): which peers a
//! member was sent, each as a digest.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::NodeId;

/// Peers with their digests, sorted by node ID and unique: one table a
/// sender shares among every member it sent the same peers.
pub type PeerDigests = Arc<[(NodeId, u64)]>;

/// The digests of the peers sent to one member: its own, or, where every
/// member sees every other, every peer of a table it shares with the
/// members sent the same map version but itself. Sharing keeps a sender's
/// memory from growing with members × peers.
#[derive(Debug, Clone, Default)]
pub(super) struct SentPeers {
    /// Empty while `shared` is set.
    own: BTreeMap<NodeId, u64>,
    /// The shared table, and the member left out of it.
    shared: Option<(PeerDigests, NodeId)>,
}

impl SentPeers {
    pub(super) fn of(peers: impl Iterator<Item = (NodeId, u64)>) -> SentPeers {
        SentPeers {
            own: peers.collect(),
            shared: None,
        }
    }

    /// Every peer of `table` but `except`.
    pub(super) fn shared(table: &PeerDigests, except: NodeId) -> SentPeers {
        SentPeers {
            own: BTreeMap::new(),
            shared: Some((table.clone(), except)),
        }
    }

    pub(super) fn get(&self, id: &NodeId) -> Option<&u64> {
        match &self.shared {
            None => self.own.get(id),
            Some((table, except)) => (id != except)
                .then(|| table.binary_search_by_key(id, |(p, _)| *p).ok())
                .flatten()
                .map(|i| &table[i].1),
        }
    }

    pub(super) fn contains_key(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    /// The peers sent with their digests, sorted by node ID.
    pub(super) fn entries(&self) -> Box<dyn Iterator<Item = (NodeId, u64)> + '_> {
        match &self.shared {
            None => Box::new(self.own.iter().map(|(id, digest)| (*id, *digest))),
            Some((table, except)) => {
                Box::new(table.iter().filter(move |(id, _)| id != except).copied())
            }
        }
    }

    /// The node IDs sent, sorted.
    pub(super) fn keys(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.entries().map(|(id, _)| id)
    }

    /// This member's own copy, to change: a shared table is copied out
    /// first.
    pub(super) fn own(&mut self) -> &mut BTreeMap<NodeId, u64> {
        if let Some((table, except)) = self.shared.take() {
            self.own = table
                .iter()
                .filter(|(id, _)| *id != except)
                .copied()
                .collect();
        }
        &mut self.own
    }

    /// Whether this reads from a shared table; for tests.
    #[cfg(test)]
    pub(super) fn is_shared(&self) -> bool {
        self.shared.is_some()
    }
}

/// The same peers and digests, however each is kept.
impl PartialEq for SentPeers {
    fn eq(&self, other: &Self) -> bool {
        self.entries().eq(other.entries())
    }
}

impl Eq for SentPeers {}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        let key = crate::NodePrivateKey::from_bytes([n; 32]).public_key();
        NodeId::from_key(&key)
    }

    #[test]
    fn a_shared_table_reads_as_every_peer_but_the_member() {
        let mut rows: Vec<(NodeId, u64)> = (1..=5).map(|n| (id(n), u64::from(n))).collect();
        rows.sort_unstable();
        let me = rows[2].0;
        let mut shared = SentPeers::shared(&rows.clone().into(), me);
        let own: BTreeMap<NodeId, u64> = rows.iter().filter(|(i, _)| *i != me).copied().collect();
        assert!(shared.is_shared());
        assert_eq!(shared.get(&me), None);
        assert!(!shared.contains_key(&me));
        for (i, digest) in &own {
            assert_eq!(shared.get(i), Some(digest));
        }
        assert_eq!(shared.get(&id(9)), None);
        let keys: Vec<NodeId> = shared.keys().collect();
        assert_eq!(keys, own.keys().copied().collect::<Vec<_>>());
        let copy = shared.clone();
        assert_eq!(shared.own(), &own);
        assert!(!shared.is_shared());
        assert_eq!(shared, copy);
        assert_eq!(shared, SentPeers::of(own.into_iter()));
    }
}
