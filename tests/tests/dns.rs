//! Private DNS end to end: a controller serving the zone on its underlay
//! address, two agents with stubs on their overlay addresses, a test
//! resolver in a namespace of its own as the system's old resolver, and
//! agent a's namespace with its own resolv.conf (`/etc/netns/NAME/`).
//!
//! `dig` at both stubs and at the controller answers A and AAAA for every
//! member and SRV for a published service; the controller refuses other
//! names; a's stub forwards them (for a itself) to the test resolver and
//! refuses them to a peer; `getent hosts` in a resolves a member; a rename
//! shows in both servers within 10 s; `warren leave` puts a's resolv.conf
//! back byte for byte.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::controller::{self, Controller};
use warren_lab::dns::{dig, getent_hosts, load, NetnsResolvConf, TestResolver};
use warren_lab::managed::ManagedAgent;
use warren_lab::mesh::{Mesh, CONTROLLER_ROLE};
use warren_lab::star::Star;
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, Lab, Netns};

const POOL: &str = "10.147.0.0/16";
const ZONE: &str = "prod.warren.internal";
/// The test resolver's spoke (192.0.2.74) and what it answers.
const RESOLVER_ROLE: &str = "res";
const UPSTREAM_ZONE: &str = "upstream.test.";
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
/// How long joins get, and the bound for a rename.
const SETTLE: Duration = Duration::from_secs(10);

/// a's resolv.conf before the agent: odd on purpose (comment, options,
/// no final newline) so a restore that is not byte-exact shows.
const ORIGINAL: &str =
    "# lab resolver\nnameserver 192.0.2.74\nsearch lab.example\noptions timeout:2 attempts:1";

struct DnsLab {
    mesh: Mesh,
    controller_dns: IpAddr,
    _resolver: TestResolver,
}

fn build(lab: &Lab) -> anyhow::Result<(DnsLab, NetnsResolvConf)> {
    let star = Star::build(lab, &[CONTROLLER_ROLE, "a", "b", RESOLVER_ROLE])?;
    let resolver_host = star.spoke(RESOLVER_ROLE)?;
    let resolver = TestResolver::start(
        &resolver_host.ns,
        SocketAddr::new(resolver_host.addr.into(), 53),
        UPSTREAM_ZONE,
        UPSTREAM_ANSWER,
    )?;
    let resolv_a = NetnsResolvConf::create(&star.spoke("a")?.ns, ORIGINAL.as_bytes())?;
    let ctl = star.spoke(CONTROLLER_ROLE)?;
    let controller_dns = IpAddr::from(ctl.addr);
    let listen_dns = format!("{controller_dns}:53");
    let controller = Controller::start_with(
        lab,
        &ctl.ns,
        SocketAddr::new(ctl.addr.into(), controller::QUIC_PORT),
        &["--listen-dns", &listen_dns],
    )?;
    let a = ManagedAgent::start_with(
        lab,
        &star.spoke("a")?.ns,
        "a",
        None,
        &["--dns-manage", "resolv-conf"],
    )?;
    // b's namespace sees the host's resolv.conf: b must leave it alone.
    let b = ManagedAgent::start(lab, &star.spoke("b")?.ns, "b", None)?;
    let mesh = Mesh {
        agents: vec![a, b],
        controller,
        star,
    };
    Ok((
        DnsLab {
            mesh,
            controller_dns,
            _resolver: resolver,
        },
        resolv_a,
    ))
}

/// Polls `dig` until `want` holds for its answer.
fn until_dig(
    ns: &Netns,
    server: IpAddr,
    name: &str,
    rtype: &str,
    want: impl Fn(&warren_lab::dns::Dig) -> bool,
) -> anyhow::Result<warren_lab::dns::Dig> {
    Ok(wait::until(
        format!("dig @{server} {name} {rtype}"),
        SETTLE,
        || {
            let d = dig(ns, server, name, rtype)?;
            Ok(if want(&d) {
                Poll::Ready(d)
            } else {
                Poll::Pending(d.raw)
            })
        },
    )?)
}

