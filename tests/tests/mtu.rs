//! MSS and MTU through the mesh, end to end with the real binaries.
//!
//! - A path of 1280 bytes between two agents (the link to one site's
//!   router narrowed, as a tunnel or PPPoE line upstream would) still
//!   carries TCP through a subnet route both ways: the agents let full
//!   tunnel packets be fragmented on the way rather than vanish.
//! - Two agents whose own link is 1280 bytes (the host's uplink narrower
//!   than a full tunnel packet) carry TCP over an IPv4 and an IPv6
//!   underlay: the host fragments what GSO would have sent whole.
//! - Subnet routers clamp the MSS of TCP connections crossing the overlay
//!   to what the tunnel carries, so hosts behind them that never hear
//!   "fragmentation needed" (ICMP filtered, as it often is) do not hang.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{ensure, Context};
use socket2::SockRef;
use warren_lab::e2e;
use warren_lab::netns::Netns;
use warren_lab::node_spec::overlay;
use warren_lab::pair::{Pair, PairOptions};
use warren_lab::ping::wait_reachable;
use warren_lab::routes_lab::{fetch, HttpServer, RoutesLab, SiteSpec};
use warren_lab::transfer::{tcp_transfer, TransferSpec};
use warren_lab::wait::{self, Poll};

const SERVICE_A: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SERVICE_B: Ipv4Addr = Ipv4Addr::new(10, 112, 0, 10);
const RANGE_A: &str = "10.96.0.0/12";
const RANGE_B: &str = "10.112.0.0/12";
/// How long a change (approval, acceptance) gets to take effect.
const SETTLE: Duration = Duration::from_secs(15);
/// The narrow path: IPv6's minimum MTU.
const NARROW: u16 = 1280;
/// The overlay's MTU (the agent's default) and the largest TCP segment it
/// carries: 40 bytes of IPv4 and TCP headers less.
const TUNNEL_MTU: u16 = 1420;
const TUNNEL_MSS: u32 = TUNNEL_MTU as u32 - 40;
/// An HTTP body many full-size packets long, served from the cluster.
const BIG_BODY: usize = 2 << 20;

/// Waits until `ns` fetches `http://addr/`; what answered.
fn fetched(ns: &Netns, addr: SocketAddr, timeout: Duration) -> anyhow::Result<String> {
    let what = format!("{} to fetch http://{addr}/", ns.name());
    Ok(wait::until(what, SETTLE + timeout, || {
        Ok(match fetch(ns, addr, timeout)? {
            Ok(f) => Poll::Ready(f.server),
            Err(why) => Poll::Pending(why),
        })
    })?)
}

#[test]
fn tcp_through_a_subnet_route_crosses_a_1280_byte_path_both_ways() {
    e2e("tcp_crosses_a_1280_byte_path", |lab| {
        let world = RoutesLab::build(
            lab,
            &[
                SiteSpec::master("a", Some((RANGE_A, SERVICE_A))),
                SiteSpec::laptop("laptop"),
            ],
        )?;
        world.join("a")?;
        world.join("laptop")?;
        world.narrow_wan("a", NARROW)?;
        let (master, laptop) = (world.site("a")?, world.site("laptop")?);
        let cluster = master.cluster.as_ref().context("master a's cluster")?;
        let big = HttpServer::start(
            cluster,
            SocketAddr::new(SERVICE_A.into(), 8080),
            &"x".repeat(BIG_BODY),
        )?;

        master.warren(["routes", "advertise", RANGE_A])?;
        laptop.warren(["routes", "accept", "on"])?;
        world.approve("a", RANGE_A)?;
        let small = fetched(&laptop.host, SocketAddr::new(SERVICE_A.into(), 80), SETTLE)?;
        ensure!(small == "cluster-a", "the service answered {small:?}");

        // Upload: the laptop's full-size packets cross the narrow link
        // toward the master.
        let up = tcp_transfer(
            &laptop.host,
            cluster,
            IpAddr::V4(SERVICE_A),
            TransferSpec::mib(8),
        )?;
        println!(
            "8 MiB up through a {NARROW}-byte path in {:?} ({:.0} Mbit/s)",
            up.elapsed,
            up.mbit_per_s()
        );
        // Download: the cluster's answer crosses it toward the laptop.
        let body = fetch(
            &laptop.host,
            SocketAddr::new(SERVICE_A.into(), 8080),
            Duration::from_secs(30),
        )?
        .map_err(anyhow::Error::msg)?;
        ensure!(
            body.server.len() == BIG_BODY,
            "downloaded {} bytes of {BIG_BODY}",
            body.server.len()
        );
        drop(big);
        Ok(())
    });
}

