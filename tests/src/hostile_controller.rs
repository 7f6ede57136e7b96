//! A hostile controller for the security suites, built on `warren_proto`:
//! it speaks the control protocol (Challenge, accepts any Auth, Welcome),
//! answers a node's Join for its own network with a member's netmap, and
//! then, on command, pushes messages about networks the node joined
//! through another controller.

use std::net::SocketAddr;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use ipnet::IpNet;
use quinn::crypto::rustls::QuicServerConfig;
use rand_core::RngCore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, oneshot};
use warren_proto::control::{self, ControllerMessage, JoinOutcome, NodeMessage};
use warren_proto::netmap::{DnsConfig, Netmap, NetmapDelta, NetworkSettings, SelfNode};
use warren_proto::{NetworkId, NodeId, NodePrivateKey, NodePublicKey};

use crate::error::{LabError, Result};
use crate::in_netns::{self, NetnsThread};
use crate::netns::Netns;
use crate::wait::{self, Poll};

/// The name the agent expects in the certificate.
const SERVER_NAME: &str = "warren-controller";

/// The zone of the hostile controller's own network.
pub const OWN_ZONE: &str = "hostile.warren.internal";

/// Something the hostile controller says about a network it does not own.
#[derive(Debug, Clone)]
pub enum Attack {
    /// A full netmap that keeps the node a member, at `version`, with
    /// other addresses and no peers.
    Netmap { network: NetworkId, version: u64 },
    /// A delta on `base_version` that revokes the node and drops its peers.
    RevokeDelta {
        network: NetworkId,
        base_version: u64,
    },
    /// A refused join.
    Refuse { network: NetworkId },
    /// "Peer `from` asks you to probe `endpoints` now."
    CallMeMaybe {
        network: NetworkId,
        from: NodePublicKey,
        endpoints: Vec<SocketAddr>,
    },
    /// A full netmap for its own network: the node named `name`, under
    /// `zone`, with `mtu`.
    OwnNetmap {
        version: u64,
        name: String,
        zone: String,
        mtu: u16,
    },
    /// Any message, as is.
    Raw(Box<ControllerMessage>),
    /// Any message, to the node whose key is `node` only.
    ForNode {
        node: NodePublicKey,
        message: Box<ControllerMessage>,
    },
    /// `count` relay frames "from `from`" with `payload_len` bytes of
    /// garbage each, for `network` (its own if `None`), as records on a
    /// stream of the connection (a datagram could not carry large ones).
    Relay {
        network: Option<NetworkId>,
        from: NodePublicKey,
        payload_len: usize,
        count: u32,
    },
}

impl Attack {
    fn message(&self, node: &NodePublicKey, own: NetworkId) -> ControllerMessage {
        match self {
            Attack::OwnNetmap {
                version,
                name,
                zone,
                mtu,
            } => {
                let mut map = own_netmap(own, node, name);
                map.version = *version;
                map.self_node.fqdn = format!("{name}.{zone}");
                map.dns.zone.clone_from(zone);
                map.settings.mtu = *mtu;
                ControllerMessage::Netmap(map)
            }
            Attack::Netmap { network, version } => ControllerMessage::Netmap(Netmap {
                network_id: *network,
                network_name: "hijacked".into(),
                version: *version,
                self_node: self_node(node, "hijacked", "10.147.200.200/16"),
                peers: Vec::new(),
                dns: DnsConfig {
                    zone: "hijacked.warren.internal".into(),
                    services: Vec::new(),
                },
                settings: NetworkSettings {
                    mtu: 1280,
                    stun_ports: Vec::new(),
                    sites: Vec::new(),
                },
                filter: None,
            }),
            Attack::RevokeDelta {
                network,
                base_version,
            } => {
                let mut revoked = self_node(node, "revoked", "10.147.200.200/16");
                revoked.authorized = false;
                revoked.addresses.clear();
                ControllerMessage::NetmapDelta(NetmapDelta {
                    network_id: *network,
                    base_version: *base_version,
                    version: base_version.saturating_add(1000),
                    self_node: Some(revoked),
                    network_name: None,
                    dns: None,
                    settings: None,
                    filter: None,
                    filter_removed: false,
                    upsert_peers: Vec::new(),
                    remove_peers: Vec::new(),
                })
            }
            Attack::Refuse { network } => ControllerMessage::JoinResult {
                network_id: *network,
                sign_in_url: None,
                sign_in_refused: None,
                result: JoinOutcome::Refused {
                    reason: "hijacked".into(),
                },
            },
            Attack::CallMeMaybe {
                network,
                from,
                endpoints,
            } => ControllerMessage::CallMeMaybe {
                network_id: *network,
                from: *from,
                endpoints: endpoints.clone(),
                nat: None,
            },
            Attack::Raw(message) | Attack::ForNode { message, .. } => (**message).clone(),
            // Sent on a stream of its own by `session`; this is never used.
            Attack::Relay { .. } => ControllerMessage::Welcome {
                relay: None,
                relay_fingerprint: None,
                accepts_paths: false,
                replicas: Vec::new(),
            },
        }
    }
}

