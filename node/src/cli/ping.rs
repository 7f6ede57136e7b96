//! `warren ping` and `warren netcheck`: which path a peer answers on, and what the NAT looks like.

use std::time::Duration;
use warren_proto::text::printable;

use clap::Args;
use warren_proto::local_api::{Netcheck, PathKind, PingReply, PingRequest};

use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct PingArgs {
    /// A peer's name, FQDN, node ID, overlay address or public key.
    peer: String,
    /// How many probes to send (each waits up to 5 s for an answer).
    #[arg(long, short = 'c', default_value_t = 10)]
    count: u32,
    /// Keep going after a direct path answers (by default `ping` stops there).
    #[arg(long)]
    until_count: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct NetcheckArgs {
    #[arg(long)]
    json: bool,
}

pub fn ping(cli: &Cli, args: &PingArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let runtime = super::runtime()?;
    let request = PingRequest {
        peer: args.peer.clone(),
    };
    let mut answered = false;
    for i in 0..args.count.max(1) {
        let reply: PingReply = runtime.block_on(client::post(&socket, "/v1/ping", &request))?;
        answered |= reply.path != PathKind::None;
        if args.json {
            println!("{}", serde_json::to_string(&reply)?);
        } else {
            println!("{}", printable(&render(&reply)));
        }
        if reply.path == PathKind::Direct && !args.until_count {
            break;
        }
        if i + 1 < args.count && reply.path != PathKind::None {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    if !answered {
        anyhow::bail!("no answer from {}", args.peer);
    }
    Ok(())
}

fn render(reply: &PingReply) -> String {
    let who = reply.name.clone().unwrap_or_else(|| reply.peer.short());
    let rtt = reply
        .rtt_ms
        .map(|ms| format!("{ms:.2} ms"))
        .unwrap_or_default();
    match reply.path {
        PathKind::Direct => format!(
            "pong from {who} via {} in {rtt} (direct)",
            reply.endpoint.as_deref().unwrap_or("?")
        ),
        PathKind::Relay => format!("pong from {who} via relay in {rtt}"),
        PathKind::None => format!("no answer from {who} within 5 s"),
    }
}

pub fn netcheck(cli: &Cli, args: &NetcheckArgs) -> anyhow::Result<()> {
    let socket = cli.socket_or(None);
    let report: Netcheck = super::runtime()?.block_on(client::get(&socket, "/v1/netcheck"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if report.networks.is_empty() {
        println!("no joined network is up; netcheck asks each network's controller");
    }
    for net in &report.networks {
        println!(
            "network {} (port {})",
            net.network,
            net.listen_port.unwrap_or(0)
        );
        for r in &net.reflexive {
            println!("  STUN {} sees us at {}", r.server, r.mapped);
        }
        if net.reflexive.is_empty() {
            println!("  no STUN answer yet (is UDP to the controller blocked?)");
        }
        let mapping = match net.mapping_varies_by_destination {
            Some(true) => "varies by destination (endpoint-dependent, symmetric NAT): direct paths need the peer's help",
            Some(false) => "same for every destination (endpoint-independent): direct paths work",
            None => "unknown (fewer than two STUN answers)",
        };
        println!("  mapping {mapping}");
        match &net.port_mapping {
            Some(m) => println!(
                "  port mapping: {} {} maps us at {} ({}s, renewed at half)",
                m.protocol.to_uppercase(),
                m.gateway,
                m.external,
                m.lifetime_secs
            ),
            None => println!(
                "  port mapping: none (off, or the gateway does not answer PCP or NAT-PMP)"
            ),
        }
        match (net.relay, &net.relay_server) {
            (true, Some(server)) => println!("  relay reachable (relay-only instance {server})"),
            (true, None) => println!("  relay reachable (the controller)"),
            (false, _) => println!("  relay unreachable"),
        }
    }
    Ok(())
}
