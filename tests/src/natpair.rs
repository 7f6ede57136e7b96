//! Two managed agents behind two NAT routers of chosen behaviours, with the
//! controller (STUN and relay) on the internet between them: the lab of the
//! NAT-matrix and relay suites and of `warren-nat-bench`.
//!
//! ```text
//! [host-a] agent a -- [router-a] NAT -+
//!                                     [internet] controller 192.0.2.10
//! [host-b] agent b -- [router-b] NAT -+
//! ```
//! The topology and the NAT rulesets are those of [`NatLab`]; see
//! shared/NATLAB.md for what each behaviour does and which pairs must end
//! direct or relayed.

use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::command;
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::managed::ManagedAgent;
use crate::nat::Nat;
use crate::nat_controller::{Listen, NatController, RelayCounters, RELAY_QUIC};
use crate::netns::Netns;
use crate::ping::{self, PingReport};
use crate::status::Status;
use crate::topology::NatLab;
use crate::wait::{self, Poll};

/// The agents' data-plane port: the daemon's default for its first network,
/// and the port the cone NATs forward.
pub const AGENT_PORT: u16 = 51820;

/// The overlay network's address pool.
pub const POOL: &str = "10.147.0.0/16";

/// How often path waits look at `warren status`.
const PATH_POLL: Duration = Duration::from_millis(100);

/// A NAT behaviour of NATLAB.md's matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    Restricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestricted,
    /// Endpoint-dependent mapping (`masquerade random`).
    Symmetric,
    /// Endpoint-dependent mapping (`masquerade fully-random`).
    SymmetricFullyRandom,
}

impl NatKind {
    /// The four rows and columns of NATLAB.md's matrix.
    pub const MATRIX: [NatKind; 4] = [
        NatKind::FullCone,
        NatKind::Restricted,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ];

    /// Every behaviour the lab can make.
    pub const ALL: [NatKind; 5] = [
        NatKind::FullCone,
        NatKind::Restricted,
        NatKind::PortRestricted,
        NatKind::Symmetric,
        NatKind::SymmetricFullyRandom,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NatKind::FullCone => "full-cone",
            NatKind::Restricted => "restricted",
            NatKind::PortRestricted => "port-restricted",
            NatKind::Symmetric => "symmetric",
            NatKind::SymmetricFullyRandom => "fully-random",
        }
    }

    /// A short name, for pair lists such as `PAIRS=pr:sym,fc:fc`.
    pub fn short(self) -> &'static str {
        match self {
            NatKind::FullCone => "fc",
            NatKind::Restricted => "rc",
            NatKind::PortRestricted => "pr",
            NatKind::Symmetric => "sym",
            NatKind::SymmetricFullyRandom => "symfr",
        }
    }

    /// Parses a name or short name.
    pub fn parse(text: &str) -> Option<NatKind> {
        NatKind::ALL
            .into_iter()
            .find(|k| k.name() == text || k.short() == text)
    }

    /// The router ruleset for this behaviour.
    pub fn nat(self) -> Nat {
        self.nat_for(AGENT_PORT)
    }

    /// The router ruleset for this behaviour, for a LAN agent on UDP `port`
    /// (which cone NATs forward).
    pub fn nat_for(self, port: u16) -> Nat {
        match self {
            NatKind::FullCone => Nat::FullCone { port },
            NatKind::Restricted => Nat::RestrictedCone { port },
            NatKind::PortRestricted => Nat::PortRestricted,
            NatKind::Symmetric => Nat::Symmetric,
            NatKind::SymmetricFullyRandom => Nat::SymmetricFullyRandom,
        }
    }

    /// Whether the mapping depends on the destination (RFC 4787
    /// endpoint-dependent mapping), which `warren netcheck` should see.
    pub fn maps_per_destination(self) -> bool {
        matches!(self, NatKind::Symmetric | NatKind::SymmetricFullyRandom)
    }
}

impl fmt::Display for NatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an agent reaches its peer, as `warren status --json` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPath {
    Direct,
    Relay,
    None,
}

