//! The relay side of the control client: how a node's relayed packets
//! reach a relay (datagrams, or records on one stream), which relay they
//! go to (the controller, or the relay-only instance it names, bypassed
//! for peers the instance says are absent), and how relayed packets and
//! absence notices are read back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_core::RngCore;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use warren_proto::relay::{self, RelayFrame};
use warren_proto::{NodePrivateKey, NodePublicKey};

use super::quic_config::Fallback;
use super::{open_link, ControlEvent, Liveness, MAX_BACKOFF};
use crate::daemon::datapath::RelayOut;
use crate::daemon::relay_in::{RelayInDrop, RelayRoutes, MAX_WIREGUARD_DATAGRAM};

/// A relay-only instance's link. While a dead instance goes unnoticed,
/// this node's relayed packets go to it and are lost, so it is noticed
/// after 3 s of silence (the controller link waits 8 s); pings every
/// second keep a live one from looking silent. A false alarm costs little:
/// relaying falls back to the controller until the link is back.
const INSTANCE_LIVENESS: Liveness = Liveness {
    keep_alive: Duration::from_secs(1),
    idle_timeout: Duration::from_secs(3),
};

/// After an absence notice from the relay-only instance, frames for that
/// peer go through the controller. Every this often one of them also goes
/// to the instance as a probe: another notice keeps the bypass; none within
/// the next hold means the peer is there now. (A probe that arrives is a
/// duplicate the peer's WireGuard drops.)
const ABSENT_HOLD: Duration = Duration::from_secs(2);

/// Absence notices waiting for the control loop; more are dropped (the
/// instance sends another with the next lost frame).
pub(super) const ABSENCE_QUEUE: usize = 64;

/// Where one controller connection's relayed packets go.
pub(super) struct Relays {
    via_controller: RelayPath,
    /// The relay-only instance's path while its link is up.
    instance: Option<RelayPath>,
    /// Peers the instance said it cannot reach.
    absent: Absent,
    seq: u64,
}

impl Relays {
    pub(super) fn new(via_controller: RelayPath) -> Self {
        Self {
            via_controller,
            instance: None,
            absent: Absent::default(),
            seq: 0,
        }
    }

    /// A new instance link (or none): what the last one said no longer holds.
    pub(super) fn set_instance(&mut self, instance: Option<RelayPath>) {
        self.instance = instance;
        self.absent = Absent::default();
    }

    /// The instance's absence notice for `peer`.
    pub(super) fn absent(&mut self, peer: NodePublicKey) {
        self.absent.notice(peer, Instant::now());
    }

    pub(super) fn send(&mut self, out: RelayOut) {
        self.seq += 1;
        let seq = self.seq;
        let Some(via_instance) = &self.instance else {
            send_relay(&self.via_controller, out, seq);
            return;
        };
        match self.absent.route(&out.peer) {
            Route::Instance => send_relay(via_instance, out, seq),
            Route::Controller => send_relay(&self.via_controller, out, seq),
            Route::Both => {
                send_relay(via_instance, out.clone(), seq);
                send_relay(&self.via_controller, out, seq);
            }
        }
    }
}

/// One connection as a way into a relay: QUIC datagrams for the frames that
/// fit, and one long-lived stream, written by a task of its own, for the rest.
#[derive(Clone)]
pub(super) struct RelayPath {
    connection: quinn::Connection,
    records: mpsc::Sender<Vec<u8>>,
}

/// Frames waiting for the relay stream; beyond this they are dropped, as a
/// full link drops them.
const RELAY_STREAM_QUEUE: usize = 256;

impl RelayPath {
    /// The writer task ends when the last clone of the path is dropped.
    pub(super) fn new(connection: quinn::Connection) -> Self {
        let (records, mut queue) = mpsc::channel::<Vec<u8>>(RELAY_STREAM_QUEUE);
        let writer = connection.clone();
        tokio::spawn(async move {
            let mut stream: Option<quinn::SendStream> = None;
            while let Some(record) = queue.recv().await {
                if stream.is_none() {
                    stream = writer.open_uni().await.ok();
                }
                let Some(open) = stream.as_mut() else {
                    continue; // The connection is gone; its owner will notice.
                };
                if let Err(e) = open.write_all(&record).await {
                    tracing::debug!(error = %e, "relay stream write failed; opening another");
                    stream = None;
                }
            }
        });
        Self {
            connection,
            records,
        }
    }
}

/// Peers the relay-only instance said it has no connection to.
#[derive(Default)]
struct Absent(HashMap<NodePublicKey, Bypass>);

struct Bypass {
    /// Until then frames go through the controller alone.
    until: Instant,
    /// A probe went to the instance when `until` last passed.
    probing: bool,
}

/// Which relay a frame for a peer goes through.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Instance,
    Controller,
    /// Through the controller, and to the instance as a probe.
    Both,
}

impl Absent {
    fn notice(&mut self, peer: NodePublicKey, now: Instant) {
        self.0.insert(
            peer,
            Bypass {
                until: now + ABSENT_HOLD,
                probing: false,
            },
        );
    }

