//! The agent: sets up the TUN, the socket and the engine, then runs one event loop.

pub mod api;
pub mod datapath;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand_core::RngCore;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use warren_engine::{Engine, EngineConfig, Event};
use warren_proto::local_api::{PeerStatus, Status};

use crate::config::Config;
use crate::platform::tun::{routes_needed, Tun};
use crate::platform::udp::Udp;
use datapath::{DataPath, GsoBatch, TunReader, TunWriter, UdpReader};

/// A question from the local API to the event loop, which owns all state.
pub enum Request {
    Status(oneshot::Sender<Status>),
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: Config, socket_path: PathBuf) -> anyhow::Result<()> {
    let key = config.read_private_key()?;
    let node = &config.node;
    let tun = Tun::create(
        &node.interface_name,
        node.mtu,
        &node.addresses,
        node.offload,
    )?;
    let allowed: Vec<_> = config
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.clone())
        .collect();
    tun.add_routes(&routes_needed(&node.addresses, &allowed))?;
    let udp = Udp::bind(node.listen_port)?;
    tracing::info!(
        interface = %tun.name,
        offload = tun.offload,
        gso_segments = udp.max_segments(),
        gro_segments = udp.state.gro_segments(),
        port = udp.local_port(),
        public_key = %key.public_key(),
        "agent started"
    );

    let now = Instant::now();
    let mut engine = Engine::new(EngineConfig::new(key, rand_core::OsRng.next_u32()));
    for peer in &config.peers {
        engine
            .add_peer(
                warren_engine::PeerConfig {
                    public_key: peer.public_key,
                    endpoint: peer.endpoint,
                    allowed_ips: peer.allowed_ips.clone(),
                    persistent_keepalive: peer.persistent_keepalive,
                },
                now,
            )
            .with_context(|| format!("adding peer {}", peer.public_key))?;
    }

    let (requests, mut request_rx) = mpsc::channel(16);
    let _api = api::serve(&socket_path, requests)?;

    let mut tun_reader = TunReader::new(node.mtu);
    let mut udp_reader = UdpReader::new();
    let mut writer = TunWriter::new();
    let mut batch = GsoBatch::new(udp.max_segments());
    let mut scratch = vec![0u8; 65_536 + warren_engine::DATA_OVERHEAD];
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    let info = StaticInfo {
        interface: tun.name.clone(),
        listen_port: udp.local_port(),
        addresses: node.addresses.clone(),
        mtu: node.mtu,
        offload: tun.offload,
    };

    loop {
        flush_engine(&mut engine, &udp).await;
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
            Some(request) = request_rx.recv() => answer(&engine, &info, request),
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("agent stopping");
    let _ = std::fs::remove_file(&socket_path);
    Ok(())
}

/// Sends what the engine queued off the hot path and logs its state changes.
async fn flush_engine(engine: &mut Engine, udp: &Udp) {
    while let Some(transmit) = engine.poll_transmit() {
        let len = transmit.payload.len();
        if let Err(e) = udp.send(transmit.to, &transmit.payload, len).await {
            tracing::debug!(error = %e, to = %transmit.to, "UDP send failed");
        }
    }
    while let Some(event) = engine.poll_event() {
        match event {
            Event::HandshakeCompleted { peer } => {
                tracing::debug!(peer = %peer.short(), "handshake completed");
            }
            Event::EndpointChanged { peer, endpoint } => {
                tracing::info!(peer = %peer.short(), %endpoint, "peer endpoint changed");
            }
            Event::SessionExpired { peer } => {
                tracing::info!(peer = %peer.short(), "session expired");
            }
        }
    }
}

/// What the status report says about the agent itself.
struct StaticInfo {
    interface: String,
    listen_port: u16,
    addresses: Vec<ipnet::IpNet>,
    mtu: u16,
    offload: bool,
}

fn answer(engine: &Engine, info: &StaticInfo, request: Request) {
    match request {
        Request::Status(reply) => {
            let _ = reply.send(status(engine, info));
        }
    }
}

fn status(engine: &Engine, info: &StaticInfo) -> Status {
    let now = OffsetDateTime::now_utc();
    Status {
        public_key: engine.public_key(),
        interface: info.interface.clone(),
        listen_port: info.listen_port,
        addresses: info.addresses.clone(),
        mtu: info.mtu,
        offload: info.offload,
        peers: engine
            .peers()
            .into_iter()
            .map(|p| PeerStatus {
                public_key: p.public_key,
                addresses: p.allowed_ips,
                endpoint: p.endpoint.map(|e| e.to_string()),
                last_handshake: p.since_last_handshake.map(|d| now - d),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                persistent_keepalive: p.persistent_keepalive.map(|d| d.as_secs()),
            })
            .collect(),
        counters: engine.counters().clone(),
    }
}