/// A member's self node under [`OWN_ZONE`], authorized, at `address`
/// (with its prefix length).
pub fn self_node(node: &NodePublicKey, name: &str, address: &str) -> SelfNode {
    SelfNode {
        node_id: NodeId::from_key(node),
        name: name.to_owned(),
        fqdn: format!("{name}.{OWN_ZONE}"),
        addresses: address.parse::<IpNet>().into_iter().collect(),
        authorized: true,
        owner: None,
        expires_at: None,
        expired: false,
        routes: Vec::new(),
    }
}

/// The hostile controller's own network as a member sees it.
pub fn own_netmap(network: NetworkId, node: &NodePublicKey, name: &str) -> Netmap {
    Netmap {
        network_id: network,
        network_name: "hostile".into(),
        version: 1,
        self_node: self_node(node, name, "10.201.0.2/24"),
        peers: Vec::new(),
        dns: DnsConfig {
            zone: OWN_ZONE.into(),
            services: Vec::new(),
        },
        settings: NetworkSettings {
            mtu: 1420,
            stun_ports: Vec::new(),
            sites: Vec::new(),
        },
        filter: None,
    }
}

/// A hostile controller serving on one address in a lab namespace until dropped.
pub struct HostileController {
    addr: SocketAddr,
    fingerprint: String,
    network: NetworkId,
    attacks: broadcast::Sender<Attack>,
    /// Networks whose Join it answered, in order.
    joined: Arc<Mutex<Vec<NetworkId>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<NetnsThread<anyhow::Result<()>>>,
}

impl std::fmt::Debug for HostileController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileController")
            .field("addr", &self.addr)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl HostileController {
    /// Starts serving QUIC on `addr` inside `ns`, with a fresh self-signed
    /// certificate and a network of its own.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<HostileController> {
        let invalid =
            |e: &dyn std::fmt::Display| LabError::Invalid(format!("hostile controller: {e}"));
        let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(|e| invalid(&e))?;
        let cert: CertificateDer<'static> = made.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let fingerprint = hex::encode(Sha256::digest(cert.as_ref()));
        let config = server_config(cert, key).map_err(|e| invalid(&format!("{e:#}")))?;
        let mut id = [0u8; 8];
        rand_core::OsRng.fill_bytes(&mut id);
        let network = NetworkId::from_bytes(id);
        let (attacks, _) = broadcast::channel(64);
        let joined = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, stop) = oneshot::channel();
        let (ready_tx, ready) = std_mpsc::channel();
        let serve = Serve {
            addr,
            config,
            network,
            attacks: attacks.clone(),
            joined: Arc::clone(&joined),
        };
        let thread = in_netns::spawn(ns.name(), move || serve.run(stop, ready_tx))?;
        match ready.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(invalid(&e)),
            Err(e) => return Err(invalid(&format!("did not start: {e}"))),
        }
        Ok(HostileController {
            addr,
            fingerprint,
            network,
            attacks,
            joined,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 of its certificate, hex, as `warren join --fingerprint` takes it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Its own network, which nodes may join.
    pub fn network(&self) -> NetworkId {
        self.network
    }

    /// Waits until a node's Join for its own network has been answered.
    pub fn wait_joined(&self, within: Duration) -> Result<()> {
        wait::until("a join at the hostile controller", within, || {
            let joined = self.joined.lock().map(|j| j.clone()).unwrap_or_default();
            Ok(if joined.contains(&self.network) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("joins answered: {joined:?}"))
            })
        })
    }

    /// Sends `attack` on every node connection open now.
    pub fn push(&self, attack: Attack) -> Result<()> {
        self.attacks
            .send(attack)
            .map(|_| ())
            .map_err(|_| LabError::Invalid("hostile controller: no node is connected".into()))
    }
}

impl Drop for HostileController {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("hostile controller ended with: {e:#}"),
                Err(e) => eprintln!("hostile controller thread: {e}"),
            }
        }
    }
}

fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<quinn::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![control::ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).context("QUIC TLS setup")?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

/// What the serving thread owns.
struct Serve {
    addr: SocketAddr,
    config: quinn::ServerConfig,
    network: NetworkId,
    attacks: broadcast::Sender<Attack>,
    joined: Arc<Mutex<Vec<NetworkId>>>,
}

