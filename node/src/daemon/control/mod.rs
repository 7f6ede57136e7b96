//! The control client: one QUIC connection per controller, kept open and
//! re-opened with backoff; it proves the node key and relays netmaps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use rand_core::RngCore;
use tokio::sync::{mpsc, watch, Mutex as AsyncMutex};
use warren_proto::control::{ControllerMessage, JoinOutcome, NatHint, NodeMessage};
use warren_proto::local_api::{ControlTransport, ControllerError, ControllerErrorKind};
use warren_proto::netmap::{Netmap, NetmapDelta};
use warren_proto::{NetworkId, NodePrivateKey, NodePublicKey};

use super::datapath::{RelayOut, RelayTx};
use super::relay_in::{RelayInTx, RelayRoutes};
use relay::{spawn_relay_reader, RelayInstance, RelayPath, Relays};

mod link;
pub(crate) mod probe;
pub(crate) mod proxy;
mod quic_config;
mod relay;
mod supervise;
mod targets;
use link::{open_link, write, Link};
use quic_config::{client_config, client_endpoint, Fallback};
use targets::Targets;

const SERVER_NAME: &str = "warren-controller";
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How often a link is pinged when idle, and how long a silent link lasts.
#[derive(Clone, Copy, Debug)]
struct Liveness {
    keep_alive: Duration,
    idle_timeout: Duration,
}

/// The controller link. The controller's own settings are shorter (8 s
/// idle, 2 s pings); QUIC uses the smaller idle timeout of the two.
const CONTROLLER_LIVENESS: Liveness = Liveness {
    keep_alive: Duration::from_secs(5),
    idle_timeout: Duration::from_secs(20),
};

/// How often a link that fell back to TCP checks whether QUIC over UDP
/// answers again; when it does, the link is made again over UDP.
const UDP_RECHECK: Duration = Duration::from_secs(10);

/// The pause before dialling the next replica after one failed.
const NEXT_REPLICA: Duration = Duration::from_millis(100);

/// What the node asks of a controller.
#[derive(Debug, Clone)]
pub enum ControlCommand {
    Join {
        network_id: NetworkId,
        name: String,
        preauth_key: Option<String>,
    },
    Leave(NetworkId),
    /// Stop speaking for a network without telling the controller
    /// (`warren down`, or a join moved to another controller): it is not
    /// joined again on the next connection.
    Forget(NetworkId),
    Endpoints(NetworkId, Vec<SocketAddr>),
    Resync(NetworkId),
    /// Ask a peer to probe these endpoints of ours now.
    CallMeMaybe {
        network_id: NetworkId,
        peer: NodePublicKey,
        endpoints: Vec<SocketAddr>,
        nat: Option<NatHint>,
    },
    /// Every service this node publishes in a network (sent again by the
    /// daemon after each reconnect, so not remembered here).
    Services(NetworkId, Vec<warren_proto::service::ServiceSpec>),
    /// Every route this node advertises in a network and the site they
    /// are for (sent again by the daemon after each reconnect, so not
    /// remembered here).
    Routes(
        NetworkId,
        Vec<ipnet::IpNet>,
        Option<warren_proto::site::SiteSpec>,
    ),
    /// A grant admitted a flow here for the first time (for the audit log).
    GrantUsed(NetworkId, String),
    /// Ask for a page where the owner signs this device in again.
    SignIn(NetworkId),
    /// How this node reaches its peers in a network now (sent again by the
    /// daemon after each reconnect, so not remembered here). Dropped for a
    /// controller whose `Welcome` does not accept it.
    Paths(NetworkId, Vec<warren_proto::control::PeerPath>),
}

