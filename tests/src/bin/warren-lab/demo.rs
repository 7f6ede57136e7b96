//! The demo's story, section by section. Every figure it prints is one it
//! measured, and every wait that runs out says so and counts as a problem,
//! which makes the demo exit non-zero.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context};
use warren_lab::controller::controller_bin;
use warren_lab::mesh::ping_every_pair;
use warren_lab::nat_controller::{API, QUIC};
use warren_lab::natpair::{expected_path, NatKind, PeerPath};
use warren_lab::routes_lab::{fetch, RoutesLab, SiteSpec, AGENT_PORT};
use warren_lab::wait::{self, Poll};
use warren_lab::warren::warren_bin;
use warren_lab::Lab;

use crate::{names, paths, trail};

/// The sites of the demo: agent name and the NAT in front of it.
const SITES: [(&str, NatKind); 3] = [
    ("master", NatKind::FullCone),
    ("laptop", NatKind::PortRestricted),
    ("phone", NatKind::Symmetric),
];

/// What each NAT stands for in the story.
fn story(kind: NatKind) -> &'static str {
    match kind {
        NatKind::FullCone => "cloud NAT gateway",
        NatKind::Restricted => "office router",
        NatKind::PortRestricted => "home router",
        NatKind::Symmetric | NatKind::SymmetricFullyRandom => "carrier-grade NAT",
    }
}

/// The master's cluster: its service range and one service in it.
const CLUSTER_RANGE: &str = "10.96.0.0/12";
const CLUSTER_SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// How long members get to show online, and a route to take effect.
const SETTLE: Duration = Duration::from_secs(15);

/// How long the pairs get to settle on their paths.
const PATH_WITHIN: Duration = Duration::from_secs(20);

