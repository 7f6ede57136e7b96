//! One simulated node: its own x25519 key, a QUIC connection pinned to the
//! controller's certificate, the real handshake and join, then a task that
//! applies every netmap and delta and reports what its map holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use quinn::crypto::rustls::QuicClientConfig;
use tokio::sync::mpsc;
use warren_proto::control::{self, ControllerMessage, JoinOutcome, NodeMessage};
use warren_proto::netmap::Netmap;
use warren_proto::pinning::PinnedVerifier;
use warren_proto::{NetworkId, NodeId, NodePrivateKey};

const SERVER_NAME: &str = "warren-controller";
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the simulated nodes tell the benchmark.
pub struct Fleet {
    /// Per node: how many peers in its current map are online.
    peers_online: Vec<AtomicUsize>,
    /// The node whose arrival in every map is being timed.
    target: Mutex<Option<NodeId>>,
    arrivals: mpsc::UnboundedSender<(NodeId, Instant)>,
    /// Control connections that ended while the benchmark ran.
    pub lost: AtomicUsize,
    pub last_loss: Mutex<Option<String>>,
    /// Deltas that did not apply (version gaps), each answered by a resync.
    pub resyncs: AtomicUsize,
}

impl Fleet {
    pub fn new(capacity: usize) -> (Arc<Self>, mpsc::UnboundedReceiver<(NodeId, Instant)>) {
        let (arrivals, rx) = mpsc::unbounded_channel();
        let fleet = Self {
            peers_online: (0..capacity).map(|_| AtomicUsize::new(0)).collect(),
            target: Mutex::new(None),
            arrivals,
            lost: AtomicUsize::new(0),
            last_loss: Mutex::new(None),
            resyncs: AtomicUsize::new(0),
        };
        (Arc::new(fleet), rx)
    }

    pub fn set_target(&self, node: NodeId) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(node);
    }

    /// How many of the first `nodes` see `peers` peers online.
    pub fn converged(&self, nodes: usize, peers: usize) -> usize {
        self.peers_online[..nodes]
            .iter()
            .filter(|n| n.load(Ordering::Relaxed) == peers)
            .count()
    }

    fn observe(&self, index: usize, map: &Netmap, reported: &mut Option<NodeId>) {
        let now = Instant::now();
        let online = map.peers.iter().filter(|p| p.online).count();
        self.peers_online[index].store(online, Ordering::Relaxed);
        let target = *self.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(target) = target {
            // Peers are sorted by node ID.
            let present = map.peers.binary_search_by_key(&target, |p| p.node_id);
            if *reported != Some(target) && present.is_ok() {
                *reported = Some(target);
                let _ = self.arrivals.send((target, now));
            }
        }
    }
}

/// Client endpoints (one UDP socket each) that trust only `fingerprint`.
pub fn endpoints(fingerprint: &str, count: usize) -> anyhow::Result<Vec<quinn::Endpoint>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedVerifier::new(Some(fingerprint.to_owned())));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![control::ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    // As the agent does.
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(20_000).into()));
    config.transport_config(Arc::new(transport));
    // Each socket stands in for hundreds of machines, so it gets the
    // controller's buffers: the kernel's default would drop bursts no
    // real node's socket sees.
    (0..count)
        .map(|_| {
            let socket = std::net::UdpSocket::bind(("127.0.0.1", 0))?;
            warren_controller::listen::widen_buffers(
                &socket,
                warren_controller::listen::QUIC_BUFFER_BYTES,
            );
            let runtime = quinn::default_runtime().context("no async runtime for QUIC")?;
            let mut endpoint =
                quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)?;
            endpoint.set_default_client_config(config.clone());
            Ok(endpoint)
        })
        .collect()
}

/// What one node does: who it is and how it joins.
pub struct Join {
    pub index: usize,
    pub network: NetworkId,
    pub preauth_key: Option<String>,
}

