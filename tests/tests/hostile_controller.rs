//! A hostile controller, end to end: agents a and b join network A through
//! the real controller; a also joins network B of a hostile controller
//! (built on `warren-proto`, `warren_lab::hostile_controller`). That
//! controller then pushes, about A, a call-me-maybe, a revoking delta, a
//! refused join and a full netmap with a higher version. None of it may
//! count: a and b keep pinging each other over A, and a's `warren status`
//! still shows A's netmap from the real controller. Through its relay, for
//! its own network B, it sends frames larger than any WireGuard datagram
//! (refused and counted before the engine) and a flood (the bounded queue
//! drops what it cannot take; the agent keeps answering).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::controller::QUIC_PORT;
use warren_lab::e2e;
use warren_lab::hostile_controller::{Attack, HostileController, OWN_ZONE};
use warren_lab::mesh::{ping_pairs, Mesh, CONTROLLER_ROLE};
use warren_proto::{NetworkId, NodePublicKey};

const POOL: &str = "10.147.0.0/16";

/// How long a join gets to reach an agent.
const SETTLE: Duration = Duration::from_secs(10);

/// How long an attack gets to take effect before the check.
const ATTACK_LANDS: Duration = Duration::from_secs(2);

/// Versions the hostile controller uses are above this; the real one's are far below.
const HIJACKED_VERSION: u64 = 500_000;

fn assert_a_intact(mesh: &Mesh, net: &str, after: &str) -> anyhow::Result<()> {
    let status = mesh.agent("a")?.status()?;
    let n = status.network(net)?;
    let state = n.state()?;
    let version = n.netmap_version();
    ensure!(
        state == "authorized",
        "after {after}: network A on a is {state} ({}): {}",
        n.message().unwrap_or(""),
        status.json
    );
    ensure!(
        version.is_some_and(|v| v < HIJACKED_VERSION),
        "after {after}: network A on a runs on netmap version {version:?}, not the real controller's: {}",
        status.json
    );
    ensure!(
        n.fqdn()
            .is_some_and(|f| f.starts_with("a.") && !f.contains("hijacked")),
        "after {after}: a's name in A is {:?}: {}",
        n.fqdn(),
        status.json
    );
    let b_key = mesh.agent("b")?.public_key();
    ensure!(
        status
            .peers_in(net)
            .iter()
            .any(|p| p.public_key() == Some(b_key)),
        "after {after}: a lost its peer b in A: {}",
        status.json
    );
    let results = ping_pairs(mesh, net, &["a", "b"], 3)?;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{} -> {} ({})", r.from, r.to, r.report.render()))
        .collect();
    ensure!(
        failed.is_empty(),
        "after {after}: pings over A failed: {}",
        failed.join("; ")
    );
    println!("after {after}: A intact at version {version:?}, pings ok");
    Ok(())
}

