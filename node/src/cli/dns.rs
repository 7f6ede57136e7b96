//! `warren dns [status]`: the stubs, their zones and how the system is pointed at them.

use clap::{Args, Subcommand};
use warren_cli_assets::{out, outln};
use warren_proto::local_dns::{DnsStatus, SplitDnsMode};
use warren_proto::text::printable;

use super::Cli;
use crate::client;

#[derive(Debug, Args)]
pub struct DnsArgs {
    #[command(subcommand)]
    command: Option<DnsCommand>,
    /// Print the local API's JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum DnsCommand {
    /// Show the stubs, their zones, the upstreams and the split-DNS mode (the default).
    Status,
}

pub fn run(cli: &Cli, args: &DnsArgs) -> anyhow::Result<()> {
    let (Some(DnsCommand::Status) | None) = &args.command;
    let socket = cli.socket_or(None);
    let status: DnsStatus = super::runtime()?.block_on(client::get(&socket, "/v1/dns"))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        out!("{}", printable(&render(&status)));
    }
    Ok(())
}

fn render(status: &DnsStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mode = match status.mode {
        SplitDnsMode::Resolved => {
            "systemd-resolved (per-link DNS, ~zone routing domains)".to_owned()
        }
        SplitDnsMode::ResolvConf => {
            format!("{} (stub first; original backed up)", status.resolv_conf)
        }
        SplitDnsMode::Off => "not configured".to_owned(),
    };
    let _ = writeln!(out, "split DNS: {mode}  [manage = {}]", status.manage);
    if let Some(e) = &status.error {
        let _ = writeln!(out, "  error: {e}");
    }
    if status.backup {
        let _ = writeln!(out, "  backup of the original {} held", status.resolv_conf);
    }
    let upstreams = if status.upstreams.is_empty() {
        "none (names outside the zones are refused)".to_owned()
    } else {
        status.upstreams.join(", ")
    };
    let _ = writeln!(out, "upstreams: {upstreams}");
    if status.stubs.is_empty() {
        let _ = writeln!(out, "no stubs: no authorized network");
    }
    for stub in &status.stubs {
        let state = if stub.serving {
            "serving"
        } else {
            "not serving"
        };
        let _ = writeln!(
            out,
            "network {}: zone {} on {} ({state}, {} records)",
            stub.network, stub.zone, stub.listen, stub.records
        );
        if let Some(e) = &stub.error {
            let _ = writeln!(out, "  error: {e}");
        }
    }
    out
}
