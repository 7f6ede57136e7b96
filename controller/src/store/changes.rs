//! The one stream of changes: every committed write transaction yields a
//! typed change record per network it touched, numbered by a per-network
//! sequence. Nothing outside the store announces a change: the hub (and
//! through it netmap sessions, DNS zones, the relay's membership and the
//! console's live view) follows this feed.
//!
//! Records are published after the commit, before the write returns to
//! its caller, so whoever made a change reads its effect next. Listeners
//! run synchronously in that moment and must be quick (the hub's only
//! drops a cached snapshot and sends on a channel); readers that are slow
//! subscribe to the broadcast and, when they fall behind, catch up from
//! the sequence number they last saw ([`ChangeFeed::since`]) or read
//! everything again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::broadcast;
use warren_proto::NetworkId;

use crate::audit_action::AuditAction;

/// Records a broadcast receiver may fall behind by before it lags.
const BROADCAST_BACKLOG: usize = 4096;
/// Records kept for catching up.
const KEPT: usize = 4096;

/// What kind of state a transaction changed in a network. A transaction
/// that changes several kinds in one network yields one record of the
/// strongest kind (the order here, weakest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Kept and audited, but in nobody's netmap or zone: pre-auth keys,
    /// grant requests. Only people watching (the console) care.
    Record,
    /// A member came online or went offline.
    Presence,
    /// Where a member may be reached (its endpoints).
    Endpoints,
    /// What members' netmaps, the relay's membership or the DNS zone are
    /// built from: members, routes, services, policy, grants, settings.
    Netmap,
    /// The network is gone.
    Deleted,
}

impl ChangeKind {
    /// What an audited action changed in its network. Every action is
    /// named, so a new one has to say what it changes.
    pub fn of_action(action: AuditAction) -> ChangeKind {
        use AuditAction as A;
        match action {
            A::MemberOnline | A::MemberOffline => ChangeKind::Presence,
            A::MemberEndpoints => ChangeKind::Endpoints,
            A::NetworkDelete => ChangeKind::Deleted,
            A::KeyCreate
            | A::KeyUse
            | A::KeyDelete
            | A::GrantUse
            | A::GrantRequest
            | A::GrantRequestApprove
            | A::GrantRequestDeny
            | A::GrantRequestWithdraw => ChangeKind::Record,
            A::NetworkCreate
            | A::NetworkUpdate
            | A::MemberJoin
            | A::MemberAuthorize
            | A::MemberPending
            | A::MemberRevoke
            | A::MemberRename
            | A::MemberDelete
            | A::MemberLeave
            | A::MemberSignIn
            | A::MemberExpire
            | A::MemberTag
            | A::MemberUntag
            | A::MemberServices
            | A::TokenCreate
            | A::TokenRevoke
            | A::RouteAdvertise
            | A::RouteApprove
            | A::RouteUnapprove
            | A::RouteAutoApproverAdd
            | A::RouteAutoApproverRemove
            | A::SiteMappingAllocate
            | A::SiteMappingRelease
            | A::PolicySet
            | A::GrantAdd
            | A::GrantRevoke
            | A::GrantEnd
            | A::UserSignIn
            | A::UserSignInFailed
            | A::UserSessionStart
            | A::UserUpdate
            | A::UserDisable
            | A::UserEnable
            | A::UserDelete
            | A::UserRemovedAtProvider
            | A::ConsoleLoginCode => ChangeKind::Netmap,
        }
    }

    /// Whether members' sessions and the snapshot cache must hear of it.
    pub fn touches_members(self) -> bool {
        self != ChangeKind::Record
    }

    /// The name the change log between replicas stores.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Record => "record",
            ChangeKind::Presence => "presence",
            ChangeKind::Endpoints => "endpoints",
            ChangeKind::Netmap => "netmap",
            ChangeKind::Deleted => "deleted",
        }
    }

    /// The kind [`ChangeKind::as_str`] names; `None` for a name a newer
    /// replica wrote.
    pub fn from_name(name: &str) -> Option<ChangeKind> {
        [
            ChangeKind::Record,
            ChangeKind::Presence,
            ChangeKind::Endpoints,
            ChangeKind::Netmap,
            ChangeKind::Deleted,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// One committed change to one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Change {
    pub network: NetworkId,
    /// 1, 2, 3, ... per network, in commit order, for this feed's life.
    pub seq: u64,
    pub kind: ChangeKind,
}

/// The changes one write transaction made, strongest kind per network.
#[derive(Debug, Default)]
pub struct Pending(BTreeMap<NetworkId, ChangeKind>);

impl Pending {
    pub fn record(&mut self, network: NetworkId, kind: ChangeKind) {
        let entry = self.0.entry(network).or_insert(kind);
        *entry = (*entry).max(kind);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each network changed, with the strongest kind.
    pub fn iter(&self) -> impl Iterator<Item = (NetworkId, ChangeKind)> + '_ {
        self.0.iter().map(|(n, k)| (*n, *k))
    }
}

type Listener = Box<dyn Fn(&Change) + Send + Sync>;

struct Inner {
    seqs: HashMap<NetworkId, u64>,
    kept: VecDeque<Change>,
    listeners: Vec<Listener>,
}

/// Where a store publishes its changes.
pub struct ChangeFeed {
    inner: Mutex<Inner>,
    sender: broadcast::Sender<Change>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(BROADCAST_BACKLOG);
        Self {
            inner: Mutex::new(Inner {
                seqs: HashMap::new(),
                kept: VecDeque::with_capacity(KEPT),
                listeners: Vec::new(),
            }),
            sender,
        }
    }
}