#[test]
fn a_second_controller_cannot_speak_for_a_network_it_does_not_own() {
    e2e("hostile_controller::foreign_network", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "b"])?;
        let net = mesh.controller.network_create("lab", POOL)?;
        let key = mesh.controller.key_create(&net, true)?;
        for name in ["a", "b"] {
            mesh.join_ok(name, &net, Some(&key))?;
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
        }
        assert_a_intact(&mesh, &net, "joining A")?;

        // a joins B through the hostile controller, beside the real one.
        let ctl_addr = mesh.host(CONTROLLER_ROLE)?.addr;
        let evil = HostileController::start(
            mesh.ns(CONTROLLER_ROLE)?,
            SocketAddr::new(ctl_addr.into(), QUIC_PORT + 1),
        )?;
        let b_net = evil.network().to_string();
        let out = mesh
            .agent("a")?
            .join_at(evil.addr(), evil.fingerprint(), &b_net, None, &[])?;
        println!("{}", out.render());
        evil.wait_joined(SETTLE)?;
        let status = mesh
            .agent_mut("a")?
            .wait_state(&b_net, "authorized", SETTLE)?;
        ensure!(
            status.network(&b_net)?.fqdn_zone() == Some(OWN_ZONE),
            "a should be a member of the hostile controller's own network B: {}",
            status.json
        );

        let a_net: NetworkId = net.parse().context("network ID")?;
        let b_peer: NodePublicKey = mesh
            .agent("b")?
            .public_key()
            .parse()
            .context("b's public key")?;
        let base_version = mesh
            .agent("a")?
            .status()?
            .network(&net)?
            .netmap_version()
            .context("a has no netmap version for A")?;
        let attacks = [
            (
                "a call-me-maybe for A",
                Attack::CallMeMaybe {
                    network: a_net,
                    from: b_peer,
                    endpoints: vec![SocketAddr::new(ctl_addr.into(), 9)],
                },
            ),
            (
                "a delta revoking a in A",
                Attack::RevokeDelta {
                    network: a_net,
                    base_version,
                },
            ),
            ("a refused join for A", Attack::Refuse { network: a_net }),
            (
                "a full netmap for A",
                Attack::Netmap {
                    network: a_net,
                    version: HIJACKED_VERSION * 2,
                },
            ),
        ];
        for (what, attack) in attacks {
            println!("hostile controller pushes {what}");
            evil.push(attack)?;
            std::thread::sleep(ATTACK_LANDS);
            mesh.ensure_running()?;
            assert_a_intact(&mesh, &net, what)?;
        }
        // Dropped and said so, once for the network and controller, not once
        // per message (the hostile controller cannot flood the log).
        let log = mesh
            .agent_mut("a")?
            .process()
            .map(|p| p.stderr())
            .unwrap_or_default();
        let warned = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("joined through another controller"))
            .collect::<Vec<_>>();
        ensure!(
            warned.len() == 1 && warned[0].contains(&net),
            "a should warn exactly once about the foreign controller's messages on {net}, warned: {warned:#?}"
        );
        // B itself is still a's: the hostile controller may speak for its own network.
        let status = mesh.agent("a")?.status()?;
        ensure!(
            status.network(&b_net)?.state()? == "authorized",
            "a's membership of B changed: {}",
            status.json
        );
        Ok(())
    });
}

/// What a's `warren status` says of the hostile controller's network.
fn own_network_seen(mesh: &Mesh, net: &str) -> anyhow::Result<(String, Option<u64>, String)> {
    let status = mesh.agent("a")?.status()?;
    let n = status.network(net)?;
    Ok((
        n.fqdn().unwrap_or("").to_owned(),
        n.netmap_version(),
        n.message().unwrap_or("").to_owned(),
    ))
}

#[test]
fn a_controller_cannot_name_a_public_zone_or_roll_its_netmap_back() {
    e2e("hostile_controller::own_network", |lab| {
        let mut mesh = Mesh::build(lab, &["a"])?;
        let ctl_addr = mesh.host(CONTROLLER_ROLE)?.addr;
        let evil = HostileController::start(
            mesh.ns(CONTROLLER_ROLE)?,
            SocketAddr::new(ctl_addr.into(), QUIC_PORT + 1),
        )?;
        let net = evil.network().to_string();
        let out = mesh
            .agent("a")?
            .join_at(evil.addr(), evil.fingerprint(), &net, None, &[])?;
        println!("{}", out.render());
        evil.wait_joined(SETTLE)?;
        mesh.agent_mut("a")?
            .wait_state(&net, "authorized", SETTLE)?;
        let own = |version: u64, name: &str, zone: &str, mtu: u16| Attack::OwnNetmap {
            version,
            name: name.into(),
            zone: zone.into(),
            mtu,
        };

        // A newer map under the expected suffix is applied...
        evil.push(own(3, "a3", OWN_ZONE, 1420))?;
        let want = format!("a3.{OWN_ZONE}");
        mesh.agent_mut("a")?
            .wait_status("netmap version 3", SETTLE, |s| {
                let n = s.network(&net)?;
                Ok(match n.fqdn() {
                    Some(f) if f == want => warren_lab::wait::Poll::Ready(()),
                    other => warren_lab::wait::Poll::Pending(format!("{other:?}")),
                })
            })?;
        // ... an older one is not (a replay or a rollback) ...
        evil.push(own(2, "a2", OWN_ZONE, 1420))?;
        std::thread::sleep(ATTACK_LANDS);
        let seen = own_network_seen(&mesh, &net)?;
        println!("after an older map: {seen:?}");
        ensure!(
            seen.0 == want && seen.1 == Some(3),
            "an older full netmap was applied: {seen:?}"
        );
        // ... and neither is a map that names a public domain's zone or a
        // silly MTU: the old map stays and status says why.
        for (what, attack) in [
            (
                "a zone under example.com",
                own(5, "bank", "bank.example.com", 1420),
            ),
            ("a public suffix", own(6, "x", "co.uk", 1420)),
            ("an MTU of 100", own(7, "tiny", OWN_ZONE, 100)),
        ] {
            evil.push(attack)?;
            std::thread::sleep(ATTACK_LANDS);
            mesh.ensure_running()?;
            let seen = own_network_seen(&mesh, &net)?;
            println!("after {what}: {seen:?}");
            ensure!(
                seen.0 == want && seen.1 == Some(3),
                "a netmap with {what} was applied: {seen:?}"
            );
            ensure!(
                seen.2.contains("refused"),
                "status does not say the netmap with {what} was refused: {seen:?}"
            );
        }
        let state = mesh
            .agent("a")?
            .status()?
            .network(&net)?
            .state()?
            .to_owned();
        ensure!(state == "authorized", "B is {state} after refused maps");
        Ok(())
    });
}