/// What a controller connection reports to the daemon.
#[derive(Debug)]
pub enum ControlEvent {
    Connected {
        controller: String,
        /// The controller's address as connected to: its STUN ports are there.
        remote: SocketAddr,
        /// QUIC over UDP, or over TCP where no UDP answer came.
        transport: ControlTransport,
        /// Every address of the controller's replicas known now, the joined
        /// one first: the daemon keeps them for its next start.
        replicas: Vec<String>,
    },
    Disconnected {
        controller: String,
        error: ControllerError,
    },
    /// Relay frames now go through this relay-only instance (`Some`), or
    /// through the controller connection again (`None`).
    RelayServer {
        controller: String,
        relay: Option<String>,
    },
    /// The certificate seen when none was pinned; the daemon pins it from now on.
    Fingerprint {
        controller: String,
        fingerprint: String,
    },
    // Every event about a network names the controller (`HOST:PORT` as
    // joined) whose connection it came in on: only the controller a
    // network was joined through may speak for it.
    JoinResult {
        controller: String,
        network_id: NetworkId,
        outcome: JoinOutcome,
        sign_in_url: Option<String>,
        sign_in_refused: Option<String>,
    },
    Netmap {
        controller: String,
        map: Netmap,
    },
    Delta {
        controller: String,
        delta: NetmapDelta,
    },
    CallMeMaybe {
        controller: String,
        network_id: NetworkId,
        from: NodePublicKey,
        endpoints: Vec<SocketAddr>,
        nat: Option<NatHint>,
    },
    /// The connection's task died (a panic: a bug). It is started again
    /// with backoff, carrying on from what it held, until restarts run out
    /// (`gave_up`); no `Disconnected` comes for it.
    TaskDied {
        controller: String,
        error: String,
        deaths: u32,
        gave_up: bool,
    },
}

impl ControlEvent {
    /// The controller an event came from and the network it is about, for
    /// the events that are about one network.
    pub fn network_source(&self) -> Option<(&str, NetworkId)> {
        match self {
            ControlEvent::JoinResult {
                controller,
                network_id,
                ..
            }
            | ControlEvent::CallMeMaybe {
                controller,
                network_id,
                ..
            } => Some((controller, *network_id)),
            ControlEvent::Netmap { controller, map } => Some((controller, map.network_id)),
            ControlEvent::Delta { controller, delta } => Some((controller, delta.network_id)),
            ControlEvent::Connected { .. }
            | ControlEvent::Disconnected { .. }
            | ControlEvent::TaskDied { .. }
            | ControlEvent::RelayServer { .. }
            | ControlEvent::Fingerprint { .. } => None,
        }
    }
}

pub struct ControlHandle {
    commands: mpsc::UnboundedSender<ControlCommand>,
    relay: mpsc::Sender<RelayOut>,
    /// The data planes this controller's relayed packets may go to.
    relay_in: RelayRoutes,
    task: tokio::task::JoinHandle<()>,
}

/// Packets waiting for the relay; beyond this the data plane drops, as a full link would.
const RELAY_QUEUE: usize = 1024;

impl ControlHandle {
    /// Connects to `controller` (the address a network was joined through,
    /// which names the connection in every event), or, when it does not
    /// answer, to the other `replicas` of it, which `Welcome` keeps up to
    /// date.
    pub fn spawn(
        controller: String,
        replicas: Vec<String>,
        fingerprint: Option<String>,
        key: NodePrivateKey,
        events: mpsc::UnboundedSender<ControlEvent>,
    ) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let (relay, relay_rx) = mpsc::channel(RELAY_QUEUE);
        let relay_in = RelayRoutes::default();
        let parts = Arc::new(AsyncMutex::new(Parts {
            targets: Targets::spread(controller.clone(), replicas),
            fingerprint,
            session: Session::default(),
            commands: rx,
            relay: relay_rx,
        }));
        let routes = relay_in.clone();
        let task = tokio::spawn(supervise::supervise(
            controller,
            events.clone(),
            move || run(parts.clone(), key.clone(), events.clone(), routes.clone()),
        ));
        Self {
            commands,
            relay,
            relay_in,
            task,
        }
    }

    /// Relayed packets for `network` go to `queue` (its data plane), or
    /// with `None` nowhere.
    pub fn route_relay_in(&self, network: NetworkId, queue: Option<RelayInTx>) {
        self.relay_in.set(network, queue);
    }

    /// A network's way into this controller's relay.
    pub fn relay_tx(&self, network: NetworkId) -> RelayTx {
        RelayTx {
            network,
            tx: self.relay.clone(),
        }
    }

    pub fn send(&self, command: ControlCommand) {
        let _ = self.commands.send(command);
    }
}

impl Drop for ControlHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What must be said again on every new connection.
#[derive(Default)]
struct Session {
    joins: BTreeMap<NetworkId, ControlCommand>,
    endpoints: BTreeMap<NetworkId, Vec<SocketAddr>>,
}

