//! One network's data plane: its TUN, its UDP socket and its engine, on one
//! task, watched by a second that reports its death ([`NetworkEvent::Died`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use warren_engine::{Birthday, Engine, EngineConfig, Event, PeerConfig, PeerSnapshot, Via};
use warren_proto::control::NatHint;
use warren_proto::filter::{Direction, Explanation, FilterStats, PacketFilter, Protocol, Verdict};
use warren_proto::local_api::Counters;
use warren_proto::site::MappedPrefix;
use warren_proto::{NodePrivateKey, NodePublicKey};

use super::birthday::Birthdays;
use super::datapath::{
    relay_send, DataPath, GsoBatch, RelaySink, Sockets, TunReader, TunWriter, UdpReader,
};
use super::relay_in::{relay_in_queue, RelayInDrops, RelayInRx, RelayInTx, RELAY_IN_QUEUE};
use super::supervisor::join_error_message;
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
    /// Point allowed IPs outside the interface's subnets at it in the main
    /// table (the static network); joined networks leave their routes to
    /// `crate::routes`, which keeps them in Warren's own table.
    pub system_routes: bool,
    /// Birthday probing with peers behind hard NATs (`warren_engine::birthday`).
    pub hard_nat_probing: bool,
}

/// What the data plane reports about itself.
#[derive(Debug, Clone)]
pub struct NetworkReport {
    pub interface: String,
    pub listen_port: u16,
    pub offload: bool,
    pub peers: Vec<PeerSnapshot>,
    pub counters: Counters,
    /// The access-policy filter's counters.
    pub filter: FilterStats,
}

/// What the engine says of a new flow from this node to `dst`.
#[derive(Debug, Clone)]
pub struct FlowExplanation {
    /// This node's own address in the network, of `dst`'s family.
    pub src: IpAddr,
    /// The peer the flow would go to.
    pub peer: NodePublicKey,
    pub explanation: Explanation,
    pub stats: FilterStats,
}

/// What `warren ping` learns: the path that answered first and how fast.
#[derive(Debug, Clone)]
pub enum PingOutcome {
    Answered { via: Via, rtt: Duration },
    NoAnswer,
    UnknownPeer,
}

/// What a data plane asks of the daemon.
#[derive(Debug)]
pub enum NetworkEvent {
    /// Ask this peer, through the controller, to probe us now.
    CallMeMaybe {
        peer: NodePublicKey,
        endpoints: Vec<SocketAddr>,
        nat: Option<NatHint>,
    },
    /// A STUN server saw our data socket at `mapped`: a candidate for peers.
    Reflexive {
        server: SocketAddr,
        mapped: SocketAddr,
    },
    /// The way a peer is reached changed (direct, relayed or none): the
    /// controller hears of it (`managed::paths`).
    PathChanged,
    /// The data plane `instance` ended without being asked to: it panicked
    /// or failed. Its TUN and socket are gone.
    Died { instance: u64, error: String },
}

/// Where data planes send their events, tagged with their label.
pub type NetworkEvents = mpsc::UnboundedSender<(String, NetworkEvent)>;

enum Command {
    SetPeers(Vec<PeerConfig>),
    Report(oneshot::Sender<NetworkReport>),
    /// The control connection came up (with a way to the relay) or went down.
    SetRelay(RelaySink),
    SetLocalEndpoints(Vec<SocketAddr>),
    SetStunServers(Vec<SocketAddr>),
    Netcheck(oneshot::Sender<Vec<(SocketAddr, SocketAddr)>>),
    CallMeMaybe(NodePublicKey, Vec<SocketAddr>, Option<NatHint>),
    SprayRequest(NodePublicKey, IpAddr),
    Ping(NodePublicKey, oneshot::Sender<PingOutcome>),
    SetFilter(Option<PacketFilter>),
    /// The mapped prefixes of the site this node routes for.
    SetSiteMappings(Vec<MappedPrefix>),
    /// Would a new flow to (address, protocol, port) leave? `None`: no peer
    /// of this network routes the address.
    Explain(
        (IpAddr, Protocol, u16),
        oneshot::Sender<Option<FlowExplanation>>,
    ),
    Stop,
}

