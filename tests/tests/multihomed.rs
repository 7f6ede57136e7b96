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

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use warren_lab::dns::dig;
use warren_lab::e2e;
use warren_lab::nat_controller::STUN_PORTS;
use warren_lab::natpair::{NatKind, NatPair, PeerPath, Side, AGENT_PORT};
use warren_lab::topology::NatLab;
use warren_lab::wait::{self, Poll};

/// How long the pair gets to go direct after both joined (the matrix's).
const PATH_WITHIN: Duration = Duration::from_secs(20);

/// How long the agents get to hear both STUN ports.
const STUN_WITHIN: Duration = Duration::from_secs(15);

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