impl PeerPath {
    fn parse(text: &str) -> Option<PeerPath> {
        match text {
            "direct" => Some(PeerPath::Direct),
            "relay" => Some(PeerPath::Relay),
            "none" => Some(PeerPath::None),
            _ => None,
        }
    }
}

impl fmt::Display for PeerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerPath::Direct => "direct",
            PeerPath::Relay => "relay",
            PeerPath::None => "none",
        })
    }
}

/// The final path a correct agent reaches with router-a doing `a` and
/// router-b doing `b` (NATLAB.md, "expected outcomes"): relayed only when
/// one side maps per destination and the other filters on address and port.
pub fn expected_path(a: NatKind, b: NatKind) -> PeerPath {
    let hard = |k: NatKind| k.maps_per_destination();
    let strict = |k: NatKind| k == NatKind::PortRestricted || hard(k);
    if (hard(a) && strict(b)) || (hard(b) && strict(a)) {
        PeerPath::Relay
    } else {
        PeerPath::Direct
    }
}

/// One side of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// What an agent's `warren status` says of its one peer.
#[derive(Debug, Clone)]
pub struct PeerView {
    pub path: PeerPath,
    pub endpoint: Option<String>,
    pub latency_ms: Option<f64>,
    /// When the current session's handshake completed. The agent derives
    /// it from an age, so two readings of one handshake differ by a few
    /// microseconds: compare with [`PeerView::same_handshake`].
    pub last_handshake: Option<SystemTime>,
}

impl PeerView {
    fn read(status: &Status) -> Result<PeerView> {
        let peers = status.peers();
        let [peer] = peers.as_slice() else {
            return Err(LabError::Output {
                what: "warren status --json".to_owned(),
                detail: format!("expected exactly one peer: {}", status.json),
            });
        };
        let text = |key: &str| peer.0.get(key).and_then(Value::as_str).map(str::to_owned);
        let path = text("path")
            .as_deref()
            .and_then(PeerPath::parse)
            .ok_or_else(|| LabError::Output {
                what: "warren status --json".to_owned(),
                detail: format!("peer without a known path: {}", peer.0),
            })?;
        Ok(PeerView {
            path,
            endpoint: text("endpoint"),
            latency_ms: peer.0.get("latency_ms").and_then(Value::as_f64),
            last_handshake: text("last_handshake")
                .map(|t| {
                    humantime::parse_rfc3339(&t).map_err(|e| LabError::Output {
                        what: "warren status --json".to_owned(),
                        detail: format!("last_handshake {t:?} is not RFC 3339: {e}"),
                    })
                })
                .transpose()?,
        })
    }

    /// Whether `self` and `other` show the same completed handshake (both
    /// present and within 100 ms of each other).
    pub fn same_handshake(&self, other: &PeerView) -> bool {
        match (self.last_handshake, other.last_handshake) {
            (Some(x), Some(y)) => {
                let d = x.duration_since(y).or_else(|_| y.duration_since(x));
                d.is_ok_and(|d| d < Duration::from_millis(100))
            }
            _ => false,
        }
    }
}

impl fmt::Display for PeerView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {}",
            self.path,
            self.endpoint.as_deref().unwrap_or("-")
        )?;
        if let Some(ms) = self.latency_ms {
            write!(f, " ({ms:.2} ms)")?;
        }
        Ok(())
    }
}

/// The lab. Fields drop in order: agents, controller, then namespaces.
#[derive(Debug)]
pub struct NatPair {
    pub a: ManagedAgent,
    pub b: ManagedAgent,
    pub controller: NatController,
    pub net: NatLab,
    pub kinds: (NatKind, NatKind),
    /// The overlay network both agents join.
    pub network: String,
    key: String,
    /// Name of the nftables table that blocks UDP (see [`NatPair::block_udp`]).
    block_table: String,
    nft_dir: std::path::PathBuf,
}