/// A TUN or socket that fails this many reads in a row is gone: the data
/// plane ends with an error rather than spin.
const FATAL_READ_ERRORS: u32 = 64;

/// Tells data planes apart across restarts, so a late death report of one
/// replaced already is not taken for its successor's.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// Starts data planes: on the host's TUN and sockets, or fakes in tests.
pub trait DataPlanes: Send + Sync {
    fn start(
        &self,
        spec: NetworkSpec,
        key: NodePrivateKey,
        events: NetworkEvents,
    ) -> anyhow::Result<NetworkHandle>;
}

/// Real data planes ([`NetworkHandle::start`]).
pub struct HostDataPlanes;

impl DataPlanes for HostDataPlanes {
    fn start(
        &self,
        spec: NetworkSpec,
        key: NodePrivateKey,
        events: NetworkEvents,
    ) -> anyhow::Result<NetworkHandle> {
        NetworkHandle::start(spec, key, events)
    }
}

/// The running data plane of one network; stop it with [`NetworkHandle::stop`].
pub struct NetworkHandle {
    pub spec: NetworkSpec,
    /// Which start of the data plane this is ([`NetworkEvent::Died`]).
    pub instance: u64,
    commands: mpsc::Sender<Command>,
    /// Where the relay reader puts this network's packets.
    relay_in: RelayInTx,
    /// The watcher: it ends after the loop, and reports the loop's death.
    task: JoinHandle<()>,
}

/// Runs `work` as a data plane's loop, and a watcher that sends
/// [`NetworkEvent::Died`] if it panics or fails. The watcher's handle is
/// the one to await: it ends once the loop has.
fn supervise(
    label: String,
    instance: u64,
    events: NetworkEvents,
    work: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) -> JoinHandle<()> {
    let work = tokio::spawn(work);
    tokio::spawn(async move {
        let error = match work.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) => join_error_message(e),
        };
        tracing::error!(network = %label, instance, %error, "data plane died");
        let _ = events.send((label, NetworkEvent::Died { instance, error }));
    })
}

impl NetworkHandle {
    /// Creates the TUN and the socket (errors come back here) and starts the loop.
    pub fn start(
        spec: NetworkSpec,
        key: NodePrivateKey,
        events: NetworkEvents,
    ) -> anyhow::Result<Self> {
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
        let mut config = EngineConfig::new(key, Box::new(rand_core::OsRng));
        // The engine reads no clock: its disco pings carry this one, moved
        // on by the monotonic clock, so peers can refuse replays.
        config.clock_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut engine = Engine::new(config);
        engine.set_hard_nat_probing(spec.hard_nat_probing);
        let (commands, rx) = mpsc::channel(256);
        let (relay_in, relay_rx) = relay_in_queue(RELAY_IN_QUEUE);
        let events_for_watch = events.clone();
        let state = Loop {
            label: spec.label.clone(),
            relay: None,
            relay_drops: Arc::clone(&relay_rx.drops),
            pings: BTreeMap::new(),
            events,
        };
        let instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let work = run(spec.clone(), engine, tun, udp, rx, relay_rx, state);
        let task = supervise(spec.label.clone(), instance, events_for_watch, work);
        Ok(Self {
            spec,
            instance,
            commands,
            relay_in,
            task,
        })
    }

    /// Makes the engine's peers exactly `peers`, keeping the sessions of those that stay.
    pub async fn set_peers(&self, peers: Vec<PeerConfig>) {
        let _ = self.commands.send(Command::SetPeers(peers)).await;
    }

    pub async fn set_relay(&self, sink: RelaySink) {
        let _ = self.commands.send(Command::SetRelay(sink)).await;
    }

    pub fn set_local_endpoints(&self, endpoints: Vec<SocketAddr>) {
        let _ = self
            .commands
            .try_send(Command::SetLocalEndpoints(endpoints));
    }

    pub async fn set_stun_servers(&self, servers: Vec<SocketAddr>) {
        let _ = self.commands.send(Command::SetStunServers(servers)).await;
    }