impl Serve {
    fn run(
        self,
        stop: oneshot::Receiver<()>,
        ready: std_mpsc::Sender<std::result::Result<(), String>>,
    ) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        runtime.block_on(async move {
            let endpoint = match quinn::Endpoint::server(self.config.clone(), self.addr) {
                Ok(e) => {
                    let _ = ready.send(Ok(()));
                    e
                }
                Err(e) => {
                    let _ = ready.send(Err(format!("binding {}: {e}", self.addr)));
                    return Err(e).context("binding");
                }
            };
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    incoming = endpoint.accept() => {
                        let Some(incoming) = incoming else { break };
                        let attacks = self.attacks.subscribe();
                        let joined = Arc::clone(&self.joined);
                        let network = self.network;
                        tokio::spawn(async move {
                            if let Err(e) = session(incoming, network, attacks, joined).await {
                                eprintln!("hostile controller session: {e:#}");
                            }
                        });
                    }
                }
            }
            endpoint.close(0u32.into(), b"bye");
            Ok(())
        })
    }
}

/// One node: the handshake, then Joins answered and attacks pushed.
async fn session(
    incoming: quinn::Incoming,
    network: NetworkId,
    mut attacks: broadcast::Receiver<Attack>,
    joined: Arc<Mutex<Vec<NetworkId>>>,
) -> anyhow::Result<()> {
    let connection = incoming.await.context("QUIC handshake")?;
    let (mut send, mut recv) = connection.accept_bi().await.context("control stream")?;
    let NodeMessage::Hello { node_key, .. } = read_frame(&mut recv).await? else {
        bail!("no Hello");
    };
    let mut nonce = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let challenge = ControllerMessage::Challenge {
        controller_key: NodePrivateKey::generate().public_key(),
        nonce,
    };
    write(&mut send, &challenge).await?;
    // The node proves its key to us; whether it did matters not to an attacker.
    let NodeMessage::Auth { .. } = read_frame(&mut recv).await? else {
        bail!("no Auth");
    };
    write(
        &mut send,
        &ControllerMessage::Welcome {
            relay: None,
            relay_fingerprint: None,
            accepts_paths: false,
            replicas: Vec::new(),
        },
    )
    .await?;
    let (frames_tx, mut frames) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let frame = read_frame(&mut recv).await;
            let failed = frame.is_err();
            if frames_tx.send(frame).await.is_err() || failed {
                return;
            }
        }
    });
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(NodeMessage::Join { network_id, name, .. })) if network_id == network => {
                    write(&mut send, &ControllerMessage::JoinResult {
                        network_id,
                        sign_in_url: None,
                        sign_in_refused: None,
                        result: JoinOutcome::Authorized,
                    }).await?;
                    write(&mut send, &ControllerMessage::Netmap(own_netmap(network, &node_key, &name))).await?;
                    if let Ok(mut j) = joined.lock() {
                        j.push(network_id);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok(()),
            },
            attack = attacks.recv() => match attack {
                Ok(Attack::Relay { network: target, from, payload_len, count }) => {
                    send_relay(&connection, target.unwrap_or(network), from, payload_len, count).await?;
                }
                Ok(Attack::ForNode { node, .. }) if node != node_key => {}
                Ok(attack) => write(&mut send, &attack.message(&node_key, network)).await?,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Relay frames as records on one new stream, as a relay sends large ones.
async fn send_relay(
    connection: &quinn::Connection,
    network: NetworkId,
    from: NodePublicKey,
    payload_len: usize,
    count: u32,
) -> anyhow::Result<()> {
    let mut stream = connection.open_uni().await.context("relay stream")?;
    for seq in 0..count {
        let frame = warren_proto::relay::RelayFrame {
            network_id: network,
            peer: from,
            seq: u64::from(seq) + 1,
            payload: vec![0x04; payload_len],
        };
        stream
            .write_all(&frame.encode_record())
            .await
            .context("writing a relay record")?;
    }
    stream.finish().context("finishing the relay stream")?;
    Ok(())
}

async fn write(send: &mut quinn::SendStream, message: &ControllerMessage) -> anyhow::Result<()> {
    let frame = control::encode_frame(message)?;
    send.write_all(&frame).await.context("writing a frame")?;
    Ok(())
}

async fn read_frame(recv: &mut quinn::RecvStream) -> anyhow::Result<NodeMessage> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.context("frame length")?;
    let mut body = vec![0u8; control::frame_len(prefix)?];
    recv.read_exact(&mut body).await.context("frame body")?;
    Ok(control::decode_frame(&body)?)
}
