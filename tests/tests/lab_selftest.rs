//! The lab checks itself with wireguard-go on both ends: namespaces, veths,
//! process guards, in-namespace sockets and cleanup must work before any
//! Warren result means anything.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::node_spec::overlay;
use warren_lab::pair::{Implementation, Pair, PairOptions};
use warren_lab::ping::{ping, wait_reachable};
use warren_lab::star::Star;
use warren_lab::topology::TwoHosts;
use warren_lab::transfer::{tcp_transfer, TransferSpec};
use warren_lab::{e2e, Lab, Netns};

fn netns_listed(name: &str) -> anyhow::Result<bool> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name)))
}

#[test]
fn guards_remove_namespaces_and_processes_even_on_panic() {
    e2e("lab_selftest::cleanup", |lab| {
        let (ns_name, pid) = {
            let hosts = TwoHosts::build(lab)?;
            let sleeper = lab.spawn_in(&hosts.a, "sleeper", "sleep", ["600"], &[])?;
            ensure!(netns_listed(hosts.a.name())?, "namespace was not created");
            // Forget the guard so only the namespace's own cleanup can end it.
            let pid = sleeper.pid();
            std::mem::forget(sleeper);
            (hosts.a.name().to_owned(), pid)
        };
        ensure!(!netns_listed(&ns_name)?, "{ns_name} survived its guard");
        // The namespace guard kills what it finds inside; reaping is left to
        // init once this test process exits, so look for a zombie at worst.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        ensure!(
            state.is_empty() || state.contains(") Z "),
            "process {pid} still running after its namespace was dropped: {state}"
        );

        let panicking = std::panic::catch_unwind(|| -> anyhow::Result<String> {
            let inner = Lab::new("lab_selftest::cleanup-panic")?;
            let hosts = TwoHosts::build(&inner)?;
            let name = hosts.b.name().to_owned();
            std::panic::panic_any(name);
        });
        let name = match panicking {
            Err(payload) => payload
                .downcast::<String>()
                .map_err(|_| anyhow::anyhow!("unexpected panic payload"))?,
            Ok(r) => anyhow::bail!("closure returned instead of panicking: {r:?}"),
        };
        ensure!(!netns_listed(&name)?, "{name} survived a panic");
        Ok(())
    });
}

#[test]
fn sockets_opened_in_a_namespace_stay_there() {
    e2e("lab_selftest::in_netns", |lab| {
        let hosts = TwoHosts::build(lab)?;
        let b_addr = SocketAddr::new(TwoHosts::B_V4.into(), 4000);
        let receiver = hosts.b.run(|| UdpSocket::bind(b_addr))??;
        let sender = hosts.a.run(|| UdpSocket::bind("0.0.0.0:0"))??;
        // The thread sees the namespace's interfaces, not the host's.
        let devices = hosts
            .a
            .run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))??;
        ensure!(
            devices.contains(&hosts.a_if) && !devices.contains(&hosts.b_if),
            "thread in {} sees:\n{devices}",
            hosts.a.name()
        );
        sender.send_to(b"hello", b_addr)?;
        receiver.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 16];
        let (n, from) = warren_lab::eintr::restart(|| receiver.recv_from(&mut buf))
            .context("datagram from a to b")?;
        ensure!(&buf[..n] == b"hello", "got {:?}", &buf[..n]);
        ensure!(from.ip() == TwoHosts::A_V4, "came from {from}");
        Ok(())
    });
}

fn check_tunnel(hosts: &TwoHosts) -> anyhow::Result<()> {
    wait_reachable(&hosts.a, overlay::addr(2, false), Duration::from_secs(10))?;
    for v6 in [false, true] {
        let report = ping(
            &hosts.a,
            overlay::addr(2, v6),
            5,
            Duration::from_millis(100),
            Duration::from_secs(2),
        )?;
        ensure!(
            report.received == 5,
            "ping over the tunnel:\n{}",
            report.render()
        );
        let report = tcp_transfer(
            &hosts.a,
            &hosts.b,
            overlay::addr(2, v6),
            TransferSpec::mib(8),
        )?;
        println!(
            "wireguard-go TCP (v6 {v6}): {:.0} Mbit/s",
            report.mbit_per_s()
        );
    }
    Ok(())
}

#[test]
fn wireguard_go_pair_carries_ping_and_tcp() {
    e2e("lab_selftest::wireguard_go", |lab| {
        let options = PairOptions::of(Implementation::WireguardGo, Implementation::WireguardGo);
        let mut pair = Pair::build(lab, options)?;
        check_tunnel(&pair.hosts)?;
        pair.ensure_running()?;
        let wg_dir = Path::new("/var/run/wireguard");
        let uapi = wg_dir.join(format!("{}gb.sock", lab.prefix()));
        ensure!(uapi.exists(), "no control socket at {}", uapi.display());
        drop(pair);
        ensure!(!uapi.exists(), "{} left behind", uapi.display());
        Ok(())
    });
}

#[test]
fn unreachable_overlay_times_out_instead_of_hanging() {
    e2e("lab_selftest::negative", |lab| {
        let hosts = TwoHosts::build(lab)?;
        let lonely = Netns::create(&lab.ifname("x")?)?;
        // Nothing routes 10.99.0.2 here: ping must report loss, bounded.
        let report = ping(
            &lonely,
            overlay::addr(2, false),
            2,
            Duration::from_millis(100),
            Duration::from_millis(300),
        )?;
        ensure!(report.received == 0, "{}", report.render());
        let report = ping(
            &hosts.a,
            TwoHosts::B_V6.into(),
            2,
            Duration::ZERO,
            Duration::from_secs(2),
        )?;
        ensure!(report.received == 2, "underlay IPv6:\n{}", report.render());
        Ok(())
    });
}

#[test]
fn star_routes_every_spoke_to_every_other() {
    e2e("lab_selftest::star", |lab| {
        let roles = ["s0", "s1", "s2", "s3", "s4", "s5"];
        let star = Star::build(lab, &roles)?;
        ensure!(
            star.spokes.len() == roles.len(),
            "{} spokes",
            star.spokes.len()
        );
        for from in &star.spokes {
            for to in star.spokes.iter().filter(|s| s.role != from.role) {
                wait_reachable(&from.ns, to.addr.into(), Duration::from_secs(3))
                    .with_context(|| format!("{} -> {} ({})", from.role, to.role, to.addr))?;
            }
        }
        // Only documentation prefixes: nothing routes anywhere else.
        let report = ping(
            &star.spokes[0].ns,
            "10.0.1.2".parse()?,
            1,
            Duration::ZERO,
            Duration::from_millis(300),
        )?;
        ensure!(report.received == 0, "{}", report.render());
        ensure!(
            Star::build(lab, &["t0", "t1", "t2", "t3", "t4", "t5", "t6"]).is_err(),
            "a seventh spoke has no prefix and must be refused"
        );
        Ok(())
    });
}