    /// Each STUN server and the address it saw us at.
    pub async fn netcheck(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Netcheck(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The queue relayed packets for this network go into (`relay_in`).
    pub fn relay_in(&self) -> RelayInTx {
        self.relay_in.clone()
    }

    pub async fn call_me_maybe(
        &self,
        from: NodePublicKey,
        endpoints: Vec<SocketAddr>,
        nat: Option<NatHint>,
    ) {
        let _ = self
            .commands
            .send(Command::CallMeMaybe(from, endpoints, nat))
            .await;
    }

    /// A peer behind a NAT that maps per destination at `ip` has just
    /// fanned out towards us: spray, within the engine's rates.
    pub async fn spray_request(&self, from: NodePublicKey, ip: IpAddr) {
        let _ = self.commands.send(Command::SprayRequest(from, ip)).await;
    }

    /// Starts a ping; the answer arrives on the returned channel.
    pub async fn ping(&self, peer: NodePublicKey) -> Option<oneshot::Receiver<PingOutcome>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Ping(peer, tx)).await.ok()?;
        Some(rx)
    }

    /// The access policy the engine enforces from now on (`None`: none).
    pub async fn set_filter(&self, filter: Option<PacketFilter>) {
        let _ = self.commands.send(Command::SetFilter(filter)).await;
    }

    /// The mapped prefixes this node's engine translates, as the router of
    /// its site (empty: none).
    pub async fn set_site_mappings(&self, pairs: Vec<MappedPrefix>) {
        let _ = self.commands.send(Command::SetSiteMappings(pairs)).await;
    }

