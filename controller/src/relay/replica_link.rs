//! Relayed packets between replicas. Two nodes connected to different
//! replicas of one controller still relay to each other: a frame whose
//! destination has no connection here goes to the replica that holds one
//! (the database says which, [`Store::replica_holding`]), over a QUIC
//! connection between the two replicas, and that replica hands it to the
//! destination's connections as if it had come in there.
//!
//! A replica dials another like a node does, pinning the certificate they
//! share, and proves the key they share: the controller's own. Only a
//! holder of that key gets this kind of link; on it, every frame is a
//! [`RelayFrame`] whose `peer` is the destination and whose payload starts
//! with the sender's key. The sending replica checked the frame (sender
//! and destination are peers, replay, quota) before passing it on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::Connection;
use tokio::sync::mpsc;
use warren_proto::control::{self, ControllerMessage, NodeMessage};
use warren_proto::pinning::PinnedVerifier;
use warren_proto::relay::RelayFrame;
use warren_proto::{NetworkId, NodePrivateKey, NodePublicKey};

use super::{Relay, STREAM_QUEUE};
use crate::control::frames::{read_message, write_message};
use crate::metrics::{RelayDrop, RelayRefusal};
use crate::store::Store;

/// How long where a node is connected is remembered.
const LOCATE_TTL: Duration = Duration::from_secs(1);
/// Nodes whose place is remembered at once; beyond, the oldest go.
const MAX_LOCATED: usize = 65_536;
/// After a failed dial, the next waits this long.
const REDIAL_AFTER: Duration = Duration::from_secs(2);
/// The whole dial, from QUIC to `Welcome`.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const KEEP_ALIVE: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// The TLS name replicas are dialled by, as nodes do.
const SERVER_NAME: &str = "warren-controller";

/// One replica's link to another.
struct Peer {
    /// Kept so the socket lives as long as the connection.
    _endpoint: quinn::Endpoint,
    connection: Connection,
    seq: AtomicU64,
    records: mpsc::Sender<(Vec<u8>, usize)>,
}

enum PeerState {
    Dialing,
    Up(Arc<Peer>),
    Failed(Instant),
}

/// This replica's links to the others, made when first needed.
pub struct ReplicaLinks {
    /// The controller's key, which every replica holds.
    key: NodePrivateKey,
    /// The certificate every replica serves.
    fingerprint: String,
    store: Arc<dyn Store>,
    relay: Arc<Relay>,
    peers: Mutex<HashMap<String, PeerState>>,
    located: Mutex<HashMap<NodePublicKey, (Option<String>, Instant)>>,
}

