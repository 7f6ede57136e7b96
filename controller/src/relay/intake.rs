//! Relay frames coming in on one authenticated connection: read from
//! datagrams and from the records of unidirectional streams, then checked
//! in order — membership, replay — and forwarded, the quota charged per
//! copy.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::Connection;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use warren_proto::relay::{self, Quota, RelayFrame, ReplayWindow};
use warren_proto::{NetworkId, NodeId, NodePublicKey};

use super::Relay;
use crate::hub::Hub;
use crate::metrics::RelayRefusal;
use crate::netmaps::SharedView;
use crate::store::{MemberState, NetworkSnapshot};

/// Frames read but not yet checked; beyond this, readers wait (and quinn
/// drops datagrams once its own buffer is full, as a full link would).
pub(super) const QUEUE: usize = 1024;
/// A record must arrive whole within this once its length has, or the
/// stream is dropped. (Between records a stream may idle.)
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Database lookups of networks not in the cache, per connection: enough
/// for real nodes after changes, too few to make random network IDs costly.
const LOOKUPS_PER_SECOND: u64 = 50;

/// The tasks that read and check one connection's frames.
pub struct Intake {
    tasks: Vec<JoinHandle<()>>,
}

impl Intake {
    /// Starts reading relay frames that `node` sends on `connection`.
    pub fn spawn(
        connection: Connection,
        node: NodePublicKey,
        hub: Arc<Hub>,
        relay: Arc<Relay>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let datagrams = tokio::spawn(read_datagrams(connection.clone(), tx.clone()));
        let streams = tokio::spawn(read_streams(connection, tx, relay.clone()));
        let checks = tokio::spawn(
            Checker {
                node,
                window: ReplayWindow::default(),
                peers: HashMap::new(),
                lookups: Quota::new(LOOKUPS_PER_SECOND, LOOKUPS_PER_SECOND),
                hub,
                relay,
            }
            .run(rx),
        );
        Self {
            tasks: vec![datagrams, streams, checks],
        }
    }

