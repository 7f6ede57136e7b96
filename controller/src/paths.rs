//! The paths each member's agent reports to its peers (direct or
//! relayed): live state held in memory only, like presence, and never
//! written to the database. The latest report per (network, node) wins; it
//! goes when the session that sent it leaves the network, stops being an
//! authorized member there, or ends.
//!
//! [`admit`] (pure) decides what of a report is kept; [`PathReports`]
//! keeps it. The hub owns one and tells its live watchers when what they
//! would show changes ([`crate::hub::Hub::subscribe_live`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use warren_proto::control::{PeerPath, PeerPathKind, MAX_PEER_PATHS};
use warren_proto::{NetworkId, NodeId};

use crate::netmaps::SharedView;

/// One path of a member as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportedPath {
    /// The peer's node ID.
    pub peer: NodeId,
    /// The peer's name in the network when the report came.
    pub peer_name: String,
    pub kind: PeerPathKind,
    /// The peer's address the member sends to, on a direct path.
    pub endpoint: Option<SocketAddr>,
    /// Seconds since the member's latest handshake with the peer: the age
    /// its agent reported, plus the time since the report came.
    pub last_handshake_secs_ago: Option<u64>,
}

/// What [`admit`] kept of a report, and how many entries it dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Sorted by peer node ID.
    pub paths: Vec<ReportedPath>,
    /// Entries past [`MAX_PEER_PATHS`], about the reporter itself, about
    /// nodes that are not authorized members, or repeated.
    pub dropped: usize,
}

/// The entries of `reporter`'s report worth keeping: at most
/// [`MAX_PEER_PATHS`], each about an authorized member of the network
/// (found in `view` by its whole key, not only its 40-bit node ID) other
/// than the reporter, once. A relayed path keeps no endpoint: there is
/// none to show.
pub fn admit(reporter: NodeId, paths: &[PeerPath], view: &SharedView) -> Admitted {
    let mut seen = BTreeSet::new();
    let mut kept = Vec::new();
    // Only the first MAX_PEER_PATHS are looked at: the work per report is bounded.
    for path in paths.iter().take(MAX_PEER_PATHS) {
        let node = NodeId::from_key(&path.peer);
        let member = view
            .peers
            .binary_search_by_key(&node, |(p, _)| p.node_id)
            .ok()
            .map(|i| &view.peers[i].0)
            .filter(|p| p.public_key == path.peer);
        let Some(member) = member else {
            continue;
        };
        if node == reporter || !seen.insert(node) {
            continue;
        }
        kept.push(ReportedPath {
            peer: node,
            peer_name: member.name.clone(),
            kind: path.kind,
            endpoint: match path.kind {
                PeerPathKind::Direct => path.endpoint,
                PeerPathKind::Relayed => None,
            },
            last_handshake_secs_ago: path.last_handshake_secs_ago,
        });
    }
    kept.sort_by_key(|p| p.peer);
    Admitted {
        dropped: paths.len() - kept.len(),
        paths: kept,
    }
}

/// One member's latest report.
#[derive(Debug)]
struct Report {
    /// The session that sent it: only that session's end removes it, so a
    /// reconnect's new report outlives the old connection timing out.
    session: u64,
    received: Instant,
    paths: Vec<ReportedPath>,
}

/// The latest report of every member whose agent sent one, by (network, node).
#[derive(Debug, Default)]
pub struct PathReports {
    reports: Mutex<HashMap<(NetworkId, NodeId), Report>>,
}

impl PathReports {
    fn reports(&self) -> MutexGuard<'_, HashMap<(NetworkId, NodeId), Report>> {
        // Every change is one insert or remove: a panic cannot leave it half made.
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `paths` (from [`admit`]) as what `node` reports in `net`
    /// through `session`. True if what a watcher shows changed: a path,
    /// its kind or endpoint, or a peer's name; handshake ages move every
    /// second and do not count.
    pub fn record(
        &self,
        net: NetworkId,
        node: NodeId,
        session: u64,
        paths: Vec<ReportedPath>,
        now: Instant,
    ) -> bool {
        let mut reports = self.reports();
        let changed = reports
            .get(&(net, node))
            .is_none_or(|old| !same_paths(&old.paths, &paths));
        reports.insert(
            (net, node),
            Report {
                session,
                received: now,
                paths,
            },
        );
        changed
    }

    /// Forgets `node`'s report in `net` if `session` sent it. True if one went.
    pub fn forget(&self, net: NetworkId, node: NodeId, session: u64) -> bool {
        let mut reports = self.reports();
        match reports.get(&(net, node)) {
            Some(report) if report.session == session => {
                reports.remove(&(net, node));
                true
            }
            _ => false,
        }
    }

    /// `node`'s paths in `net`, handshake ages as of `now`; empty without a report.
    pub fn of(&self, net: NetworkId, node: NodeId, now: Instant) -> Vec<ReportedPath> {
        let reports = self.reports();
        let Some(report) = reports.get(&(net, node)) else {
            return Vec::new();
        };
        let since = now.saturating_duration_since(report.received).as_secs();
        report
            .paths
            .iter()
            .map(|p| ReportedPath {
                last_handshake_secs_ago: p.last_handshake_secs_ago.map(|s| s.saturating_add(since)),
                ..p.clone()
            })
            .collect()
    }
}