impl NatPair {
    /// Builds the topology with router-a doing `a` and router-b doing `b`,
    /// starts the controller with a network and a reusable key, and starts
    /// both daemons (not yet joined).
    pub fn build(lab: &Lab, a: NatKind, b: NatKind) -> Result<NatPair> {
        Self::build_with_relay_rate(lab, a, b, None)
    }

    /// [`NatPair::build`] with the controller's per-node relay quota set to
    /// `relay_rate` bytes per second (its default when `None`).
    pub fn build_with_relay_rate(
        lab: &Lab,
        a: NatKind,
        b: NatKind,
        relay_rate: Option<u64>,
    ) -> Result<NatPair> {
        Self::build_with(lab, a, b, relay_rate, false, Listen::ServerAddress, &[])
    }

    /// [`NatPair::build`] with birthday probing on in both agents (the lab
    /// harness turns it off otherwise).
    pub fn build_hard_nat_probing(lab: &Lab, a: NatKind, b: NatKind) -> Result<NatPair> {
        let flags = ["--hard-nat-probing", "true"];
        Self::build_with(lab, a, b, None, false, Listen::ServerAddress, &flags)
    }

    /// [`NatPair::build`] with the controller on its default wildcard
    /// addresses and DNS on `[::]:53` ([`Listen::Wildcard`]): a multi-homed
    /// host whose service address is not the one the routes back pick.
    pub fn build_multihomed(lab: &Lab, a: NatKind, b: NatKind) -> Result<NatPair> {
        Self::build_with(lab, a, b, None, false, Listen::Wildcard, &[])
    }

    /// [`NatPair::build`] with a relay-only instance beside the controller,
    /// which the controller tells agents to relay through.
    pub fn build_with_relay_instance(lab: &Lab, a: NatKind, b: NatKind) -> Result<NatPair> {
        Self::build_with(lab, a, b, None, true, Listen::ServerAddress, &[])
    }

    fn build_with(
        lab: &Lab,
        a: NatKind,
        b: NatKind,
        relay_rate: Option<u64>,
        relay_instance: bool,
        listen: Listen,
        agent_flags: &[&str],
    ) -> Result<NatPair> {
        let net = NatLab::build(lab, a.nat(), b.nat())?;
        let controller =
            NatController::start_listening(lab, &net.internet, relay_rate, relay_instance, listen)?;
        let network = controller.network_create("natlab", POOL)?;
        let key = controller.key_create(&network)?;
        let port = Some(AGENT_PORT);
        let agent_a = ManagedAgent::start_with(lab, &net.host_a, "a", port, agent_flags)?;
        let agent_b = ManagedAgent::start_with(lab, &net.host_b, "b", port, agent_flags)?;
        Ok(NatPair {
            a: agent_a,
            b: agent_b,
            controller,
            net,
            kinds: (a, b),
            network,
            key,
            block_table: format!("{}blk", lab.prefix()),
            nft_dir: lab.subdir("nft")?,
        })
    }

    /// "a-kind x b-kind", for messages.
    pub fn label(&self) -> String {
        format!("{} x {}", self.kinds.0, self.kinds.1)
    }

