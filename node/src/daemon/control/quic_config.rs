//! The QUIC client settings and endpoint of controller and relay links.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use quinn::crypto::rustls::QuicClientConfig;
use warren_proto::control;
use warren_proto::pinning::PinnedVerifier;

use super::Liveness;

/// A client pinned to `fingerprint` (or noting what it sees in `seen`),
/// with `liveness`'s keep-alive and idle timeout.
pub(super) fn client_config(
    fingerprint: Option<String>,
    seen: &Arc<Mutex<Option<String>>>,
    liveness: Liveness,
) -> anyhow::Result<quinn::ClientConfig> {
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
    tls.alpn_protocols = vec![control::ALPN.to_vec()];
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
