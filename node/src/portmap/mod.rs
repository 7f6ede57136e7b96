//! Port mapping: asks the default gateway for a UDP mapping of a data-plane
//! port through PCP (RFC 6887), else NAT-PMP (RFC 6886), else UPnP IGD,
//! renews it at half its lifetime, asks again when the gateway or local
//! address changes, and deletes it on stop. Requests go to the default
//! gateway (PCP and NAT-PMP to its port 5351, through a socket connected to
//! it; UPnP's search to its port 1900) and nowhere else.

mod gateway;
mod natpmp;
mod pcp;
mod reply;
mod upnp;
pub use reply::{Granted, ReplyError};

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rand_core::RngCore;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// The PCP and NAT-PMP server port (both protocols share it).
const SERVER_PORT: u16 = 5351;
/// The lifetime asked for, in seconds (as Tailscale asks).
const LIFETIME: u32 = 7200;
/// Renewals never come closer than this, whatever lifetime a gateway grants.
const MIN_RENEW: Duration = Duration::from_secs(30);
/// After a gateway did not grant a mapping, ask again this much later.
const RETRY: Duration = Duration::from_secs(60);
/// How often the gateway and local address are looked at for a change.
const CHECK: Duration = Duration::from_secs(5);
/// Waits for an answer before each retransmission (RFC 6887 8.1.1 starts at
/// 3 s; a LAN gateway answers in milliseconds, so this gives up sooner).
const TRIES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];

/// Which protocol the gateway answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Pcp,
    NatPmp,
    Upnp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Pcp => "pcp",
            Protocol::NatPmp => "nat-pmp",
            Protocol::Upnp => "upnp",
        }
    }
}

/// A mapping the gateway granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub protocol: Protocol,
    pub gateway: Ipv4Addr,
    /// The local address the mapping points at.
    pub local: Ipv4Addr,
    /// Where peers reach the data-plane port from outside.
    pub external: SocketAddr,
    pub lifetime: Duration,
}

/// Why no mapping came of a request.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no answer")]
    NoAnswer,
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Upnp(#[from] upnp::UpnpError),
    /// Each protocol tried, and why it gave nothing.
    #[error("{}", .0.iter().map(|(p, e)| format!("{}: {e}", p.as_str())).collect::<Vec<_>>().join("; "))]
    Each(Vec<(Protocol, Failure)>),
}

/// One port's mapping, kept by a task of its own.
pub struct PortMapper {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    current: watch::Receiver<Option<Mapping>>,
}

impl PortMapper {
    /// Starts keeping a mapping of UDP `port`; `changed` hears of each new
    /// or lost mapping.
    pub fn start(port: u16, changed: mpsc::UnboundedSender<()>) -> PortMapper {
        let (stop, stopped) = oneshot::channel();
        let (publish, current) = watch::channel(None);
        let task = tokio::spawn(keep(port, publish, changed, stopped));
        PortMapper {
            stop: Some(stop),
            task,
            current,
        }
    }

    /// The mapping held now.
    pub fn current(&self) -> Option<Mapping> {
        self.current.borrow().clone()
    }

