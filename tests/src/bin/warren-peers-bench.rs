//! warren-peers-bench: what a network of many peers costs one agent
//! (issue 18, "10,000 peers per node"). Needs root.
//!
//! For each peer count, in a fresh lab: two real agents, a and b, join the
//! lab's scripted controller (`warren_lab::hostile_controller`, which
//! speaks the control protocol and sends what it is told). a gets a netmap
//! of b and N - 1 other peers, each with one candidate address in
//! 198.18.0.0/15 (no host answers there: they are peers nobody talks to);
//! b gets a netmap of a alone. Once a pings b over the overlay:
//! - **full map**: how long a took to apply the N-peer netmap
//!   (`netmap_apply_us` in `warren status --json`: from its arrival to the
//!   data plane, DNS and routes running on it);
//! - **RSS**: a's resident memory (VmRSS) after a settling pause;
//! - **idle CPU**: a's user plus system time over `IDLE_SECONDS`, with no
//!   traffic anywhere, as a share of one core;
//! - **delta**: `DELTAS` one-peer deltas, each adding a peer, one at a
//!   time; the apply time of each as the agent reports it;
//! - **gap**: the longest pause between arrivals of a UDP stream from b to
//!   a over the overlay (one datagram every 250 µs), while the deltas
//!   arrive, next to the same stream's longest pause without them (the
//!   anchor: the sender's and the lab's own jitter).
//!
//! Environment: `PEERS` (`100,10000`), `DELTAS` (20), `IDLE_SECONDS` (10),
//! `WARREN_BIN` (use a release build).

use std::env;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use ipnet::IpNet;
use warren_lab::controller::QUIC_PORT;
use warren_lab::hostile_controller::{self, Attack, HostileController};
use warren_lab::in_netns;
use warren_lab::mesh::{Mesh, CONTROLLER_ROLE};
use warren_lab::wait::{self, Poll};
use warren_lab::{is_root, ping, Lab};
use warren_proto::control::ControllerMessage;
use warren_proto::netmap::{Netmap, NetmapDelta, NetmapPeer};
use warren_proto::{NetworkId, NodeId, NodePrivateKey, NodePublicKey};

/// Bound on every wait of the bench; past it the run fails.
const SETTLE: Duration = Duration::from_secs(60);
/// The overlay stream: one datagram this often, to this port.
const STREAM_EVERY: Duration = Duration::from_micros(250);
const STREAM_PORT: u16 = 9000;
/// How long the stream runs without deltas (the anchor).
const QUIET_STREAM: Duration = Duration::from_secs(3);
/// Before measuring memory and idle CPU: handshakes and probes settle.
const SETTLING: Duration = Duration::from_secs(5);
const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 3);

struct Options {
    peers: Vec<usize>,
    deltas: usize,
    idle: Duration,
}

/// `name` from the environment, else `default`: a number in `range`.
fn number(
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> anyhow::Result<usize> {
    let n = match env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{name}: {text:?}"))?,
        Err(_) => default,
    };
    ensure!(
        range.contains(&n),
        "{name}: from {} to {}",
        range.start(),
        range.end()
    );
    Ok(n)
}

fn options() -> anyhow::Result<Options> {
    let peers = env::var("PEERS").unwrap_or_else(|_| "100,10000".to_owned());
    let peers = peers
        .split(',')
        .map(|n| n.trim().parse().with_context(|| format!("PEERS: {n:?}")))
        .collect::<anyhow::Result<Vec<usize>>>()?;
    ensure!(
        peers.iter().all(|n| (2..=60_000).contains(n)),
        "PEERS: from 2 to 60000 each"
    );
    Ok(Options {
        peers,
        deltas: number("DELTAS", 20, 1..=1000)?,
        idle: Duration::from_secs(number("IDLE_SECONDS", 10, 1..=600)? as u64),
    })
}

/// What one peer count measured.
struct Row {
    peers: usize,
    full_map: Duration,
    rss_kib: u64,
    idle_cpu: f64,
    deltas: Vec<Duration>,
    quiet_gap: Duration,
    delta_gap: Duration,
    lost: u64,
}

