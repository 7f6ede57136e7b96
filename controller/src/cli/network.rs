//! `network create|list|show|set|delete`, and `network invite` (in `invite.rs`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use warren_cli_assets::outln;
use warren_proto::NetworkId;

use super::output::{field, items, json as print_json, table};
use super::ApiArgs;

#[derive(Debug, Args)]
pub struct NetworkArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: NetworkCommand,
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Create a network and print its ID.
    Create {
        /// A DNS label: lowercase letters, digits and '-'.
        name: String,
        /// IPv4 pool, /8 to /30 [default: 10.147.0.0/16].
        #[arg(long)]
        pool: Option<String>,
        /// DNS zone [default: NAME.warren.internal].
        #[arg(long)]
        zone: Option<String>,
        /// MTU for members' interfaces [default: 1420].
        #[arg(long)]
        mtu: Option<u16>,
        /// The first access policy (a TOML file, '-' for stdin) instead of the default.
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
    },
    /// List networks.
    List,
    /// Show one network.
    Show { id: NetworkId },
    /// Change a network's name, zone or device expiry.
    Set {
        id: NetworkId,
        /// A new name (a DNS label).
        #[arg(long)]
        name: Option<String>,
        /// A new DNS zone.
        #[arg(long)]
        zone: Option<String>,
        /// How long a device a person signed in stays on before its owner
        /// signs in again, e.g. 90d or 720h (from 1h to 10 years) [default
        /// for new networks: 180d].
        #[arg(long, value_parser = humantime::parse_duration)]
        device_expiry: Option<std::time::Duration>,
    },
    /// Delete a network with its members and keys.
    Delete { id: NetworkId },
    /// Print `warren join CODE`: one line that joins a machine to the
    /// network, carrying the controller's addresses, its certificate
    /// fingerprint and, if asked for, a pre-auth key.
    Invite(super::invite::InviteArgs),
}

fn row(n: &Value) -> Vec<String> {
    ["id", "name", "pool", "ipv6_prefix", "zone", "mtu"]
        .iter()
        .map(|k| field(n, k))
        .collect()
}

const HEADERS: [&str; 6] = ["ID", "NAME", "POOL", "IPV6", "ZONE", "MTU"];

pub async fn run(args: NetworkArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let as_json = args.api.json;
    match args.command {
        NetworkCommand::Create {
            name,
            pool,
            zone,
            mtu,
            policy,
        } => {
            let mut body = json!({ "name": name });
            if let Some(file) = policy {
                body["policy"] = json!(super::policy::read_policy_file(&file)?);
            }
            if let Some(pool) = pool {
                body["pool"] = json!(pool);
            }
            if let Some(zone) = zone {
                body["zone"] = json!(zone);
            }
            if let Some(mtu) = mtu {
                body["mtu"] = json!(mtu);
            }
            let made = client
                .call(Method::POST, "/api/v1/networks", Some(&body))
                .await
                .context("creating the network")?;
            if as_json {
                print_json(&made)?;
            } else {
                // The ID alone on stdout, so scripts can capture it.
                outln!("{}", field(&made, "id"));
            }
        }
        NetworkCommand::List => {
            let found = client.call(Method::GET, "/api/v1/networks", None).await?;
            if as_json {
                print_json(&found)?;
            } else {
                let rows: Vec<_> = items(&found, "networks").iter().map(row).collect();
                table(&HEADERS, &rows);
            }
        }
        NetworkCommand::Show { id } => {
            let found = client
                .call(Method::GET, &format!("/api/v1/networks/{id}"), None)
                .await?;
            if as_json {
                print_json(&found)?;
            } else {
                for key in [
                    "id",
                    "name",
                    "pool",
                    "ipv6_prefix",
                    "zone",
                    "mtu",
                    "netmap_version",
                    "created_at",
                    "device_expiry_secs",
                ] {
                    outln!("{key:<15} {}", field(&found, key));
                }
            }
        }
        NetworkCommand::Set {
            id,
            name,
            zone,
            device_expiry,
        } => {
            let mut body = json!({});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(zone) = zone {
                body["zone"] = json!(zone);
            }
            if let Some(expiry) = device_expiry {
                body["device_expiry_secs"] = json!(expiry.as_secs());
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                anyhow::bail!("network set: give --name, --zone or --device-expiry");
            }
            let changed = client
                .call(
                    Method::PATCH,
                    &format!("/api/v1/networks/{id}"),
                    Some(&body),
                )
                .await
                .context("changing the network")?;
            if as_json {
                print_json(&changed)?;
            } else {
                warren_cli_assets::errln!("network {id} changed");
            }
        }
        NetworkCommand::Invite(invite) => super::invite::run(&client, invite, as_json).await?,
        NetworkCommand::Delete { id } => {
            client
                .call(Method::DELETE, &format!("/api/v1/networks/{id}"), None)
                .await?;
            if as_json {
                print_json(&json!({ "deleted": id }))?;
            } else {
                warren_cli_assets::errln!("network {id} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
