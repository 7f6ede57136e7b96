//! Each joined network's paths to its peers (direct or relayed, what
//! `warren status` shows), reported to the network's controller for its API
//! and console: after a change, at most once every [`PATHS_CHECK`], and
//! again every [`PATHS_REFRESH`] so that the handshake ages stay near the
//! truth. Only while the controller is connected and the node is an
//! authorized member; the controller forgets a report when the connection
//! ends, so a new connection gets one afresh.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use warren_engine::PathKind;
use warren_proto::control::{PeerPath, PeerPathKind, MAX_PEER_PATHS};
use warren_proto::local_api::NetworkState;
use warren_proto::NodePublicKey;

use super::super::control::ControlCommand;
use super::Managed;

/// How often networks are looked at for changed paths: also the shortest
/// time between two reports of one network.
pub const PATHS_CHECK: Duration = Duration::from_secs(5);
/// A report this old is sent again even if nothing changed.
const PATHS_REFRESH: Duration = Duration::from_secs(60);

/// What a report shows, handshake ages aside: what decides whether it changed.
type Shown = Vec<(NodePublicKey, PeerPathKind, Option<SocketAddr>)>;

/// One peer as the data plane reports it: its key, how it is reached, where
/// its packets go, and how long ago the latest handshake was.
type Seen = (
    NodePublicKey,
    PathKind,
    Option<SocketAddr>,
    Option<Duration>,
);

/// What one network last told its controller of its paths.
#[derive(Debug, Default)]
pub(super) struct PathReport {
    /// The paths last sent on the current connection; `None` before the first.
    sent: Option<Shown>,
    sent_at: Option<Instant>,
    /// Something that may change the paths happened since the last look:
    /// a path changed, a netmap was applied, or the connection is new.
    dirty: bool,
}

impl PathReport {
    pub(super) fn mark(&mut self) {
        self.dirty = true;
    }

    /// The controller connection is new and knows nothing of these paths.
    fn reset(&mut self) {
        *self = PathReport {
            dirty: true,
            ..PathReport::default()
        };
    }

    fn stale(&self, now: Instant) -> bool {
        self.sent_at
            .is_none_or(|at| now.saturating_duration_since(at) >= PATHS_REFRESH)
    }

    /// Whether `paths` (made now) should go to the controller.
    fn worth_sending(&self, shown: &Shown, now: Instant) -> bool {
        match &self.sent {
            // The controller shows nothing for a member that never reported.
            None => !shown.is_empty(),
            Some(sent) => sent != shown || self.stale(now),
        }
    }
}

/// The report of a data plane's peers: each peer it reaches now, direct or
/// relayed, sorted by key. Past [`MAX_PEER_PATHS`], the peers with the
/// latest handshakes are the ones kept.
fn peer_paths(peers: impl Iterator<Item = Seen>) -> Vec<PeerPath> {
    let mut paths: Vec<(Option<Duration>, PeerPath)> = peers
        .filter_map(|(peer, path, endpoint, handshake)| {
            let (kind, endpoint) = match path {
                PathKind::Direct => (PeerPathKind::Direct, endpoint),
                // Its endpoint is then a candidate that does not answer.
                PathKind::Relay => (PeerPathKind::Relayed, None),
                PathKind::None => return None,
            };
            let path = PeerPath {
                peer,
                kind,
                endpoint,
                last_handshake_secs_ago: handshake.map(|d| d.as_secs()),
            };
            Some((handshake, path))
        })
        .collect();
    if paths.len() > MAX_PEER_PATHS {
        // Never handshaken (None) sorts after any age.
        paths.sort_by_key(|(age, path)| (age.is_none(), *age, path.peer));
        paths.truncate(MAX_PEER_PATHS);
    }
    let mut paths: Vec<PeerPath> = paths.into_iter().map(|(_, p)| p).collect();
    paths.sort_by_key(|p| p.peer);
    paths
}

fn shown(paths: &[PeerPath]) -> Shown {
    paths.iter().map(|p| (p.peer, p.kind, p.endpoint)).collect()
}

