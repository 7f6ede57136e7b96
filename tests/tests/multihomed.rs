//! A controller on a multi-homed host: its public address (192.0.2.10) sits
//! on the loopback of the internet namespace, the routes back to the two
//! routers leave by links with addresses of their own (203.0.113.254,
//! 198.51.100.254), and the controller listens on its default wildcard
//! addresses (QUIC `[::]:7443`, STUN `[::]:3478` and `[::]:3479`) and
//! serves DNS on `[::]:53`.
//!
//! Two agents behind port-restricted cone NATs (a pair NATLAB.md expects
//! direct) join through 192.0.2.10 with default flags. Every UDP answer
//! must leave from 192.0.2.10, or the NATs drop it as unsolicited: QUIC
//! (joining at all), STUN (`warren netcheck` shows each router's public
//! address, and the pair goes direct) and DNS (`dig @192.0.2.10` from
//! behind a NAT answers).
//!
//! A multi-homed agent: agent a's host keeps its LAN address (10.0.1.2,
//! masqueraded by router-a, where its routes lead) and has a public service
//! address, 203.0.113.66, on its loopback, routed to it unchanged; its
//! firewall opens the agent's port on the service address only. Agent b
//! (behind a port-restricted cone) can reach a only there, takes a's disco
//! pong only from the address it pinged, and its NAT lets in only what
//! comes from where b sent: the pong, and then everything a sends b on that
//! path, must leave from 203.0.113.66 for the pair to go direct and stay
//! reachable both ways.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use warren_lab::dns::dig;
use warren_lab::link;
use warren_lab::nat_controller::STUN_PORTS;
use warren_lab::natpair::{NatKind, NatPair, PeerPath, Side, AGENT_PORT};
use warren_lab::topology::NatLab;
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, Lab};

/// How long the pair gets to go direct after both joined (the matrix's).
const PATH_WITHIN: Duration = Duration::from_secs(20);

/// How long the agents get to hear both STUN ports.
const STUN_WITHIN: Duration = Duration::from_secs(15);

/// Agent a's public service address, on its host's loopback.
const A_SERVICE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);

#[test]
fn wildcard_controller_on_a_loopback_address_lets_the_pair_go_direct() {
    e2e("multihomed::direct", |lab| {
        let mut pair =
            NatPair::build_multihomed(lab, NatKind::PortRestricted, NatKind::PortRestricted)?;
        let outcome = check(&mut pair);
        outcome.map_err(|e| anyhow::anyhow!("{e:#}\n{}", pair.diagnostics()))
    });
}

fn check(pair: &mut NatPair) -> anyhow::Result<()> {
    // QUIC: joining at all needs the handshake's answers from 192.0.2.10.
    pair.join_both()
        .context("joining through a wildcard QUIC socket")?;
    for (side, wan) in [
        (Side::A, NatLab::ROUTER_A_WAN),
        (Side::B, NatLab::ROUTER_B_WAN),
    ] {
        let seen = wait_reflexive(pair, side, STUN_WITHIN)?;
        println!("{side:?} netcheck: {seen:?}");
        let want = format!("{wan}:{AGENT_PORT}");
        ensure!(
            seen.iter().all(|(_, mapped)| *mapped == want),
            "{side:?}: STUN should see the router's mapping {want}: {seen:?}"
        );
    }
    let took = pair
        .wait_path(PeerPath::Direct, PATH_WITHIN)
        .context("a port-restricted pair should go direct")?;
    println!("direct after {took:?}: {:?}", pair.views()?);
    pair.hold_path(PeerPath::Direct, Duration::from_secs(3))?;
    pair.ping_both_ways(3, "over the direct path")?;

    // DNS from behind a NAT, at the loopback address.
    let b = pair.overlay_v4(Side::B)?.to_string();
    let name = "b.natlab.warren.internal";
    let server = IpAddr::from(NatLab::SERVER);
    let answer = wait::until(
        format!("dig @{server} {name} A"),
        Duration::from_secs(10),
        || {
            let d = dig(&pair.net.host_a, server, name, "A")?;
            Ok(if d.data("A") == [b.as_str()] {
                Poll::Ready(d)
            } else {
                Poll::Pending(d.raw)
            })
        },
    )?;
    ensure!(answer.status == "NOERROR", "{}", answer.raw);
    println!("@{server} {name} A -> {b}");
    pair.ensure_running()?;
    Ok(())
}