/// Connects, authenticates, joins and starts following netmaps; returns
/// the node's ID once its first map arrived.
pub async fn join(
    endpoint: quinn::Endpoint,
    server: SocketAddr,
    join: Join,
    fleet: Arc<Fleet>,
) -> anyhow::Result<NodeId> {
    tokio::time::timeout(JOIN_TIMEOUT, join_inner(endpoint, server, join, fleet))
        .await
        .context("join took longer than 30 s")?
}

async fn join_inner(
    endpoint: quinn::Endpoint,
    server: SocketAddr,
    join: Join,
    fleet: Arc<Fleet>,
) -> anyhow::Result<NodeId> {
    let key = NodePrivateKey::generate();
    let node_id = NodeId::from_key(&key.public_key());
    let connection = endpoint.connect(server, SERVER_NAME)?.await?;
    let (mut send, mut recv) = connection.open_bi().await?;
    let hello = NodeMessage::Hello {
        node_key: key.public_key(),
        version: "bench".into(),
    };
    write(&mut send, &hello).await?;
    let ControllerMessage::Challenge {
        controller_key,
        nonce,
    } = read(&mut recv).await?
    else {
        bail!("expected a challenge");
    };
    let mut exporter = [0u8; 32];
    connection
        .export_keying_material(&mut exporter, control::EXPORTER_LABEL, &nonce)
        .map_err(|_| anyhow::anyhow!("TLS exporter unavailable"))?;
    let proof = control::make_proof(&key, &controller_key, &exporter, &nonce)?;
    write(&mut send, &NodeMessage::Auth { proof }).await?;
    let welcome = read(&mut recv).await?;
    if !matches!(welcome, ControllerMessage::Welcome { .. }) {
        bail!("expected welcome, got {welcome:?}");
    }
    let expected = match join.preauth_key {
        Some(_) => JoinOutcome::Authorized,
        None => JoinOutcome::Pending,
    };
    let request = NodeMessage::Join {
        network_id: join.network,
        name: format!("sim-{}", join.index),
        preauth_key: join.preauth_key,
    };
    write(&mut send, &request).await?;
    let map = loop {
        match read(&mut recv).await? {
            ControllerMessage::JoinResult { result, .. } if result != expected => {
                bail!("join answered {result:?}, expected {expected:?}")
            }
            ControllerMessage::Netmap(map) => break map,
            ControllerMessage::Error { code, message, .. } => bail!("{code}: {message}"),
            _ => {}
        }
    };
    tokio::spawn(follow(connection, send, recv, map, join.index, fleet));
    Ok(node_id)
}

/// Applies everything the controller sends until the connection ends.
/// Owns the send half: dropping it would end the session.
async fn follow(
    _connection: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut map: Netmap,
    index: usize,
    fleet: Arc<Fleet>,
) {
    let mut reported = None;
    fleet.observe(index, &map, &mut reported);
    loop {
        let message = match read(&mut recv).await {
            Ok(m) => m,
            Err(e) => {
                fleet.lost.fetch_add(1, Ordering::Relaxed);
                let mut last = fleet.last_loss.lock().unwrap_or_else(|p| p.into_inner());
                let at = humantime::format_rfc3339_millis(std::time::SystemTime::now());
                *last = Some(format!("node {index} at {at}: {e:#}"));
                return;
            }
        };
        match message {
            ControllerMessage::Netmap(full) => map = full,
            ControllerMessage::NetmapDelta(delta) => {
                if map.apply(&delta).is_err() {
                    fleet.resyncs.fetch_add(1, Ordering::Relaxed);
                    let resync = NodeMessage::Resync {
                        network_id: map.network_id,
                    };
                    let _ = write(&mut send, &resync).await;
                    continue;
                }
            }
            _ => continue,
        }
        fleet.observe(index, &map, &mut reported);
    }
}

async fn write(send: &mut quinn::SendStream, message: &NodeMessage) -> anyhow::Result<()> {
    send.write_all(&control::encode_frame(message)?).await?;
    Ok(())
}

async fn read(recv: &mut quinn::RecvStream) -> anyhow::Result<ControllerMessage> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.context("frame length")?;
    let mut body = vec![0u8; control::frame_len(prefix)?];
    recv.read_exact(&mut body).await.context("frame body")?;
    Ok(control::decode_frame(&body)?)
}
