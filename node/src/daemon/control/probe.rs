//! A QUIC handshake with a controller and nothing after it, for `warren
//! netcheck --controller`: no stream is opened, no key is proved. Over UDP,
//! or over TCP as the agent's fallback dials it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use warren_proto::local_api::ControlTransport;
use warren_proto::netcheck::{QuicCheck, QuicReach};

use super::proxy::Proxy;
use super::quic_config::{pinned_tls, tcp_endpoint};
use super::{client_config, client_endpoint, Liveness, SERVER_NAME};
use warren_proto::control::TCP_ALPN;

/// The probe's link: it never idles long enough to need a ping.
const PROBE_LIVENESS: Liveness = Liveness {
    keep_alive: Duration::from_secs(5),
    idle_timeout: Duration::from_secs(10),
};

/// Dials `addr` (named `host` where the controller was given) and closes
/// the connection as soon as the handshake ends.
/// With `pinned`, only that certificate completes it; without, any does
/// (and is only reported: nothing is sent that would need trust).
pub async fn handshake(
    host: &str,
    addr: SocketAddr,
    pinned: Option<&str>,
    within: Duration,
    over: ControlTransport,
) -> QuicCheck {
    let seen = Arc::new(Mutex::new(None));
    // Read once: what the dial goes through is what the report names.
    let proxy = match over {
        ControlTransport::Tcp => Proxy::for_target(host, addr),
        ControlTransport::Udp => Ok(None),
    };
    // A setting it cannot use fails the dial: its error says so.
    let shown = proxy
        .as_ref()
        .ok()
        .and_then(|p| p.as_ref().map(Proxy::shown));
    let result = tokio::time::timeout(within, dial(proxy, addr, pinned, &seen, over)).await;
    let fingerprint = seen.lock().ok().and_then(|s| s.clone());
    let fingerprint_matches = pinned
        .zip(fingerprint.as_deref())
        .map(|(pin, seen)| pin == seen);
    let mut check = QuicCheck {
        reach: QuicReach::Unreachable,
        address: Some(addr.to_string()),
        rtt_ms: None,
        fingerprint,
        fingerprint_matches,
        error: None,
        proxy: shown,
    };
    match result {
        Ok(Ok(rtt)) => {
            check.reach = QuicReach::Connected;
            check.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
        }
        Ok(Err(e)) => {
            if fingerprint_matches == Some(false) {
                check.reach = QuicReach::FingerprintMismatch;
            }
            check.error = Some(format!("{e:#}"));
        }
        Err(_) => check.error = Some(format!("no QUIC handshake within {within:?}")),
    }
    check
}

/// The handshake (over TCP through `proxy`, if any); its round-trip
/// estimate once it completed.
async fn dial(
    proxy: anyhow::Result<Option<Proxy>>,
    addr: SocketAddr,
    pinned: Option<&str>,
    seen: &Arc<Mutex<Option<String>>>,
    over: ControlTransport,
) -> anyhow::Result<Duration> {
    let config = client_config(pinned.map(str::to_owned), seen, PROBE_LIVENESS)?;
    let endpoint = match over {
        ControlTransport::Udp => client_endpoint(addr, config)?,
        ControlTransport::Tcp => {
            let tls = pinned_tls(pinned.map(str::to_owned), seen, TCP_ALPN)?;
            tcp_endpoint(proxy?, addr, tls, config, PROBE_LIVENESS.idle_timeout).await?
        }
    };
    let connection = endpoint
        .connect(addr, SERVER_NAME)
        .context("starting QUIC connection")?
        .await
        .with_context(|| format!("QUIC handshake with {addr}"))?;
    let rtt = connection.rtt();
    connection.close(0u32.into(), b"netcheck");
    // Long enough for the close to leave; the controller times out the rest.
    let _ = tokio::time::timeout(Duration::from_millis(200), endpoint.wait_idle()).await;
    Ok(rtt)
}
