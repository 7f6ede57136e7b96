//! `warren-lab`: hands-on namespace labs for people, built from the same
//! library as the end-to-end suites.
//!
//! `warren-lab demo` builds two hosts, starts a warren agent on each, shows
//! their status and pings through the tunnel; `--keep` leaves the lab up
//! until Ctrl-C. Everything is torn down on exit, also after Ctrl-C.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use warren_lab::node_spec::overlay;
use warren_lab::pair::{Pair, PairOptions};
use warren_lab::ping::{ping, wait_reachable};
use warren_lab::warren::{warren_bin, Agent};
use warren_lab::{is_root, Lab, Netns};

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
    /// Two warren agents on two namespaces: status and pings over the tunnel.
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

    println!("warren binary: {}", warren_bin()?.display());
    let lab = Lab::new("demo")?;
    let outcome = run_demo(&lab, keep, &stop);
    if outcome.is_err() {
        lab.print_logs();
    }
    // `run_demo` has dropped the agents and namespaces by now.
    println!("lab {} torn down", lab.prefix());
    outcome
}

fn interrupted(stop: &AtomicBool) -> anyhow::Result<()> {
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn show_status(title: &str, agent: &Agent) -> anyhow::Result<()> {
    println!("\n--- warren status on {title} ---");
    print!("{}", agent.status_human()?);
    Ok(())
}

fn show_ping(from: &Netns, dst: IpAddr) -> anyhow::Result<()> {
    let report = ping(
        from,
        dst,
        4,
        Duration::from_millis(250),
        Duration::from_secs(2),
    )?;
    println!("\n$ ping -c 4 {dst}   (from {})", from.name());
    print!("{}", report.render());
    Ok(())
}

fn run_demo(lab: &Lab, keep: bool, stop: &AtomicBool) -> anyhow::Result<()> {
    println!("building lab {} ...", lab.prefix());
    let pair = Pair::build(lab, PairOptions::warren())?;
    let (a, b) = (pair.a.agent()?, pair.b.agent()?);
    println!(
        "namespace {} (192.0.2.1, 2001:db8::1) <-> namespace {} (192.0.2.2, 2001:db8::2)",
        pair.hosts.a.name(),
        pair.hosts.b.name()
    );
    show_status(pair.hosts.a.name(), a)?;
    show_status(pair.hosts.b.name(), b)?;
    interrupted(stop)?;

    let took = wait_reachable(
        &pair.hosts.a,
        overlay::addr(2, false),
        Duration::from_secs(10),
    )?;
    println!("\ntunnel up after {took:?}");
    for v6 in [false, true] {
        show_ping(&pair.hosts.a, overlay::addr(2, v6))?;
        interrupted(stop)?;
    }
    show_status(pair.hosts.a.name(), a)?;
    show_status(pair.hosts.b.name(), b)?;

    if keep {
        let bin = warren_bin()?;
        println!("\nlab kept running; try for example:");
        println!(
            "  ip netns exec {} ping {}",
            pair.hosts.a.name(),
            overlay::v4(2)
        );
        println!(
            "  {} status --socket {}",
            bin.display(),
            a.socket().display()
        );
        println!("press Ctrl-C to tear it down");
        while !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