    /// Stops renewing and deletes the mapping (bounded: a gateway that does
    /// not answer costs at most a few seconds).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(3), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Where requests go and come from: the default gateway and the local
/// address that reaches it.
fn network() -> Option<(Ipv4Addr, Ipv4Addr)> {
    let gateway = gateway::default_gateway()?;
    // A connect sends nothing: the kernel only picks the source address.
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((gateway, SERVER_PORT)).ok()?;
    match socket.local_addr().ok()? {
        SocketAddr::V4(local) => Some((gateway, *local.ip())),
        SocketAddr::V6(_) => None,
    }
}

async fn keep(
    port: u16,
    publish: watch::Sender<Option<Mapping>>,
    changed: mpsc::UnboundedSender<()>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut nonce = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let mut held: Option<(Mapping, Instant)> = None;
    let mut asked: Option<(Ipv4Addr, Ipv4Addr)> = None;
    let mut next = Instant::now();
    let set = |m: Option<Mapping>| {
        if publish.send_if_modified(|c| std::mem::replace(c, m.clone()) != m) {
            let _ = changed.send(());
        }
    };
    loop {
        let now = Instant::now();
        let net = network();
        if net != asked {
            if let Some((m, _)) = held.take() {
                tracing::info!(port, external = %m.external, "network changed: asking for a new port mapping");
                set(None);
            }
            asked = net;
            next = now;
        }
        if held.as_ref().is_some_and(|(_, expires)| *expires <= now) {
            held = None;
            set(None);
        }
        if let (Some((gateway, local)), true) = (net, next <= now) {
            let previous = held.as_ref().map(|(m, _)| m);
            let asking = request(gateway, local, port, nonce, LIFETIME, previous);
            // A stop while asking still deletes what is held.
            let answer = tokio::select! {
                answer = asking => answer,
                _ = &mut stopped => break,
            };
            match answer {
                Ok(m) => {
                    if previous != Some(&m) {
                        tracing::info!(port, protocol = m.protocol.as_str(), %gateway, external = %m.external, lifetime = ?m.lifetime, "port mapped");
                    }
                    next = Instant::now() + (m.lifetime / 2).max(MIN_RENEW);
                    set(Some(m.clone()));
                    held = Some((m.clone(), Instant::now() + m.lifetime));
                }
                Err(e) => {
                    tracing::debug!(port, %gateway, error = %e, "no port mapping");
                    next = Instant::now() + RETRY;
                }
            }
        }
        let wake = wake_at(next, Instant::now(), net.is_some());
        tokio::select! {
            _ = &mut stopped => break,
            () = tokio::time::sleep_until(wake) => {}
        }
    }
    if let Some((m, _)) = held {
        match delete(&m, port, nonce).await {
            Ok(()) => tracing::info!(port, external = %m.external, "port mapping deleted"),
            Err(e) => tracing::debug!(port, error = %e, "port mapping not deleted"),
        }
    }
    set(None);
}

/// When the keeper looks again: at the next request due, or the next look
/// for a change, whichever is first; without a gateway only the look is
/// due (a request due in the past would otherwise spin the loop).
fn wake_at(next: Instant, now: Instant, have_gateway: bool) -> Instant {
    let look = now + CHECK;
    if have_gateway {
        next.min(look)
    } else {
        look
    }
}

/// What one short mapping, deleted at once, showed of the gateway
/// (`warren netcheck --controller`).
#[derive(Debug)]
pub struct Probe {
    /// The default gateway; `None`: no IPv4 default route.
    pub gateway: Option<Ipv4Addr>,
    /// The mapping granted, or why there was none.
    pub granted: Result<Mapping, String>,
    /// Whether the delete was confirmed (`None`: nothing to delete).
    pub deleted: Option<Result<(), String>>,
}

/// Asks the default gateway for a mapping of UDP `port` for `lifetime`
/// seconds (short: a lost delete then costs little) and deletes it at once.
pub async fn probe(port: u16, lifetime: u32) -> Probe {
    let Some((gateway, local)) = network() else {
        return Probe {
            gateway: None,
            granted: Err("no IPv4 default gateway".to_owned()),
            deleted: None,
        };
    };
    let mut nonce = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut nonce);
    match request(gateway, local, port, nonce, lifetime, None).await {
        Ok(m) => {
            let deleted = delete(&m, port, nonce).await.map_err(|e| e.to_string());
            Probe {
                gateway: Some(gateway),
                granted: Ok(m),
                deleted: Some(deleted),
            }
        }
        Err(e) => Probe {
            gateway: Some(gateway),
            granted: Err(e.to_string()),
            deleted: None,
        },
    }
}

/// Asks `gateway` for a mapping for `asked` seconds: PCP, then NAT-PMP,
/// then UPnP IGD, starting from the protocol that granted `previous`.
async fn request(
    gateway: Ipv4Addr,
    local: Ipv4Addr,
    port: u16,
    nonce: [u8; 12],
    asked: u32,
    previous: Option<&Mapping>,
) -> Result<Mapping, Failure> {
    let order: &[Protocol] = match previous.map(|m| m.protocol) {
        None | Some(Protocol::Pcp) => &[Protocol::Pcp, Protocol::NatPmp, Protocol::Upnp],
        Some(Protocol::NatPmp) => &[Protocol::NatPmp, Protocol::Upnp],
        Some(Protocol::Upnp) => &[Protocol::Upnp],
    };
    let suggested = previous.map_or(port, |m| m.external.port());
    let mut failures = Vec::new();
    for &protocol in order {
        let granted = match protocol {
            Protocol::Pcp => {
                let held = previous.map(|m| m.external);
                request_pcp(gateway, local, port, nonce, asked, held).await
            }
            Protocol::NatPmp => request_natpmp(gateway, port, suggested, asked).await,
            Protocol::Upnp => upnp::map(gateway, local, port, suggested, asked)
                .await
                .map_err(Failure::from),
        };
        match granted {
            // A gateway may grant less than asked, never more (RFC 6887 15).
            Ok(g) => {
                return Ok(Mapping {
                    protocol,
                    gateway,
                    local,
                    external: g.external,
                    lifetime: Duration::from_secs(u64::from(g.lifetime.min(asked))),
                })
            }
            Err(e) => {
                tracing::debug!(port, %gateway, protocol = protocol.as_str(), error = %e, "no mapping");
                failures.push((protocol, e));
            }
        }
    }
    Err(match failures.len() {
        1 => failures.remove(0).1,
        _ => Failure::Each(failures),
    })
}

