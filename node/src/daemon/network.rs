//! One network's data plane: its TUN, its UDP socket and its engine, on one task.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use ipnet::IpNet;
use rand_core::RngCore;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use warren_engine::{Engine, EngineConfig, Event, PeerConfig, PeerSnapshot};
use warren_proto::local_api::Counters;
use warren_proto::NodePrivateKey;

use super::datapath::{DataPath, GsoBatch, TunReader, TunWriter, UdpReader};
use crate::platform::tun::{routes_needed, Tun};
use crate::platform::udp::Udp;

/// What a network's data plane is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// `static` or the network ID, for logs.
    pub label: String,
    pub interface: String,
    pub mtu: u16,
    pub addresses: Vec<IpNet>,
    pub listen_port: u16,
    pub offload: bool,
}

/// What the data plane reports about itself.
#[derive(Debug, Clone)]
pub struct NetworkReport {
    pub interface: String,
    pub listen_port: u16,
    pub offload: bool,
    pub peers: Vec<PeerSnapshot>,
    pub counters: Counters,
}

enum Command {
    SetPeers(Vec<PeerConfig>),
    Report(oneshot::Sender<NetworkReport>),
    Stop,
}

/// The running data plane of one network; stop it with [`NetworkHandle::stop`].
pub struct NetworkHandle {
    pub spec: NetworkSpec,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl NetworkHandle {
    /// Creates the TUN and the socket (errors come back here) and starts the loop.
    pub fn start(spec: NetworkSpec, key: NodePrivateKey) -> anyhow::Result<Self> {
        let tun = Tun::create(&spec.interface, spec.mtu, &spec.addresses, spec.offload)?;
        let udp = Udp::bind(spec.listen_port).with_context(|| format!("network {}", spec.label))?;
        tracing::info!(
            network = %spec.label,
            interface = %tun.name,
            offload = tun.offload,
            gso_segments = udp.max_segments(),
            port = udp.local_port(),
            "data plane up"
        );
        let engine = Engine::new(EngineConfig::new(key, rand_core::OsRng.next_u32()));
        let (commands, rx) = mpsc::channel(16);
        let task = tokio::spawn(run(spec.clone(), engine, tun, udp, rx));
        Ok(Self {
            spec,
            commands,
            task,
        })
    }

    /// Makes the engine's peers exactly `peers`, keeping the sessions of those that stay.
    pub async fn set_peers(&self, peers: Vec<PeerConfig>) {
        let _ = self.commands.send(Command::SetPeers(peers)).await;
    }

    pub async fn report(&self) -> Option<NetworkReport> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Report(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Stops the loop and waits until the TUN is gone, so its name is free again.
    pub async fn stop(self) {
        let _ = self.commands.send(Command::Stop).await;
        let _ = self.task.await;
    }
}

async fn run(
    spec: NetworkSpec,
    mut engine: Engine,
    tun: Tun,
    udp: Udp,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut tun_reader = TunReader::new(spec.mtu);
    let mut udp_reader = UdpReader::new();
    let mut writer = TunWriter::new();
    let mut batch = GsoBatch::new(udp.max_segments());
    let mut scratch = vec![0u8; 65_536 + warren_engine::DATA_OVERHEAD];
    loop {
        flush_engine(&mut engine, &udp, &spec.label).await;
        let deadline = engine
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let mut path = DataPath {
            engine: &mut engine,
            tun: &tun,
            udp: &udp,
            scratch: &mut scratch,
            batch: &mut batch,
            writer: &mut writer,
        };
        tokio::select! {
            read = tun_reader.read(&tun) => path.handle_tun_read(&mut tun_reader, read).await,
            ready = udp.socket.readable() => match ready {
                Ok(()) => path.handle_udp_readable(&mut udp_reader).await,
                Err(e) => tracing::warn!(error = %e, "UDP socket failed"),
            },
            () = tokio::time::sleep_until(deadline.into()) => engine.handle_timeout(Instant::now()),
            command = commands.recv() => match command {
                Some(Command::SetPeers(peers)) => set_peers(&mut engine, &tun, &spec, peers),
                Some(Command::Report(reply)) => {
                    let _ = reply.send(NetworkReport {
                        interface: tun.name.clone(),
                        listen_port: udp.local_port(),
                        offload: tun.offload,
                        peers: engine.peers(),
                        counters: engine.counters().clone(),
                    });
                }
                Some(Command::Stop) | None => break,
            },
        }
    }
    tracing::info!(network = %spec.label, interface = %tun.name, "data plane down");
}

fn set_peers(engine: &mut Engine, tun: &Tun, spec: &NetworkSpec, peers: Vec<PeerConfig>) {
    let now = Instant::now();
    let wanted: std::collections::BTreeSet<_> = peers.iter().map(|p| p.public_key).collect();
    for key in engine.peer_keys() {
        if !wanted.contains(&key) {
            engine.remove_peer(&key);
            tracing::info!(network = %spec.label, peer = %key.short(), "peer removed");
        }
    }
    let allowed: Vec<IpNet> = peers.iter().flat_map(|p| p.allowed_ips.clone()).collect();
    if let Err(e) = tun.add_routes(&routes_needed(&spec.addresses, &allowed)) {
        tracing::warn!(network = %spec.label, error = %e, "could not add routes");
    }
    for peer in peers {
        let key = peer.public_key;
        if let Err(e) = engine.upsert_peer(peer, now) {
            tracing::warn!(network = %spec.label, peer = %key.short(), error = %e, "peer refused");
        }
    }
}

/// Sends what the engine queued off the hot path and logs its state changes.
async fn flush_engine(engine: &mut Engine, udp: &Udp, label: &str) {
    while let Some(transmit) = engine.poll_transmit() {
        let len = transmit.payload.len();
        if let Err(e) = udp.send(transmit.to, &transmit.payload, len).await {
            tracing::debug!(error = %e, to = %transmit.to, "UDP send failed");
        }
    }
    while let Some(event) = engine.poll_event() {
        match event {
            Event::HandshakeCompleted { peer } => {
                tracing::debug!(network = label, peer = %peer.short(), "handshake completed");
            }
            Event::EndpointChanged { peer, endpoint } => {
                tracing::info!(network = label, peer = %peer.short(), %endpoint, "peer endpoint changed");
            }
            Event::SessionExpired { peer } => {
                tracing::info!(network = label, peer = %peer.short(), "session expired");
            }
        }
    }
}

/// The candidates a node reports for a network: its interface addresses
/// (minus loopback and link-local) with the network's port.
pub fn local_endpoints(port: u16, exclude: &[IpNet]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for addr in crate::platform::ifaddrs::addresses() {
        let skip = addr.is_loopback()
            || matches!(addr, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
            || exclude.iter().any(|n| n.contains(&addr));
        if !skip {
            out.push(SocketAddr::new(addr, port));
        }
    }
    out.sort();
    out.dedup();
    out
}