fn answers(
    ns: &Netns,
    server: IpAddr,
    name: &str,
    rtype: &str,
    expect: IpAddr,
) -> anyhow::Result<()> {
    let expect = expect.to_string();
    let d = until_dig(ns, server, name, rtype, |d| {
        d.data(rtype) == [expect.as_str()]
    })?;
    ensure!(
        d.status == "NOERROR" && d.flags.contains("aa"),
        "{name} {rtype} @{server}: {}",
        d.raw
    );
    println!("@{server} {name} {rtype} -> {expect}");
    Ok(())
}

#[test]
fn stubs_and_controller_answer_forward_and_restore() {
    e2e("dns::stubs_controller_split", |lab| {
        let (dl, resolv_a) = build(lab)?;
        let mut mesh = dl.mesh;
        let net = mesh.controller.network_create("prod", POOL)?;
        let key = mesh.controller.key_create(&net, true)?;
        for name in ["a", "b"] {
            mesh.join_ok(name, &net, Some(&key))?;
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
        }
        let out = mesh
            .agent("a")?
            .command(["service", "add", "http", "8080"])
            .output()?;
        ensure!(
            out.status.success(),
            "service add: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let ns_a = mesh.ns("a")?;
        let ns_b = mesh.ns("b")?;
        let stub_a = mesh.overlay_addr("a", &net, false)?;
        let stub_b = mesh.overlay_addr("b", &net, false)?;
        let ctl = dl.controller_dns;
        // Every member, A and AAAA, from both stubs and the controller.
        for (ns, server) in [(ns_a, stub_a), (ns_b, stub_b), (ns_a, ctl)] {
            for member in ["a", "b"] {
                let name = format!("{member}.{ZONE}");
                answers(
                    ns,
                    server,
                    &name,
                    "A",
                    mesh.overlay_addr(member, &net, false)?,
                )?;
                answers(
                    ns,
                    server,
                    &name,
                    "AAAA",
                    mesh.overlay_addr(member, &net, true)?,
                )?;
            }
            let srv = format!("_http._tcp.{ZONE}");
            let want = format!("0 0 8080 a.{ZONE}.");
            until_dig(ns, server, &srv, "SRV", |d| {
                d.data("SRV") == [want.as_str()]
            })?;
            println!("@{server} {srv} SRV -> {want}");
        }

        // The controller is no resolver; a's stub forwards for a only.
        let refused = dig(ns_a, ctl, "www.upstream.test", "A")?;
        ensure!(
            refused.status == "REFUSED",
            "controller, out of zone: {}",
            refused.raw
        );
        let any = dig(ns_a, ctl, &format!("a.{ZONE}"), "ANY")?;
        ensure!(
            any.answers.is_empty() && any.status != "NOERROR",
            "ANY: {}",
            any.raw
        );
        let forwarded = dig(ns_a, stub_a, "www.upstream.test", "A")?;
        ensure!(
            forwarded.data("A") == [UPSTREAM_ANSWER.to_string().as_str()],
            "a's stub did not forward to the test resolver: {}",
            forwarded.raw
        );
        let from_peer = dig(ns_b, stub_a, "www.upstream.test", "A")?;
        ensure!(
            from_peer.status == "REFUSED",
            "a's stub forwarded for a peer: {}",
            from_peer.raw
        );

        // Split DNS: the system resolver in a's namespace finds members.
        let edited = String::from_utf8(resolv_a.read()?)?;
        println!("a's resolv.conf while joined:\n{edited}");
        ensure!(
            edited.contains(&format!("nameserver {stub_a}")),
            "stub not in resolv.conf"
        );
        let hosts =
            getent_hosts(ns_a, &format!("b.{ZONE}"))?.context("getent hosts b found nothing")?;
        let b4 = mesh.overlay_addr("b", &net, false)?.to_string();
        let b6 = mesh.overlay_addr("b", &net, true)?.to_string();
        ensure!(
            hosts.contains(&b4) || hosts.contains(&b6),
            "getent hosts b: {hosts}"
        );
        println!("getent hosts b.{ZONE}: {hosts}");
        let status = mesh
            .agent("a")?
            .command(["dns", "status", "--json"])
            .output()?;
        let status: serde_json::Value = serde_json::from_slice(&status.stdout)?;
        ensure!(
            status["mode"] == "resolv-conf" && status["backup"] == true,
            "dns status: {status}"
        );

        // A rename reaches both servers within 10 s.
        let b_id = mesh.agent("b")?.node_id().to_owned();
        mesh.controller
            .admin(&["member", "rename", &net, &b_id, "bee"])?;
        let started = std::time::Instant::now();
        let b4 = mesh.overlay_addr("b", &net, false)?;
        answers(ns_a, ctl, &format!("bee.{ZONE}"), "A", b4)?;
        answers(ns_a, stub_a, &format!("bee.{ZONE}"), "A", b4)?;
        ensure!(
            started.elapsed() <= SETTLE,
            "rename took {:?}",
            started.elapsed()
        );
        let old = dig(ns_a, stub_a, &format!("b.{ZONE}"), "A")?;
        ensure!(
            old.answers.is_empty(),
            "old name still answers: {}",
            old.raw
        );
        println!("rename visible in {:?}", started.elapsed());

        // Leave: a's resolv.conf is what it was, byte for byte.
        mesh.agent("a")?.leave(&net)?;
        let restored = wait::until("a's resolv.conf to be restored", SETTLE, || {
            let now = resolv_a.read()?;
            Ok(if now == ORIGINAL.as_bytes() {
                Poll::Ready(now)
            } else {
                Poll::Pending(String::from_utf8_lossy(&now).into_owned())
            })
        })?;
        ensure!(restored == ORIGINAL.as_bytes());
        mesh.ensure_running()?;
        Ok(())
    });
}

/// The benchmark: queries per second at a stub and at the controller, from
/// the same client namespace, with our own bounded load generator (and the
/// same through Debian's dnsperf when installed). Run by `bench/dns.sh`.
#[test]
#[ignore = "benchmark; run bench/dns.sh"]
fn bench_stub_and_controller_qps() {
    e2e("dns::bench", |lab| {
        let (dl, _resolv) = build(lab)?;
        let mut mesh = dl.mesh;
        let net = mesh.controller.network_create("prod", POOL)?;
        let key = mesh.controller.key_create(&net, true)?;
        for name in ["a", "b"] {
            mesh.join_ok(name, &net, Some(&key))?;
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
        }
        let seconds: u64 = std::env::var("DNS_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        let ns_a = mesh.ns("a")?;
        let stub_a = mesh.overlay_addr("a", &net, false)?;
        let name = format!("b.{ZONE}");
        answers(
            ns_a,
            stub_a,
            &name,
            "A",
            mesh.overlay_addr("b", &net, false)?,
        )?;
        answers(
            ns_a,
            dl.controller_dns,
            &name,
            "A",
            mesh.overlay_addr("b", &net, false)?,
        )?;
        println!("| server | where | load | answered qps |\n|---|---|---|---|");
        for (label, server) in [
            ("stub (agent a)", stub_a),
            ("controller", dl.controller_dns),
        ] {
            let report = load(
                ns_a,
                SocketAddr::new(server, 53),
                &format!("{name}."),
                hickory_proto::rr::RecordType::A,
                Duration::from_secs(seconds),
                64,
            )?;
            println!(
                "| {label} | {server}:53 | warren-lab, 64 in flight, {seconds} s | {:.0} |",
                report.qps()
            );
            if let Some(qps) = dnsperf(lab, ns_a, server, &name, seconds)? {
                println!("| {label} | {server}:53 | dnsperf, {seconds} s | {qps:.0} |");
            }
        }
        Ok(())
    });
}

/// Debian's dnsperf against `server`, if it is installed: its queries per second.
fn dnsperf(
    lab: &Lab,
    ns: &Netns,
    server: IpAddr,
    name: &str,
    seconds: u64,
) -> anyhow::Result<Option<f64>> {
    let installed = std::process::Command::new("dnsperf")
        .arg("-h")
        .output()
        .is_ok();
    if !installed {
        return Ok(None);
    }
    let queries = lab.dir().join("dnsperf-queries.txt");
    std::fs::write(&queries, format!("{name} A\n"))?;
    let mut cmd = ns.command("dnsperf");
    cmd.arg("-s")
        .arg(server.to_string())
        .arg("-d")
        .arg(&queries)
        .args(["-l", &seconds.to_string(), "-q", "64"]);
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse().ok()))
}
