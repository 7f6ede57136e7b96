//! `warren-lab`: hands-on namespace labs for people, built from the same
//! library as the end-to-end suites.
//!
//! `warren-lab demo` builds three sites, each behind its own NAT router of
//! a different kind, around an "internet" namespace that holds the
//! controller: a cluster master behind an endpoint-independent cloud NAT,
//! a laptop behind a home router (port-restricted cone) and a phone behind
//! carrier-grade NAT (symmetric). It creates a network, joins the agents
//! with one reusable pre-auth key, shows which pairs went direct through
//! their NATs and which are relayed (checked against NATLAB.md's outcomes)
//! and how long each took, prints the member table, pings every pair by
//! overlay IPv4 and IPv6, shows `warren status` and `warren ping`, resolves
//! every member's name at the laptop's DNS stub, has the master publish a
//! service that the laptop finds by SRV and fetches, has the laptop fetch
//! a service inside the master's cluster through an approved, accepted
//! subnet route, and prints the audit trail of all of it. Every figure is
//! measured; a wait that runs out says so, and the demo exits non-zero if
//! anything of that fails. `--keep` leaves the lab up until Ctrl-C.
//! Everything is torn down on exit, also after Ctrl-C.
//!
//! # Layout
//! - `demo`: the story, section by section.
//! - `paths`: how long each pair takes to settle on its path.
//! - `names`: member names and a published service at a DNS stub.
//! - `trail`: the audit timeline and the check that it holds every step.

mod demo;
mod names;
mod paths;
mod trail;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use warren_lab::controller::controller_bin;
use warren_lab::warren::warren_bin;
use warren_lab::{is_root, Lab};

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
    /// show each pair's path (direct or relayed) and the member table, ping
    /// every pair over the overlay, resolve names, publish a service, reach
    /// a cluster through a route, and print the audit trail.
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
    let outcome = demo::run(&lab, keep, &stop);
    if outcome.is_err() {
        lab.print_logs();
    }
    // `demo::run` has dropped the daemons and namespaces by now.
    println!("lab {} torn down", lab.prefix());
    outcome
}