    fn route(&mut self, peer: &NodePublicKey) -> Route {
        if self.0.is_empty() {
            return Route::Instance;
        }
        self.route_at(peer, Instant::now())
    }

    fn route_at(&mut self, peer: &NodePublicKey, now: Instant) -> Route {
        let Some(bypass) = self.0.get_mut(peer) else {
            return Route::Instance;
        };
        if now < bypass.until {
            Route::Controller
        } else if bypass.probing {
            // The last probe drew no notice: the peer is there now.
            self.0.remove(peer);
            Route::Instance
        } else {
            bypass.probing = true;
            bypass.until = now + ABSENT_HOLD;
            Route::Both
        }
    }
}

/// A connection to the relay-only instance a controller named, kept open
/// with backoff for as long as the controller connection lasts.
pub(super) struct RelayInstance {
    task: tokio::task::JoinHandle<()>,
}

impl RelayInstance {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn spawn(
        controller: String,
        target: String,
        fingerprint: String,
        key: NodePrivateKey,
        events: mpsc::UnboundedSender<ControlEvent>,
        routes: RelayRoutes,
        path: watch::Sender<Option<RelayPath>>,
        absent: mpsc::Sender<NodePublicKey>,
    ) -> Self {
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                // Pinned to the fingerprint the controller named.
                let seen = Arc::new(Mutex::new(None));
                match open_link(
                    &target,
                    Some(fingerprint.clone()),
                    &seen,
                    &key,
                    INSTANCE_LIVENESS,
                    Fallback::Tcp,
                )
                .await
                {
                    Ok(mut link) => {
                        tracing::info!(%target, "relaying through the relay-only instance");
                        backoff = Duration::from_secs(1);
                        // The readers hold the connection too: close it
                        // when this task ends, also when it is aborted.
                        let _close = CloseOnDrop(link.connection.clone());
                        let mut readers = spawn_relay_reader(
                            link.connection.clone(),
                            &controller,
                            routes.clone(),
                            Some(absent.clone()),
                        );
                        path.send_replace(Some(RelayPath::new(link.connection.clone())));
                        let _ = events.send(ControlEvent::RelayServer {
                            controller: controller.clone(),
                            relay: Some(target.clone()),
                        });
                        // It has nothing to say but errors; the link lasts
                        // as long as its control stream.
                        loop {
                            tokio::select! {
                                message = link.frames.recv() => match message {
                                    Some(Ok(message)) => tracing::debug!(?message, "from the relay-only instance"),
                                    _ => break,
                                },
                                // This task dies with it: the control link notices.
                                error = panicked(&mut readers) => panic!("relay reader: {error}"),
                            }
                        }
                        path.send_replace(None);
                        let _ = events.send(ControlEvent::RelayServer {
                            controller: controller.clone(),
                            relay: None,
                        });
                        tracing::info!(%target, "relay-only instance lost: relaying through the controller");
                    }
                    Err(e) => {
                        tracing::info!(%target, error = %format!("{e:#}"), retry_in = ?backoff, "relay-only instance unreachable: relaying through the controller");
                    }
                }
                let jitter = Duration::from_millis(u64::from(rand_core::OsRng.next_u32() % 500));
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        Self { task }
    }

    /// Waits until the instance's task dies (it runs until dropped
    /// otherwise), and says how.
    pub(super) async fn died(&mut self) -> String {
        match (&mut self.task).await {
            Err(e) => crate::daemon::supervisor::join_error_message(e),
            Ok(()) => "ended".to_owned(),
        }
    }
}

impl Drop for RelayInstance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct CloseOnDrop(quinn::Connection);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(0u32.into(), b"done");
    }
}

/// Sends one packet to the relay: as a datagram if it fits, else as a
/// record on the path's stream, so that no packet is too large for the relay.
fn send_relay(path: &RelayPath, out: RelayOut, seq: u64) {
    if out.payload.len() > MAX_WIREGUARD_DATAGRAM {
        tracing::debug!(
            len = out.payload.len(),
            "larger than any WireGuard packet: not relayed"
        );
        return;
    }
    let frame = RelayFrame {
        network_id: out.network,
        peer: out.peer,
        seq,
        payload: out.payload,
    };
    let len = relay::HEADER_LEN + frame.payload.len();
    let fits = path
        .connection
        .max_datagram_size()
        .is_some_and(|max| len <= max);
    if fits {
        if let Err(e) = path.connection.send_datagram(frame.encode().into()) {
            tracing::debug!(error = %e, "relay datagram not sent");
        }
        return;
    }
    if path.records.try_send(frame.encode_record()).is_err() {
        tracing::debug!("relay stream backed up: packet dropped");
    }
}

/// Where a relay connection's frames go: packets straight to the data
/// plane of the network they are for, if it was joined through this
/// controller; absence notices (only a relay-only instance's count) to the
/// control loop.
#[derive(Clone)]
struct RelayInbox {
    /// The controller whose relay (its own or its relay-only instance) this is.
    controller: String,
    routes: RelayRoutes,
    absent: Option<mpsc::Sender<NodePublicKey>>,
}

