//! Sites for the split-tunnel suites: each behind its own NAT router on an
//! "internet" that holds the controller and a web server; a site's host
//! runs an agent, and a master's host also fronts a "cluster" namespace
//! whose service address answers HTTP, as kube-proxy would make it.
//!
//! ```text
//!                        [internet] 192.0.2.10 controller, 192.0.2.80 + 198.51.100.80 web
//!                            |  203.0.113.(16i+14)/28
//!  site i:    [router] 203.0.113.(16i+1)/28, NAT (port-restricted unless the spec says)
//!                |  10.0.(i+1).1/24
//!             [host] 10.0.(i+1).2   (agent: master or laptop)
//!                |  172.16.(i+1).1/24        (masters only; forwarding on; fd16:(i+1)::1/64)
//!             [cluster] 172.16.(i+1).2, service address on lo, HTTP :80
//!                        (dual-stack clusters: fd16:(i+1)::2/64 as well,
//!                        with an IPv6 service address)
//! ```
//! Everything is built inside namespaces the lab made; the web servers are
//! threads whose listening sockets live in those namespaces.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::command;
use crate::error::{LabError, Result};
use crate::kube_lab::{self, KubeCluster, KubeSpec};
use crate::lab::Lab;
use crate::link;
use crate::managed::ManagedAgent;
use crate::nat::{self, Nat, Router};
use crate::nat_controller::{NatController, QUIC};
use crate::netns::Netns;
use crate::topology::NatLab;

/// The overlay pool of the suites' network.
pub const POOL: &str = "10.147.0.0/16";
/// The agents' base UDP port.
pub const AGENT_PORT: u16 = 41641;
/// The internet's web server, reached through an exit node...
pub const WEB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
/// ...and a second one on a prefix the suites exclude from it.
pub const WEB_EXCLUDED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);

/// A master's cluster: the range its agent advertises and the service
/// address inside it, and for a dual-stack cluster the same in IPv6.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub range: String,
    pub service: Ipv4Addr,
    pub v6: Option<(String, Ipv6Addr)>,
    /// An emulated Kubernetes cluster instead of the one service address:
    /// services behind DNAT on the master and a cluster DNS server.
    pub kube: Option<KubeSpec>,
}

/// One site: a name, its router's NAT and, for a master, its cluster.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    pub name: String,
    pub cluster: Option<ClusterSpec>,
    pub nat: Nat,
}

impl SiteSpec {
    pub fn laptop(name: &str) -> SiteSpec {
        SiteSpec {
            name: name.to_owned(),
            cluster: None,
            nat: Nat::PortRestricted,
        }
    }

    /// A master's cluster made dual-stack: `range6` routed to the cluster
    /// too, and the HTTP service also at `service6`.
    pub fn with_v6_cluster(mut self, range6: &str, service6: Ipv6Addr) -> SiteSpec {
        if let Some(cluster) = &mut self.cluster {
            cluster.v6 = Some((range6.to_owned(), service6));
        }
        self
    }

    /// A master in front of an emulated Kubernetes cluster whose service
    /// range is `range` (see [`crate::kube_lab`]).
    pub fn kube_master(name: &str, range: &str, kube: KubeSpec) -> SiteSpec {
        let mut spec = SiteSpec::master(name, Some((range, Ipv4Addr::UNSPECIFIED)));
        if let Some(cluster) = &mut spec.cluster {
            cluster.kube = Some(kube);
        }
        spec
    }

    /// The same site behind a router doing `nat` (cone NATs forward
    /// [`AGENT_PORT`]).
    pub fn behind(mut self, nat: Nat) -> SiteSpec {
        self.nat = nat;
        self
    }

    /// A master whose host forwards (an exit node or a subnet router).
    pub fn master(name: &str, cluster: Option<(&str, Ipv4Addr)>) -> SiteSpec {
        SiteSpec {
            name: name.to_owned(),
            cluster: Some(ClusterSpec {
                range: cluster.map_or_else(String::new, |(r, _)| r.to_owned()),
                service: cluster.map_or(Ipv4Addr::UNSPECIFIED, |(_, s)| s),
                v6: None,
                kube: None,
            }),
            nat: Nat::PortRestricted,
        }
    }
}

/// A site as built.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    pub index: u8,
    pub router: Netns,
    pub host: Netns,
    /// The router's WAN interface and the internet's end of that link.
    wan_if: String,
    inet_if: String,
    /// The cluster namespace and its HTTP server (masters with a range).
    pub cluster: Option<Netns>,
    pub spec: SiteSpec,
    pub agent: ManagedAgent,
    _servers: Vec<HttpServer>,
    /// The emulated Kubernetes cluster's services and DNS (kube masters).
    pub kube: Option<KubeCluster>,
}