    /// See [`FlowExplanation`]; `None` if no peer routes `dst`.
    pub async fn explain(
        &self,
        dst: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Option<FlowExplanation> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Explain((dst, protocol, port), tx))
            .await
            .ok()?;
        rx.await.ok().flatten()
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

/// The loop's own state besides the engine and the devices.
struct Loop {
    label: String,
    relay: RelaySink,
    relay_drops: Arc<RelayInDrops>,
    pings: BTreeMap<NodePublicKey, Vec<oneshot::Sender<PingOutcome>>>,
    events: NetworkEvents,
}

async fn run(
    spec: NetworkSpec,
    mut engine: Engine,
    tun: Tun,
    udp: Udp,
    mut commands: mpsc::Receiver<Command>,
    mut relay_in: RelayInRx,
    mut state: Loop,
) -> anyhow::Result<()> {
    let mut tun_errors = ReadErrors::default();
    let mut udp_errors = ReadErrors::default();
    let mut tun_reader = TunReader::new(spec.mtu);
    let mut udp_reader = UdpReader::new();
    let mut writer = TunWriter::new();
    let mut batch = GsoBatch::new(udp.max_segments());
    // Room for any WireGuard datagram (`relay_in` refuses longer ones).
    let mut scratch = vec![0u8; 65_536 + warren_engine::DATA_OVERHEAD];
    debug_assert!(scratch.len() >= super::relay_in::MAX_WIREGUARD_DATAGRAM);
    let (mut birthdays, mut heard) = Birthdays::new();
    loop {
        flush_engine(&mut engine, &udp, &mut birthdays, &mut state).await;
        let birthday_due = birthdays.poll_timeout();
        let deadline = [engine.poll_timeout(), birthday_due]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let relay = state.relay.clone();
        let mut path = DataPath {
            engine: &mut engine,
            tun: &tun,
            udp: &udp,
            extra: &birthdays,
            relay: &relay,
            scratch: &mut scratch,
            batch: &mut batch,
            writer: &mut writer,
        };
        tokio::select! {
            read = tun_reader.read(&tun) => {
                tun_errors.count(&read).context("reading the TUN device")?;
                path.handle_tun_read(&mut tun_reader, read).await;
            }
            ready = udp.socket.readable() => {
                udp_errors.count(&ready).context("waiting on the UDP socket")?;
                match ready {
                    Ok(()) => path.handle_udp_readable(&mut udp_reader).await,
                    Err(e) => tracing::warn!(error = %e, "UDP socket failed"),
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                engine.handle_timeout(now);
                if birthday_due.is_some_and(|t| now >= t) {
                    birthdays.handle_timeout(&udp, now).await;
                }
            }
            Some(datagram) = heard.recv() => {
                if path.handle_extra(&datagram).await {
                    birthdays.heard(datagram.socket, datagram.from, Instant::now());
                }
            }
            Some(packet) = relay_in.rx.recv() => path.handle_relay_packet(packet.from, &packet.payload).await,
            command = commands.recv() => match command {
                Some(Command::Stop) | None => break,
                Some(other) => handle_command(&mut engine, &tun, &udp, &spec, &mut state, other),
            },
        }
    }
    tracing::info!(network = %spec.label, interface = %tun.name, "data plane down");
    Ok(())
}

/// Read errors in a row on one device.
#[derive(Default)]
struct ReadErrors(u32);

impl ReadErrors {
    /// Counts a read's result; an error once too many failed in a row.
    /// Errors about one read's data (a packet the offload code refuses)
    /// say nothing of the device, and do not count.
    fn count<T>(&mut self, read: &std::io::Result<T>) -> anyhow::Result<()> {
        use std::io::ErrorKind;
        match read {
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock
                        | ErrorKind::Interrupted
                        | ErrorKind::InvalidData
                        | ErrorKind::InvalidInput
                ) => {}
            Err(e) => {
                self.0 += 1;
                if self.0 >= FATAL_READ_ERRORS {
                    anyhow::bail!("{} reads failed in a row, the last with: {e}", self.0);
                }
            }
            Ok(_) => self.0 = 0,
        }
        Ok(())
    }
}

fn handle_command(
    engine: &mut Engine,
    tun: &Tun,
    udp: &Udp,
    spec: &NetworkSpec,
    state: &mut Loop,
    command: Command,
) {
    let now = Instant::now();
    match command {
        Command::SetPeers(peers) => set_peers(engine, tun, spec, peers),
        Command::Report(reply) => {
            let _ = reply.send(NetworkReport {
                interface: tun.name.clone(),
                listen_port: udp.local_port(),
                offload: tun.offload,
                peers: engine.peers(now),
                counters: Counters {
                    dropped_relay_queue_full: state.relay_drops.queue_full(),
                    dropped_oversized: state.relay_drops.oversized(),
                    ..engine.counters().clone()
                },
                filter: filter_stats(engine, now),
            });
        }
        Command::SetFilter(filter) => engine.set_filter(filter, now),
        Command::SetSiteMappings(pairs) => engine.set_site_mappings(pairs),
        Command::Explain((dst, protocol, port), reply) => {
            let _ = reply.send(explain(engine, spec, (dst, protocol, port), now));
        }
        Command::SetRelay(sink) => {
            engine.set_relay_available(sink.is_some(), now);
            state.relay = sink;
        }
        Command::SetLocalEndpoints(endpoints) => engine.set_local_endpoints(endpoints, now),
        Command::SetStunServers(servers) => engine.set_stun_servers(servers, now),
        Command::Netcheck(reply) => {
            let _ = reply.send(engine.reflexive_addresses());
        }
        Command::CallMeMaybe(from, endpoints, nat) => {
            engine.handle_call_me_maybe(from, &endpoints, nat, now);
        }
        Command::SprayRequest(from, ip) => engine.handle_spray_request(&from, ip, now),
        Command::Ping(peer, reply) => {
            if engine.ping(&peer, now) {
                state.pings.entry(peer).or_default().push(reply);
            } else {
                let _ = reply.send(PingOutcome::UnknownPeer);
            }
        }
        Command::Stop => {}
    }
}

fn filter_stats(engine: &Engine, now: Instant) -> FilterStats {
    engine.filter().map(|f| f.stats(now)).unwrap_or_default()
}

fn explain(
    engine: &Engine,
    spec: &NetworkSpec,
    (dst, protocol, port): (IpAddr, Protocol, u16),
    now: Instant,
) -> Option<FlowExplanation> {
    let peer = engine.route(dst)?;
    let src = spec
        .addresses
        .iter()
        .map(IpNet::addr)
        .find(|a| a.is_ipv4() == dst.is_ipv4())?;
    let explanation = match engine.filter() {
        Some(f) => f.explain(Direction::Outbound, src, dst, protocol, port),
        None => Explanation {
            verdict: Verdict::Allow,
            rule: None,
        },
    };
    Some(FlowExplanation {
        src,
        peer,
        explanation,
        stats: filter_stats(engine, now),
    })
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
    if spec.system_routes {
        if let Err(e) = tun.add_routes(&routes_needed(&spec.addresses, &allowed)) {
            tracing::warn!(network = %spec.label, error = %e, "could not add routes");
        }
    }
    for peer in peers {
        let key = peer.public_key;
        if let Err(e) = engine.upsert_peer(peer, now) {
            tracing::warn!(network = %spec.label, peer = %key.short(), error = %e, "peer refused");
        }
    }
}

/// Sends what the engine queued off the hot path and acts on its events.
async fn flush_engine(engine: &mut Engine, udp: &Udp, birthdays: &mut Birthdays, state: &mut Loop) {
    while let Some(birthday) = engine.poll_birthday() {
        let now = Instant::now();
        match birthday {
            Birthday::FanOut { to, payload } => birthdays.fan_out(to, &payload, now).await,
            Birthday::Spray { ip, ports, payload } => birthdays.spray(ip, ports, payload, now),
        }
    }
    let out = Sockets {
        main: udp,
        extra: birthdays,
    };
    while let Some(transmit) = engine.poll_transmit() {
        let len = transmit.payload.len();
        match transmit.to {
            Via::Udp(to) => {
                // From where the peer reaches us, when the engine knows.
                let from = transmit.src_ip;
                if let Err(e) = out.send(to, from, &transmit.payload, len).await {
                    tracing::debug!(error = %e, %to, ?from, "UDP send failed");
                }
            }
            Via::Relay(peer) => relay_send(&state.relay, peer, &transmit.payload),
        }
    }
    let label = state.label.as_str();
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
            Event::PathChanged { peer, path, via } => {
                tracing::info!(network = label, peer = %peer.short(), ?path, ?via, "path changed");
                let _ = state
                    .events
                    .send((label.to_owned(), NetworkEvent::PathChanged));
            }
            Event::CallMeMaybe {
                peer,
                endpoints,
                nat,
            } => {
                let _ = state.events.send((
                    label.to_owned(),
                    NetworkEvent::CallMeMaybe {
                        peer,
                        endpoints,
                        nat,
                    },
                ));
            }
            Event::Reflexive { server, mapped } => {
                tracing::info!(network = label, %server, %mapped, "reflexive address");
                let _ = state
                    .events
                    .send((label.to_owned(), NetworkEvent::Reflexive { server, mapped }));
            }
            Event::PingResult { peer, via, rtt } => {
                let outcome = match (via, rtt) {
                    (Some(via), Some(rtt)) => PingOutcome::Answered { via, rtt },
                    _ => PingOutcome::NoAnswer,
                };
                for reply in state.pings.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(outcome.clone());
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "network_fake.rs"]
pub(crate) mod fake;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_run_of_device_errors_ends_a_data_plane() {
        let gone = || std::io::Error::from_raw_os_error(libc::EBADFD);
        let mut errors = ReadErrors::default();
        for _ in 1..FATAL_READ_ERRORS {
            errors.count::<usize>(&Err(gone())).unwrap();
        }
        // A good read starts the count again.
        errors.count(&Ok(1usize)).unwrap();
        for _ in 1..FATAL_READ_ERRORS {
            errors.count::<usize>(&Err(gone())).unwrap();
        }
        for kind in [
            std::io::ErrorKind::WouldBlock,
            std::io::ErrorKind::InvalidData,
        ] {
            errors.count::<usize>(&Err(kind.into())).unwrap();
        }
        let fatal = errors.count::<usize>(&Err(gone())).unwrap_err();
        assert!(
            format!("{fatal}").contains("64 reads failed in a row"),
            "{fatal}"
        );
    }
}
