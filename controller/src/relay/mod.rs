//! The relay: WireGuard packets between two nodes that have no direct path,
//! carried as [`RelayFrame`]s over their control connections.
//!
//! A frame comes in on one node's connection ([`intake`] checks it) and goes
//! out on every connection of the destination node, with `peer` rewritten
//! to the sender's key and the relay's own sequence number for that
//! connection. The sender's quota pays for every copy, and a key holds at
//! most [`LINKS_PER_KEY`] connections (a new one closes the oldest), so one
//! frame costs the relay at most that many sends and the sender pays them. It goes as a QUIC datagram when it fits the destination
//! connection's `max_datagram_size()`, otherwise as a record on the one
//! unidirectional stream the relay keeps open to that connection. The
//! payload is never looked at: it is WireGuard ciphertext.
//!
//! A relay-only instance also tells a sender when a destination has no
//! connection to it (an absence notice, see [`warren_proto::relay`]), so the
//! sender can relay that peer's frames through the controller instead.

pub mod intake;
pub mod quota;
pub mod replica_link;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use quinn::{Connection, SendDatagramError};
use tokio::sync::mpsc;
use warren_proto::relay::RelayFrame;
use warren_proto::{NetworkId, NodePublicKey};

pub use quota::{QuotaTable, RelayLimits};

use crate::metrics::{Metrics, RelayDrop, RelayRefusal};

/// Connections one node key may hold here at once. A node has one per
/// controller; the spare ones cover a reconnect while the old connection
/// has not yet timed out. A connection past this closes the oldest.
pub const LINKS_PER_KEY: usize = 4;
/// The QUIC close code for a connection closed by a newer one of its key.
pub const CLOSE_SUPERSEDED: u32 = 2;

/// Records queued for one destination connection's stream; more are
/// dropped (`congested`) rather than queued without bound.
pub const STREAM_QUEUE: usize = 256;
/// A record write that takes longer than this breaks the stream; the next
/// record opens another.
const STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one absence notice per sender and destination this often: the
/// sender needs one, not one per dropped frame.
const NOTICE_INTERVAL: Duration = Duration::from_millis(200);
/// Sender and destination pairs remembered for [`NOTICE_INTERVAL`]; when
/// full of recent ones, further notices wait (bounded memory under floods).
const MAX_NOTICE_PAIRS: usize = 4096;

/// One authenticated connection as a destination.
struct Link {
    id: u64,
    connection: Connection,
    /// The relay's sequence numbers on this connection (the sender's are
    /// never passed on, so destinations see one ordered series).
    seq: AtomicU64,
    /// Records for the stream writer ([`write_records`]).
    records: mpsc::Sender<(Vec<u8>, usize)>,
}

/// Relay state shared by all connections of one controller process.
pub struct Relay {
    quotas: Mutex<QuotaTable>,
    links: Mutex<HashMap<NodePublicKey, Vec<Arc<Link>>>>,
    next_link: AtomicU64,
    metrics: Arc<Metrics>,
    /// When each (sender, destination) pair last got an absence notice;
    /// `None` where notices are not sent (the controller reaches everyone).
    notices: Option<Mutex<HashMap<(NodePublicKey, NodePublicKey), Instant>>>,
    /// Links to the other replicas, for destinations connected there.
    replicas: std::sync::OnceLock<Arc<replica_link::ReplicaLinks>>,
}

/// Whether a relay tells senders about absent destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsenceNotices {
    Send,
    Never,
}