impl Site {
    /// The router's public address: what the internet sees of the site.
    pub fn wan(&self) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, 16 * self.index + 1)
    }

    /// The host's address on the cluster link (masters), the LAN side.
    pub fn cluster_gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(172, 16, self.index + 1, 1)
    }

    /// The host's IPv6 address on the cluster link (dual-stack clusters).
    pub fn cluster_gateway6(&self) -> Ipv6Addr {
        cluster_addr6(self.index, 1)
    }

    /// The cluster host's own IPv6 address (dual-stack clusters).
    pub fn cluster_host6(&self) -> Ipv6Addr {
        cluster_addr6(self.index, 2)
    }

    /// The cluster host's own address.
    pub fn cluster_host(&self) -> Ipv4Addr {
        Ipv4Addr::new(172, 16, self.index + 1, 2)
    }

    /// The cluster link's prefix (the master's "node subnet").
    pub fn node_subnet(&self) -> String {
        format!("172.16.{}.0/24", self.index + 1)
    }

    /// `warren ARGS...` on this site's agent; stdout.
    pub fn warren<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        command::run_stdout(&mut self.agent.command(args))
    }

    /// `warren routes list --json`.
    pub fn routes(&self) -> Result<Value> {
        let text = self.warren(["routes", "list", "--json"])?;
        serde_json::from_str(&text).map_err(|e| LabError::Output {
            what: format!("warren routes list --json on {}", self.name),
            detail: format!("{e}: {text}"),
        })
    }

    /// The agent's overlay IPv4 address in `network`.
    pub fn overlay_v4(&self, network: &str) -> Result<Ipv4Addr> {
        self.agent.status()?.network(network)?.ipv4()
    }
}

/// The internet, its controller and web servers, and the sites.
#[derive(Debug)]
pub struct RoutesLab {
    pub sites: Vec<Site>,
    pub controller: NatController,
    pub network: String,
    pub key: String,
    _web: Vec<HttpServer>,
    pub internet: Netns,
}

