//! `warren netcheck --controller`: the CLI's own probes of a controller, the
//! UDP path to its STUN ports and the default gateway, before any network is
//! joined and without the daemon.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use rand_core::RngCore;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use warren_proto::local_api::{ControlTransport, PortMapping};
use warren_proto::netcheck::{
    ControllerNetcheck, NatMapping, PathVerdict, PortMappingCheck, QuicCheck, QuicReach, StunProbe,
    UdpCheck,
};
use warren_proto::stun::{self, StunTxId};

use crate::daemon::control::probe;
use crate::portmap;

/// `HOST` gets this long to resolve.
const RESOLVE_TIME: Duration = Duration::from_secs(2);
/// The QUIC handshake and the STUN answers each get this long.
const PROBE_TIME: Duration = Duration::from_secs(3);
/// Binding requests go out at these offsets to each server not yet
/// answered: three at most per server.
const STUN_SENDS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_millis(1500),
];
/// The lifetime asked of the gateway for the mapping deleted at once.
const MAPPING_LIFETIME: u32 = 30;
/// The port-mapping probe, delete included, ends within this.
const MAPPING_TIME: Duration = Duration::from_millis(7500);

/// Runs the three probes at once against `controller` (`HOST:PORT`), its
/// STUN ports `stun_ports` on the same host, and the default gateway: the
/// gateway while `HOST` resolves, so that the whole takes at most
/// `RESOLVE_TIME` and `PROBE_TIME` (a little over 5 s).
pub async fn check(
    controller: &str,
    pinned: Option<&str>,
    stun_ports: &[u16],
) -> ControllerNetcheck {
    let ((quic, tcp, udp), port_mapping) = tokio::join!(
        controller_check(controller, pinned, stun_ports),
        mapping_check()
    );
    let path = PathVerdict::of(quic.reach, udp.mapping, port_mapping.granted.is_some())
        .with_tcp(tcp.reach);
    ControllerNetcheck {
        controller: controller.to_owned(),
        quic,
        tcp: Some(tcp),
        udp,
        port_mapping,
        path,
    }
}

/// Resolves `controller`, then shakes hands with it over UDP and over TCP
/// and asks its STUN ports, all at once.
async fn controller_check(
    controller: &str,
    pinned: Option<&str>,
    stun_ports: &[u16],
) -> (QuicCheck, QuicCheck, UdpCheck) {
    let resolved = tokio::time::timeout(RESOLVE_TIME, tokio::net::lookup_host(controller)).await;
    let addr = match resolved {
        Ok(Ok(mut addrs)) => addrs
            .next()
            .ok_or_else(|| format!("{controller} has no address")),
        Ok(Err(e)) => Err(format!("resolving {controller}: {e}")),
        Err(_) => Err(format!(
            "resolving {controller}: no answer within {RESOLVE_TIME:?}"
        )),
    };
    let host = crate::daemon::control::proxy::host_of(controller);
    match addr {
        Ok(addr) => {
            let servers: Vec<SocketAddr> = stun_ports
                .iter()
                .map(|port| SocketAddr::new(addr.ip(), *port))
                .collect();
            tokio::join!(
                probe::handshake(host, addr, pinned, PROBE_TIME, ControlTransport::Udp),
                probe::handshake(host, addr, pinned, PROBE_TIME, ControlTransport::Tcp),
                stun_check(&servers),
            )
        }
        Err(error) => {
            let quic = QuicCheck {
                reach: QuicReach::Unreachable,
                address: None,
                rtt_ms: None,
                fingerprint: None,
                fingerprint_matches: None,
                error: Some(error),
                proxy: None,
            };
            let udp = UdpCheck {
                local_port: None,
                stun: Vec::new(),
                mapping: NatMapping::UdpBlocked,
            };
            (quic.clone(), quic, udp)
        }
    }
}

/// Binding requests from one socket to every server; what each saw.
async fn stun_check(servers: &[SocketAddr]) -> UdpCheck {
    let (local, mapped, rtts) = match ask_stun(servers).await {
        Ok(answers) => answers,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "netcheck: no STUN socket");
            (None, vec![None; servers.len()], vec![None; servers.len()])
        }
    };
    let stun = servers
        .iter()
        .zip(mapped.iter().zip(rtts))
        .map(|(server, (mapped, rtt))| StunProbe {
            server: server.to_string(),
            mapped: mapped.map(|m| m.to_string()),
            rtt_ms: rtt.map(|d: Duration| d.as_secs_f64() * 1000.0),
        })
        .collect();
    UdpCheck {
        local_port: local.map(|l| l.port()),
        stun,
        mapping: NatMapping::of(local, &mapped),
    }
}

