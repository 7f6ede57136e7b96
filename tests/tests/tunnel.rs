//! Two warren agents over one veth: what a user checks first. Pings over
//! the IPv4 and IPv6 overlay, bulk TCP over both, and `warren status`
//! telling the truth about the peer.

use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::e2e;
use warren_lab::link;
use warren_lab::node_spec::overlay;
use warren_lab::pair::{Pair, PairOptions};
use warren_lab::ping::{ping, wait_reachable};
use warren_lab::topology::TwoHosts;
use warren_lab::transfer::{tcp_transfer, TransferSpec};
use warren_lab::warren::warren_bin;

const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

fn ping_both_families(pair: &Pair) -> anyhow::Result<()> {
    wait_reachable(&pair.hosts.a, overlay::addr(2, false), HANDSHAKE_WITHIN)
        .context("first ping a -> b (handshake)")?;
    for v6 in [false, true] {
        for (from, to) in [(&pair.hosts.a, 2), (&pair.hosts.b, 1)] {
            let report = ping(
                from,
                overlay::addr(to, v6),
                5,
                Duration::from_millis(100),
                Duration::from_secs(2),
            )?;
            println!("{}", report.render());
            ensure!(
                report.received == 5,
                "ping lost replies:\n{}",
                report.render()
            );
        }
    }
    Ok(())
}

#[test]
fn ping_over_ipv4_and_ipv6_overlay() {
    e2e("tunnel::ping", |lab| {
        let mut pair = Pair::build(lab, PairOptions::warren())?;
        ping_both_families(&pair)?;
        pair.ensure_running()?;
        Ok(())
    });
}

#[test]
fn ping_over_ipv6_underlay() {
    e2e("tunnel::ipv6_underlay", |lab| {
        let options = PairOptions {
            underlay_v6: true,
            ..PairOptions::warren()
        };
        let mut pair = Pair::build(lab, options)?;
        ping_both_families(&pair)?;
        let status = pair.a.agent()?.status()?;
        let endpoint = status.peer(&pair.key_b.public_key)?.endpoint()?;
        ensure!(
            endpoint.as_deref() == Some("[2001:db8::2]:51820"),
            "a's endpoint for b is {endpoint:?}"
        );
        pair.ensure_running()?;
        Ok(())
    });
}

fn tcp_test(test: &str, v6: bool) {
    e2e(test, |lab| {
        let mut pair = Pair::build(lab, PairOptions::warren())?;
        wait_reachable(&pair.hosts.a, overlay::addr(2, v6), HANDSHAKE_WITHIN)?;
        let spec = TransferSpec::mib(20);
        let report = tcp_transfer(&pair.hosts.a, &pair.hosts.b, overlay::addr(2, v6), spec)
            .context("20 MiB a -> b")?;
        println!(
            "{test}: {} bytes in {:?} ({:.0} Mbit/s)",
            report.bytes,
            report.elapsed,
            report.mbit_per_s()
        );
        let back = tcp_transfer(
            &pair.hosts.b,
            &pair.hosts.a,
            overlay::addr(1, v6),
            TransferSpec::mib(4),
        )
        .context("4 MiB b -> a")?;
        println!("{test}: reverse {:.0} Mbit/s", back.mbit_per_s());
        pair.ensure_running()?;
        Ok(())
    });
}

#[test]
fn tcp_transfer_over_ipv4_overlay() {
    tcp_test("tunnel::tcp_v4", false);
}

#[test]
fn tcp_transfer_over_ipv6_overlay() {
    tcp_test("tunnel::tcp_v6", true);
}

fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s.ends_with('z') || s[19..].contains(['+', '-']))
}

#[test]
fn status_reports_peer_handshake_and_traffic() {
    e2e("tunnel::status", |lab| {
        let pair = Pair::build(lab, PairOptions::warren())?;
        let a = pair.a.agent()?;
        let b = pair.b.agent()?;

        // Before any traffic: configured but no handshake yet.
        let before = a.status()?;
        ensure!(
            before.listen_port()? == 51820,
            "listen_port: {}",
            before.json
        );
        ensure!(
            before.interface()? == a.ifname(),
            "interface: {}",
            before.json
        );
        ensure!(
            before.public_key()? == pair.key_a.public_key,
            "public_key: {}",
            before.json
        );
        let peer = before.peer(&pair.key_b.public_key)?;
        ensure!(
            peer.last_handshake()?.is_none(),
            "handshake before any traffic: {}",
            before.json
        );

        // The daemon made its TUN with the configured addresses.
        let addrs = link::addrs(&pair.hosts.a, a.ifname())?;
        for want in overlay::addresses(1) {
            ensure!(
                addrs.contains(&want),
                "{} has {addrs:?}, missing {want}",
                a.ifname()
            );
        }

        wait_reachable(&pair.hosts.a, overlay::addr(2, false), HANDSHAKE_WITHIN)?;
        let report = ping(
            &pair.hosts.a,
            overlay::addr(2, true),
            3,
            Duration::ZERO,
            Duration::from_secs(2),
        )?;
        ensure!(report.received == 3, "{}", report.render());

        for (agent, peer_key, peer_endpoint) in [
            (
                a,
                &pair.key_b.public_key,
                format!("{}:51820", TwoHosts::B_V4),
            ),
            (
                b,
                &pair.key_a.public_key,
                format!("{}:51820", TwoHosts::A_V4),
            ),
        ] {
            let status = agent.status()?;
            let peer = status.peer(peer_key)?;
            let handshake = peer.last_handshake()?;
            ensure!(
                handshake.as_deref().is_some_and(looks_like_rfc3339),
                "{}: last_handshake {handshake:?} in {}",
                agent.name(),
                status.json
            );
            ensure!(
                peer.rx_bytes()? > 0 && peer.tx_bytes()? > 0,
                "{}: {}",
                agent.name(),
                status.json
            );
            ensure!(
                peer.endpoint()?.as_deref() == Some(peer_endpoint.as_str()),
                "{}: endpoint should be {peer_endpoint}: {}",
                agent.name(),
                status.json
            );
            for counter in ["tun_rx_packets", "udp_rx_datagrams", "udp_tx_datagrams"] {
                ensure!(
                    status.counter(counter)? > 0,
                    "{}: {counter} is 0: {}",
                    agent.name(),
                    status.json
                );
            }
        }
        let human = a.status_human()?;
        println!("{human}");
        ensure!(!human.trim().is_empty(), "`warren status` printed nothing");
        Ok(())
    });
}

#[test]
fn status_fails_cleanly_without_a_daemon() {
    e2e("tunnel::status_no_daemon", |lab| {
        let socket = lab.dir().join("nobody-listens.sock");
        let out = std::process::Command::new(warren_bin()?)
            .args(["status", "--json", "--socket"])
            .arg(&socket)
            .output()?;
        ensure!(out.status.code() == Some(1), "exit status {:?}", out.status);
        ensure!(
            out.stdout.is_empty(),
            "stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        ensure!(!out.stderr.is_empty(), "no message on stderr");
        Ok(())
    });
}