impl ReplicaLinks {
    pub fn new(
        key: NodePrivateKey,
        fingerprint: String,
        store: Arc<dyn Store>,
        relay: Arc<Relay>,
    ) -> Arc<Self> {
        Arc::new(Self {
            key,
            fingerprint,
            store,
            relay,
            peers: Mutex::new(HashMap::new()),
            located: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `key` is the key replicas prove on their links.
    pub fn is_replica(&self, key: &NodePublicKey) -> bool {
        *key == self.key.public_key()
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<String, PeerState>> {
        // Every update leaves the map consistent.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Passes a checked frame from `from` to `to` on to the replica that
    /// holds `to`; false if none does, or its link is not up yet (the
    /// frame is lost, as on a link that drops; the next one may pass).
    pub async fn send(
        self: &Arc<Self>,
        network: NetworkId,
        from: NodePublicKey,
        to: &NodePublicKey,
        payload: &[u8],
    ) -> bool {
        let Some(address) = self.locate(to).await else {
            return false;
        };
        let peer = {
            let mut peers = self.peers();
            match peers.get(&address) {
                Some(PeerState::Up(peer)) if peer.connection.close_reason().is_none() => {
                    Some(peer.clone())
                }
                Some(PeerState::Dialing) => None,
                Some(PeerState::Failed(at)) if at.elapsed() < REDIAL_AFTER => None,
                _ => {
                    peers.insert(address.clone(), PeerState::Dialing);
                    tokio::spawn(self.clone().dial(address.clone()));
                    None
                }
            }
        };
        let Some(peer) = peer else {
            return false;
        };
        let mut body = Vec::with_capacity(32 + payload.len());
        body.extend_from_slice(from.as_bytes());
        body.extend_from_slice(payload);
        let frame = RelayFrame {
            network_id: network,
            peer: *to,
            seq: peer.seq.fetch_add(1, Ordering::Relaxed) + 1,
            payload: body,
        };
        let encoded = frame.encode();
        let fits = peer
            .connection
            .max_datagram_size()
            .is_some_and(|max| encoded.len() <= max);
        if fits && peer.connection.send_datagram(encoded.into()).is_ok() {
            return true;
        }
        if peer
            .records
            .try_send((frame.encode_record(), payload.len()))
            .is_err()
        {
            self.relay
                .metrics()
                .count_relay_dropped(RelayDrop::Congested);
        }
        true
    }

    /// Where the replica holding `to` is, remembered for [`LOCATE_TTL`].
    async fn locate(&self, to: &NodePublicKey) -> Option<String> {
        {
            let located = self.located.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((address, at)) = located.get(to) {
                if at.elapsed() < LOCATE_TTL {
                    return address.clone();
                }
            }
        }
        let address = match self.store.replica_holding(to).await {
            Ok(address) => address,
            Err(error) => {
                tracing::debug!(%error, "finding the replica that holds a relay destination");
                None
            }
        };
        let mut located = self.located.lock().unwrap_or_else(|p| p.into_inner());
        if located.len() >= MAX_LOCATED {
            located.retain(|_, (_, at)| at.elapsed() < LOCATE_TTL);
            if located.len() >= MAX_LOCATED {
                located.clear();
            }
        }
        located.insert(*to, (address.clone(), Instant::now()));
        address
    }

    async fn dial(self: Arc<Self>, address: String) {
        let outcome = tokio::time::timeout(DIAL_TIMEOUT, self.connect(&address)).await;
        let state = match outcome {
            Ok(Ok((peer, control))) => {
                tracing::info!(replica = %address, "relaying to another replica");
                let connection = peer.connection.clone();
                let me = self.clone();
                let gone = address.clone();
                tokio::spawn(async move {
                    // The control stream stays open as long as the link.
                    let _control = control;
                    let reason = connection.closed().await;
                    tracing::info!(replica = %gone, %reason, "link to another replica closed");
                    me.peers().insert(gone, PeerState::Failed(Instant::now()));
                });
                PeerState::Up(peer)
            }
            Ok(Err(error)) => {
                tracing::warn!(replica = %address, error = %format!("{error:#}"), "could not link to another replica");
                PeerState::Failed(Instant::now())
            }
            Err(_) => {
                tracing::warn!(replica = %address, "linking to another replica timed out");
                PeerState::Failed(Instant::now())
            }
        };
        self.peers().insert(address, state);
    }

    /// Dials `address` and proves the controller's key, as a node proves
    /// its own.
    async fn connect(
        &self,
        address: &str,
    ) -> anyhow::Result<(Arc<Peer>, (quinn::SendStream, quinn::RecvStream))> {
        let remote: SocketAddr = tokio::net::lookup_host(address)
            .await
            .with_context(|| format!("resolving {address}"))?
            .next()
            .with_context(|| format!("{address} has no address"))?;
        let bind: SocketAddr = if remote.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(bind).context("opening a QUIC endpoint")?;
        endpoint.set_default_client_config(self.client_config()?);
        let connection = endpoint
            .connect(remote, SERVER_NAME)
            .context("starting QUIC")?
            .await
            .with_context(|| format!("connecting to {address}"))?;
        let (mut send, mut recv) = connection.open_bi().await.context("control stream")?;
        write(
            &mut send,
            &NodeMessage::Hello {
                node_key: self.key.public_key(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
        )
        .await?;
        let ControllerMessage::Challenge {
            controller_key,
            nonce,
        } = read(&mut recv).await?
        else {
            bail!("the replica did not send a challenge");
        };
        let mut exporter = [0u8; 32];
        connection
            .export_keying_material(&mut exporter, control::EXPORTER_LABEL, &nonce)
            .map_err(|_| anyhow::anyhow!("TLS exporter unavailable"))?;
        let proof = control::make_proof(&self.key, &controller_key, &exporter, &nonce)?;
        write(&mut send, &NodeMessage::Auth { proof }).await?;
        match read(&mut recv).await? {
            ControllerMessage::Welcome { .. } => {}
            ControllerMessage::Error { message, .. } => bail!("the replica refused: {message}"),
            other => bail!("the replica sent {other:?} instead of welcome"),
        }
        let (records, queue) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(super::write_records(
            connection.clone(),
            queue,
            self.relay.metrics().clone(),
        ));
        let peer = Arc::new(Peer {
            _endpoint: endpoint,
            connection,
            seq: AtomicU64::new(0),
            records,
        });
        Ok((peer, (send, recv)))
    }

    fn client_config(&self) -> anyhow::Result<quinn::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(Some(
                self.fingerprint.clone(),
            ))))
            .with_no_client_auth();
        tls.alpn_protocols = vec![control::ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).context("QUIC TLS")?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(IDLE_TIMEOUT).context("idle timeout")?,
        ));
        transport.datagram_receive_buffer_size(Some(4 << 20));
        transport.datagram_send_buffer_size(4 << 20);
        config.transport_config(Arc::new(transport));
        Ok(config)
    }
}

async fn write(send: &mut quinn::SendStream, message: &NodeMessage) -> anyhow::Result<()> {
    write_message(send, message)
        .await
        .context("writing to the replica")
}

async fn read(recv: &mut quinn::RecvStream) -> anyhow::Result<ControllerMessage> {
    read_message(recv, control::MAX_FRAME)
        .await
        .context("reading from the replica")
}

/// Serves a link from another replica until it closes: every frame on it
/// goes to the destination's connections here.
pub async fn serve(connection: Connection, relay: Arc<Relay>) {
    let (tx, mut rx) = mpsc::channel(super::intake::QUEUE);
    let datagrams = tokio::spawn(super::intake::read_datagrams(
        connection.clone(),
        tx.clone(),
    ));
    let streams = tokio::spawn(super::intake::read_streams(
        connection.clone(),
        tx,
        relay.clone(),
    ));
    while let Some(bytes) = rx.recv().await {
        if let Err(reason) = deliver(&relay, &bytes) {
            relay.count_refused(reason);
        }
    }
    datagrams.abort();
    streams.abort();
}

/// One frame from another replica, to its destination's connections here.
fn deliver(relay: &Relay, bytes: &[u8]) -> Result<(), RelayRefusal> {
    let frame = RelayFrame::decode(bytes).map_err(|_| RelayRefusal::Malformed)?;
    let (from, payload) = frame
        .payload
        .split_first_chunk::<32>()
        .ok_or(RelayRefusal::Malformed)?;
    let from = NodePublicKey::from_bytes(*from).map_err(|_| RelayRefusal::Malformed)?;
    if !relay.deliver(frame.network_id, from, &frame.peer, payload) {
        relay.metrics().count_relay_dropped(RelayDrop::Offline);
    }
    Ok(())
}
