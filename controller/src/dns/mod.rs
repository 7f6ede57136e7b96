//! Private DNS on the controller: every network's zone served
//! authoritatively over UDP and TCP on `--listen-dns`, and rebuilt from the
//! hub's change notices (within a moment of a rename or a revocation).
//!
//! - [`zone`]: a network's records from its snapshot (pure).
//! - [`handler`]: the request screen (REFUSED outside our zones, no ANY,
//!   no transfers or updates, small UDP answers) in front of the catalog.
//! - [`services`]: services nodes publish over the control connection.
//! - [`udp`]: the UDP loop, answering queries concurrently (bounded), each
//!   from the address it was sent to.

pub mod handler;
pub mod services;
pub mod snapshot;
pub mod udp;
pub mod zone;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::rr::LowerName;
use hickory_server::zone_handler::ZoneHandler;
use hickory_server::Server;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use warren_proto::NetworkId;
use warren_udp::ReplySocket;

use crate::hub::Hub;
use handler::{AuthoritativeHandler, Zones};
pub use zone::load;

/// A TCP client that sends nothing for this long is dropped.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Every zone is re-read this often as well, for changes made by another
/// controller process on the same database.
const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("could not listen for DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running authoritative server.
pub struct DnsServer {
    /// Where it listens (UDP and TCP), with the port resolved.
    pub addr: SocketAddr,
    pub handler: AuthoritativeHandler,
    /// TCP only: UDP is [`udp::serve`]'s.
    server: Server<AuthoritativeHandler>,
    udp_task: JoinHandle<()>,
    zones_task: JoinHandle<()>,
}

impl DnsServer {
    /// Stops answering and rebuilding.
    pub async fn shutdown(mut self) {
        self.zones_task.abort();
        self.udp_task.abort();
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "DNS server stopped with an error");
        }
    }
}

/// Binds `addr` (UDP and TCP), loads every zone, and serves them until
/// [`DnsServer::shutdown`].
pub async fn spawn(addr: SocketAddr, hub: Arc<Hub>) -> Result<DnsServer, DnsError> {
    let (udp, tcp, bound) = bind_pair(addr).await?;
    let handler = AuthoritativeHandler::default();
    // Subscribe before the first load, so no change falls between them.
    let changes = hub.subscribe();
    let mut zones = ZoneSet::default();
    zones.reload_all(&hub).await;
    handler.replace(zones.assemble());
    let mut server = Server::new(handler.clone());
    let udp_task = tokio::spawn(udp::serve(udp, handler.clone()));
    server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
    let zones_task = tokio::spawn(maintain(zones, hub, changes, handler.clone()));
    tracing::info!(addr = %bound, "DNS listening");
    Ok(DnsServer {
        addr: bound,
        handler,
        server,
        udp_task,
        zones_task,
    })
}

/// Binds UDP and TCP on one port. When `addr` asks for port 0, the port
/// the kernel picks for UDP may already be taken for TCP by someone else,
/// so that case tries a few fresh ports before giving up.
async fn bind_pair(addr: SocketAddr) -> Result<(ReplySocket, TcpListener, SocketAddr), DnsError> {
    const EPHEMERAL_TRIES: usize = 8;
    let bind_error = |source| DnsError::Bind { addr, source };
    let mut tries = 0;
    loop {
        tries += 1;
        let udp = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
        let udp = ReplySocket::new(udp).map_err(bind_error)?;
        let bound = udp.local_addr().map_err(bind_error)?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tries < EPHEMERAL_TRIES =>
            {
                tracing::debug!(%bound, "TCP port taken; trying another ephemeral port");
            }
            Err(e) => return Err(bind_error(e)),
        }
    }
}

/// Rebuilds zones as networks change.
async fn maintain(
    mut zones: ZoneSet,
    hub: Arc<Hub>,
    mut changes: broadcast::Receiver<NetworkId>,
    handler: AuthoritativeHandler,
) {
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    reload.tick().await;
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(net) => {
                    zones.rebuild(&hub, net).await;
                    // Take the rest of a burst before swapping once.
                    while let Ok(net) = changes.try_recv() {
                        zones.rebuild(&hub, net).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => zones.reload_all(&hub).await,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = reload.tick() => zones.reload_all(&hub).await,
        }
        handler.replace(zones.assemble());
    }
}

/// One zone handler per network, by network ID.
#[derive(Default)]
struct ZoneSet {
    zones: BTreeMap<NetworkId, (LowerName, Arc<dyn ZoneHandler>)>,
}

impl ZoneSet {
    async fn reload_all(&mut self, hub: &Hub) {
        let networks = match hub.store().list_networks().await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "DNS: could not list networks; keeping the zones served");
                return;
            }
        };
        self.zones
            .retain(|id, _| networks.iter().any(|n| n.id == *id));
        for network in networks {
            self.rebuild(hub, network.id).await;
        }
    }

    async fn rebuild(&mut self, hub: &Hub, net: NetworkId) {
        let snapshot = match hub.snapshot(net).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.zones.remove(&net);
                return;
            }
            Err(e) => {
                tracing::error!(network = %net, error = %e, "DNS: could not read network; keeping its zone");
                return;
            }
        };
        match snapshot::build(&snapshot) {
            Ok(records) => {
                tracing::debug!(network = %net, zone = %records.origin, records = records.records.len(), "zone built");
                self.zones.insert(net, load(records));
            }
            Err(e) => {
                tracing::warn!(network = %net, error = %e, "DNS: network has no valid zone");
                self.zones.remove(&net);
            }
        }
    }

    /// All zones in one catalog. Two networks with the same zone name: the
    /// lower network ID keeps it, so the choice never flips between reloads.
    fn assemble(&self) -> Zones {
        let mut zones = Zones::default();
        for (id, (origin, handler)) in &self.zones {
            if zones.has_origin(origin) {
                tracing::warn!(network = %id, zone = %origin, "DNS: zone already served for another network; skipped");
                continue;
            }
            zones.insert(origin.clone(), handler.clone());
        }
        zones
    }
}