impl RoutesLab {
    /// Builds every site, starts the controller, makes the network, and
    /// starts (but does not join) one agent per site.
    pub fn build(lab: &Lab, specs: &[SiteSpec]) -> Result<RoutesLab> {
        let internet = lab.netns("in")?;
        link::enable_forwarding(&internet)?;
        link::add_addr(&internet, "lo", &format!("{}/32", NatLab::SERVER))?;
        for web in [WEB, WEB_EXCLUDED] {
            link::add_addr(&internet, "lo", &format!("{web}/32"))?;
        }
        let web = vec![
            HttpServer::start(&internet, SocketAddr::new(WEB.into(), 80), "internet")?,
            HttpServer::start(
                &internet,
                SocketAddr::new(WEB_EXCLUDED.into(), 80),
                "internet",
            )?,
        ];
        let mut sites = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let index = u8::try_from(i).map_err(|_| LabError::Invalid("too many sites".into()))?;
            sites.push(build_site(lab, &internet, index, spec)?);
        }
        let controller = NatController::start(lab, &internet, None)?;
        let network = controller.network_create("sites", POOL)?;
        let key = controller.key_create(&network)?;
        Ok(RoutesLab {
            sites,
            controller,
            network,
            key,
            _web: web,
            internet,
        })
    }

    pub fn site(&self, name: &str) -> Result<&Site> {
        self.sites
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| LabError::Invalid(format!("no site {name:?}")))
    }

    /// Narrows the link between site `name`'s router and the internet to
    /// `mtu` bytes at both ends: a smaller path MTU on the way to and from
    /// that site, as a tunnel or PPPoE line upstream would make it.
    pub fn narrow_wan(&self, name: &str, mtu: u16) -> Result<()> {
        let site = self.site(name)?;
        let mtu = mtu.to_string();
        site.router
            .ip(["link", "set", "dev", &site.wan_if, "mtu", &mtu])?;
        self.internet
            .ip(["link", "set", "dev", &site.inet_if, "mtu", &mtu])?;
        Ok(())
    }

    pub fn site_mut(&mut self, name: &str) -> Result<&mut Site> {
        self.sites
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| LabError::Invalid(format!("no site {name:?}")))
    }

    /// `warren join` with the lab's reusable key; waits until authorized
    /// and returns what it printed.
    pub fn join(&self, name: &str) -> Result<String> {
        let site = self.site(name)?;
        let controller = QUIC.to_string();
        let mut cmd = site.agent.command([
            "join",
            &self.network,
            "--controller",
            &controller,
            "--fingerprint",
            self.controller.fingerprint(),
            "--key",
            &self.key,
            "--name",
            &site.name,
            "--wait",
            "15s",
        ]);
        let out = command::output(&mut cmd)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.starts_with("joined") {
            return Err(LabError::Output {
                what: format!("warren join on {name}"),
                detail: format!(
                    "{}: {} {}",
                    out.status,
                    stdout.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(stdout.into_owned())
    }

    /// `warren-controller ARGS...` with the admin token; stdout, or the
    /// failure with stderr.
    pub fn admin<I, S>(&self, args: I) -> std::result::Result<String, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.controller.command(args);
        match command::output(&mut cmd) {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// `route approve NET NODE PREFIX` for site `name`.
    pub fn approve(&self, name: &str, prefix: &str) -> Result<()> {
        let node = self.site(name)?.agent.node_id().to_owned();
        self.admin(["route", "approve", &self.network, &node, prefix])
            .map(|_| ())
            .map_err(|e| LabError::Output {
                what: format!("route approve {name} {prefix}"),
                detail: e,
            })
    }
}

impl RoutesLab {
    /// One master site per `(name, range, service)`, all joined and
    /// bridged site to site ([`RoutesLab::bridge`]).
    pub fn bridged_masters(lab: &Lab, masters: &[(&str, &str, Ipv4Addr)]) -> Result<RoutesLab> {
        let specs: Vec<SiteSpec> = masters
            .iter()
            .map(|(name, range, service)| SiteSpec::master(name, Some((range, *service))))
            .collect();
        let world = RoutesLab::build(lab, &specs)?;
        for (name, _, _) in masters {
            world.join(name)?;
        }
        let ranges: Vec<(&str, &str)> = masters.iter().map(|(n, r, _)| (*n, *r)).collect();
        world.bridge(&ranges)?;
        Ok(world)
    }

    /// Site to site: the network approves each named master's range and
    /// node subnet automatically, and each advertises them and accepts
    /// the others' routes.
    pub fn bridge(&self, sites: &[(&str, &str)]) -> Result<()> {
        for (name, range) in sites {
            let site = self.site(name)?;
            let node = site.agent.node_id().to_owned();
            for prefix in [range.to_string(), site.node_subnet()] {
                self.admin([
                    "route",
                    "auto-approve",
                    "add",
                    &self.network,
                    &prefix,
                    "--node",
                    &node,
                ])
                .map_err(|e| LabError::Output {
                    what: format!("route auto-approve add {prefix} for {name}"),
                    detail: e,
                })?;
            }
        }
        for (name, range) in sites {
            let site = self.site(name)?;
            site.warren(["routes", "advertise", range, &site.node_subnet()])?;
            site.warren(["routes", "accept", "on"])?;
        }
        Ok(())
    }
}

impl RoutesLab {
    /// Kills site `primary`'s agent without a word (SIGKILL: no clean
    /// close) and waits until site `client` fetching `addr` is answered
    /// with `standby_body`; how long that took from the kill.
    pub fn kill_and_wait_for(
        &mut self,
        primary: &str,
        client: &str,
        addr: SocketAddr,
        standby_body: &str,
    ) -> Result<Duration> {
        let killed_at = Instant::now();
        self.site_mut(primary)?
            .agent
            .process()
            .ok_or_else(|| LabError::Invalid(format!("{primary}'s agent is not running")))?
            .signal("KILL")?;
        let client = self.site(client)?;
        crate::wait::until(
            format!("{} to be answered by {standby_body}", client.name),
            Duration::from_secs(40),
            || {
                Ok(
                    match fetch(&client.host, addr, Duration::from_millis(500))? {
                        Ok(f) if f.server == standby_body => {
                            crate::wait::Poll::Ready(killed_at.elapsed())
                        }
                        Ok(f) => crate::wait::Poll::Pending(format!("answered by {}", f.server)),
                        Err(why) => crate::wait::Poll::Pending(why),
                    },
                )
            },
        )
    }
}

/// Host `host` of site `index`'s cluster link, fd16:(index+1)::/64.
fn cluster_addr6(index: u8, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd16, u16::from(index) + 1, 0, 0, 0, 0, 0, host)
}

fn build_site(lab: &Lab, internet: &Netns, i: u8, spec: &SiteSpec) -> Result<Site> {
    let router = lab.netns(&format!("r{i}"))?;
    let host = lab.netns(&format!("h{i}"))?;
    let wan_if = lab.ifname(&format!("r{i}w"))?;
    let inet_if = lab.ifname(&format!("i{i}"))?;
    let lan_if = lab.ifname(&format!("r{i}l"))?;
    let host_if = lab.ifname(&format!("h{i}l"))?;
    link::veth(&router, &wan_if, internet, &inet_if)?;
    let (wan_link, inet_link) = (wan_if.clone(), inet_if.clone());
    link::veth(&router, &lan_if, &host, &host_if)?;
    let wan = Ipv4Addr::new(203, 0, 113, 16 * i + 1);
    let inet_side = Ipv4Addr::new(203, 0, 113, 16 * i + 14);
    let lan_gw = Ipv4Addr::new(10, 0, i + 1, 1);
    let lan_host = Ipv4Addr::new(10, 0, i + 1, 2);
    link::add_addr(&router, &wan_if, &format!("{wan}/28"))?;
    link::add_addr(internet, &inet_if, &format!("{inet_side}/28"))?;
    link::add_addr(&router, &lan_if, &format!("{lan_gw}/24"))?;
    link::add_addr(&host, &host_if, &format!("{lan_host}/24"))?;
    link::add_route(&router, "default", inet_side.into())?;
    link::add_route(&host, "default", lan_gw.into())?;
    link::enable_forwarding(&router)?;
    nat::apply(
        lab,
        &router,
        &Router {
            wan_if,
            wan_addr: wan,
            host: lan_host,
        },
        spec.nat,
    )?;
    let mut cluster = None;
    let mut servers = Vec::new();
    let mut kube = None;
    if let Some(c) = &spec.cluster {
        link::enable_forwarding(&host)?;
        if !c.range.is_empty() {
            let ns = lab.netns(&format!("c{i}"))?;
            let master_if = lab.ifname(&format!("h{i}c"))?;
            let cluster_if = lab.ifname(&format!("c{i}l"))?;
            link::veth(&host, &master_if, &ns, &cluster_if)?;
            let gw = Ipv4Addr::new(172, 16, i + 1, 1);
            let me = Ipv4Addr::new(172, 16, i + 1, 2);
            link::add_addr(&host, &master_if, &format!("{gw}/24"))?;
            link::add_addr(&ns, &cluster_if, &format!("{me}/24"))?;
            link::add_route(&ns, "default", gw.into())?;
            let body = format!("cluster-{}", spec.name);
            if let Some(k) = &c.kube {
                kube = Some(kube_lab::start(lab, &host, &ns, me, &spec.name, k)?);
            } else {
                link::add_addr(&ns, "lo", &format!("{}/32", c.service))?;
                link::add_route(&host, &c.range, me.into())?;
                servers.push(HttpServer::start(
                    &ns,
                    SocketAddr::new(c.service.into(), 80),
                    &body,
                )?);
            }
            if let Some((range6, service6)) = &c.v6 {
                let (gw6, me6) = (cluster_addr6(i, 1), cluster_addr6(i, 2));
                link::add_addr(&host, &master_if, &format!("{gw6}/64"))?;
                link::add_addr(&ns, &cluster_if, &format!("{me6}/64"))?;
                link::add_addr(&ns, "lo", &format!("{service6}/128"))?;
                link::add_route(&ns, "default", gw6.into())?;
                link::add_route(&host, range6, me6.into())?;
                servers.push(HttpServer::start(
                    &ns,
                    SocketAddr::new((*service6).into(), 80),
                    &body,
                )?);
            }
            cluster = Some(ns);
        }
    }
    let agent = ManagedAgent::start(lab, &host, &spec.name, Some(AGENT_PORT))?;
    Ok(Site {
        name: spec.name.clone(),
        index: i,
        router,
        host,
        wan_if: wan_link,
        inet_if: inet_link,
        cluster,
        spec: spec.clone(),
        agent,
        _servers: servers,
        kube,
    })
}

/// A tiny HTTP/1.0 responder on a thread: every request gets `BODY PEER-IP`,
/// so a client learns which server answered and where it came from.
#[derive(Debug)]
pub struct HttpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on `addr` inside `ns` (the socket stays in that namespace).
    pub fn start(ns: &Netns, addr: SocketAddr, body: &str) -> Result<HttpServer> {
        let listener = ns
            .run(move || TcpListener::bind(addr))?
            .map_err(|e| LabError::io(format!("listening on {addr} in {}", ns.name()), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| LabError::io("making the listener non-blocking", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let body = body.to_owned();
        let thread = thread::Builder::new()
            .name(format!("http-{addr}"))
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, peer)) => answer(stream, peer, &body),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
            .map_err(|e| LabError::io("spawning the HTTP server", e))?;
        Ok(HttpServer {
            stop,
            thread: Some(thread),
        })
    }
}

fn answer(mut stream: TcpStream, peer: SocketAddr, body: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match crate::eintr::restart(|| stream.read(&mut buf)) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = format!("{body} {}\n", peer.ip());
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one HTTP fetch got: the server's name and the address it saw us at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub server: String,
    pub seen_from: IpAddr,
}

/// `GET /` from inside `ns`; `Ok(Err(why))` when it did not answer within
/// `timeout` (a refusal, a timeout, a reset: the outcome, not an error).
pub fn fetch(
    ns: &Netns,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<std::result::Result<Fetched, String>> {
    let connected = ns.run(move || TcpStream::connect_timeout(&addr, timeout))?;
    let mut stream = match connected {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("connect: {e}"))),
    };
    let deadline = Instant::now() + timeout;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if let Err(e) = stream.write_all(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n") {
        return Ok(Err(format!("send: {e}")));
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if Instant::now() > deadline {
            return Ok(Err("no complete answer in time".to_owned()));
        }
        match crate::eintr::restart(|| stream.read(&mut buf)) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) => return Ok(Err(format!("read: {e}"))),
        }
    }
    let text = String::from_utf8_lossy(&response);
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return Ok(Err(format!("not HTTP: {text:?}")));
    };
    let mut words = body.split_whitespace();
    let server = words.next().unwrap_or_default().to_owned();
    match words.next().and_then(|w| w.parse().ok()) {
        Some(seen_from) => Ok(Ok(Fetched { server, seen_from })),
        None => Ok(Err(format!("unexpected body {body:?}"))),
    }
}