type StunAnswers = (
    Option<SocketAddr>,
    Vec<Option<SocketAddr>>,
    Vec<Option<Duration>>,
);

/// The socket's own address (as the route to the first server picks it)
/// and, per server, the mapped address and round trip, if it answered.
async fn ask_stun(servers: &[SocketAddr]) -> anyhow::Result<StunAnswers> {
    let mut mapped = vec![None; servers.len()];
    let mut rtts = vec![None; servers.len()];
    let Some(first) = servers.first() else {
        return Ok((None, mapped, rtts));
    };
    let bind: SocketAddr = match first {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let std_socket = crate::routes::marked_udp_socket(bind).context("opening STUN socket")?;
    std_socket.set_nonblocking(true).context("STUN socket")?;
    let socket = UdpSocket::from_std(std_socket).context("STUN socket")?;
    let port = socket.local_addr().context("STUN socket")?.port();
    let local = local_ip(*first).map(|ip| SocketAddr::new(ip, port));
    let start = Instant::now();
    let deadline = start + PROBE_TIME;
    let mut pending: BTreeMap<StunTxId, (usize, Instant)> = BTreeMap::new();
    let mut sends = STUN_SENDS.iter().map(|at| start + *at).peekable();
    let mut buf = [0u8; 1500];
    while mapped.iter().any(Option::is_none) && Instant::now() < deadline {
        if sends.peek().is_some_and(|at| *at <= Instant::now()) {
            sends.next();
            for (i, server) in servers.iter().enumerate() {
                if mapped.get(i).is_some_and(Option::is_some) {
                    continue;
                }
                let mut tx = [0u8; 12];
                rand_core::OsRng.fill_bytes(&mut tx);
                // A send that fails (no route) is as good as lost.
                if socket
                    .send_to(&stun::binding_request(&tx), server)
                    .await
                    .is_ok()
                {
                    pending.insert(tx, (i, Instant::now()));
                }
            }
        }
        let wake = sends.peek().copied().unwrap_or(deadline).min(deadline);
        let (n, from) = match tokio::time::timeout_at(wake, socket.recv_from(&mut buf)).await {
            Err(_) => continue,
            // An ICMP error on an unconnected socket: keep waiting for the rest.
            Ok(Err(_)) => continue,
            Ok(Ok(got)) => got,
        };
        let Ok((tx, seen)) = stun::parse_response(buf.get(..n).unwrap_or_default()) else {
            continue;
        };
        // Only an answer to one of our requests, from the server asked, counts.
        if let Some((i, sent)) = pending.get(&tx).copied() {
            if servers.get(i) == Some(&from) {
                pending.remove(&tx);
                if let (Some(m), Some(r)) = (mapped.get_mut(i), rtts.get_mut(i)) {
                    *m = Some(seen);
                    *r = Some(sent.elapsed());
                }
            }
        }
    }
    Ok((local, mapped, rtts))
}

/// The source address the kernel would pick towards `to` (a connect sends
/// nothing).
fn local_ip(to: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match to {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(to).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// A short mapping of a port this process holds, deleted at once.
async fn mapping_check() -> PortMappingCheck {
    // Held while the gateway is asked, so the port mapped is ours alone.
    let held = match std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        Ok(socket) => socket,
        Err(e) => return mapping_error(None, format!("opening a UDP socket: {e}")),
    };
    let port = match held.local_addr() {
        Ok(a) => a.port(),
        Err(e) => return mapping_error(None, format!("opening a UDP socket: {e}")),
    };
    let Ok(probe) =
        tokio::time::timeout(MAPPING_TIME, portmap::probe(port, MAPPING_LIFETIME)).await
    else {
        return mapping_error(None, format!("no answer within {MAPPING_TIME:?}"));
    };
    drop(held);
    let gateway = probe.gateway.map(|g| g.to_string());
    match probe.granted {
        Ok(m) => PortMappingCheck {
            gateway,
            granted: Some(PortMapping {
                protocol: m.protocol.as_str().to_owned(),
                gateway: m.gateway.to_string(),
                external: m.external.to_string(),
                lifetime_secs: m.lifetime.as_secs(),
            }),
            deleted: probe.deleted.as_ref().map(Result::is_ok),
            error: None,
        },
        Err(error) => mapping_error(gateway, error),
    }
}

fn mapping_error(gateway: Option<String>, error: String) -> PortMappingCheck {
    PortMappingCheck {
        gateway,
        granted: None,
        deleted: None,
        error: Some(error),
    }
}
