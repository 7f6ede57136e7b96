//! `route list|approve|unapprove` and `route auto-approve list|add|remove`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use hyper::Method;
use ipnet::IpNet;
use serde_json::{json, Value};
use warren_proto::{NetworkId, NodeId};

use super::output::{field, items, json as print_json, table};
use super::ApiArgs;

#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: RouteCommand,
}

#[derive(Debug, Subcommand)]
enum RouteCommand {
    /// A network's routes: who advertises what for which site, what is approved, who is primary, mapped prefixes.
    List { network: NetworkId },
    /// Approve a prefix for a member (its node may advertise it before or after).
    Approve {
        network: NetworkId,
        node: NodeId,
        prefix: IpNet,
    },
    /// Withdraw an approval: peers stop routing the prefix to that member.
    #[command(visible_alias = "revoke")]
    Unapprove {
        network: NetworkId,
        node: NodeId,
        prefix: IpNet,
    },
    /// Rules that approve advertised prefixes without an admin.
    #[command(subcommand)]
    AutoApprove(AutoCommand),
}

#[derive(Debug, Subcommand)]
enum AutoCommand {
    /// The network's rules.
    List { network: NetworkId },
    /// Approve advertisements of PREFIX (or anything inside it) from a member.
    Add {
        network: NetworkId,
        prefix: IpNet,
        #[command(flatten)]
        who: Who,
    },
    /// Remove a rule (what it approved stays approved).
    Remove {
        network: NetworkId,
        prefix: IpNet,
        #[command(flatten)]
        who: Who,
    },
}

/// Whose advertisements a rule approves.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Who {
    /// This member's.
    #[arg(long)]
    node: Option<NodeId>,
    /// Any member's.
    #[arg(long)]
    any: bool,
}

impl Who {
    fn as_text(&self) -> String {
        self.node.map_or_else(|| "*".to_owned(), |n| n.to_string())
    }
}

const HEADERS: [&str; 10] = [
    "NODE",
    "NAME",
    "PREFIX",
    "SITE",
    "MAPPED",
    "ADVERTISED",
    "APPROVED",
    "PRIMARY",
    "ONLINE",
    "APPROVED-BY",
];

fn row(r: &Value) -> Vec<String> {
    let mut row: Vec<String> = [
        "node_id",
        "name",
        "prefix",
        "site",
        "mapped_prefix",
        "advertised",
        "approved",
        "primary",
        "online",
        "approved_by",
    ]
    .iter()
    .map(|k| field(r, k))
    .collect();
    if r.get("mapping_exhausted").and_then(Value::as_bool) == Some(true) {
        row[4] = "none (range full)".to_owned();
    }
    row
}

const RULE_HEADERS: [&str; 4] = ["PREFIX", "NODE", "CREATED-BY", "CREATED"];

fn rule_row(r: &Value) -> Vec<String> {
    ["prefix", "node", "created_by", "created_at"]
        .iter()
        .map(|k| field(r, k))
        .collect()
}

/// A query-string value: only `/` in prefixes needs escaping.
fn query_value(text: &str) -> String {
    text.replace('%', "%25").replace('/', "%2F")
}

pub async fn run(args: RouteArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let routes = |net: &NetworkId| format!("/api/v1/networks/{net}/routes");
    let answer = match &args.command {
        RouteCommand::List { network } => {
            let found = client.call(Method::GET, &routes(network), None).await?;
            if args.api.json {
                print_json(&found)?;
            } else {
                let rows: Vec<_> = items(&found, "routes").iter().map(row).collect();
                table(&HEADERS, &rows);
            }
            return Ok(ExitCode::SUCCESS);
        }
        RouteCommand::Approve {
            network,
            node,
            prefix,
        } => {
            let body = json!({ "node": node, "prefix": prefix });
            client
                .call(Method::POST, &routes(network), Some(&body))
                .await?
        }
        RouteCommand::Unapprove {
            network,
            node,
            prefix,
        } => {
            let path = format!(
                "{}?node={node}&prefix={}",
                routes(network),
                query_value(&prefix.to_string())
            );
            client.call(Method::DELETE, &path, None).await?;
            if args.api.json {
                print_json(&json!({ "unapproved": { "node": node, "prefix": prefix } }))?;
            } else {
                warren_cli_assets::errln!("{prefix} is no longer approved for {node} in {network}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        RouteCommand::AutoApprove(command) => return auto(&args.api, &client, command).await,
    };
    if args.api.json {
        print_json(&answer)?;
    } else {
        table(&HEADERS, &[row(&answer)]);
    }
    Ok(ExitCode::SUCCESS)
}

async fn auto(
    api: &ApiArgs,
    client: &super::client::ApiClient,
    command: &AutoCommand,
) -> anyhow::Result<ExitCode> {
    let rules = |net: &NetworkId| format!("/api/v1/networks/{net}/routes/auto-approvers");
    match command {
        AutoCommand::List { network } => {
            let found = client.call(Method::GET, &rules(network), None).await?;
            if api.json {
                print_json(&found)?;
            } else {
                let rows: Vec<_> = items(&found, "auto_approvers")
                    .iter()
                    .map(rule_row)
                    .collect();
                table(&RULE_HEADERS, &rows);
            }
        }
        AutoCommand::Add {
            network,
            prefix,
            who,
        } => {
            let body = json!({ "prefix": prefix, "node": who.as_text() });
            let made = client
                .call(Method::POST, &rules(network), Some(&body))
                .await?;
            if api.json {
                print_json(&made)?;
            } else {
                let rule = made.get("auto_approver").cloned().unwrap_or(Value::Null);
                table(&RULE_HEADERS, &[rule_row(&rule)]);
                for r in items(&made, "approved") {
                    warren_cli_assets::errln!(
                        "approved {} for {} now",
                        field(r, "prefix"),
                        field(r, "node_id")
                    );
                }
            }
        }
        AutoCommand::Remove {
            network,
            prefix,
            who,
        } => {
            let path = format!(
                "{}?prefix={}&node={}",
                rules(network),
                query_value(&prefix.to_string()),
                query_value(&who.as_text())
            );
            client.call(Method::DELETE, &path, None).await?;
            if api.json {
                print_json(&json!({ "removed": { "prefix": prefix, "node": who.as_text() } }))?;
            } else {
                warren_cli_assets::errln!(
                    "auto-approval of {prefix} from {} removed",
                    who.as_text()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_the_site_and_the_mapped_prefix_or_why_none() {
        let mapped = json!({
            "node_id": "0123456789", "name": "master-m", "prefix": "10.96.0.0/12",
            "site": "m", "mapped_prefix": "100.64.0.0/12", "mapping_exhausted": false,
            "advertised": true, "approved": true, "primary": true, "online": true,
            "approved_by": "token:admin",
        });
        let row = row(&mapped);
        assert_eq!(row.len(), HEADERS.len());
        assert_eq!((HEADERS[3], row[3].as_str()), ("SITE", "m"));
        assert_eq!((HEADERS[4], row[4].as_str()), ("MAPPED", "100.64.0.0/12"));
        let waiting = json!({ "site": "w", "mapped_prefix": null, "mapping_exhausted": true });
        assert_eq!(super::row(&waiting)[4], "none (range full)");
        let plain = json!({ "site": null, "mapped_prefix": null, "mapping_exhausted": false });
        assert_eq!(super::row(&plain)[3..5], ["-", "-"]);
    }
}
