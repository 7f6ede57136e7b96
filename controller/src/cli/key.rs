//! `key create|list|delete`: pre-auth keys.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use warren_cli_assets::outln;
use warren_proto::NetworkId;

use super::output::{field, items, json as print_json, table};
use super::ApiArgs;

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Make a pre-auth key and print it (shown only now).
    Create {
        network: NetworkId,
        /// Allow more than one join (default: one).
        #[arg(long)]
        reusable: bool,
        /// At most N joins (N above 1 makes the key reusable).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_uses: Option<u32>,
        /// Lifetime, e.g. 1h, 30m, 7days, or `never` (default: 24h for a
        /// single-use key, 90days for any other).
        #[arg(long)]
        expires: Option<String>,
        /// A tag (tag:NAME) every member the key authorizes carries:
        /// servers and cluster masters carry tags instead of an owner, and
        /// never expire. Repeat for more.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// List a network's keys (never their secrets).
    List { network: NetworkId },
    /// Delete a key by its ID.
    Delete { network: NetworkId, id: String },
}

fn row(k: &Value) -> Vec<String> {
    [
        "id",
        "reusable",
        "uses",
        "max_uses",
        "usable",
        "expires_at",
        "created_by",
        "created_at",
    ]
    .iter()
    .map(|f| field(k, f))
    .chain(std::iter::once(tags(k)))
    .collect()
}

/// A key's tags as `tag:A,tag:B`, or `-`.
fn tags(k: &Value) -> String {
    let tags: Vec<String> = k
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if tags.is_empty() {
        "-".into()
    } else {
        tags.join(",")
    }
}

const HEADERS: [&str; 9] = [
    "ID",
    "REUSABLE",
    "USES",
    "MAX-USES",
    "USABLE",
    "EXPIRES",
    "CREATED-BY",
    "CREATED",
    "TAGS",
];

pub async fn run(args: KeyArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    match args.command {
        KeyCommand::Create {
            network,
            reusable,
            max_uses,
            expires,
            tags,
        } => {
            let mut body = json!({});
            if !tags.is_empty() {
                body["tags"] = json!(tags);
            }
            if reusable {
                body["reusable"] = json!(true);
            }
            if let Some(n) = max_uses {
                body["max_uses"] = json!(n);
            }
            if let Some(expires) = expires {
                body["expires"] = json!(expires);
            }
            let made = client
                .call(
                    Method::POST,
                    &format!("/api/v1/networks/{network}/keys"),
                    Some(&body),
                )
                .await?;
            if args.api.json {
                print_json(&made)?;
            } else {
                outln!("{}", field(&made, "key"));
                warren_cli_assets::errln!(
                    "pre-auth key {} created; it is shown only now",
                    field(&made, "id")
                );
            }
        }
        KeyCommand::List { network } => {
            let found = client
                .call(
                    Method::GET,
                    &format!("/api/v1/networks/{network}/keys"),
                    None,
                )
                .await?;
            if args.api.json {
                print_json(&found)?;
            } else {
                let rows: Vec<_> = items(&found, "keys").iter().map(row).collect();
                table(&HEADERS, &rows);
            }
        }
        KeyCommand::Delete { network, id } => {
            if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("a key ID is 8 hex digits, got {id:?}");
            }
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/networks/{network}/keys/{id}"),
                    None,
                )
                .await?;
            if args.api.json {
                print_json(&json!({ "deleted": id }))?;
            } else {
                warren_cli_assets::errln!("pre-auth key {id} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