/// Drops every ICMP "destination unreachable" (fragmentation needed among
/// them) that reaches `ns`: a host behind a firewall that filters ICMP.
fn deaf_to_icmp(ns: &Netns) -> anyhow::Result<()> {
    for rule in [
        vec!["add", "table", "inet", "deaf"],
        vec![
            "add",
            "chain",
            "inet",
            "deaf",
            "input",
            "{ type filter hook input priority filter; policy accept; }",
        ],
        vec![
            "add",
            "rule",
            "inet",
            "deaf",
            "input",
            "icmp",
            "type",
            "destination-unreachable",
            "drop",
        ],
    ] {
        ns.output("nft", rule)?;
    }
    Ok(())
}

/// Connects from `from` to a fresh listener on `addr` in `to`; the MSS
/// each end sends with (`TCP_MAXSEG` of the connected sockets).
fn negotiated_mss(from: &Netns, to: &Netns, addr: SocketAddr) -> anyhow::Result<(u32, u32)> {
    let listener = to
        .run(move || TcpListener::bind(addr))?
        .with_context(|| format!("listening on {addr}"))?;
    let client = from
        .run(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))?
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut server, _) = listener.accept().context("accepting")?;
    let client_mss = SockRef::from(&client).tcp_mss()?;
    let server_mss = SockRef::from(&server).tcp_mss()?;
    drop(client);
    let mut rest = Vec::new();
    server.set_read_timeout(Some(Duration::from_secs(5)))?;
    let _ = server.read_to_end(&mut rest);
    Ok((client_mss, server_mss))
}

#[test]
fn routers_clamp_the_mss_of_connections_between_their_subnets() {
    e2e("routers_clamp_the_mss", |lab| {
        let world = RoutesLab::bridged_masters(
            lab,
            &[("a", RANGE_A, SERVICE_A), ("b", RANGE_B, SERVICE_B)],
        )?;
        let (a, b) = (world.site("a")?, world.site("b")?);
        let cluster_a = a.cluster.as_ref().context("cluster a")?;
        let cluster_b = b.cluster.as_ref().context("cluster b")?;
        let answer = fetched(cluster_b, SocketAddr::new(SERVICE_A.into(), 80), SETTLE)?;
        ensure!(
            answer == "cluster-a",
            "cluster a's service answered {answer:?}"
        );

        // Both hosts sit on 1500-byte links and offer 1460; each router
        // lowers what crosses its tunnel.
        let (from_b, at_a) = negotiated_mss(
            cluster_b,
            cluster_a,
            SocketAddr::new(SERVICE_A.into(), 5202),
        )?;
        println!("MSS cluster b -> a: {from_b} sent by b, {at_a} sent by a");
        ensure!(
            from_b <= TUNNEL_MSS && at_a <= TUNNEL_MSS,
            "segments larger than the tunnel carries ({TUNNEL_MSS}): b sends {from_b}, a sends {at_a}"
        );

        // Cluster b hears no "fragmentation needed": only the clamp keeps
        // its full-size segments from vanishing in the tunnel.
        deaf_to_icmp(cluster_b)?;
        let mut spec = TransferSpec::mib(4);
        spec.timeout = Duration::from_secs(30);
        let report = tcp_transfer(cluster_b, cluster_a, IpAddr::V4(SERVICE_A), spec)?;
        println!(
            "4 MiB from cluster b to cluster a in {:?}, deaf to ICMP",
            report.elapsed
        );
        Ok(())
    });
}

/// Agents on a 1280-byte link carry TCP both ways over `underlay_v6`.
fn narrow_link(test: &str, underlay_v6: bool) {
    e2e(test, |lab| {
        let options = PairOptions {
            underlay_v6,
            ..PairOptions::warren()
        };
        let pair = Pair::build(lab, options)?;
        let mtu = NARROW.to_string();
        for (ns, ifname) in [
            (&pair.hosts.a, &pair.hosts.a_if),
            (&pair.hosts.b, &pair.hosts.b_if),
        ] {
            ns.ip(["link", "set", "dev", ifname, "mtu", &mtu])?;
        }
        wait_reachable(&pair.hosts.a, overlay::addr(2, false), SETTLE)?;
        for (from, to, node) in [
            (&pair.hosts.a, &pair.hosts.b, 2),
            (&pair.hosts.b, &pair.hosts.a, 1),
        ] {
            let mut spec = TransferSpec::mib(8);
            spec.timeout = Duration::from_secs(30);
            let report = tcp_transfer(from, to, overlay::addr(node, false), spec)
                .with_context(|| format!("8 MiB to node {node} over a {NARROW}-byte link"))?;
            println!(
                "{test}: 8 MiB to node {node} in {:?} ({:.0} Mbit/s)",
                report.elapsed,
                report.mbit_per_s()
            );
        }
        Ok(())
    });
}

#[test]
fn agents_on_a_1280_byte_link_carry_tcp_over_ipv4() {
    narrow_link("mtu::narrow_link_v4", false);
}

#[test]
fn agents_on_a_1280_byte_link_carry_tcp_over_ipv6() {
    narrow_link("mtu::narrow_link_v6", true);
}