/// Whether two reports show the same, handshake ages aside.
fn same_paths(a: &[ReportedPath], b: &[ReportedPath]) -> bool {
    let shown = |p: &ReportedPath| (p.peer, p.peer_name.clone(), p.kind, p.endpoint);
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| shown(x) == shown(y))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use warren_proto::netmap::{DnsConfig, NetmapPeer};
    use warren_proto::{NodePrivateKey, NodePublicKey};

    use super::*;

    fn key(n: u8) -> NodePublicKey {
        NodePrivateKey::from_bytes([n; 32]).public_key()
    }

    /// A view whose authorized members are the keys `members`, named `m<N>`.
    fn view(members: &[u8]) -> SharedView {
        let mut peers: Vec<(NetmapPeer, u64)> = members
            .iter()
            .map(|n| {
                let peer = NetmapPeer {
                    node_id: NodeId::from_key(&key(*n)),
                    public_key: key(*n),
                    name: format!("m{n}"),
                    addresses: Vec::new(),
                    routes: Vec::new(),
                    endpoints: Vec::new(),
                    online: true,
                };
                (peer, 0)
            })
            .collect();
        peers.sort_by_key(|(p, _)| p.node_id);
        with_peers(peers)
    }

    fn with_peers(peers: Vec<(NetmapPeer, u64)>) -> SharedView {
        SharedView::of_parts(
            peers,
            DnsConfig {
                zone: "lab.warren.internal".into(),
                services: Vec::new(),
            },
            Default::default(),
        )
    }

    fn direct(n: u8, port: u16) -> PeerPath {
        PeerPath {
            peer: key(n),
            kind: PeerPathKind::Direct,
            endpoint: Some(SocketAddr::from(([203, 0, 113, n], port))),
            last_handshake_secs_ago: Some(3),
        }
    }

    fn relayed(n: u8) -> PeerPath {
        PeerPath {
            peer: key(n),
            kind: PeerPathKind::Relayed,
            endpoint: Some(SocketAddr::from(([198, 51, 100, n], 9))),
            last_handshake_secs_ago: None,
        }
    }

    #[test]
    fn only_other_authorized_members_are_kept_once_each() {
        let view = view(&[1, 2, 3]);
        let me = NodeId::from_key(&key(1));
        let report = [
            direct(2, 41641),
            relayed(3),
            direct(1, 1), // itself
            direct(9, 1), // not a member
            relayed(2),   // again
        ];
        let admitted = admit(me, &report, &view);
        assert_eq!(admitted.dropped, 3);
        let mut want = vec![
            ReportedPath {
                peer: NodeId::from_key(&key(2)),
                peer_name: "m2".into(),
                kind: PeerPathKind::Direct,
                endpoint: Some(SocketAddr::from(([203, 0, 113, 2], 41641))),
                last_handshake_secs_ago: Some(3),
            },
            ReportedPath {
                peer: NodeId::from_key(&key(3)),
                peer_name: "m3".into(),
                kind: PeerPathKind::Relayed,
                // A relayed path shows no endpoint, whatever the agent sent.
                endpoint: None,
                last_handshake_secs_ago: None,
            },
        ];
        want.sort_by_key(|p| p.peer);
        assert_eq!(admitted.paths, want);
    }

    #[test]
    fn a_node_id_alone_does_not_make_a_member() {
        // A key whose 40-bit node ID a member has, but not the member's key.
        let view = view(&[2]);
        let impostor = PeerPath {
            peer: key(7),
            ..direct(2, 1)
        };
        let mut member = view.peers[0].0.clone();
        member.node_id = NodeId::from_key(&key(7));
        let colliding = with_peers(vec![(member, 0)]);
        let me = NodeId::from_key(&key(1));
        assert!(admit(me, &[impostor], &colliding).paths.is_empty());
    }

    #[test]
    fn a_report_is_clipped_at_the_cap() {
        let members: Vec<u8> = (1..=255).collect();
        let view = view(&members);
        let me = NodeId::from_key(&key(1));
        // Far more entries than the cap, all about real members.
        let report: Vec<PeerPath> = (0..MAX_PEER_PATHS * 20)
            .map(|i| relayed(u8::try_from(i % 254 + 2).unwrap()))
            .collect();
        let admitted = admit(me, &report, &view);
        assert_eq!(admitted.paths.len(), 254);
        assert_eq!(admitted.dropped, report.len() - 254);
        // Past the cap nothing is looked at, not even a new member.
        let mut late = vec![relayed(2); MAX_PEER_PATHS];
        late.push(relayed(3));
        assert_eq!(admit(me, &late, &view).paths.len(), 1);
    }

    #[test]
    fn reports_are_per_member_and_go_only_with_their_own_session() {
        let reports = PathReports::default();
        let net: NetworkId = "8056c2e21c000001".parse().unwrap();
        let (a, b) = (NodeId::from_key(&key(1)), NodeId::from_key(&key(2)));
        let view = view(&[1, 2]);
        let t0 = Instant::now();
        let paths = admit(a, &[direct(2, 5)], &view).paths;
        assert!(reports.record(net, a, 10, paths.clone(), t0));
        assert!(reports.of(net, b, t0).is_empty());
        // Ages move with the clock, not with reports.
        let later = reports.of(net, a, t0 + Duration::from_secs(7));
        assert_eq!(later[0].last_handshake_secs_ago, Some(10));
        // The same paths again, older handshakes: nothing for watchers.
        let mut aged = paths.clone();
        aged[0].last_handshake_secs_ago = Some(60);
        assert!(!reports.record(net, a, 10, aged, t0));
        // A new connection's report survives the old one's end.
        assert!(!reports.record(net, a, 11, paths.clone(), t0));
        assert!(!reports.forget(net, a, 10));
        assert_eq!(reports.of(net, a, t0).len(), 1);
        assert!(reports.forget(net, a, 11));
        assert!(reports.of(net, a, t0).is_empty());
        // Relayed now: a change.
        let relayed_now = admit(a, &[relayed(2)], &view).paths;
        assert!(reports.record(net, a, 11, relayed_now, t0));
        assert!(reports.record(net, a, 11, paths, t0));
    }
}
