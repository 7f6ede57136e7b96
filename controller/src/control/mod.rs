//! The QUIC control server: nodes connect, prove their key, join networks,
//! receive netmaps, and relay packets to each other.
//!
//! [`connection`] runs the handshake, [`session`] the authenticated
//! protocol, [`crate::relay`] the relay frames on the same connection; this
//! module sets up TLS and the transport, binds the endpoint and accepts.

pub mod admission;
mod advertise;
pub mod connection;
pub mod frames;
mod grant_use;
mod path_report;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use warren_proto::control::{ALPN, TCP_ALPN};
use warren_proto::NodePrivateKey;
use warren_udp::stream::{ByteStream, Limits as StreamLimits, StreamSocket, Wrap};

use crate::data_dir::Identity;
use crate::hub::Hub;
use crate::relay::Relay;
use admission::Handshake;

/// A connection with no traffic for this long is gone (and its member
/// offline). Short, because subnet routes fail over to a standby router
/// when their primary goes offline: within 15 s of it going silent. QUIC
/// restarts the idle timer on our first ping after the last packet in,
/// so a dead node is noticed after at most `IDLE_TIMEOUT + KEEP_ALIVE`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8);
/// The controller pings idle connections this often, so NATs keep them
/// open and a live node answers (with an ACK) several times per timeout.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Relay datagrams buffered per connection, each way.
pub const DATAGRAM_BUFFER: usize = 4 * 1024 * 1024;
/// Relay streams a node may hold open at once. It needs one (frames too
/// large for a datagram go on it as records); the rest is room to open a
/// new one while a broken one is still being torn down.
pub const MAX_RELAY_STREAMS: u32 = 16;
/// Flow-control window of one relay stream. All of a node's large relay
/// frames share one stream, so this bounds its relayed throughput to about
/// window / round trip: 4 MiB is ~670 Mbit/s at 50 ms. The connection
/// window below bounds the total.
const RELAY_STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Flow-control window of a whole connection: bounds what a node may have
/// in flight towards us (control frames and relay frames).
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// Why the control server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlSetupError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Quic(String),
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Whether this process is a whole controller or only relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Membership, netmaps, call-me-maybe and the relay.
    Controller,
    /// Authentication and the relay only; control requests get
    /// `relay_only` errors. Membership is read from another controller's
    /// database and nothing is written.
    RelayOnly,
}

/// A relay-only instance that a controller names in every `Welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedRelay {
    /// `HOST:PORT`, as nodes dial it.
    pub address: String,
    /// SHA-256 of the instance's own certificate (lowercase hex), which
    /// nodes pin when they dial it.
    pub fingerprint: String,
}

/// What every session needs.
pub struct ControlContext {
    pub hub: Arc<Hub>,
    pub relay: Arc<Relay>,
    pub controller_key: NodePrivateKey,
    pub role: Role,
    /// The STUN ports every netmap advertises.
    pub stun_ports: Vec<u16>,
    /// The relay named in every `Welcome`.
    pub advertise_relay: Option<AdvertisedRelay>,
    /// Connections and joins per source address and per key.
    pub admission: admission::Admission,
    /// People signing devices in, where configured.
    pub sign_in: Option<Arc<crate::identity::SignIn>>,
}

/// The quinn server configuration: TLS 1.3 with the controller's certificate,
/// our ALPN only, short idle timeout, one bidirectional stream per node,
/// datagrams and unidirectional streams for relay frames.
pub fn server_config(identity: &Identity) -> Result<quinn::ServerConfig, ControlSetupError> {
    let tls = tls_config(identity, ALPN)?;
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|e| ControlSetupError::Quic(e.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(IDLE_TIMEOUT)
                .map_err(|e| ControlSetupError::Quic(e.to_string()))?,
        ))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_concurrent_uni_streams(MAX_RELAY_STREAMS.into())
        .max_concurrent_bidi_streams(1u32.into())
        .stream_receive_window(RELAY_STREAM_WINDOW.into())
        .receive_window(CONNECTION_WINDOW.into())
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_BUFFER);
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Binds the QUIC endpoint. With `fallback_v4`, an IPv6 wildcard address
/// that cannot be bound (no IPv6 on the host) is retried as 0.0.0.0.
pub fn bind(
    addr: SocketAddr,
    fallback_v4: bool,
    config: quinn::ServerConfig,
) -> Result<quinn::Endpoint, ControlSetupError> {
    let socket =
        crate::listen::bind_udp(addr, fallback_v4).map_err(|e| ControlSetupError::Bind {
            addr: e.addr,
            source: e.source,
        })?;
    let bound = socket.local_addr().unwrap_or(addr);
    crate::listen::widen_buffers(&socket, crate::listen::QUIC_BUFFER_BYTES);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| ControlSetupError::Bind {
        addr: bound,
        source,
    })
}

