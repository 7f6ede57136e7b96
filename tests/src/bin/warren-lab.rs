//! `warren-lab`: hands-on namespace labs for people, built from the same
//! library as the end-to-end suites.
//!
//! `warren-lab demo` builds a routed star of namespaces with a controller
//! and three agents, creates a network, joins the agents with one reusable
//! pre-auth key, prints the member table and an agent's status, and pings
//! every pair by overlay IPv4 and IPv6. It exits non-zero if any ping
//! fails. `--keep` leaves the lab up until Ctrl-C. Everything is torn down
//! on exit, also after Ctrl-C.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use warren_lab::controller::{self, controller_bin};
use warren_lab::mesh::{ping_pairs, Mesh, CONTROLLER_ROLE};
use warren_lab::wait::{self, Poll};
use warren_lab::warren::warren_bin;
use warren_lab::{is_root, Lab};

/// The agents of the demo, one per host.
const AGENTS: [&str; 3] = ["a", "b", "c"];

/// The demo network's IPv4 pool.
const POOL: &str = "10.147.0.0/16";

/// How long joins get to be authorized, and members to show online.
const SETTLE: Duration = Duration::from_secs(15);

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
    /// A controller and three agents on a routed star: join a network,
    /// show the member table and status, ping every pair over the overlay.
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
    let mut roles = vec![CONTROLLER_ROLE];
    roles.extend(AGENTS);
    let mut mesh = Mesh::build(lab, &AGENTS)?;
    section("hosts (routed star around an \"internet\" namespace, no NAT)");
    for role in roles {
        let host = mesh.host(role)?;
        let what = if role == CONTROLLER_ROLE {
            format!("warren-controller, QUIC on :{}", controller::QUIC_PORT)
        } else {
            format!("warren daemon \"{role}\"")
        };
        println!("  {:<15} {:<15} {what}", host.ns.name(), host.addr);
    }
    println!("  controller fingerprint {}", mesh.controller.fingerprint());
    interrupted(stop)?;

    section("warren-controller network create demo");
    let net = mesh.controller.network_create("demo", POOL)?;
    println!("{net}");
    section(&format!("warren-controller key create {net} --reusable"));
    let key = mesh.controller.key_create(&net, true)?;
    println!("{key}");

    for name in AGENTS {
        section(&format!(
            "[{name}] warren join {net} --controller {} --key ...",
            mesh.controller.quic_addr()
        ));
        let out = mesh.join_ok(name, &net, Some(&key))?;
        print!("{}", out.stdout);
        interrupted(stop)?;
    }
    for name in AGENTS {
        mesh.agent_mut(name)?
            .wait_state(&net, "authorized", SETTLE)?;
    }
    // The table reads better once presence has caught up; it prints either way.
    let _ = wait::until("every member online", SETTLE, || {
        let members = mesh.controller.members(&net)?;
        Ok(if members.iter().all(|m| m.online) {
            Poll::Ready(())
        } else {
            Poll::Pending(String::new())
        })
    });

    section(&format!("warren-controller member list {net}"));
    print!("{}", mesh.controller.member_table(&net)?);
    section("[a] warren status");
    print!("{}", mesh.agent("a")?.status_human()?);
    interrupted(stop)?;

    section("pings over the overlay, every pair, IPv4 then IPv6");
    let results = ping_pairs(&mesh, &net, &AGENTS, 3)?;
    let mut failed = Vec::new();
    for r in &results {
        println!(
            "\n[{}] ping -c {} {}   ({})",
            r.from, r.report.sent, r.report.dst, r.to
        );
        print!("{}", r.report.render());
        if !r.ok() {
            failed.push(format!("{} -> {} ({})", r.from, r.to, r.report.dst));
        }
    }
    section("summary");
    println!(
        "{} of {} pairs answered every ping",
        results.len() - failed.len(),
        results.len()
    );
    if !failed.is_empty() {
        bail!("pings failed: {}", failed.join(", "));
    }
    mesh.ensure_running()?;

    if keep {
        let a = mesh.agent("a")?;
        let b_addr = mesh.overlay_addr("b", &net, false)?;
        println!("\nlab kept running; try for example:");
        println!("  ip netns exec {} ping {b_addr}", a.netns_name());
        println!(
            "  ip netns exec {} {} status --socket {}",
            a.netns_name(),
            warren_bin()?.display(),
            a.socket().display()
        );
        println!(
            "  ip netns exec {} env WARREN_TOKEN={} {} member list {net}",
            mesh.host(CONTROLLER_ROLE)?.ns.name(),
            mesh.controller.token(),
            controller_bin()?.display(),
        );
        println!("press Ctrl-C to tear it down");
        while !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
