//! warren-policy-bench: what an access policy costs a single TCP stream.
//! Needs root.
//!
//! Two agents and a controller on a routed star (no NAT), the agents
//! joined to one network. Each round measures iperf3 TCP, one stream, from
//! agent a to agent b over the overlay:
//! - **anchor**: the same two hosts without a tunnel;
//! - **default**: the network's default policy (one rule, every member
//!   to every member on every port);
//! - **1,000 rules**: a policy of 1,000 rules from a to b, the one that
//!   admits iperf3 last, with 10,000 UDP flows tracked on both agents
//!   (started from a to 10,000 ports of b just before the run, and still
//!   tracked after it).
//!
//! It prints each round and the best of all rounds, the ratio of the
//! policy run to the default one, and the flow table's memory on b as the
//! agent reports it. The bound is a ratio of at least 0.95.
//!
//! Environment: `ROUNDS` (3), `SECONDS` (10), `WARREN_BIN`,
//! `WARREN_CONTROLLER_BIN` (use release builds).

use std::env;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use serde_json::Value;
use warren_lab::iperf;
use warren_lab::mesh::Mesh;
use warren_lab::{is_root, Lab};

const RULES: usize = 1_000;
const FLOWS: u16 = 10_000;
/// The first UDP port of the tracked flows.
const FLOW_PORT: u16 = 20_000;
const IPERF_PORT: u16 = 5201;

fn env_number(name: &str, default: u32) -> anyhow::Result<u32> {
    match env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// 999 rules that admit nothing iperf3 uses, one for the tracked flows,
/// and the one that admits iperf3 last.
fn thousand_rules() -> String {
    let mut text = String::new();
    for i in 0..RULES - 2 {
        let port = 30_000 + i;
        let _ = write!(
            text,
            "[[allow]]\nfrom = [\"a\"]\nto = [\"b\"]\nports = [\"tcp:{port}\"]\n\n"
        );
    }
    let last_flow = FLOW_PORT + FLOWS - 1;
    let _ = write!(
        text,
        "[[allow]]\nfrom = [\"a\"]\nto = [\"b\"]\nports = [\"udp:{FLOW_PORT}-{last_flow}\"]\n\n\
         [[allow]]\nfrom = [\"a\"]\nto = [\"b\"]\nports = [\"tcp:{IPERF_PORT}\"]\n"
    );
    text
}

/// The network's filter stats on `agent`.
fn filter_stats(mesh: &Mesh, agent: &str, network: &str) -> anyhow::Result<Value> {
    let status = mesh.agent(agent)?.status()?;
    let net = status.network(network)?;
    net.0.get("filter").cloned().context("no filter in status")
}

/// Starts `FLOWS` UDP flows from a to b's overlay address.
fn start_flows(mesh: &Mesh, to: IpAddr) -> anyhow::Result<()> {
    mesh.ns("a")?.run(move || -> std::io::Result<()> {
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0))?;
        for port in FLOW_PORT..FLOW_PORT + FLOWS {
            // Paced a little: the point is tracked flows, not a flood.
            socket.send_to(b"flow", SocketAddr::new(to, port))?;
            if port % 500 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    })??;
    Ok(())
}

fn tracked(stats: &Value) -> u64 {
    stats["tracked_flows"].as_u64().unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    if !is_root() {
        bail!("warren-policy-bench needs root (network namespaces, TUN)");
    }
    let rounds = env_number("ROUNDS", 3)?;
    let seconds = env_number("SECONDS", 10)?;
    let lab = Lab::new("policy-bench")?;
    let result = run(&lab, rounds, seconds);
    if result.is_err() {
        lab.print_logs();
    }
    result
}

fn run(lab: &Lab, rounds: u32, seconds: u32) -> anyhow::Result<()> {
    let mesh = Mesh::build(lab, &["a", "b"])?;
    let ctl = &mesh.controller;
    let network = ctl.network_create("bench", "10.147.0.0/16")?;
    let key = ctl.key_create(&network, true)?;
    mesh.join_ok("a", &network, Some(&key))?;
    mesh.join_ok("b", &network, Some(&key))?;
    let b_overlay = mesh.overlay_addr("b", &network, false)?;
    let b_host = IpAddr::from(mesh.host("b")?.addr);
    let (a_ns, b_ns) = (mesh.ns("a")?, mesh.ns("b")?);
    let default_policy = ctl.admin(&["policy", "get", &network])?;
    let policy_file = lab.dir().join("thousand.toml");
    std::fs::write(&policy_file, thousand_rules())?;
    let default_file = lab.dir().join("default.toml");
    std::fs::write(&default_file, default_policy)?;
    // The first packets through a fresh tunnel set the path up.
    warren_lab::ping::wait_reachable(a_ns, b_overlay, Duration::from_secs(15))?;

    let mut best = [0f64; 3];
    let mut memory = 0u64;
    println!("round  anchor Mbit/s  default Mbit/s  1,000 rules + 10,000 flows Mbit/s");
    for round in 1..=rounds {
        let anchor = iperf::tcp(lab, b_ns, a_ns, b_host, seconds)?.mbit();

        ctl.admin(&["policy", "set", &network, &default_file.to_string_lossy()])?;
        std::thread::sleep(Duration::from_secs(1));
        let default = iperf::tcp(lab, b_ns, a_ns, b_overlay, seconds)?.mbit();

        ctl.admin(&["policy", "set", &network, &policy_file.to_string_lossy()])?;
        std::thread::sleep(Duration::from_secs(1));
        let version = filter_stats(&mesh, "b", &network)?["policy_version"].clone();
        start_flows(&mesh, b_overlay)?;
        let before = filter_stats(&mesh, "b", &network)?;
        ensure!(
            tracked(&before) >= u64::from(FLOWS),
            "b tracks {} flows under policy version {version} (expected {FLOWS})",
            tracked(&before)
        );
        let policy = iperf::tcp(lab, b_ns, a_ns, b_overlay, seconds)?.mbit();
        let after = filter_stats(&mesh, "b", &network)?;
        ensure!(
            tracked(&after) >= u64::from(FLOWS),
            "b tracked only {} flows by the end of the run",
            tracked(&after)
        );
        memory = memory.max(after["flow_table_bytes"].as_u64().unwrap_or(0));
        println!("{round:>5}  {anchor:>13.0}  {default:>14.0}  {policy:>33.0}");
        for (slot, value) in best.iter_mut().zip([anchor, default, policy]) {
            *slot = slot.max(value);
        }
    }
    let ratio = best[2] / best[1];
    println!(
        "best   {:>13.0}  {:>14.0}  {:>33.0}",
        best[0], best[1], best[2]
    );
    println!("policy / default: {ratio:.3} (the bound is 0.95)");
    println!(
        "b's flow table with {} flows: {:.1} MiB",
        FLOWS,
        memory as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