impl Session {
    fn remember(&mut self, command: &ControlCommand) {
        match command {
            ControlCommand::Join { network_id, .. } => {
                self.joins.insert(*network_id, command.clone());
            }
            ControlCommand::Leave(id) | ControlCommand::Forget(id) => {
                self.joins.remove(id);
                self.endpoints.remove(id);
            }
            ControlCommand::Endpoints(id, eps) => {
                self.endpoints.insert(*id, eps.clone());
            }
            ControlCommand::Resync(_)
            | ControlCommand::CallMeMaybe { .. }
            | ControlCommand::Services(..)
            | ControlCommand::Routes(..)
            | ControlCommand::GrantUsed(..)
            | ControlCommand::SignIn(_)
            | ControlCommand::Paths(..) => {}
        }
    }
}

/// What outlives one run of a connection's task, so that the run started
/// after one that panicked carries on: where it dials, the pin, what it
/// must say again, and the queues the daemon and the data planes write to.
struct Parts {
    targets: Targets,
    fingerprint: Option<String>,
    session: Session,
    commands: mpsc::UnboundedReceiver<ControlCommand>,
    relay: mpsc::Receiver<RelayOut>,
}

/// Keeps a connection to the controller up until the handle is dropped.
/// It holds `parts` throughout; a panic lets go of them as it unwinds.
async fn run(
    parts: Arc<AsyncMutex<Parts>>,
    key: NodePrivateKey,
    events: mpsc::UnboundedSender<ControlEvent>,
    relay_in: RelayRoutes,
) {
    let mut parts = parts.lock().await;
    let Parts {
        targets,
        fingerprint,
        session,
        commands,
        relay,
    } = &mut *parts;
    let mut backoff = Duration::from_secs(1);
    let controller = targets.controller.clone();
    // A link opened while the last one still served, to move to.
    let mut ready = None;
    loop {
        let seen = Arc::new(Mutex::new(None));
        let result = connect_and_serve(
            ready.take(),
            targets,
            fingerprint.clone(),
            &seen,
            &key,
            &events,
            &relay_in,
            commands,
            relay,
            session,
            &mut backoff,
        )
        .await;
        let error = match result {
            Ok(Ended::Closed) => return,
            Ok(Ended::MoveTo(link)) => {
                ready = Some(link);
                continue;
            }
            Err(e) => classify(format!("{e:#}"), fingerprint.as_deref(), &seen),
        };
        let target = targets.current().to_owned();
        let round_done = targets.advance();
        let retry_in = if round_done { backoff } else { NEXT_REPLICA };
        tracing::info!(%controller, %target, error = %error.message, ?retry_in, "controller connection lost");
        let _ = events.send(ControlEvent::Disconnected {
            controller: controller.clone(),
            error,
        });
        if fingerprint.is_none() {
            // Trust on first use: a certificate seen once is pinned from then on.
            *fingerprint = seen.lock().ok().and_then(|s| s.clone());
        }
        let jitter = match round_done {
            true => Duration::from_millis(u64::from(rand_core::OsRng.next_u32() % 500)),
            false => Duration::ZERO,
        };
        let wait = tokio::time::sleep(retry_in + jitter);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                command = commands.recv() => match command {
                    Some(c) => session.remember(&c),
                    None => return,
                },
                // No connection, no relay: these packets are lost, as on a dead link.
                Some(_) = relay.recv() => {}
            }
        }
        if round_done {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// A failed connection, told apart: a certificate other than the pinned
/// one (the verifier recorded what it saw) or anything else.
fn classify(
    message: String,
    pinned: Option<&str>,
    seen: &Mutex<Option<String>>,
) -> ControllerError {
    let seen = seen.lock().ok().and_then(|s| s.clone());
    let kind = match (pinned, seen) {
        (Some(pinned), Some(seen)) if pinned != seen => ControllerErrorKind::FingerprintMismatch,
        _ => ControllerErrorKind::Unreachable,
    };
    ControllerError { kind, message }
}

/// How a link that served ended, when not with an error.
enum Ended {
    /// The handle was dropped: nothing more to do.
    Closed,
    /// QUIC over UDP answers again: this link, open and proved, takes over
    /// from the one over TCP, with no gap.
    MoveTo(Box<Link>),
}

#[allow(clippy::too_many_arguments)]
async fn connect_and_serve(
    ready: Option<Box<Link>>,
    targets: &mut Targets,
    fingerprint: Option<String>,
    seen: &Arc<Mutex<Option<String>>>,
    key: &NodePrivateKey,
    events: &mpsc::UnboundedSender<ControlEvent>,
    relay_in: &RelayRoutes,
    commands: &mut mpsc::UnboundedReceiver<ControlCommand>,
    relay: &mut mpsc::Receiver<RelayOut>,
    session: &mut Session,
    backoff: &mut Duration,
) -> anyhow::Result<Ended> {
    let controller = targets.controller.clone();
    let controller = controller.as_str();
    let link = match ready {
        Some(link) => *link,
        None => open_link(
            targets.current(),
            fingerprint.clone(),
            seen,
            key,
            targets.liveness(),
            Fallback::Tcp,
        )
        .await
        .context("controller")?,
    };
    let Link {
        _endpoint,
        connection,
        mut send,
        mut frames,
        remote,
        transport,
        relay: relay_server,
        accepts_paths,
        replicas,
    } = link;
    targets.connected();
    if !replicas.is_empty() {
        targets.learn(replicas);
    }
    let first_use = fingerprint.is_none();
    let pinned = fingerprint.or_else(|| seen.lock().ok().and_then(|s| s.clone()));
    if let (true, Some(fp)) = (first_use, &pinned) {
        tracing::warn!(%controller, fingerprint = %fp, "no fingerprint given: trusting this controller certificate on first use and pinning it");
        let _ = events.send(ControlEvent::Fingerprint {
            controller: controller.to_owned(),
            fingerprint: fp.clone(),
        });
    }
    tracing::info!(%controller, via = %transport, "connected to controller");
    *backoff = Duration::from_secs(1);
    let mut relay_readers =
        spawn_relay_reader(connection.clone(), controller, relay_in.clone(), None);
    let _ = events.send(ControlEvent::Connected {
        controller: controller.to_owned(),
        remote,
        transport,
        replicas: targets.all().to_vec(),
    });
    // Relay frames go to the named relay-only instance while it is up, and
    // through this connection otherwise.
    let mut relays = Relays::new(RelayPath::new(connection.clone()));
    let (via_instance, mut instance_changes) = watch::channel(None);
    let (absent_tx, mut absent_rx) = mpsc::channel(relay::ABSENCE_QUEUE);
    // An instance with credentials of its own has its fingerprint named
    // with it; one from an older controller serves the controller's.
    let relay_server = relay_server.map(|named| {
        let fingerprint = named.fingerprint.or_else(|| pinned.clone());
        (named.target, fingerprint)
    });
    let mut instance = match relay_server {
        Some((target, Some(fp))) => Some(RelayInstance::spawn(
            controller.to_owned(),
            target,
            fp,
            key.clone(),
            events.clone(),
            relay_in.clone(),
            via_instance.clone(),
            absent_tx,
        )),
        Some((target, None)) => {
            tracing::warn!(%target, "no fingerprint to pin the relay with: relaying through the controller");
            None
        }
        None => None,
    };
    for join in session.joins.values().filter_map(to_message) {
        write(&mut send, &join).await?;
    }
    let on_tcp = transport == ControlTransport::Tcp;
    let mut recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + UDP_RECHECK, UDP_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // At most one probe at a time; dropped (aborted) with the link.
    let mut udp_probes = tokio::task::JoinSet::new();
    for (network_id, endpoints) in &session.endpoints {
        let message = NodeMessage::Endpoints {
            network_id: *network_id,
            endpoints: endpoints.clone(),
        };
        write(&mut send, &message).await?;
    }
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let message = frame.context("controller closed the control stream")??;
                dispatch(controller, message, events)?;
            }
            command = commands.recv() => {
                let Some(command) = command else { return Ok(Ended::Closed) };
                session.remember(&command);
                // An older controller closes the connection on a message it does not know.
                if matches!(command, ControlCommand::Paths(..)) && !accepts_paths {
                    continue;
                }
                if let Some(message) = to_message(&command) {
                    write(&mut send, &message).await?;
                }
            }
            Ok(()) = instance_changes.changed() => {
                relays.set_instance(instance_changes.borrow_and_update().clone());
            }
            Some(peer) = absent_rx.recv() => relays.absent(peer),
            Some(out) = relay.recv() => relays.send(out),
            _ = recheck.tick(), if on_tcp && udp_probes.is_empty() => {
                // A whole link, proved, so that traffic moves to it at once.
                let (target, pin, key, liveness) = (targets.current().to_owned(), pinned.clone(), key.clone(), targets.liveness());
                udp_probes.spawn(async move {
                    let seen = Arc::new(Mutex::new(None));
                    open_link(&target, pin, &seen, &key, liveness, Fallback::UdpOnly).await
                });
            }
            Some(probed) = udp_probes.join_next() => {
                match probed {
                    Ok(Ok(link)) => {
                        tracing::info!(%controller, "QUIC over UDP answers again: moving the link to UDP");
                        connection.close(0u32.into(), b"moved to UDP");
                        return Ok(Ended::MoveTo(Box::new(link)));
                    }
                    Ok(Err(e)) => tracing::debug!(%controller, error = %format!("{e:#}"), "still no QUIC over UDP"),
                    Err(e) => tracing::debug!(%controller, error = %e, "UDP check ended"),
                }
            }
            // A helper task that dies takes the link with it: the next one
            // starts them all again.
            error = relay::panicked(&mut relay_readers) => bail!("the relay reader panicked: {error}"),
            error = instance_died(&mut instance) => bail!("the relay-only instance's task died: {error}"),
        }
    }
}

