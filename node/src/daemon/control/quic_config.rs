//! The QUIC client settings and endpoint of controller and relay links, and
//! the dial that falls back to QUIC over TCP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use quinn::crypto::rustls::QuicClientConfig;
use warren_proto::control;
use warren_proto::local_api::ControlTransport;
use warren_proto::pinning::PinnedVerifier;
use warren_udp::stream::StreamSocket;

use super::proxy::Proxy;
use super::{Liveness, SERVER_NAME};

/// A client pinned to `fingerprint` (or noting what it sees in `seen`),
/// with `liveness`'s keep-alive and idle timeout.
pub(super) fn client_config(
    fingerprint: Option<String>,
    seen: &Arc<Mutex<Option<String>>>,
    liveness: Liveness,
) -> anyhow::Result<quinn::ClientConfig> {
    let tls = pinned_tls(fingerprint, seen, control::ALPN)?;
    let crypto = QuicClientConfig::try_from(tls).context("QUIC TLS setup")?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(liveness.keep_alive));
    // Relay traffic: full-MTU WireGuard packets do not fit a QUIC datagram
    // and arrive as records on a stream the relay keeps open (it opens
    // another only when one breaks).
    transport.datagram_receive_buffer_size(Some(4 << 20));
    transport.datagram_send_buffer_size(4 << 20);
    transport.max_concurrent_uni_streams(16u32.into());
    // All large relayed packets share that stream: its window bounds them
    // to about window / round trip.
    transport.stream_receive_window((4u32 << 20).into());
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(liveness.idle_timeout).context("QUIC idle timeout")?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// A client endpoint on a fresh socket of `addr`'s family that dials with
/// `config`. The socket is marked, so policy routing keeps control traffic
/// off the tunnel (`crate::routes`).
pub(super) fn client_endpoint(
    addr: SocketAddr,
    config: quinn::ClientConfig,
) -> anyhow::Result<quinn::Endpoint> {
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = crate::routes::marked_udp_socket(bind).context("opening QUIC socket")?;
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .context("opening QUIC endpoint")?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// TLS 1.3 pinned to `fingerprint` (or noting what it sees in `seen`),
/// offering `alpn`.
pub(super) fn pinned_tls(
    fingerprint: Option<String>,
    seen: &Arc<Mutex<Option<String>>>,
    alpn: &[u8],
) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 setup")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier::noting_in(
            fingerprint,
            Arc::clone(seen),
        )))
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}

/// How long a QUIC handshake over UDP may go unanswered before QUIC over
/// TCP is tried (a network that drops UDP never answers at all).
pub(super) const TCP_FALLBACK_AFTER: Duration = Duration::from_secs(3);
/// How long the TCP connection of the fallback may take.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `addr` with QUIC over UDP, or, if no answer comes within
/// [`TCP_FALLBACK_AFTER`], with QUIC over TLS over TCP to the same address
/// (`warren_udp::stream`), both pinned to `fingerprint`. Any other failure
/// (a certificate other than the pinned one, a refusal) is final: TCP
/// would meet the same.
pub(super) async fn dial(
    host: &str,
    addr: SocketAddr,
    fingerprint: Option<String>,
    seen: &Arc<Mutex<Option<String>>>,
    liveness: Liveness,
    fallback: Fallback,
) -> anyhow::Result<(quinn::Endpoint, quinn::Connection, ControlTransport)> {
    let config = client_config(fingerprint.clone(), seen, liveness)?;
    let endpoint = client_endpoint(addr, config.clone())?;
    let connecting = endpoint
        .connect(addr, SERVER_NAME)
        .context("starting QUIC connection")?;
    // A short idle timeout (a controller with replicas) ends the handshake
    // before the fallback's wait does: that is no answer too.
    match tokio::time::timeout(TCP_FALLBACK_AFTER, connecting).await {
        Ok(Ok(connection)) => return Ok((endpoint, connection, ControlTransport::Udp)),
        Ok(Err(quinn::ConnectionError::TimedOut)) | Err(_) => {}
        Ok(Err(e)) => return Err(e.into()),
    }
    drop(endpoint);
    if fallback == Fallback::UdpOnly {
        anyhow::bail!(
            "no answer over UDP within {} s",
            TCP_FALLBACK_AFTER.as_secs()
        );
    }
    tracing::debug!(%addr, "no answer over UDP: trying QUIC over TCP");
    let tls = pinned_tls(fingerprint, seen, control::TCP_ALPN)?;
    let within = liveness.idle_timeout.min(TCP_CONNECT_TIMEOUT);
    let (endpoint, connection) = dial_tcp(host, addr, tls, config, within)
        .await
        .with_context(|| {
            format!(
                "no answer over UDP within {} s, and QUIC over TCP failed",
                TCP_FALLBACK_AFTER.as_secs()
            )
        })?;
    Ok((endpoint, connection, ControlTransport::Tcp))
}

/// Whether a dial falls back to TCP when UDP does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fallback {
    Tcp,
    /// For a link on TCP checking whether UDP answers again.
    UdpOnly,
}

async fn dial_tcp(
    host: &str,
    addr: SocketAddr,
    tls: rustls::ClientConfig,
    config: quinn::ClientConfig,
    within: Duration,
) -> anyhow::Result<(quinn::Endpoint, quinn::Connection)> {
    let proxy = Proxy::for_target(host, addr)?;
    let endpoint = tcp_endpoint(proxy, addr, tls, config, within).await?;
    let connection = endpoint
        .connect(addr, SERVER_NAME)
        .context("starting QUIC connection over TCP")?
        .await?;
    Ok((endpoint, connection))
}

/// A TCP connection to `addr` within `within`, its socket marked like the
/// UDP socket so that policy routing keeps it off the tunnel; `what`
/// names it in errors.
pub(super) async fn connect_marked(
    addr: SocketAddr,
    within: Duration,
    what: &str,
) -> anyhow::Result<tokio::net::TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .context("opening TCP socket")?;
    crate::routes::mark_socket(&socket);
    tokio::time::timeout(within, socket.connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("{what} timed out"))?
        .context(what.to_owned())
}

/// [`client_endpoint`] over TLS (`tls`, pinned as QUIC is) on a TCP
/// connection to `addr`, marked like the UDP socket: it dials `addr` only.
/// The TCP connection and the TLS handshake each get `within`. Through
/// `proxy` when there is one (`Proxy::for_target`).
pub(super) async fn tcp_endpoint(
    proxy: Option<Proxy>,
    addr: SocketAddr,
    tls: rustls::ClientConfig,
    config: quinn::ClientConfig,
    within: Duration,
) -> anyhow::Result<quinn::Endpoint> {
    let stream = match proxy {
        Some(proxy) => {
            let (stream, via) = proxy.connect(addr, within).await?;
            tracing::info!(proxy = %proxy.shown(), %via, controller = %addr, "QUIC over TCP through the proxy");
            stream
        }
        None => connect_marked(addr, within, "TCP connection").await?,
    };
    stream.set_nodelay(true).context("TCP connection")?;
    // QUIC's peer is the controller, also through a proxy.
    let (local, remote) = (stream.local_addr().context("TCP connection")?, addr);
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).context("TLS server name")?;
    let stream = tokio::time::timeout(
        within,
        tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, stream),
    )
    .await
    .map_err(|_| anyhow::anyhow!("TLS handshake over TCP timed out"))?
    .context("TLS handshake over TCP")?;
    let socket = StreamSocket::client_over(stream, local, remote);
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .context("opening QUIC endpoint over TCP")?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}