impl Relay {
    pub fn new(limits: RelayLimits, metrics: Arc<Metrics>, notices: AbsenceNotices) -> Arc<Self> {
        Arc::new(Self {
            notices: (notices == AbsenceNotices::Send).then(|| Mutex::new(HashMap::new())),
            quotas: Mutex::new(QuotaTable::new(limits)),
            links: Mutex::new(HashMap::new()),
            next_link: AtomicU64::new(1),
            metrics,
            replicas: std::sync::OnceLock::new(),
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Relays to the other replicas through `links` from now on.
    pub fn link_replicas(&self, links: Arc<replica_link::ReplicaLinks>) {
        let _ = self.replicas.set(links);
    }

    /// The links to the other replicas, when there are replicas.
    pub fn replicas(&self) -> Option<&Arc<replica_link::ReplicaLinks>> {
        self.replicas.get()
    }

    fn links(&self) -> MutexGuard<'_, HashMap<NodePublicKey, Vec<Arc<Link>>>> {
        // Every update leaves the map consistent, so a poisoned lock is fine.
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes an authenticated connection of `node` a destination; returns
    /// the ID to [`Relay::detach`] it with. If `node` already holds
    /// [`LINKS_PER_KEY`] connections, the oldest is closed: a node that
    /// reconnects keeps working, and a key cannot multiply what a frame
    /// sent to it costs.
    pub fn attach(&self, node: NodePublicKey, connection: Connection) -> u64 {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let (records, queue) = mpsc::channel(STREAM_QUEUE);
        // Ends when the link is detached and its last frame sent.
        tokio::spawn(write_records(
            connection.clone(),
            queue,
            self.metrics.clone(),
        ));
        let link = Arc::new(Link {
            id,
            connection,
            seq: AtomicU64::new(0),
            records,
        });
        let oldest = {
            let mut links = self.links();
            let list = links.entry(node).or_default();
            list.push(link);
            (list.len() > LINKS_PER_KEY).then(|| list.remove(0))
        };
        if let Some(oldest) = oldest {
            tracing::info!(
                key = %node.short(),
                limit = LINKS_PER_KEY,
                "closing a node's oldest connection: too many for one key"
            );
            self.metrics
                .relay_links_superseded
                .fetch_add(1, Ordering::Relaxed);
            oldest.connection.close(
                quinn::VarInt::from_u32(CLOSE_SUPERSEDED),
                b"superseded: too many connections for this key",
            );
        }
        id
    }

    /// Connections `node` holds here (for tests and metrics).
    pub fn links_of(&self, node: &NodePublicKey) -> usize {
        self.links().get(node).map_or(0, Vec::len)
    }

    pub fn detach(&self, node: &NodePublicKey, id: u64) {
        let mut links = self.links();
        if let Some(list) = links.get_mut(node) {
            list.retain(|l| l.id != id);
            if list.is_empty() {
                links.remove(node);
            }
        }
    }

    /// Takes `bytes` from `node`'s quota; false if it is over.
    fn take_quota(&self, node: &NodePublicKey, bytes: u64, now: Instant) -> bool {
        let mut quotas = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        quotas.take(node, bytes, now)
    }

    /// Sends `payload` from `from` to every connection of `to`, charging
    /// `from` `frame_len` bytes per copy (one copy when `to` has none:
    /// asking costs too). Over quota, nothing is sent. `Ok(false)`: `to`
    /// has no connection here (the caller may pass the frame to the
    /// replica that holds one, or count it dropped).
    pub fn forward(
        &self,
        network: NetworkId,
        from: NodePublicKey,
        to: &NodePublicKey,
        payload: &[u8],
        frame_len: usize,
        now: Instant,
    ) -> Result<bool, RelayRefusal> {
        let targets = self.targets(to);
        let copies = targets.len().max(1) as u64;
        if !self.take_quota(&from, (frame_len as u64).saturating_mul(copies), now) {
            return Err(RelayRefusal::Quota);
        }
        if targets.is_empty() {
            self.notify_absent(network, &from, to, now);
            return Ok(false);
        }
        self.send_all(network, from, targets, payload);
        Ok(true)
    }

    /// Sends `payload` from `from` to every connection of `to` here,
    /// unchecked and uncharged (the caller did both); false if `to` has
    /// none.
    pub fn deliver(
        &self,
        network: NetworkId,
        from: NodePublicKey,
        to: &NodePublicKey,
        payload: &[u8],
    ) -> bool {
        let targets = self.targets(to);
        let any = !targets.is_empty();
        self.send_all(network, from, targets, payload);
        any
    }

    /// The connections of `to` here.
    fn targets(&self, to: &NodePublicKey) -> Vec<Arc<Link>> {
        self.links().get(to).cloned().unwrap_or_default()
    }

    fn send_all(
        &self,
        network: NetworkId,
        from: NodePublicKey,
        targets: Vec<Arc<Link>>,
        payload: &[u8],
    ) {
        for link in targets {
            let frame = RelayFrame {
                network_id: network,
                peer: from,
                seq: link.seq.fetch_add(1, Ordering::Relaxed) + 1,
                payload: payload.to_vec(),
            };
            self.send(&link, &frame);
        }
    }

    /// Tells every connection of `from` that `to` has no connection here,
    /// at most once per [`NOTICE_INTERVAL`] per pair.
    fn notify_absent(
        &self,
        network: NetworkId,
        from: &NodePublicKey,
        to: &NodePublicKey,
        now: Instant,
    ) {
        let Some(notices) = &self.notices else {
            return;
        };
        {
            // Every update leaves the map consistent, so a poisoned lock is fine.
            let mut last = notices.lock().unwrap_or_else(|p| p.into_inner());
            let recent = |at: &Instant| now.saturating_duration_since(*at) < NOTICE_INTERVAL;
            if last.get(&(*from, *to)).is_some_and(recent) {
                return;
            }
            if last.len() >= MAX_NOTICE_PAIRS {
                last.retain(|_, at| recent(at));
                if last.len() >= MAX_NOTICE_PAIRS {
                    return;
                }
            }
            last.insert((*from, *to), now);
        }
        let senders: Vec<Arc<Link>> = self.links().get(from).cloned().unwrap_or_default();
        for link in senders {
            let seq = link.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let notice = RelayFrame::absence_notice(network, *to, seq);
            // 49 bytes: always a datagram. A lost one is sent again with
            // the next dropped frame after the interval.
            if link
                .connection
                .send_datagram(notice.encode().into())
                .is_ok()
            {
                self.metrics
                    .relay_absence_notices
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn send(&self, link: &Arc<Link>, frame: &RelayFrame) {
        let payload_len = frame.payload.len();
        let fits = link
            .connection
            .max_datagram_size()
            .is_some_and(|max| warren_proto::relay::HEADER_LEN + payload_len <= max);
        if fits {
            match link.connection.send_datagram(frame.encode().into()) {
                Ok(()) => {
                    count_sent(&self.metrics, payload_len, false);
                    return;
                }
                // The path MTU shrank since we asked: take the stream.
                Err(SendDatagramError::TooLarge) => {}
                Err(e) => {
                    tracing::trace!(error = %e, "relay datagram not sent");
                    self.metrics.count_relay_dropped(RelayDrop::SendFailed);
                    return;
                }
            }
        }
        if link
            .records
            .try_send((frame.encode_record(), payload_len))
            .is_err()
        {
            self.metrics.count_relay_dropped(RelayDrop::Congested);
        }
    }

    pub fn count_refused(&self, reason: RelayRefusal) {
        self.metrics.count_relay_refused(reason);
    }
}

/// Writes one destination connection's records, in order, on one stream;
/// a write that fails or stalls gives up that stream and the next record
/// opens another.
pub(super) async fn write_records(
    connection: Connection,
    mut queue: mpsc::Receiver<(Vec<u8>, usize)>,
    metrics: Arc<Metrics>,
) {
    let mut stream: Option<quinn::SendStream> = None;
    while let Some((record, payload_len)) = queue.recv().await {
        if stream.is_none() {
            stream = connection.open_uni().await.ok();
        }
        let Some(open) = stream.as_mut() else {
            metrics.count_relay_dropped(RelayDrop::SendFailed);
            continue;
        };
        match tokio::time::timeout(STREAM_SEND_TIMEOUT, open.write_all(&record)).await {
            Ok(Ok(())) => count_sent(&metrics, payload_len, true),
            _ => {
                metrics.count_relay_dropped(RelayDrop::SendFailed);
                stream = None;
            }
        }
    }
}

fn count_sent(metrics: &Metrics, payload_len: usize, stream: bool) {
    metrics.relay_frames.fetch_add(1, Ordering::Relaxed);
    if stream {
        metrics.relay_stream_frames.fetch_add(1, Ordering::Relaxed);
    }
    metrics
        .relay_bytes
        .fetch_add(payload_len as u64, Ordering::Relaxed);
}
