//! `warren ping`: which path a peer answers on, and how fast.

use std::time::Duration;
use warren_proto::text::printable;

use clap::Args;
use warren_cli_assets::outln;
use warren_proto::local_api::{PathKind, PingReply, PingRequest};

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
            outln!("{}", serde_json::to_string(&reply)?);
        } else {
            outln!("{}", printable(&render(&reply)));
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
