//! `grant add|list|revoke`: temporary access that ends by itself.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use warren_proto::NetworkId;

use super::output::{field, items, json as print_json, table};
use super::ApiArgs;

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: GrantCommand,
}

#[derive(Debug, Subcommand)]
enum GrantCommand {
    /// Allow FROM to reach TO for a while; the rule ends by itself.
    Add {
        network: NetworkId,
        /// Who: a member name, group:NAME, tag:NAME or *.
        #[arg(long)]
        from: String,
        /// What: a member name, group:NAME, tag:NAME, a CIDR, service:NAME or *.
        #[arg(long)]
        to: String,
        /// Ports (repeat or comma-separate): tcp:6379, udp:53, icmp, * [default: *].
        #[arg(long, value_delimiter = ',')]
        ports: Vec<String>,
        /// How long, e.g. 2h, 30m, 20s (at most 30 days).
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
    /// A network's active grants (with --all, ended and revoked ones too).
    List {
        network: NetworkId,
        #[arg(long)]
        all: bool,
    },
    /// End a grant now.
    Revoke { network: NetworkId, id: String },
}

const HEADERS: [&str; 7] = ["ID", "FROM", "TO", "PORTS", "ENDS", "ACTIVE", "REASON"];

fn row(g: &Value) -> Vec<String> {
    ["id", "from", "to", "ports", "ends_at", "active", "reason"]
        .iter()
        .map(|k| field(g, k))
        .collect()
}

pub async fn run(args: GrantArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let base = |net: &NetworkId| format!("/api/v1/networks/{net}/grants");
    let answer = match &args.command {
        GrantCommand::Add {
            network,
            from,
            to,
            ports,
            duration,
            reason,
        } => {
            let mut body = json!({ "from": from, "to": to, "for": duration, "reason": reason });
            if !ports.is_empty() {
                body["ports"] = json!(ports);
            }
            client
                .call(Method::POST, &base(network), Some(&body))
                .await
                .context("adding the grant")?
        }
        GrantCommand::List { network, all } => {
            let path = format!("{}?all={all}", base(network));
            let found = client.call(Method::GET, &path, None).await?;
            if args.api.json {
                print_json(&found)?;
            } else {
                let rows: Vec<_> = items(&found, "grants").iter().map(row).collect();
                table(&HEADERS, &rows);
            }
            return Ok(ExitCode::SUCCESS);
        }
        GrantCommand::Revoke { network, id } => {
            let path = format!("{}/{id}", base(network));
            client.call(Method::DELETE, &path, None).await?
        }
    };
    if args.api.json {
        print_json(&answer)?;
    } else {
        table(&HEADERS, &[row(&answer)]);
    }
    Ok(ExitCode::SUCCESS)
}