/// Waits until `ns` fetches `http://addr/` and returns what answered.
pub fn reaches(ns: &Netns, addr: SocketAddr, within: Duration) -> Result<Fetched> {
    crate::wait::until(
        format!("{} to fetch http://{addr}/", ns.name()),
        within,
        || {
            Ok(match fetch(ns, addr, Duration::from_secs(1))? {
                Ok(f) => crate::wait::Poll::Ready(f),
                Err(why) => crate::wait::Poll::Pending(why),
            })
        },
    )
}

/// Fetches `http://addr/` from `ns` once, and expects the attempt to fail
/// within `fast`: an access policy answers a denied connection at once
/// (ICMP administratively prohibited), it does not let it hang. Returns
/// what the failure was.
pub fn refused_fast(ns: &Netns, addr: SocketAddr, fast: Duration) -> Result<String> {
    let started = Instant::now();
    let outcome = fetch(ns, addr, fast + Duration::from_secs(2))?;
    let took = started.elapsed();
    match outcome {
        Ok(f) => Err(LabError::Invalid(format!(
            "{} fetched http://{addr}/ and should have been refused: {f:?}",
            ns.name()
        ))),
        Err(why) if took <= fast => Ok(why),
        Err(why) => Err(LabError::Invalid(format!(
            "{} to http://{addr}/ failed only after {took:?} ({why}); a refusal should take at most {fast:?}",
            ns.name()
        ))),
    }
}