fn interrupted(stop: &AtomicBool) -> anyhow::Result<()> {
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn section(title: &str) {
    println!("\n=== {title} ===");
}

pub fn run(lab: &Lab, keep: bool, stop: &AtomicBool) -> anyhow::Result<()> {
    println!("building lab {} ...", lab.prefix());
    let specs: Vec<SiteSpec> = SITES
        .iter()
        .map(|(name, kind)| {
            let spec = if *name == "master" {
                SiteSpec::master(name, Some((CLUSTER_RANGE, CLUSTER_SERVICE)))
            } else {
                SiteSpec::laptop(name)
            };
            spec.behind(kind.nat_for(AGENT_PORT))
        })
        .collect();
    let world = RoutesLab::build(lab, &specs)?;
    print_sites(&world)?;
    interrupted(stop)?;

    let net = world.network.clone();
    section("warren-controller network create sites");
    println!("{net}");
    section(&format!("warren-controller key create {net} --reusable"));
    println!("{}", world.key);
    let mut joined = BTreeMap::new();
    for (name, _) in SITES {
        section(&format!(
            "[{name}] warren join {net} --controller {QUIC} --key ..."
        ));
        print!("{}", world.join(name)?);
        joined.insert(name, Instant::now());
        interrupted(stop)?;
    }

    let mut problems = Vec::new();
    section(&format!(
        "paths: direct through the NATs where possible, relayed otherwise \
         (time from the later join of each pair until both agents report it; checked every {} ms)",
        paths::POLL.as_millis()
    ));
    for pair in paths::settle(&world, &SITES, &joined, PATH_WITHIN)? {
        // PeerPath's Display ignores widths: pad its text.
        let (a, b, want) = (pair.a, pair.b, pair.want.to_string());
        let (kind_a, kind_b) = pair.kinds;
        match pair.outcome {
            Ok((took, view)) => println!(
                "  {a:<7} <-> {b:<7} {want:<7} {:>5.2} s after the joins  ({kind_a} x {kind_b}; {view})",
                took.as_secs_f64()
            ),
            Err(why) => {
                println!("  {a:<7} <-> {b:<7} NOT {want}: {why}");
                problems.push(format!("{a} <-> {b} not {want}"));
            }
        }
    }
    interrupted(stop)?;

    section(&format!("warren-controller member list {net}"));
    if let Err(e) = every_member_online(&world, &net) {
        println!("({e})");
        problems.push("members online at the controller".to_owned());
    }
    print!("{}", admin(&world, &["member", "list", &net])?);
    interrupted(stop)?;

    section("pings over the overlay, every pair, IPv4 then IPv6");
    let names: Vec<&str> = SITES.iter().map(|(n, _)| *n).collect();
    let results = ping_every_pair(
        &names,
        3,
        |name| Ok(&world.site(name)?.host),
        |name, ipv6| {
            let status = world.site(name)?.agent.status()?;
            let network = status.network(&net)?;
            Ok(if ipv6 {
                IpAddr::from(network.ipv6()?)
            } else {
                IpAddr::from(network.ipv4()?)
            })
        },
    )?;
    for r in &results {
        println!(
            "\n[{}] ping -c {} {}   ({})",
            r.from, r.report.sent, r.report.dst, r.to
        );
        print!("{}", r.report.render());
        if !r.ok() {
            problems.push(format!("ping {} -> {} ({})", r.from, r.to, r.report.dst));
        }
    }
    interrupted(stop)?;

    section("[laptop] warren status");
    print!("{}", world.site("laptop")?.agent.status_human()?);

    section("warren ping: which path a peer answers on, and how fast");
    warren_ping(&world, &mut problems)?;
    interrupted(stop)?;

    section("names: the laptop's DNS stub answers every member's name");
    names::members(&world, &net, &mut problems)?;
    interrupted(stop)?;

    section("a published service: the master publishes it, the laptop finds it by name");
    let _service = names::service(&world, &net, &mut problems)?;
    interrupted(stop)?;

    section("split tunnel: the laptop reaches the master's cluster");
    split_tunnel(&world, &net, &mut problems)?;
    interrupted(stop)?;

    section(&format!("warren-controller audit --network {net}"));
    trail::show(&world, &net, &mut problems)?;

    section("summary");
    let pairs_ok = results.iter().filter(|r| r.ok()).count();
    println!(
        "{pairs_ok} of {} pings answered in full; {} problem(s)",
        results.len(),
        problems.len()
    );
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }

    if keep {
        print_keep_hints(lab, &world, &net)?;
        while !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

fn print_sites(world: &RoutesLab) -> anyhow::Result<()> {
    section("sites (each behind its own NAT router, around an \"internet\")");
    println!(
        "  {:<8} {:<12} {:<14} {:<16} NAT",
        "agent", "namespace", "LAN address", "public address"
    );
    for ((name, kind), site) in SITES.iter().zip(&world.sites) {
        println!(
            "  {:<8} {:<12} {:<14} {:<16} {kind} ({})",
            name,
            site.host.name(),
            format!("10.0.{}.2", site.index + 1),
            site.wan().to_string(),
            story(*kind)
        );
    }
    println!(
        "  controller on the internet at {QUIC} (QUIC), STUN on :3478 and :3479, fingerprint {}",
        world.controller.fingerprint()
    );
    if let Some(cluster) = &world.site("master")?.cluster {
        println!(
            "  cluster {} behind master: service range {CLUSTER_RANGE}, HTTP at {CLUSTER_SERVICE}:80",
            cluster.name()
        );
    }
    Ok(())
}

/// Waits until `member list --json` shows every site online.
fn every_member_online(world: &RoutesLab, net: &str) -> anyhow::Result<()> {
    wait::until("every member to show online", SETTLE, || {
        let members = world.controller.members(net)?;
        let online = members.iter().filter(|m| m.online).count();
        Ok(if online == SITES.len() {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("{online} of {} online", SITES.len()))
        })
    })?;
    Ok(())
}

/// `warren ping` from the laptop to each other member: the path it answers
/// on must be the one NATLAB.md expects for the pair.
fn warren_ping(world: &RoutesLab, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let (from, from_kind) = SITES[1];
    let site = world.site(from)?;
    for (to, to_kind) in SITES.iter().filter(|(n, _)| *n != from) {
        println!("[{from}] warren ping {to} -c 3");
        let out = site.warren(["ping", to, "-c", "3"]);
        let want = expected_path(from_kind, *to_kind);
        let marker = match want {
            PeerPath::Direct => "(direct)",
            PeerPath::Relay => "via relay",
            PeerPath::None => "no answer",
        };
        match out {
            Ok(text) => {
                print!("{text}");
                if !text.lines().any(|l| l.contains(marker)) {
                    problems.push(format!("warren ping {to} from {from} not {want}"));
                }
            }
            Err(e) => {
                println!("failed: {e}");
                problems.push(format!("warren ping {to} from {from}"));
            }
        }
    }
    Ok(())
}

fn split_tunnel(world: &RoutesLab, net: &str, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let (master, laptop) = (world.site("master")?, world.site("laptop")?);
    println!("[master] warren routes advertise {CLUSTER_RANGE}");
    master.warren(["routes", "advertise", CLUSTER_RANGE])?;
    println!(
        "warren-controller route approve {net} {} {CLUSTER_RANGE}",
        master.agent.node_id()
    );
    world.approve("master", CLUSTER_RANGE)?;
    println!("[laptop] warren routes accept on");
    laptop.warren(["routes", "accept", "on"])?;
    let accepted = Instant::now();
    let service = SocketAddr::new(CLUSTER_SERVICE.into(), 80);
    let fetched = wait::until(
        format!("the laptop to fetch http://{service}/"),
        SETTLE,
        || {
            Ok(
                match fetch(&laptop.host, service, Duration::from_secs(1))? {
                    Ok(f) => Poll::Ready(f),
                    Err(why) => Poll::Pending(why),
                },
            )
        },
    );
    match fetched {
        Ok(f) => println!(
            "[laptop] GET http://{service}/ -> answered by {}, which saw the request come from {} (the master, masquerading); {:.2} s after `routes accept on` returned",
            f.server,
            f.seen_from,
            accepted.elapsed().as_secs_f64()
        ),
        Err(e) => {
            println!("[laptop] GET http://{service}/ failed: {e}");
            problems.push("the cluster service through the route".to_owned());
        }
    }
    print!("{}", laptop.warren(["routes", "list"])?);
    Ok(())
}

fn print_keep_hints(lab: &Lab, world: &RoutesLab, net: &str) -> anyhow::Result<()> {
    let (master, laptop) = (world.site("master")?, world.site("laptop")?);
    let laptop_ns = laptop.host.name();
    let master_v4 = master.overlay_v4(net)?;
    let (stub, zone) = names::stub_of(laptop, net)?;
    let warren = warren_bin()?;
    let socket = laptop.agent.socket();
    println!("\nlab kept running; try for example:");
    println!("  ip netns exec {laptop_ns} ping {master_v4}");
    println!("  ip netns exec {laptop_ns} dig @{stub} master.{zone}");
    println!("  ip netns exec {laptop_ns} curl http://{CLUSTER_SERVICE}/");
    println!(
        "  ip netns exec {laptop_ns} {} status --socket {}",
        warren.display(),
        socket.display()
    );
    println!(
        "  ip netns exec {laptop_ns} {} ping phone --socket {}",
        warren.display(),
        socket.display()
    );
    // The lab's admin token, readable by root only, for the admin CLI.
    let token = lab.subdir("keep")?.join("admin-token");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&token)
        .and_then(|mut f| f.write_all(world.controller.token().as_bytes()))
        .with_context(|| format!("writing {}", token.display()))?;
    println!(
        "  ip netns exec {} env WARREN_API=http://{API} WARREN_TOKEN=\"$(cat {})\" {} audit --network {net}",
        world.internet.name(),
        token.display(),
        controller_bin()?.display(),
    );
    println!("press Ctrl-C to tear it down");
    Ok(())
}

/// `warren-controller ARGS...` with the lab's admin token.
fn admin(world: &RoutesLab, args: &[&str]) -> anyhow::Result<String> {
    world.admin(args).map_err(anyhow::Error::msg)
}
