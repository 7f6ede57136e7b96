//! `warren-lab`: hands-on namespace labs for people, built from the same
//! library as the end-to-end suites.
//!
//! `warren-lab demo` builds three sites, each behind its own NAT router of
//! a different kind, around an "internet" namespace that holds the
//! controller: a cluster master behind an endpoint-independent cloud NAT,
//! a laptop behind a home router (port-restricted cone) and a phone behind
//! carrier-grade NAT (symmetric). It creates a network, joins the agents
//! with one reusable pre-auth key, prints the member table, shows which
//! pairs went direct through their NATs and which are relayed (and checks
//! that against NATLAB.md's outcomes), pings every pair by overlay IPv4
//! and IPv6, and has the laptop fetch a service inside the master's
//! cluster through an approved, accepted subnet route. It exits non-zero
//! if anything of that fails. `--keep` leaves the lab up until Ctrl-C.
//! Everything is torn down on exit, also after Ctrl-C.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use warren_lab::controller::controller_bin;
use warren_lab::mesh::ping_every_pair;
use warren_lab::nat_controller::QUIC;
use warren_lab::natpair::{expected_path, NatKind, PeerPath};
use warren_lab::routes_lab::{fetch, RoutesLab, SiteSpec, AGENT_PORT};
use warren_lab::wait::{self, Poll};
use warren_lab::warren::warren_bin;
use warren_lab::{is_root, Lab};

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

/// How long each pair gets to settle on its path.
const PATH_WITHIN: Duration = Duration::from_secs(20);

#[derive(Parser)]
#[command(
    name = "warren-lab",
    version,
    about = "Network-namespace labs for Warren"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A controller and three agents behind different NATs: join a network,
    /// show the member table and each pair's path (direct or relayed),
    /// ping every pair over the overlay, reach a cluster through a route.
    Demo {
        /// Keep the lab running until Ctrl-C, to explore it by hand.
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { keep } => demo(keep),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo(keep: bool) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo needs root (network namespaces, TUN devices)");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    println!("warren binary:            {}", warren_bin()?.display());
    println!("warren-controller binary: {}", controller_bin()?.display());
    let lab = Lab::new("demo")?;
    let outcome = run_demo(&lab, keep, &stop);
    if outcome.is_err() {
        lab.print_logs();
    }
    // `run_demo` has dropped the daemons and namespaces by now.
    println!("lab {} torn down", lab.prefix());
    outcome
}

