//! Port mapping with the real binaries: two agents, each behind a symmetric
//! NAT (`masquerade random`), whose routers also run miniupnpd answering
//! PCP and NAT-PMP on the LAN. With port mapping on, an agent gets a
//! mapped port, advertises it, and the pair goes direct, which the NAT
//! matrix shows it never does without (symmetric x symmetric is relayed).
//! Turned off in the agents, the same lab stays relayed: the direct path is
//! the agents' doing, not a hole in the lab. A gateway that drops PCP gets
//! NAT-PMP instead, and one that speaks UPnP IGD alone gets UPnP. A stopping or leaving agent deletes its mapping from the
//! gateway, and one whose host moves to a new address asks again.

use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use warren_lab::natpair::{NatKind, NatPair, PeerPath, Side, AGENT_PORT};
use warren_lab::portmap_gateway::{external_addr, Miniupnpd, Speaks};
use warren_lab::topology::NatLab;
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, link, Lab};

/// How long the pair gets to settle on a path after both joined.
const PATH_WITHIN: Duration = Duration::from_secs(20);
/// How long a direct path must then hold.
const HOLD_DIRECT: Duration = Duration::from_secs(3);
/// How long a pair without port mapping must stay relayed (as the NAT
/// matrix holds it: past several probe rounds and a second call-me-maybe).
const HOLD_RELAY: Duration = Duration::from_secs(8);

/// The NAT pair, symmetric on both sides, with miniupnpd on router-a
/// (`on_a`) and router-b (`on_b`) answering what `speaks` says. The
/// gateways come second so that they stop before the namespaces go.
fn build(
    lab: &Lab,
    on_a: bool,
    on_b: bool,
    speaks: Speaks,
) -> anyhow::Result<(NatPair, Vec<Miniupnpd>)> {
    let pair = NatPair::build(lab, NatKind::Symmetric, NatKind::Symmetric)?;
    let mut gateways = Vec::new();
    if on_a {
        gateways.push(Miniupnpd::start_speaking(lab, &pair, Side::A, speaks)?);
    }
    if on_b {
        gateways.push(Miniupnpd::start_speaking(lab, &pair, Side::B, speaks)?);
    }
    Ok((pair, gateways))
}

/// `side`'s netcheck `port_mapping` for its one network, once it has one.
fn wait_mapping(pair: &NatPair, side: Side) -> anyhow::Result<Value> {
    let mapping = wait::until(
        format!("a port mapping in {side:?}'s netcheck"),
        Duration::from_secs(15),
        || {
            let report = pair.netcheck(side)?;
            let mapping = &report["networks"][0]["port_mapping"];
            Ok(match mapping.is_object() {
                true => Poll::Ready(mapping.clone()),
                false => Poll::Pending(report.to_string()),
            })
        },
    )?;
    Ok(mapping)
}

/// Waits until `gateway` lists a lease for `host`'s data-plane port.
fn wait_lease(gateway: &Miniupnpd, host: std::net::Ipv4Addr) -> anyhow::Result<String> {
    let lease = wait::until(
        format!("a lease for {host}"),
        Duration::from_secs(15),
        || {
            Ok(match lease_of(gateway, host) {
                Some(lease) => Poll::Ready(lease),
                None => Poll::Pending(gateway.leases()),
            })
        },
    )?;
    Ok(lease)
}

/// The lease line of `host`'s data-plane port, if the gateway lists one.
fn lease_of(gateway: &Miniupnpd, host: std::net::Ipv4Addr) -> Option<String> {
    let needle = format!(":{host}:{AGENT_PORT}:");
    gateway
        .leases()
        .lines()
        .find(|l| l.contains(&needle))
        .map(str::to_owned)
}

/// Which protocol router-a's gateway answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answers {
    Pcp,
    /// PCP requests are dropped: the agent must fall back to NAT-PMP.
    NatPmpOnly,
    /// Port 5351 is closed, UPnP IGD answers.
    UpnpOnly,
}