async fn request_pcp(
    gateway: Ipv4Addr,
    local: Ipv4Addr,
    port: u16,
    nonce: [u8; 12],
    asked: u32,
    held: Option<SocketAddr>,
) -> Result<Granted, Failure> {
    let socket = connect(gateway).await?;
    let ask = pcp::map_request(local, port, asked, nonce, held);
    exchange(&socket, &ask, |r| pcp::parse_map_reply(r, port, nonce)).await
}

async fn request_natpmp(
    gateway: Ipv4Addr,
    port: u16,
    suggested: u16,
    asked: u32,
) -> Result<Granted, Failure> {
    let socket = connect(gateway).await?;
    let address = exchange(
        &socket,
        &natpmp::address_request(),
        natpmp::parse_address_reply,
    )
    .await?;
    let ask = natpmp::map_request(port, suggested, asked);
    let (external, seconds) = exchange(&socket, &ask, |r| natpmp::parse_map_reply(r, port)).await?;
    Ok(Granted::new(
        SocketAddrV4::new(address, external).into(),
        seconds,
    )?)
}

/// Asks for lifetime 0 with the protocol that granted `m` (UPnP: deletes it).
async fn delete(m: &Mapping, port: u16, nonce: [u8; 12]) -> Result<(), Failure> {
    // A delete is answered with the result only: no grant to check.
    match m.protocol {
        Protocol::Pcp => {
            let socket = connect(m.gateway).await?;
            let ask = pcp::map_request(m.local, port, 0, nonce, Some(m.external));
            exchange(&socket, &ask, |r| {
                match pcp::parse_map_reply(r, port, nonce) {
                    Ok(_) | Err(ReplyError::Mismatch("no usable mapping granted")) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await
        }
        Protocol::NatPmp => {
            let socket = connect(m.gateway).await?;
            let ask = natpmp::map_request(port, 0, 0);
            exchange(&socket, &ask, |r| {
                natpmp::parse_map_reply(r, port).map(|_| ())
            })
            .await
        }
        Protocol::Upnp => Ok(upnp::delete(m.gateway, m.local, m.external.port()).await?),
    }
}

async fn connect(gateway: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.connect((gateway, SERVER_PORT)).await?;
    Ok(socket)
}

/// Sends `request` and waits for a reply that `parse` accepts, resending on
/// silence. Replies that do not parse are skipped (they may be stale or
/// forged); a refusal or another protocol version ends the exchange.
async fn exchange<T>(
    socket: &UdpSocket,
    request: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, ReplyError>,
) -> Result<T, Failure> {
    let mut buf = [0u8; 1100];
    for wait in TRIES {
        socket.send(request).await?;
        let deadline = Instant::now() + wait;
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                // ICMP port unreachable: nothing serves the protocol here.
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(n)) => n,
            };
            match parse(buf.get(..n).unwrap_or_default()) {
                Ok(t) => return Ok(t),
                Err(e @ (ReplyError::Refused(_) | ReplyError::Version(_))) => return Err(e.into()),
                Err(e) => tracing::debug!(error = %e, "port mapping: reply skipped"),
            }
        }
    }
    Err(Failure::NoAnswer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_gateway_waits_for_the_next_look() {
        let now = Instant::now();
        let due = now - Duration::from_secs(1);
        assert_eq!(wake_at(due, now, false), now + CHECK);
        assert_eq!(wake_at(due, now, true), due);
        let later = now + RETRY;
        assert_eq!(wake_at(later, now, true), now + CHECK);
    }

    #[test]
    fn each_protocols_failure_is_named() {
        let failure = Failure::Each(vec![
            (Protocol::Pcp, Failure::NoAnswer),
            (Protocol::NatPmp, ReplyError::Refused(2).into()),
            (
                Protocol::Upnp,
                upnp::UpnpError::Timeout("AddPortMapping").into(),
            ),
        ]);
        assert_eq!(
            failure.to_string(),
            "pcp: no answer; nat-pmp: refused with result code 2; \
             upnp: UPnP AddPortMapping: no answer within 2s"
        );
    }
}

/// The port-mapping fuzz target, replayed over its committed inputs.
#[cfg(test)]
#[path = "../../../fuzz/checks/portmap.rs"]
mod fuzz_inputs;