fn interrupted(stop: &AtomicBool) -> anyhow::Result<()> {
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn section(title: &str) {
    println!("\n=== {title} ===");
}

fn run_demo(lab: &Lab, keep: bool, stop: &AtomicBool) -> anyhow::Result<()> {
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
    let master = world.site("master")?;
    if let Some(cluster) = &master.cluster {
        println!(
            "  cluster {} behind master: service range {CLUSTER_RANGE}, HTTP at {CLUSTER_SERVICE}:80",
            cluster.name()
        );
    }
    interrupted(stop)?;

    let net = world.network.clone();
    section("warren-controller network create sites");
    println!("{net}");
    section(&format!("warren-controller key create {net} --reusable"));
    println!("{}", world.key);
    for (name, _) in SITES {
        section(&format!(
            "[{name}] warren join {net} --controller {QUIC} --key ..."
        ));
        print!("{}", world.join(name)?);
        interrupted(stop)?;
    }
    let joined = Instant::now();
    // The table reads better once presence has caught up; it prints either way.
    let _ = wait::until("every member online", SETTLE, || {
        let online = admin(&world, &["member", "list", &net, "--json"])
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .map_or(0, |json| {
                json.as_array().map_or(0, |members| {
                    members
                        .iter()
                        .filter(|m| m.get("online") == Some(&serde_json::Value::Bool(true)))
                        .count()
                })
            });
        Ok(if online == SITES.len() {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("{online} online"))
        })
    });
    section(&format!("warren-controller member list {net}"));
    print!("{}", admin(&world, &["member", "list", &net])?);
    interrupted(stop)?;

    section("paths: direct through the NATs where possible, relayed otherwise");
    let mut problems = Vec::new();
    for (i, (a, kind_a)) in SITES.iter().enumerate() {
        for (b, kind_b) in &SITES[i + 1..] {
            let want = expected_path(*kind_a, *kind_b);
            match settle_path(&world, a, b, want) {
                Ok(view) => println!(
                    "  {a:<7} <-> {b:<7} {want:<7} {:>4.1} s after the joins  ({kind_a} x {kind_b}; {view})",
                    joined.elapsed().as_secs_f64()
                ),
                Err(e) => {
                    println!("  {a:<7} <-> {b:<7} NOT {want}: {e:#}");
                    problems.push(format!("{a} <-> {b} not {want}"));
                }
            }
            interrupted(stop)?;
        }
    }

    section("[laptop] warren status");
    print!("{}", world.site("laptop")?.agent.status_human()?);
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

    section("split tunnel: the laptop reaches the master's cluster");
    let laptop = world.site("laptop")?;
    println!("[master] warren routes advertise {CLUSTER_RANGE}");
    master.warren(["routes", "advertise", CLUSTER_RANGE])?;
    println!(
        "warren-controller route approve {net} {} {CLUSTER_RANGE}",
        master.agent.node_id()
    );
    world.approve("master", CLUSTER_RANGE)?;
    println!("[laptop] warren routes accept on");
    laptop.warren(["routes", "accept", "on"])?;
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
            "[laptop] GET http://{service}/ -> answered by {}, which saw the request come from {} (the master, masquerading)",
            f.server, f.seen_from
        ),
        Err(e) => {
            println!("[laptop] GET http://{service}/ failed: {e}");
            problems.push("the cluster service through the route".to_owned());
        }
    }
    print!("{}", laptop.warren(["routes", "list"])?);

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
        let laptop_ns = laptop.host.name();
        let master_v4 = master.overlay_v4(&net)?;
        println!("\nlab kept running; try for example:");
        println!("  ip netns exec {laptop_ns} ping {master_v4}");
        println!("  ip netns exec {laptop_ns} curl http://{CLUSTER_SERVICE}/");
        println!(
            "  ip netns exec {laptop_ns} {} status --socket {}",
            warren_bin()?.display(),
            laptop.agent.socket().display()
        );
        println!(
            "  ip netns exec {} {} member list {net}   # with WARREN_TOKEN from the lab",
            world.internet.name(),
            controller_bin()?.display(),
        );
        println!("press Ctrl-C to tear it down");
        while !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// `warren-controller ARGS...` with the lab's admin token.
fn admin(world: &RoutesLab, args: &[&str]) -> anyhow::Result<String> {
    world.admin(args).map_err(anyhow::Error::msg)
}

/// Waits until agents `a` and `b` both report `want` for each other;
/// returns what `a` says of the path.
fn settle_path(world: &RoutesLab, a: &str, b: &str, want: PeerPath) -> anyhow::Result<String> {
    let site_a = world.site(a)?;
    let site_b = world.site(b)?;
    let view = |from: &warren_lab::routes_lab::Site, to: &warren_lab::routes_lab::Site| {
        let status = from.agent.status()?;
        let peer = status.peer(to.agent.public_key())?;
        let text = |key: &str| {
            peer.0
                .get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("-")
                .to_owned()
        };
        let latency = peer
            .0
            .get("latency_ms")
            .and_then(serde_json::Value::as_f64)
            .map_or_else(String::new, |ms| format!(", {ms:.2} ms"));
        warren_lab::Result::Ok((
            text("path"),
            format!("{a} sees {b} at {}{latency}", text("endpoint")),
        ))
    };
    let found = wait::until(format!("{a} and {b} to go {want}"), PATH_WITHIN, || {
        let (path_ab, said) = view(site_a, site_b)?;
        let (path_ba, _) = view(site_b, site_a)?;
        Ok(
            if path_ab == want.to_string() && path_ba == want.to_string() {
                Poll::Ready(said)
            } else {
                Poll::Pending(format!("{a}: {path_ab}, {b}: {path_ba}"))
            },
        )
    })?;
    Ok(found)
}