    /// Stops reading (the connection is gone anyway).
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

pub(super) async fn read_datagrams(connection: Connection, tx: mpsc::Sender<Vec<u8>>) {
    while let Ok(datagram) = connection.read_datagram().await {
        if tx.send(datagram.to_vec()).await.is_err() {
            return;
        }
    }
}

pub(super) async fn read_streams(
    connection: Connection,
    tx: mpsc::Sender<Vec<u8>>,
    relay: Arc<Relay>,
) {
    // How many streams may be open at once is quinn's limit
    // (`max_concurrent_uni_streams` in the server transport).
    while let Ok(stream) = connection.accept_uni().await {
        tokio::spawn(read_records(stream, tx.clone(), relay.clone()));
    }
}

/// Passes on every record of one stream, until it ends, breaks, stalls
/// inside a record, or announces an impossible length.
async fn read_records(mut stream: quinn::RecvStream, tx: mpsc::Sender<Vec<u8>>, relay: Arc<Relay>) {
    let mut prefix = [0u8; relay::RECORD_PREFIX_LEN];
    while stream.read_exact(&mut prefix).await.is_ok() {
        let Ok(len) = relay::record_len(prefix) else {
            let _ = stream.stop(quinn::VarInt::from_u32(0));
            relay.count_refused(RelayRefusal::Malformed);
            return;
        };
        let mut frame = vec![0u8; len];
        match tokio::time::timeout(STREAM_READ_TIMEOUT, stream.read_exact(&mut frame)).await {
            Ok(Ok(())) => {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
            // Reset, connection lost, or too slow: nothing more to relay.
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// Who `node` may send to in one network, as of one snapshot.
struct Peers {
    snapshot: Arc<NetworkSnapshot>,
    /// Authorized members other than the sender; empty if the sender is
    /// not an authorized member itself.
    allowed: HashSet<NodePublicKey>,
}

impl Peers {
    /// The members `node` may send to: authorized, and among the peers its
    /// compiled policy gives it (`view`, made of the same snapshot).
    fn of(node: &NodePublicKey, snapshot: Arc<NetworkSnapshot>, view: &SharedView) -> Self {
        let authorized = |m: &&crate::store::Member| m.state == MemberState::Authorized;
        let sender_ok = snapshot
            .members
            .iter()
            .filter(authorized)
            .any(|m| m.public_key == *node);
        let me = NodeId::from_key(node);
        let allowed = if sender_ok {
            snapshot
                .members
                .iter()
                .filter(authorized)
                .filter(|m| m.public_key != *node && view.policy.sees(&me, &m.node_id))
                .map(|m| m.public_key)
                .collect()
        } else {
            HashSet::new()
        };
        Self { snapshot, allowed }
    }
}

/// The checks for one sender connection; owns its replay window.
struct Checker {
    node: NodePublicKey,
    window: ReplayWindow,
    /// Verdicts per network, valid while the hub's snapshot is the same.
    peers: HashMap<NetworkId, Peers>,
    lookups: Quota,
    hub: Arc<Hub>,
    relay: Arc<Relay>,
}

impl Checker {
    async fn run(mut self, mut rx: mpsc::Receiver<Vec<u8>>) {
        while let Some(bytes) = rx.recv().await {
            if let Err(reason) = self.handle_frame(&bytes).await {
                tracing::trace!(node = %self.node.short(), reason = reason.label(), "relay frame refused");
                self.relay.count_refused(reason);
            }
        }
    }

    async fn handle_frame(&mut self, bytes: &[u8]) -> Result<(), RelayRefusal> {
        let frame = RelayFrame::decode(bytes).map_err(|_| RelayRefusal::Malformed)?;
        // Empty frames are relays' absence notices; nodes never send them.
        if frame.is_absence_notice() {
            return Err(RelayRefusal::Malformed);
        }
        if !self.may_send(frame.network_id, &frame.peer).await? {
            return Err(RelayRefusal::NotAPeer);
        }
        if !self.window.accept(frame.seq) {
            return Err(RelayRefusal::Replay);
        }
        // The quota is charged per copy delivered, inside `forward`.
        let here = self.relay.forward(
            frame.network_id,
            self.node,
            &frame.peer,
            &frame.payload,
            bytes.len(),
            Instant::now(),
        )?;
        if !here {
            // Not connected here: perhaps to another replica.
            let passed = match self.relay.replicas() {
                Some(links) => {
                    links
                        .send(frame.network_id, self.node, &frame.peer, &frame.payload)
                        .await
                }
                None => false,
            };
            if !passed {
                self.relay
                    .metrics()
                    .count_relay_dropped(crate::metrics::RelayDrop::Offline);
            }
        }
        Ok(())
    }

    /// Whether the sender and `to` are both authorized members of `net`
    /// and its policy lets them exchange packets.
    async fn may_send(&mut self, net: NetworkId, to: &NodePublicKey) -> Result<bool, RelayRefusal> {
        let snapshot = match self.hub.cached_snapshot(net) {
            Some(s) => s,
            None => {
                if !self.lookups.take(1, Instant::now()) {
                    return Err(RelayRefusal::Unverified);
                }
                match self.hub.snapshot(net).await {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        self.peers.remove(&net);
                        return Ok(false);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "relay membership check failed");
                        return Err(RelayRefusal::Unverified);
                    }
                }
            }
        };
        let stale = self
            .peers
            .get(&net)
            .is_none_or(|p| !Arc::ptr_eq(&p.snapshot, &snapshot));
        if stale {
            let view = self.hub.view(&snapshot);
            self.peers
                .insert(net, Peers::of(&self.node, snapshot, &view));
        }
        Ok(self.peers.get(&net).is_some_and(|p| p.allowed.contains(to)))
    }
}