impl Managed {
    /// Tells each network's controller its paths, where they changed or the
    /// last report is old.
    pub async fn report_paths(&mut self) {
        let now = Instant::now();
        for (id, net) in &mut self.nets {
            if net.state != NetworkState::Authorized
                || !self.links.is_connected(&net.config.controller)
                || !(net.paths.dirty || net.paths.stale(now))
            {
                continue;
            }
            let (Some(runner), Some(control)) =
                (&net.runner, self.controllers.get(&net.config.controller))
            else {
                continue;
            };
            let Some(report) = runner.report().await else {
                continue;
            };
            net.paths.dirty = false;
            let paths = peer_paths(
                report
                    .peers
                    .iter()
                    .map(|p| (p.public_key, p.path, p.endpoint, p.since_last_handshake)),
            );
            let shown = shown(&paths);
            if !net.paths.worth_sending(&shown, now) {
                continue;
            }
            tracing::debug!(network = %id, paths = paths.len(), "reporting paths to the controller");
            control.send(ControlCommand::Paths(*id, paths));
            net.paths.sent = Some(shown);
            net.paths.sent_at = Some(now);
        }
    }

    /// A controller connection came up: its networks report afresh.
    pub(super) fn paths_reconnected(&mut self, controller: &str) {
        for net in self
            .nets
            .values_mut()
            .filter(|n| n.config.controller == controller)
        {
            net.paths.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use warren_proto::NodePrivateKey;

    use super::*;

    /// Peer `n` (up to 65535 distinct keys) as a data plane reports it.
    fn peer(n: u16, path: PathKind, handshake: Option<u64>) -> Seen {
        let mut bytes = [0u8; 32];
        bytes[1..3].copy_from_slice(&n.to_be_bytes());
        let [hi, lo] = n.to_be_bytes();
        (
            NodePrivateKey::from_bytes(bytes).public_key(),
            path,
            Some(SocketAddr::from(([192, 0, hi, lo], 51820))),
            handshake.map(Duration::from_secs),
        )
    }

    #[test]
    fn reports_direct_and_relayed_peers_only() {
        let peers = [
            peer(1, PathKind::Direct, Some(3)),
            peer(2, PathKind::Relay, None),
            peer(3, PathKind::None, Some(1)),
        ];
        let paths = peer_paths(peers.into_iter());
        assert_eq!(paths.len(), 2);
        let direct = paths.iter().find(|p| p.kind == PeerPathKind::Direct);
        assert_eq!(
            direct.map(|p| (p.endpoint, p.last_handshake_secs_ago)),
            Some((Some(SocketAddr::from(([192, 0, 0, 1], 51820))), Some(3)))
        );
        // A relayed peer's candidate address is not a path.
        let relayed = paths.iter().find(|p| p.kind == PeerPathKind::Relayed);
        assert_eq!(relayed.map(|p| p.endpoint), Some(None));
        assert!(paths.windows(2).all(|w| w[0].peer < w[1].peer));
    }

    #[test]
    fn past_the_cap_the_latest_handshakes_stay() {
        let cap = u16::try_from(MAX_PEER_PATHS).unwrap();
        // `cap` relayed peers with old handshakes, as many never handshaken,
        // and one fresh direct one.
        let mut peers: Vec<Seen> = (0..cap)
            .map(|n| peer(n, PathKind::Relay, Some(1000 + u64::from(n))))
            .collect();
        peers.extend((cap..2 * cap).map(|n| peer(n, PathKind::Direct, None)));
        peers.push(peer(2 * cap, PathKind::Direct, Some(2)));
        let paths = peer_paths(peers.into_iter());
        assert_eq!(paths.len(), MAX_PEER_PATHS);
        assert!(paths.iter().all(|p| p.last_handshake_secs_ago.is_some()));
        assert!(paths.iter().any(|p| p.last_handshake_secs_ago == Some(2)));
        // The oldest handshake lost its place to the fresh one.
        let oldest = 1000 + u64::from(cap) - 1;
        assert!(!paths
            .iter()
            .any(|p| p.last_handshake_secs_ago == Some(oldest)));
    }

    #[test]
    fn a_report_goes_when_it_changed_or_is_old_and_never_empty_first() {
        let now = Instant::now();
        let mut report = PathReport::default();
        assert!(!report.worth_sending(&Vec::new(), now));
        let one = shown(&peer_paths(
            [peer(1, PathKind::Direct, Some(3))].into_iter(),
        ));
        assert!(report.worth_sending(&one, now));
        report.sent = Some(one.clone());
        report.sent_at = Some(now);
        assert!(!report.worth_sending(&one, now + Duration::from_secs(5)));
        assert!(report.worth_sending(&one, now + PATHS_REFRESH));
        // Once something was said, an empty report says the paths are gone.
        assert!(report.worth_sending(&Vec::new(), now));
        let relayed = shown(&peer_paths([peer(1, PathKind::Relay, Some(3))].into_iter()));
        assert!(report.worth_sending(&relayed, now));
        report.reset();
        assert!(report.dirty && report.sent.is_none());
    }
}