impl ChangeFeed {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing a listener can panic in leaves the state half-made.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes what a committed transaction changed. Called by the store
    /// only, once per commit. Records are numbered, kept, handed to the
    /// listeners and broadcast under one lock, so every reader sees one
    /// network's records in sequence order.
    pub fn publish(&self, pending: Pending) {
        if pending.is_empty() {
            return;
        }
        let mut inner = self.inner();
        for (network, kind) in pending.0 {
            let seq = inner.seqs.entry(network).or_insert(0);
            *seq += 1;
            let change = Change {
                network,
                seq: *seq,
                kind,
            };
            if kind == ChangeKind::Deleted {
                // A deleted network's numbers are not needed again; an ID
                // made again starts over, and its readers read everything.
                inner.seqs.remove(&network);
            }
            if inner.kept.len() == KEPT {
                inner.kept.pop_front();
            }
            inner.kept.push_back(change);
            for listener in &inner.listeners {
                listener(&change);
            }
            // No receivers is fine: nobody follows the broadcast.
            let _ = self.sender.send(change);
        }
    }

    /// Calls `listener` with every record from now on, synchronously as it
    /// is published (keep it short: it runs under the feed's lock).
    pub fn listen(&self, listener: impl Fn(&Change) + Send + Sync + 'static) {
        self.inner().listeners.push(Box::new(listener));
    }

    /// Every record from now on. A receiver that lags gets `Lagged`, and
    /// catches up with [`ChangeFeed::since`] or reads everything again.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// The last sequence number of `network` (0: no change yet).
    pub fn seq(&self, network: NetworkId) -> u64 {
        self.inner().seqs.get(&network).copied().unwrap_or(0)
    }

    /// The records of `network` after `seq`, oldest first; `None` if some
    /// of them are no longer kept (read everything again instead).
    pub fn since(&self, network: NetworkId, seq: u64) -> Option<Vec<Change>> {
        let inner = self.inner();
        let last = inner.seqs.get(&network).copied().unwrap_or(0);
        let changes: Vec<Change> = inner
            .kept
            .iter()
            .filter(|c| c.network == network && c.seq > seq)
            .copied()
            .collect();
        let complete = last <= seq || changes.first().is_some_and(|c| c.seq == seq + 1);
        complete.then_some(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn net(n: u64) -> NetworkId {
        format!("{n:016x}").parse().unwrap()
    }

    fn one(network: NetworkId, kind: ChangeKind) -> Pending {
        let mut pending = Pending::default();
        pending.record(network, kind);
        pending
    }

    #[test]
    fn one_record_per_network_and_commit_of_the_strongest_kind() {
        let feed = ChangeFeed::default();
        let mut rx = feed.subscribe();
        let mut pending = Pending::default();
        pending.record(net(1), ChangeKind::Record);
        pending.record(net(1), ChangeKind::Netmap);
        pending.record(net(1), ChangeKind::Presence);
        pending.record(net(2), ChangeKind::Endpoints);
        feed.publish(pending);
        let a = rx.try_recv().unwrap();
        let b = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_err());
        assert_eq!((a.network, a.seq, a.kind), (net(1), 1, ChangeKind::Netmap));
        assert_eq!(
            (b.network, b.seq, b.kind),
            (net(2), 1, ChangeKind::Endpoints)
        );
        feed.publish(one(net(1), ChangeKind::Presence));
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        assert_eq!(feed.seq(net(1)), 2);
        assert_eq!(feed.seq(net(3)), 0);
    }

    #[test]
    fn listeners_hear_each_record_as_it_is_published() {
        let feed = ChangeFeed::default();
        let heard = Arc::new(AtomicUsize::new(0));
        let counter = heard.clone();
        feed.listen(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        feed.publish(Pending::default());
        assert_eq!(heard.load(Ordering::SeqCst), 0, "nothing changed");
        feed.publish(one(net(1), ChangeKind::Netmap));
        feed.publish(one(net(2), ChangeKind::Record));
        assert_eq!(heard.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_reader_catches_up_from_its_sequence_while_the_records_are_kept() {
        let feed = ChangeFeed::default();
        for _ in 0..3 {
            feed.publish(one(net(1), ChangeKind::Netmap));
            feed.publish(one(net(2), ChangeKind::Netmap));
        }
        let missed = feed.since(net(1), 1).unwrap();
        assert_eq!(missed.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(feed.since(net(1), 3).unwrap(), vec![]);
        assert_eq!(feed.since(net(9), 0).unwrap(), vec![]);
        // Past what is kept: read everything again.
        for _ in 0..KEPT {
            feed.publish(one(net(2), ChangeKind::Netmap));
        }
        assert_eq!(feed.since(net(1), 1), None);
        assert_eq!(feed.since(net(1), 3).unwrap(), vec![]);
    }

    #[test]
    fn kinds_are_named_for_the_change_log() {
        for kind in [
            ChangeKind::Record,
            ChangeKind::Presence,
            ChangeKind::Endpoints,
            ChangeKind::Netmap,
            ChangeKind::Deleted,
        ] {
            assert_eq!(ChangeKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(ChangeKind::from_name("renamed"), None);
    }

    #[test]
    fn a_deleted_network_starts_over() {
        let feed = ChangeFeed::default();
        feed.publish(one(net(1), ChangeKind::Netmap));
        feed.publish(one(net(1), ChangeKind::Deleted));
        assert_eq!(feed.seq(net(1)), 0);
        let mut rx = feed.subscribe();
        feed.publish(one(net(1), ChangeKind::Netmap));
        assert_eq!(rx.try_recv().unwrap().seq, 1);
    }
}