/// Waits until the relay-only instance's task dies; pending without one.
async fn instance_died(instance: &mut Option<RelayInstance>) -> String {
    match instance {
        Some(instance) => instance.died().await,
        None => std::future::pending().await,
    }
}

fn dispatch(
    controller: &str,
    message: ControllerMessage,
    events: &mpsc::UnboundedSender<ControlEvent>,
) -> anyhow::Result<()> {
    let controller = controller.to_owned();
    let event = match message {
        ControllerMessage::JoinResult {
            network_id,
            result,
            sign_in_url,
            sign_in_refused,
        } => ControlEvent::JoinResult {
            controller,
            network_id,
            outcome: result,
            sign_in_url,
            sign_in_refused,
        },
        ControllerMessage::Netmap(map) => ControlEvent::Netmap { controller, map },
        ControllerMessage::NetmapDelta(delta) => ControlEvent::Delta { controller, delta },
        ControllerMessage::CallMeMaybe {
            network_id,
            from,
            endpoints,
            nat,
        } => ControlEvent::CallMeMaybe {
            controller,
            network_id,
            from,
            endpoints,
            nat,
        },
        ControllerMessage::Error {
            code,
            message,
            fatal,
        } => {
            if fatal {
                bail!("controller: {message} ({code})");
            }
            tracing::warn!(%code, %message, "controller refused a request");
            return Ok(());
        }
        ControllerMessage::Challenge { .. } | ControllerMessage::Welcome { .. } => {
            tracing::debug!("unexpected handshake message after authentication");
            return Ok(());
        }
    };
    let _ = events.send(event);
    Ok(())
}