/// Global counter `name` of agent a.
fn counter(mesh: &Mesh, name: &str) -> anyhow::Result<u64> {
    Ok(mesh.agent("a")?.status()?.counter(name)?)
}

#[test]
fn a_relay_cannot_hand_the_data_plane_oversized_or_endless_datagrams() {
    e2e("hostile_controller::relay", |lab| {
        let mut mesh = Mesh::build(lab, &["a"])?;
        let ctl_addr = mesh.host(CONTROLLER_ROLE)?.addr;
        let evil = HostileController::start(
            mesh.ns(CONTROLLER_ROLE)?,
            SocketAddr::new(ctl_addr.into(), QUIC_PORT + 1),
        )?;
        let net = evil.network().to_string();
        mesh.agent("a")?
            .join_at(evil.addr(), evil.fingerprint(), &net, None, &[])?;
        evil.wait_joined(SETTLE)?;
        mesh.agent_mut("a")?
            .wait_state(&net, "authorized", SETTLE)?;
        let from = warren_proto::NodePrivateKey::generate().public_key();
        let relay = |payload_len: usize, count: u32| Attack::Relay {
            network: None,
            from,
            payload_len,
            count,
        };
        let oversized_before = counter(&mesh, "dropped_oversized")?;
        let relayed_before = counter(&mesh, "relay_rx_datagrams")?;

        // The largest frame a relay record may carry: more than any
        // WireGuard datagram, so never for the engine. Then ordinary ones.
        let largest = warren_proto::relay::MAX_FRAME - warren_proto::relay::HEADER_LEN;
        evil.push(relay(largest, 20))?;
        evil.push(relay(200, 20))?;
        mesh.agent_mut("a")?
            .wait_status("the relayed frames to be counted", SETTLE, |s| {
                let oversized = s.counter("dropped_oversized")? - oversized_before;
                let relayed = s.counter("relay_rx_datagrams")? - relayed_before;
                Ok(if oversized >= 20 && relayed >= 20 {
                    warren_lab::wait::Poll::Ready(())
                } else {
                    warren_lab::wait::Poll::Pending(format!(
                        "oversized {oversized}, relayed {relayed}"
                    ))
                })
            })?;
        let oversized = counter(&mesh, "dropped_oversized")? - oversized_before;
        let relayed = counter(&mesh, "relay_rx_datagrams")? - relayed_before;
        println!("oversized refused: {oversized}, relayed to the engine: {relayed}");
        ensure!(
            oversized == 20 && relayed == 20,
            "only the 20 ordinary frames may reach the engine: {oversized} oversized refused, {relayed} relayed"
        );

        // A flood: the agent keeps answering, and what its queue cannot
        // take is dropped, never buffered without end.
        evil.push(relay(200, 50_000))?;
        std::thread::sleep(ATTACK_LANDS);
        mesh.ensure_running()?;
        let full = counter(&mesh, "dropped_relay_queue_full")?;
        println!("after a flood of 50000 frames: {full} dropped at a full queue");
        let state = mesh
            .agent("a")?
            .status()?
            .network(&net)?
            .state()?
            .to_owned();
        ensure!(state == "authorized", "B is {state} after the relay attack");
        Ok(())
    });
}