/// Takes packets from the relay off the connection: datagrams, and the
/// records of its streams. The readers end with the connection; a reader
/// that panics ends its task with the panic (the stream readers' too), for
/// the owner of the set to notice.
pub(super) fn spawn_relay_reader(
    connection: quinn::Connection,
    controller: &str,
    routes: RelayRoutes,
    absent: Option<mpsc::Sender<NodePublicKey>>,
) -> JoinSet<()> {
    let inbox = RelayInbox {
        controller: controller.to_owned(),
        routes,
        absent,
    };
    let streams = connection.clone();
    let stream_inbox = inbox.clone();
    let mut readers = JoinSet::new();
    readers.spawn(async move {
        let mut records = JoinSet::new();
        loop {
            tokio::select! {
                stream = streams.accept_uni() => match stream {
                    Ok(stream) => {
                        records.spawn(read_records(stream, stream_inbox.clone()));
                    }
                    Err(_) => return,
                },
                Some(Err(e)) = records.join_next() => {
                    if e.is_panic() {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
            }
        }
    });
    readers.spawn(async move {
        while let Ok(bytes) = connection.read_datagram().await {
            inbox.deliver(&bytes);
        }
    });
    readers
}

/// Waits until a task of `tasks` panics, and says how; pending while none
/// does (tasks that end are reaped).
pub(super) async fn panicked(tasks: &mut JoinSet<()>) -> String {
    loop {
        match tasks.join_next().await {
            Some(Err(e)) if e.is_panic() => {
                return crate::daemon::supervisor::panic_message(e.into_panic())
            }
            Some(_) => {}
            None => std::future::pending().await,
        }
    }
}

/// Delivers every record of one relay stream, until it ends or breaks.
async fn read_records(mut stream: quinn::RecvStream, inbox: RelayInbox) {
    let mut prefix = [0u8; relay::RECORD_PREFIX_LEN];
    while stream.read_exact(&mut prefix).await.is_ok() {
        let Ok(len) = relay::record_len(prefix) else {
            tracing::debug!("bad relay record length from the relay");
            return;
        };
        let mut frame = vec![0u8; len];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        inbox.deliver(&frame);
    }
}

impl RelayInbox {
    fn deliver(&self, bytes: &[u8]) {
        match RelayFrame::decode(bytes) {
            Ok(frame) if frame.is_absence_notice() => match &self.absent {
                Some(absent) => {
                    tracing::debug!(peer = %frame.peer.short(), "relay-only instance cannot reach peer: relaying it through the controller");
                    let _ = absent.try_send(frame.peer);
                }
                None => tracing::debug!("absence notice from the controller ignored"),
            },
            Ok(frame) => {
                let network = frame.network_id;
                match self.routes.deliver(network, frame.peer, frame.payload) {
                    Ok(()) => {}
                    // Counted by the network's data plane, shown in `status`.
                    Err(e @ (RelayInDrop::QueueFull | RelayInDrop::Oversized(_))) => {
                        tracing::trace!(%network, error = %e, "relayed packet dropped");
                    }
                    Err(e @ RelayInDrop::NotRouted) => {
                        tracing::debug!(%network, controller = %self.controller, error = %e, "relayed packet dropped");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "bad relay frame from controller"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_peer_goes_through_the_controller_and_the_instance_is_probed() {
        let peer = NodePrivateKey::generate().public_key();
        let other = NodePrivateKey::generate().public_key();
        let mut absent = Absent::default();
        assert_eq!(absent.route(&peer), Route::Instance);
        let t0 = Instant::now();
        absent.notice(peer, t0);
        assert_eq!(
            absent.route_at(&peer, t0 + ABSENT_HOLD / 2),
            Route::Controller
        );
        assert_eq!(absent.route_at(&other, t0), Route::Instance);
        // The hold is over: one frame probes the instance, the rest wait.
        let t1 = t0 + ABSENT_HOLD;
        assert_eq!(absent.route_at(&peer, t1), Route::Both);
        assert_eq!(absent.route_at(&peer, t1), Route::Controller);
        // The probe drew a notice: still absent, and probed again later.
        absent.notice(peer, t1);
        let t2 = t1 + ABSENT_HOLD;
        assert_eq!(absent.route_at(&peer, t2), Route::Both);
        // This probe drew none: the peer is there.
        assert_eq!(absent.route_at(&peer, t2 + ABSENT_HOLD), Route::Instance);
        assert!(absent.0.is_empty());
    }

    #[tokio::test]
    async fn a_panicking_reader_is_told_apart_from_one_that_ended() {
        let mut tasks = JoinSet::new();
        tasks.spawn(async {});
        tasks.spawn(async {
            tokio::task::yield_now().await;
            panic!("bad frame handling")
        });
        assert_eq!(panicked(&mut tasks).await, "bad frame handling");
        // Only ended ones left: it waits.
        tasks.spawn(async {});
        let wait = tokio::time::timeout(Duration::from_millis(50), panicked(&mut tasks));
        assert!(wait.await.is_err(), "no panic, no end");
    }
}