/// What a command says on the wire; `None` for one that only changes
/// what this side remembers.
fn to_message(command: &ControlCommand) -> Option<NodeMessage> {
    Some(match command.clone() {
        ControlCommand::Join {
            network_id,
            name,
            preauth_key,
        } => NodeMessage::Join {
            network_id,
            name,
            preauth_key,
        },
        ControlCommand::Leave(network_id) => NodeMessage::Leave { network_id },
        ControlCommand::Endpoints(network_id, endpoints) => NodeMessage::Endpoints {
            network_id,
            endpoints,
        },
        ControlCommand::Resync(network_id) => NodeMessage::Resync { network_id },
        ControlCommand::CallMeMaybe {
            network_id,
            peer,
            endpoints,
            nat,
        } => NodeMessage::CallMeMaybe {
            network_id,
            peer,
            endpoints,
            nat,
        },
        ControlCommand::Services(network_id, services) => NodeMessage::Services {
            network_id,
            services,
        },
        ControlCommand::Routes(network_id, routes, site) => NodeMessage::Routes {
            network_id,
            routes,
            site,
        },
        ControlCommand::GrantUsed(network_id, grant) => {
            NodeMessage::GrantUsed { network_id, grant }
        }
        ControlCommand::SignIn(network_id) => NodeMessage::SignIn { network_id },
        ControlCommand::Paths(network_id, paths) => NodeMessage::Paths { network_id, paths },
        ControlCommand::Forget(_) => return None,
    })
}