/// Waits until `side`'s netcheck has an answer from both STUN ports of the
/// controller's public address; returns (server, mapped) of each.
fn wait_reflexive(
    pair: &NatPair,
    side: Side,
    within: Duration,
) -> anyhow::Result<Vec<(String, String)>> {
    let servers: Vec<String> = STUN_PORTS
        .iter()
        .map(|p| format!("{}:{p}", NatLab::SERVER))
        .collect();
    Ok(wait::until(
        format!("{side:?}'s netcheck to show both STUN answers"),
        within,
        || {
            let report = pair.netcheck(side)?;
            let seen: Vec<(String, String)> = report
                .pointer("/networks/0/reflexive")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(|r| {
                            let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                            (text("server"), text("mapped"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let all = servers
                .iter()
                .all(|s| seen.iter().any(|(server, _)| server == s));
            Ok(if all {
                Poll::Ready(seen)
            } else {
                Poll::Pending(report.to_string())
            })
        },
    )?)
}

#[test]
fn a_multihomed_agent_answers_probes_from_the_address_they_were_sent_to() {
    e2e("multihomed::agent", |lab| {
        let mut pair = NatPair::build(lab, NatKind::PortRestricted, NatKind::PortRestricted)?;
        let outcome = add_service_address(lab, &pair).and_then(|()| check_agent(&mut pair));
        outcome.map_err(|e| anyhow::anyhow!("{e:#}\n{}", pair.diagnostics()))
    });
}

/// Puts [`A_SERVICE`] on host-a's loopback, routes it to host-a from the
/// internet without translation, and lets UDP reach the agent's port on
/// host-a at that address only (stateless, so nothing a sent from its LAN
/// address opens a way back to that address).
fn add_service_address(lab: &Lab, pair: &NatPair) -> anyhow::Result<()> {
    let net = &pair.net;
    let service = format!("{A_SERVICE}/32");
    link::add_addr(&net.host_a, "lo", &service)?;
    link::add_route(&net.router_a, &service, NatLab::HOST_A.into())?;
    link::add_route(&net.internet, &service, NatLab::ROUTER_A_WAN.into())?;
    let prefix = lab.prefix();
    let rules = format!(
        "table ip {prefix}svc {{\n    chain input {{\n        type filter hook input priority filter; policy accept;\n        udp dport {AGENT_PORT} ip daddr != {A_SERVICE} drop\n    }}\n}}\n",
    );
    let path = lab.subdir("nft")?.join("host-a-service.nft");
    fs::write(&path, rules).with_context(|| format!("writing {}", path.display()))?;
    net.host_a
        .exec("nft", [std::ffi::OsStr::new("-f"), path.as_os_str()])?;
    Ok(())
}

fn check_agent(pair: &mut NatPair) -> anyhow::Result<()> {
    pair.join_both()?;
    // b probes a's candidates; only the service address answers, and only
    // a pong from there proves it. a's ping back, from there too, gets
    // through b's NAT and proves a's path to b.
    let took = pair
        .wait_path(PeerPath::Direct, PATH_WITHIN)
        .context("the pair should go direct through a's service address")?;
    let (a, b) = pair.views()?;
    println!("direct after {took:?}: a: {a}; b: {b}");
    let want = SocketAddr::from((A_SERVICE, AGENT_PORT)).to_string();
    ensure!(
        b.endpoint.as_deref() == Some(want.as_str()),
        "b should reach a at {want}: {b}"
    );
    pair.hold_path(PeerPath::Direct, Duration::from_secs(3))?;
    pair.ping_both_ways(3, "with b on a's service address")?;
    pair.ensure_running()?;
    Ok(())
}