    pub fn agent(&self, side: Side) -> &ManagedAgent {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// The host namespace an agent runs in.
    pub fn host(&self, side: Side) -> &Netns {
        match side {
            Side::A => &self.net.host_a,
            Side::B => &self.net.host_b,
        }
    }

    fn join_one(&self, side: Side) -> Result<()> {
        let agent = self.agent(side);
        let controller = crate::nat_controller::QUIC.to_string();
        let mut cmd = agent.command([
            "join",
            &self.network,
            "--controller",
            &controller,
            "--fingerprint",
            self.controller.fingerprint(),
            "--key",
            &self.key,
            "--name",
            agent.name(),
            "--wait",
            "10s",
        ]);
        let out = command::output(&mut cmd)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.starts_with("joined") {
            return Err(LabError::Output {
                what: format!("warren join on {}", agent.name()),
                detail: format!(
                    "{}: {} {}",
                    out.status,
                    stdout.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    /// Both agents join at the same moment; returns once both are
    /// authorized members, with how long that took.
    pub fn join_both(&self) -> Result<Duration> {
        let start = Instant::now();
        let (a, b) = thread::scope(|s| {
            let a = s.spawn(|| self.join_one(Side::A));
            let b = s.spawn(|| self.join_one(Side::B));
            (a.join(), b.join())
        });
        let panicked = |_| LabError::Invalid("a join thread panicked".to_owned());
        a.map_err(panicked)??;
        b.map_err(panicked)??;
        Ok(start.elapsed())
    }

    /// The agent's overlay IPv4 address in the pair's network.
    pub fn overlay_v4(&self, side: Side) -> Result<Ipv4Addr> {
        self.agent(side).status()?.network(&self.network)?.ipv4()
    }

    /// What `side` says of its peer now.
    pub fn peer_view(&self, side: Side) -> Result<PeerView> {
        PeerView::read(&self.agent(side).status()?)
    }

    /// Both views, a's first.
    pub fn views(&self) -> Result<(PeerView, PeerView)> {
        Ok((self.peer_view(Side::A)?, self.peer_view(Side::B)?))
    }

    /// Errors if a daemon or the controller has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.a.ensure_running()?;
        self.b.ensure_running()?;
        self.controller.ensure_running()
    }

    /// Waits until both agents report `want`; returns how long it took.
    pub fn wait_path(&mut self, want: PeerPath, within: Duration) -> Result<Duration> {
        let start = Instant::now();
        let deadline = start + within;
        loop {
            self.ensure_running()?;
            let (a, b) = self.views()?;
            if a.path == want && b.path == want {
                return Ok(start.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!(
                        "both agents of {} to go {want} (a: {a}; b: {b})",
                        self.label()
                    ),
                    after: within,
                });
            }
            thread::sleep(PATH_POLL);
        }
    }

    /// The `paths` of `side`'s member in the controller's members API (as
    /// `warren-controller member list --json` prints it): what its agent
    /// last reported.
    pub fn reported_paths(&self, side: Side) -> Result<Vec<Value>> {
        let what = "warren-controller member list --json";
        let mut cmd = self
            .controller
            .command(["member", "list", &self.network, "--json"]);
        let out = command::run_stdout(&mut cmd)?;
        let json: Value = serde_json::from_str(&out).map_err(|e| LabError::Output {
            what: what.into(),
            detail: format!("{e}: {out}"),
        })?;
        let name = self.agent(side).name();
        let member = json["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["name"] == name))
            .ok_or_else(|| LabError::Output {
                what: what.into(),
                detail: format!("no member named {name} in {json}"),
            })?;
        Ok(member["paths"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until the controller's API shows each agent with one path, to
    /// the other, of `kind` (`direct`, with its endpoint, or `relayed`,
    /// without): what the agents report. Returns how long it took.
    pub fn wait_reported_paths(&self, kind: &str, within: Duration) -> Result<Duration> {
        let start = Instant::now();
        wait::until(
            format!("the controller to show both agents' paths as {kind}"),
            within,
            || {
                let mut seen = Vec::new();
                let mut all = true;
                for side in [Side::A, Side::B] {
                    let paths = self.reported_paths(side)?;
                    let other = self.agent(side.other()).name();
                    all &= matches!(paths.as_slice(), [p]
                        if p["peer_name"] == other
                            && p["kind"] == kind
                            && p["endpoint"].is_null() == (kind == "relayed"));
                    seen.push(format!(
                        "{}: {}",
                        self.agent(side).name(),
                        Value::Array(paths)
                    ));
                }
                Ok(if all {
                    Poll::Ready(start.elapsed())
                } else {
                    Poll::Pending(seen.join("; "))
                })
            },
        )
    }

    /// Checks for `hold` that both agents keep reporting `want`.
    pub fn hold_path(&mut self, want: PeerPath, hold: Duration) -> Result<()> {
        let deadline = Instant::now() + hold;
        while Instant::now() < deadline {
            self.ensure_running()?;
            let (a, b) = self.views()?;
            if a.path != want || b.path != want {
                return Err(LabError::Output {
                    what: format!("the path of {}", self.label()),
                    detail: format!("left {want}: a: {a}; b: {b}"),
                });
            }
            thread::sleep(wait::POLL);
        }
        Ok(())
    }

    /// Pings `side`'s peer over the overlay until it answers (up to
    /// `within`), then `count` more times; the report of those.
    pub fn ping(&self, from: Side, count: u16, within: Duration) -> Result<PingReport> {
        let dst = self.overlay_v4(from.other())?.into();
        let ns = self.host(from);
        ping::wait_reachable(ns, dst, within)?;
        ping::ping(
            ns,
            dst,
            count,
            Duration::from_millis(100),
            Duration::from_secs(2),
        )
    }

    /// Pings `count` times from each side once the other answers (within
    /// 5 s), and errors with the report, named by `what`, unless every
    /// ping was answered.
    pub fn ping_both_ways(&self, count: u16, what: &str) -> Result<()> {
        for from in [Side::A, Side::B] {
            let report = self.ping(from, count, Duration::from_secs(5))?;
            if report.received != report.sent {
                return Err(LabError::Output {
                    what: format!("ping from {from:?} {what}"),
                    detail: report.render(),
                });
            }
        }
        Ok(())
    }

    /// The controller's relay counters now.
    pub fn relay_counters(&self) -> Result<RelayCounters> {
        self.controller.relay_counters(&self.net.internet)
    }

    /// SIGKILLs the relay-only instance (see [`NatPair::build_with_relay_instance`]).
    pub fn kill_relay_instance(&mut self) -> Result<()> {
        self.controller.kill_relay_instance()
    }

    /// The relay-only instance's counters (see [`NatPair::build_with_relay_instance`]).
    pub fn instance_relay_counters(&self) -> Result<RelayCounters> {
        self.controller.instance_relay_counters(&self.net.internet)
    }

    /// `warren netcheck --json` of one agent.
    pub fn netcheck(&self, side: Side) -> Result<Value> {
        let mut cmd = self.agent(side).command(["netcheck", "--json"]);
        let out = command::run_stdout(&mut cmd)?;
        serde_json::from_str(&out).map_err(|e| LabError::Output {
            what: "warren netcheck --json".to_owned(),
            detail: format!("{e}: {out}"),
        })
    }

    /// Waits until `side`'s netcheck has both STUN answers and returns
    /// whether its mapping varies by destination.
    pub fn wait_mapping_varies(&self, side: Side, within: Duration) -> Result<bool> {
        wait::until(
            format!("two STUN answers for {}", self.agent(side).name()),
            within,
            || {
                let report = self.netcheck(side)?;
                let varies = report
                    .pointer("/networks/0/mapping_varies_by_destination")
                    .and_then(Value::as_bool);
                Ok(match varies {
                    Some(v) => Poll::Ready(v),
                    None => Poll::Pending(report.to_string()),
                })
            },
        )
    }

    /// Drops every UDP datagram both routers would forward to or from
    /// anything but the controller, as a network that only lets UDP out to
    /// its VPN provider does. The rules sit in a table of their own on the
    /// forward hook: dropped packets never confirm a conntrack entry, so no
    /// mapping changes and the control connection is untouched.
    pub fn block_udp(&self) -> Result<()> {
        for (ns, router) in [
            (&self.net.router_a, &self.net.router_a_cfg),
            (&self.net.router_b, &self.net.router_b_cfg),
        ] {
            let wan = &router.wan_if;
            let server = NatLab::SERVER;
            let text = format!(
                "table ip {table} {{\n    chain block {{\n        type filter hook forward priority -10; policy accept;\n        oifname \"{wan}\" meta l4proto udp ip daddr != {server} drop\n        iifname \"{wan}\" meta l4proto udp ip saddr != {server} drop\n    }}\n}}\n",
                table = self.block_table
            );
            self.load_nft(ns, "block", &text)?;
        }
        Ok(())
    }

    /// Loads the nftables `text` into `ns`, from a file named after it.
    fn load_nft(&self, ns: &Netns, name: &str, text: &str) -> Result<()> {
        let path = self.nft_dir.join(format!("{}-{name}.nft", ns.name()));
        fs::write(&path, text)
            .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
        ns.exec("nft", [std::ffi::OsStr::new("-f"), path.as_os_str()])?;
        Ok(())
    }

    /// Makes `side`'s router drop every forwarded packet of the protocols
    /// `l4` (nftables names: `udp`, `tcp`), in and out, the controller's
    /// included. With `["udp"]`, a network that lets only TCP out: the
    /// agent there reaches the controller only with QUIC over TCP. With
    /// both, only what the router itself sends (a proxy on it) gets out.
    pub fn block_all(&self, side: Side, l4: &[&str]) -> Result<()> {
        let (ns, router) = match side {
            Side::A => (&self.net.router_a, &self.net.router_a_cfg),
            Side::B => (&self.net.router_b, &self.net.router_b_cfg),
        };
        let l4 = l4.join(", ");
        let text = format!(
            "table ip {table}all {{\n    chain block {{\n        type filter hook forward priority -30; policy accept;\n        oifname \"{wan}\" meta l4proto {{ {l4} }} drop\n        iifname \"{wan}\" meta l4proto {{ {l4} }} drop\n    }}\n}}\n",
            table = self.block_table,
            wan = router.wan_if,
        );
        self.load_nft(ns, "block-all", &text)
    }

    /// Makes `side`'s router drop UDP to the relay-only instance (and
    /// only that): the agent there keeps its controller, and relays
    /// through it, while the other agent uses the instance.
    pub fn block_relay_instance(&self, side: Side) -> Result<()> {
        let (ns, router) = match side {
            Side::A => (&self.net.router_a, &self.net.router_a_cfg),
            Side::B => (&self.net.router_b, &self.net.router_b_cfg),
        };
        let text = format!(
            "table ip {table}ri {{\n    chain block {{\n        type filter hook forward priority -20; policy accept;\n        oifname \"{wan}\" ip daddr {ip} udp dport {port} drop\n    }}\n}}\n",
            table = self.block_table,
            wan = router.wan_if,
            ip = RELAY_QUIC.ip(),
            port = RELAY_QUIC.port(),
        );
        self.load_nft(ns, "block-instance", &text)
    }

    /// Removes what [`NatPair::block_udp`] added.
    pub fn unblock_udp(&self) -> Result<()> {
        for ns in [&self.net.router_a, &self.net.router_b] {
            ns.exec("nft", ["delete", "table", "ip", &self.block_table])?;
        }
        Ok(())
    }

    /// Lifts [`NatPair::block_all`] at `side`'s router.
    pub fn unblock_all(&self, side: Side) -> Result<()> {
        let ns = match side {
            Side::A => &self.net.router_a,
            Side::B => &self.net.router_b,
        };
        ns.exec(
            "nft",
            ["delete", "table", "ip", &format!("{}all", self.block_table)],
        )?;
        Ok(())
    }

    /// Both agents' status and netcheck and both routers' conntrack tables,
    /// for failure reports.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for side in [Side::A, Side::B] {
            let agent = self.agent(side);
            let status = agent
                .status()
                .map(|s| s.json.to_string())
                .unwrap_or_else(|e| e.to_string());
            let netcheck = self
                .netcheck(side)
                .map(|n| n.to_string())
                .unwrap_or_else(|e| e.to_string());
            out.push_str(&format!(
                "--- {} status: {status}\n--- {} netcheck: {netcheck}\n",
                agent.name(),
                agent.name()
            ));
        }
        for (name, ns) in [
            ("router-a", &self.net.router_a),
            ("router-b", &self.net.router_b),
        ] {
            let table = ns
                .output("conntrack", ["-L", "-p", "udp"])
                .unwrap_or_else(|e| e.to_string());
            out.push_str(&format!("--- {name} conntrack (udp):\n{table}"));
        }
        out
    }
}
