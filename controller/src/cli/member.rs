//! `member list|show|authorize|revoke|expire|rename|delete|tags|tag|untag`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use warren_cli_assets::outln;
use warren_proto::{NetworkId, NodeId};

use super::output::{field, items, json as print_json, table};
use super::ApiArgs;

#[derive(Debug, Args)]
pub struct MemberArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: MemberCommand,
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// List a network's members.
    List { network: NetworkId },
    /// Show one member.
    Show { network: NetworkId, node: NodeId },
    /// Approve a pending (or revoked) member.
    Authorize { network: NetworkId, node: NodeId },
    /// Cut a member off: it leaves every peer's netmap and cannot rejoin.
    Revoke { network: NetworkId, node: NodeId },
    /// End a signed-in device's sign-in now: it stops working until its
    /// owner signs it in again (`warren login` on the device).
    Expire { network: NetworkId, node: NodeId },
    /// Give a member a new name (sanitised to a DNS label).
    Rename {
        network: NetworkId,
        node: NodeId,
        name: String,
    },
    /// Remove a member; it may join again later.
    Delete { network: NetworkId, node: NodeId },
    /// List a member's tags.
    Tags { network: NetworkId, node: NodeId },
    /// Put a tag (tag:NAME) on a member, for policies to name.
    Tag {
        network: NetworkId,
        node: NodeId,
        tag: String,
    },
    /// Take a tag off a member.
    Untag {
        network: NetworkId,
        node: NodeId,
        tag: String,
    },
}

const HEADERS: [&str; 12] = [
    "NAME",
    "NODE",
    "IPV4",
    "IPV6",
    "STATE",
    "ONLINE",
    "LAST-SEEN",
    "ENDPOINTS",
    "VERSION",
    "KEY",
    "OWNER",
    "EXPIRES",
];

fn row(m: &Value) -> Vec<String> {
    // A pending member holds no name yet: show the one it asked for.
    let name = match m.get("name").and_then(Value::as_str) {
        Some(name) => name.to_string(),
        None => format!("({})", field(m, "requested_name")),
    };
    let rest = [
        "node_id",
        "ipv4",
        "ipv6",
        "state",
        "online",
        "last_seen",
        "endpoints",
        "agent_version",
        "public_key",
        "owner",
        "expires_at",
    ]
    .iter()
    .map(|k| field(m, k));
    std::iter::once(name).chain(rest).collect()
}

pub async fn run(args: MemberArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let base = |net: &NetworkId, node: &NodeId| format!("/api/v1/networks/{net}/members/{node}");
    let answer = match &args.command {
        MemberCommand::List { network } => {
            let found = client
                .call(
                    Method::GET,
                    &format!("/api/v1/networks/{network}/members"),
                    None,
                )
                .await?;
            if args.api.json {
                print_json(&found)?;
            } else {
                let rows: Vec<_> = items(&found, "members").iter().map(row).collect();
                table(&HEADERS, &rows);
            }
            return Ok(ExitCode::SUCCESS);
        }
        MemberCommand::Show { network, node } => {
            client.call(Method::GET, &base(network, node), None).await?
        }
        MemberCommand::Authorize { network, node } => {
            let path = format!("{}/authorize", base(network, node));
            client.call(Method::POST, &path, None).await?
        }
        MemberCommand::Revoke { network, node } => {
            let path = format!("{}/revoke", base(network, node));
            client.call(Method::POST, &path, None).await?
        }
        MemberCommand::Expire { network, node } => {
            let path = format!("{}/expire", base(network, node));
            client.call(Method::POST, &path, None).await?
        }
        MemberCommand::Rename {
            network,
            node,
            name,
        } => {
            let body = json!({ "name": name });
            client
                .call(Method::PATCH, &base(network, node), Some(&body))
                .await?
        }
        MemberCommand::Tags { network, node } => {
            let path = format!("{}/tags", base(network, node));
            return print_tags(&client.call(Method::GET, &path, None).await?, args.api.json);
        }
        MemberCommand::Tag { network, node, tag } => {
            let path = format!("{}/tags", base(network, node));
            let body = json!({ "tag": tag });
            return print_tags(
                &client.call(Method::POST, &path, Some(&body)).await?,
                args.api.json,
            );
        }
        MemberCommand::Untag { network, node, tag } => {
            let path = format!("{}/tags/{tag}", base(network, node));
            return print_tags(
                &client.call(Method::DELETE, &path, None).await?,
                args.api.json,
            );
        }
        MemberCommand::Delete { network, node } => {
            client
                .call(Method::DELETE, &base(network, node), None)
                .await?;
            if args.api.json {
                print_json(&json!({ "deleted": node }))?;
            } else {
                warren_cli_assets::errln!("member {node} deleted from {network}");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if args.api.json {
        print_json(&answer)?;
    } else {
        table(&HEADERS, &[row(&answer)]);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_tags(answer: &Value, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        print_json(answer)?;
    } else {
        for tag in items(answer, "tags") {
            outln!("{}", tag.as_str().unwrap_or("-"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