/// TLS 1.3 with the controller's certificate, offering `alpn` only.
fn tls_config(identity: &Identity, alpn: &[u8]) -> Result<rustls::ServerConfig, ControlSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.clone()], identity.cert_key.clone_key())?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}

/// The TLS handshake each QUIC-over-TCP connection starts with, so that
/// on the wire it is TLS (on port 443, as HTTPS is), with the certificate
/// nodes pin.
fn tls_wrap(identity: &Identity) -> Result<Wrap, ControlSetupError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(identity, TCP_ALPN)?));
    Ok(Arc::new(move |stream| {
        let acceptor = acceptor.clone();
        Box::pin(async move {
            let tls = acceptor.accept(stream).await?;
            Ok(Box::new(tls) as Box<dyn ByteStream>)
        })
    }))
}

/// Binds the QUIC-over-TCP listener for nodes whose networks block UDP
/// (`warren_udp::stream`): TLS with the controller's certificate, QUIC
/// inside it, served by a second endpoint as the UDP endpoint's are.
pub fn bind_tcp(
    addr: SocketAddr,
    fallback_v4: bool,
    identity: &Identity,
    config: quinn::ServerConfig,
) -> Result<quinn::Endpoint, ControlSetupError> {
    let wrap = tls_wrap(identity)?;
    let bind_error = |e: crate::listen::BindError| ControlSetupError::Bind {
        addr: e.addr,
        source: e.source,
    };
    let listener = crate::listen::bind_tcp(addr, fallback_v4).map_err(bind_error)?;
    let bound = listener.local_addr().unwrap_or(addr);
    let socket = tokio::net::TcpListener::from_std(listener)
        .and_then(|l| {
            // As many TCP connections from one address as QUIC admits.
            let limits = StreamLimits {
                max_per_ip: admission::CONNECTIONS_PER_SOURCE as usize,
                ..StreamLimits::default()
            };
            StreamSocket::listen(l, limits, Some(wrap))
        })
        .map_err(|source| ControlSetupError::Bind {
            addr: bound,
            source,
        })?;
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| ControlSetupError::Bind {
        addr: bound,
        source,
    })
}

/// Accepts connections until the endpoint closes; each gets its own task.
pub async fn serve(endpoint: quinn::Endpoint, context: Arc<ControlContext>) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        // Counted before the handshake: a refused source costs one packet.
        let validated = incoming.remote_address_validated();
        let in_flight = match context.admission.handshake(remote.ip(), validated) {
            Handshake::Accept(guard) => guard,
            Handshake::Retry => {
                context.hub.metrics().count_retry();
                if let Err(e) = incoming.retry() {
                    // Only an already validated Initial cannot be retried.
                    e.into_incoming().refuse();
                }
                continue;
            }
            Handshake::Refuse(refusal) => {
                tracing::debug!(%remote, %refusal, "handshake refused");
                context.hub.metrics().count_admission_refusal();
                incoming.refuse();
                continue;
            }
        };
        let now = std::time::Instant::now();
        let open = match context.admission.connect(remote.ip(), now) {
            Ok(open) => open,
            Err(refusal) => {
                tracing::debug!(%remote, %refusal, "connection refused");
                context.hub.metrics().count_admission_refusal();
                incoming.refuse();
                continue;
            }
        };
        let context = context.clone();
        tokio::spawn(async move {
            let handshake = incoming.await;
            drop(in_flight);
            match handshake {
                Ok(conn) => connection::run(conn, context).await,
                Err(e) => tracing::debug!(%remote, error = %e, "QUIC handshake failed"),
            }
            drop(open);
        });
    }
}