impl RoutesLab {
    /// Fail-over between the two routers `pair` that serve one prefix:
    /// `first` is what site `client` got from `addr`, whose answer names
    /// its router as `{answer}{router}`; that router is the primary. Prints
    /// it and the route listing for the log, kills it without a word, and
    /// fails unless the other router answers within `within`. Returns the
    /// primary's and the standby's names.
    pub fn fail_over(
        &mut self,
        first: &Fetched,
        client: &str,
        addr: SocketAddr,
        answer: &str,
        pair: [&str; 2],
        within: Duration,
    ) -> Result<(String, String)> {
        let primary = first
            .server
            .strip_prefix(answer)
            .filter(|router| pair.contains(router))
            .ok_or_else(|| {
                LabError::Invalid(format!("{addr} answered by {first:?}, not one of {pair:?}"))
            })?
            .to_owned();
        let standby = if primary == pair[0] { pair[1] } else { pair[0] }.to_owned();
        let listing =
            self.admin(["route", "list", &self.network])
                .map_err(|e| LabError::Output {
                    what: "route list".into(),
                    detail: e,
                })?;
        println!("primary of {pair:?}: {primary}; listing:\n{listing}");
        let took = self.kill_and_wait_for(&primary, client, addr, &format!("{answer}{standby}"))?;
        println!("fail-over from {primary} to {standby} took {took:?}");
        if took > within {
            return Err(LabError::Invalid(format!(
                "fail-over from {primary} to {standby} took {took:?}, more than {within:?}"
            )));
        }
        Ok((primary, standby))
    }
}