fn main() -> anyhow::Result<()> {
    if !is_root() {
        bail!("warren-peers-bench needs root (network namespaces, TUN devices)");
    }
    let options = options()?;
    let mut rows = Vec::new();
    for &n in &options.peers {
        let lab = Lab::new(&format!("peers_bench_{n}"))?;
        match run(&lab, n, &options) {
            Ok(row) => rows.push(row),
            Err(e) => {
                lab.print_logs();
                return Err(e.context(format!("{n} peers")));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\npeers   full map   RSS      idle CPU  delta apply median / p95 / max   gap quiet / deltas   lost"
    )?;
    for r in &rows {
        let mut d = r.deltas.clone();
        d.sort();
        let at = |q: usize| d.get((d.len() * q / 100).min(d.len() - 1)).copied();
        writeln!(
            out,
            "{:<7} {:>7.1} ms {:>5.1} MB {:>7.2} %  {:>8.3} / {:.3} / {:.3} ms   {:>6.2} / {:.2} ms   {}",
            r.peers,
            ms(r.full_map),
            r.rss_kib as f64 / 1024.0,
            r.idle_cpu,
            at(50).map_or(f64::NAN, ms),
            at(95).map_or(f64::NAN, ms),
            d.last().copied().map_or(f64::NAN, ms),
            ms(r.quiet_gap),
            ms(r.delta_gap),
            r.lost
        )?;
    }
    writeln!(
        out,
        "targets (issue 18, at 10,000 peers): RSS <= 30 MB, delta <= 1 ms, gap <= 1 ms, idle CPU <= 1 %"
    )?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run(lab: &Lab, n: usize, options: &Options) -> anyhow::Result<Row> {
    let mut mesh = Mesh::build(lab, &["a", "b"])?;
    let ctl = mesh.host(CONTROLLER_ROLE)?.addr;
    let scripted = HostileController::start(
        mesh.ns(CONTROLLER_ROLE)?,
        SocketAddr::new(ctl.into(), QUIC_PORT + 1),
    )?;
    let net = scripted.network();
    let id = net.to_string();
    let mut keys = Vec::new();
    let mut ports = Vec::new();
    for name in ["a", "b"] {
        let agent = mesh.agent(name)?;
        let out = agent.join_at(scripted.addr(), scripted.fingerprint(), &id, None, &[])?;
        ensure!(
            out.status.success(),
            "{name} did not join: {}",
            out.render()
        );
        let status = mesh
            .agent_mut(name)?
            .wait_state(&id, "authorized", SETTLE)?;
        let port = status.network(&id)?.0["listen_port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .context("no listen port")?;
        keys.push(status.public_key()?.parse::<NodePublicKey>()?);
        ports.push(port);
    }
    let (a_key, b_key) = (keys[0], keys[1]);
    let a_at = SocketAddr::new(mesh.host("a")?.addr.into(), ports[0]);
    let b_at = SocketAddr::new(mesh.host("b")?.addr.into(), ports[1]);

    let mut a_peers = vec![peer(b_key, "b", B_ADDR, b_at)];
    a_peers.extend((1..n).map(fake_peer));
    let version = 10;
    let a_map = netmap(net, version, &a_key, "a", A_ADDR, a_peers);
    let b_peers = vec![peer(a_key, "a", A_ADDR, a_at)];
    let b_map = netmap(net, version, &b_key, "b", B_ADDR, b_peers);
    for (key, map) in [(b_key, b_map), (a_key, a_map)] {
        scripted.push(Attack::ForNode {
            node: key,
            message: Box::new(ControllerMessage::Netmap(map)),
        })?;
    }
    let full_map = wait_applied(&mesh, &id, version)?;
    ping::wait_reachable(mesh.ns("a")?, B_ADDR.into(), SETTLE)?;
    thread::sleep(SETTLING);

    let pid = mesh
        .agent_mut("a")?
        .process()
        .map(|p| p.pid())
        .context("agent a is not running")?;
    let rss_kib = rss_kib(pid)?;
    let before = cpu_time(pid)?;
    thread::sleep(options.idle);
    let used = cpu_time(pid)?.saturating_sub(before);
    let idle_cpu = used.as_secs_f64() / options.idle.as_secs_f64() * 100.0;

    // The anchor: the stream's own longest pause, with nothing else going on.
    let quiet = Stream::start(&mesh)?;
    thread::sleep(QUIET_STREAM);
    let (quiet_gap, quiet_lost) = quiet.finish()?;
    ensure!(
        quiet_gap > Duration::ZERO,
        "the quiet stream carried nothing"
    );

    let stream = Stream::start(&mesh)?;
    let mut deltas = Vec::new();
    for i in 0..options.deltas {
        let base = version + i as u64;
        let delta = NetmapDelta {
            network_id: net,
            base_version: base,
            version: base + 1,
            self_node: None,
            network_name: None,
            dns: None,
            settings: None,
            filter: None,
            filter_removed: false,
            upsert_peers: vec![fake_peer(n + i)],
            remove_peers: Vec::new(),
        };
        scripted.push(Attack::ForNode {
            node: a_key,
            message: Box::new(ControllerMessage::NetmapDelta(delta)),
        })?;
        deltas.push(wait_applied(&mesh, &id, base + 1)?);
    }
    let (delta_gap, lost) = stream.finish()?;
    mesh.ensure_running()?;
    Ok(Row {
        peers: n,
        full_map,
        rss_kib,
        idle_cpu,
        deltas,
        quiet_gap,
        delta_gap,
        lost: lost + quiet_lost,
    })
}

/// Waits until a runs on netmap `version`; how long it said that took.
fn wait_applied(mesh: &Mesh, id: &str, version: u64) -> anyhow::Result<Duration> {
    let us = wait::until(format!("a on netmap {version}"), SETTLE, || {
        let status = mesh.agent("a")?.status()?;
        let net = status.network(id)?;
        Ok(
            match (net.netmap_version(), net.0["netmap_apply_us"].as_u64()) {
                (Some(v), Some(us)) if v == version => Poll::Ready(us),
                (v, _) => Poll::Pending(format!("on version {v:?}")),
            },
        )
    })?;
    Ok(Duration::from_micros(us))
}

/// The scripted controller's network as `key` sees it: itself at `addr`
/// in a /16, and `peers`.
fn netmap(
    network: NetworkId,
    version: u64,
    key: &NodePublicKey,
    name: &str,
    addr: Ipv4Addr,
    peers: Vec<NetmapPeer>,
) -> Netmap {
    let mut map = hostile_controller::own_netmap(network, key, name);
    map.version = version;
    map.self_node = hostile_controller::self_node(key, name, &format!("{addr}/16"));
    map.peers = peers;
    map
}

fn peer(key: NodePublicKey, name: &str, addr: Ipv4Addr, at: SocketAddr) -> NetmapPeer {
    NetmapPeer {
        node_id: NodeId::from_key(&key),
        name: name.to_owned(),
        public_key: key,
        addresses: vec![IpNet::from(IpAddr::from(addr))],
        routes: Vec::new(),
        endpoints: vec![at],
        online: true,
    }
}

/// Peer `i` of the many: 10.201.1.2 onwards, a candidate in 198.18.0.0/15.
fn fake_peer(i: usize) -> NetmapPeer {
    let (hi, lo) = ((i / 250 + 1) as u8, (i % 250 + 2) as u8);
    let candidate = SocketAddr::new(Ipv4Addr::new(198, 18, hi, lo).into(), 51820);
    let key = NodePrivateKey::generate().public_key();
    peer(
        key,
        &format!("p{i}"),
        Ipv4Addr::new(10, 201, hi, lo),
        candidate,
    )
}

fn proc_status(pid: u32) -> anyhow::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/PID/status")
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = proc_status(pid)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Time `pid` has run on a CPU so far, all its threads together
/// (`/proc/PID/task/TID/schedstat`, in nanoseconds: finer than the 10 ms
/// ticks of `/proc/PID/stat`). Threads that ended are not counted: the
/// agent's runtime keeps its workers.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let mut total = 0u64;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).context("reading /proc/PID/task")?;
    for task in tasks {
        let path = task?.path().join("schedstat");
        // A thread that ended since the listing has no file any more.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        let ns: u64 = stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("odd {}", path.display()))?;
        total += ns;
    }
    Ok(Duration::from_nanos(total))
}

/// A UDP stream from b to a over the overlay, and its receiver.
struct Stream {
    stop_sending: Arc<AtomicBool>,
    stop_receiving: Arc<AtomicBool>,
    sender: in_netns::NetnsThread<anyhow::Result<u64>>,
    receiver: in_netns::NetnsThread<anyhow::Result<(Duration, u64)>>,
}

impl Stream {
    fn start(mesh: &Mesh) -> anyhow::Result<Stream> {
        let stop_sending = Arc::new(AtomicBool::new(false));
        let stop_receiving = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let done = Arc::clone(&stop_receiving);
        let receiver = in_netns::spawn(mesh.ns("a")?.name(), move || {
            let socket = UdpSocket::bind((A_ADDR, STREAM_PORT))?;
            socket.set_read_timeout(Some(Duration::from_millis(100)))?;
            let _ = ready_tx.send(());
            let (mut last, mut gap, mut count) = (None::<Instant>, Duration::ZERO, 0u64);
            let mut buf = [0u8; 64];
            while !done.load(Ordering::Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    let now = Instant::now();
                    if let Some(last) = last {
                        gap = gap.max(now - last);
                    }
                    last = Some(now);
                    count += 1;
                }
            }
            anyhow::Ok((gap, count))
        })?;
        ready
            .recv_timeout(Duration::from_secs(10))
            .context("the stream's receiver did not start")?;
        let done = Arc::clone(&stop_sending);
        let sender = in_netns::spawn(mesh.ns("b")?.name(), move || {
            let socket = UdpSocket::bind((B_ADDR, 0))?;
            let to = SocketAddr::new(A_ADDR.into(), STREAM_PORT);
            let start = Instant::now();
            let mut sent = 0u64;
            while !done.load(Ordering::Relaxed) {
                socket.send_to(&sent.to_be_bytes(), to)?;
                sent += 1;
                let next = start + STREAM_EVERY * u32::try_from(sent).unwrap_or(u32::MAX);
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            anyhow::Ok(sent)
        })?;
        Ok(Stream {
            stop_sending,
            stop_receiving,
            sender,
            receiver,
        })
    }

    /// Stops the stream: its longest pause between arrivals, and how many
    /// datagrams were lost.
    fn finish(self) -> anyhow::Result<(Duration, u64)> {
        self.stop_sending.store(true, Ordering::Relaxed);
        let sent = self.sender.join()??;
        // The last datagrams land before the receiver stops.
        thread::sleep(Duration::from_millis(200));
        self.stop_receiving.store(true, Ordering::Relaxed);
        let (gap, received) = self.receiver.join()??;
        ensure!(received > 0, "the stream carried nothing ({sent} sent)");
        Ok((gap, sent.saturating_sub(received)))
    }
}