fn mapped_pair_goes_direct(lab: &Lab, on_b: bool, answers: Answers) -> anyhow::Result<()> {
    let speaks = match answers {
        Answers::UpnpOnly => Speaks::Upnp,
        Answers::Pcp | Answers::NatPmpOnly => Speaks::PcpNatPmp,
    };
    let (mut pair, mut gateways) = build(lab, true, on_b, speaks)?;
    if answers == Answers::NatPmpOnly {
        gateways[0].drop_pcp(lab, &pair.net.router_a)?;
    }
    pair.join_both()?;
    let mapping = wait_mapping(&pair, Side::A)?;
    let external_a = external_addr(true).to_string();
    ensure!(
        mapping["protocol"]
            == match answers {
                Answers::Pcp => "pcp",
                Answers::NatPmpOnly => "nat-pmp",
                Answers::UpnpOnly => "upnp",
            }
            && mapping["gateway"] == NatLab::ROUTER_A_LAN.to_string()
            && mapping["external"]
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("{external_a}:"))),
        "netcheck of a: {mapping}"
    );
    let lease = lease_of(&gateways[0], NatLab::HOST_A)
        .with_context(|| format!("no lease for a: {}", gateways[0].leases()))?;
    ensure!(lease.starts_with("UDP:"), "lease {lease}");
    let result = (|| -> anyhow::Result<()> {
        pair.wait_path(PeerPath::Direct, PATH_WITHIN)?;
        pair.hold_path(PeerPath::Direct, HOLD_DIRECT)?;
        pair.ping_both_ways(10, "over the mapped path")?;
        // b reaches a at a's mapped endpoint (or, with both mapped, one of
        // them reaches the other at its mapped one).
        let (a, b) = pair.views()?;
        let mapped = |v: &warren_lab::natpair::PeerView, ext: String| {
            v.endpoint.as_deref().is_some_and(|e| e.starts_with(&ext))
        };
        let b_ext = format!("{}:", external_addr(false));
        ensure!(
            mapped(&b, format!("{external_a}:")) || (on_b && mapped(&a, b_ext)),
            "no side uses a mapped endpoint: a: {a}; b: {b}"
        );
        Ok(())
    })();
    if let Err(e) = result {
        let logs: Vec<String> = gateways.iter().map(Miniupnpd::log).collect();
        return Err(e.context(format!(
            "{}\nminiupnpd:\n{}",
            pair.diagnostics(),
            logs.join("\n")
        )));
    }
    // A clean stop, or leaving the network, deletes the mapping: the lease
    // and the forwarding rule go.
    match answers {
        Answers::Pcp if !on_b => {
            pair.a.leave(&pair.network)?;
        }
        _ => {
            pair.a.stop()?;
        }
    }
    let host_a = NatLab::HOST_A.to_string();
    let router_a = &pair.net.router_a;
    wait::until(
        "a's mapping deleted at router-a",
        Duration::from_secs(10),
        || {
            gateways[0].ensure_running()?;
            let rules = gateways[0].rules(router_a)?;
            Ok(
                match lease_of(&gateways[0], NatLab::HOST_A).is_none() && !rules.contains(&host_a) {
                    true => Poll::Ready(()),
                    false => Poll::Pending(format!("{}{rules}", gateways[0].leases())),
                },
            )
        },
    )?;
    Ok(())
}

#[test]
fn symmetric_pair_goes_direct_when_both_gateways_map_ports() {
    e2e("portmap::both", |lab| {
        mapped_pair_goes_direct(lab, true, Answers::Pcp)
    });
}

#[test]
fn symmetric_pair_goes_direct_when_one_gateway_maps_ports() {
    // Ends with `warren leave` rather than a stop.
    e2e("portmap::one", |lab| {
        mapped_pair_goes_direct(lab, false, Answers::Pcp)
    });
}

#[test]
fn nat_pmp_maps_when_the_gateway_drops_pcp() {
    e2e("portmap::natpmp", |lab| {
        mapped_pair_goes_direct(lab, false, Answers::NatPmpOnly)
    });
}

#[test]
fn upnp_maps_when_the_gateway_speaks_nothing_else() {
    // Both gateways: each agent is mapped by UPnP, and a stop deletes it.
    e2e("portmap::upnp", |lab| {
        mapped_pair_goes_direct(lab, true, Answers::UpnpOnly)
    });
}

#[test]
fn symmetric_pair_stays_relayed_with_port_mapping_off() {
    e2e("portmap::off", |lab| {
        let (mut pair, gateways) = build(lab, true, true, Speaks::PcpNatPmp)?;
        pair.a.set_daemon_env("WARREN_PORT_MAPPING", Some("false"));
        pair.a.restart(lab, &pair.net.host_a)?;
        pair.b.set_daemon_env("WARREN_PORT_MAPPING", Some("false"));
        pair.b.restart(lab, &pair.net.host_b)?;
        pair.join_both()?;
        pair.wait_path(PeerPath::Relay, PATH_WITHIN)?;
        pair.hold_path(PeerPath::Relay, HOLD_RELAY)?;
        let report = pair.netcheck(Side::A)?;
        ensure!(
            report["networks"][0]["port_mapping"].is_null(),
            "port mapping off, yet: {report}"
        );
        ensure!(
            gateways.iter().all(|g| g.leases().is_empty()),
            "a gateway holds a lease"
        );
        Ok(())
    });
}

#[test]
fn a_new_address_asks_the_gateway_again() {
    e2e("portmap::renumber", |lab| {
        let (pair, gateways) = build(lab, true, false, Speaks::PcpNatPmp)?;
        pair.join_both()?;
        wait_mapping(&pair, Side::A)?;
        wait_lease(&gateways[0], NatLab::HOST_A)?;
        // host-a moves to another address on its LAN, as after a new DHCP
        // lease: the old mapping points nowhere, a new one is asked for.
        let moved = std::net::Ipv4Addr::new(10, 0, 1, 3);
        let (ns, ifname) = (&pair.net.host_a, &pair.net.host_a_if);
        // The old address first: a second one in its subnet would go with it.
        link::del_addr(ns, ifname, &format!("{}/24", NatLab::HOST_A))?;
        link::add_addr(ns, ifname, &format!("{moved}/24"))?;
        link::add_route(ns, "default", NatLab::ROUTER_A_LAN.into())?;
        let lease = wait_lease(&gateways[0], moved)?;
        let external = wait::until(
            "netcheck to show the new mapping",
            Duration::from_secs(15),
            || {
                let report = pair.netcheck(Side::A)?;
                let mapping = &report["networks"][0]["port_mapping"];
                let ext = mapping["external"].as_str().unwrap_or_default().to_owned();
                let port = ext.rsplit(':').next().unwrap_or_default().to_owned();
                // The lease is `UDP:EXTPORT:HOST:PORT:...`.
                Ok(match lease.starts_with(&format!("UDP:{port}:{moved}:")) {
                    true => Poll::Ready(ext),
                    false => Poll::Pending(format!("{report} / {lease}")),
                })
            },
        )?;
        ensure!(
            external.starts_with(&format!("{}:", external_addr(true))),
            "{external}"
        );
        Ok(())
    });
}
