//! `policy get|set|test|explain|history`: a network's access policy.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use warren_cli_assets::{out, outln};
use warren_proto::NetworkId;

use super::output::{field, items, json as print_json, table};
use super::ApiArgs;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the current policy document (TOML) of a network.
    Get { network: NetworkId },
    /// Replace the policy with FILE ('-' for stdin); refused, and the old
    /// one kept, unless it is valid and all its [[test]]s pass.
    Set { network: NetworkId, file: PathBuf },
    /// Check FILE as `set` would (syntax, names, tests) and store nothing.
    Test { network: NetworkId, file: PathBuf },
    /// Would a new flow pass, and which rule decides?
    Explain {
        network: NetworkId,
        /// The member that starts the flow (its name).
        #[arg(long)]
        from: String,
        /// A member name or an IP address (an overlay address or one in an approved route).
        #[arg(long)]
        to: String,
        /// tcp:PORT, udp:PORT or icmp.
        #[arg(long)]
        port: String,
    },
    /// Every version of the policy, newest first.
    History { network: NetworkId },
}

/// Reads a policy file, or stdin for `-`.
pub fn read_policy_file(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the policy from stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Percent-encodes a query value (names and addresses are mostly safe already).
fn query_value(text: &str) -> String {
    super::output::percent_encode(text, b":")
}

fn print_tests(answer: &Value) {
    for test in items(answer, "tests") {
        warren_cli_assets::errln!(
            "passed: {} ({})",
            field(test, "test"),
            test.pointer("/decision/reason")
                .and_then(Value::as_str)
                .unwrap_or("-")
        );
    }
}

pub async fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let as_json = args.api.json;
    let base = |net: &NetworkId| format!("/api/v1/networks/{net}/policy");
    match &args.command {
        PolicyCommand::Get { network } => {
            let found = client.call(Method::GET, &base(network), None).await?;
            if as_json {
                print_json(&found)?;
            } else {
                warren_cli_assets::errln!(
                    "# version {} by {} at {}",
                    field(&found, "version"),
                    field(&found, "created_by"),
                    field(&found, "created_at")
                );
                out!("{}", field(&found, "text"));
            }
        }
        PolicyCommand::Set { network, file } => {
            let text = read_policy_file(file)?;
            let body = json!({ "text": text });
            let set = client
                .call(Method::PUT, &base(network), Some(&body))
                .await
                .context("setting the policy")?;
            if as_json {
                print_json(&set)?;
            } else {
                print_tests(&set);
                if set.get("changed") == Some(&Value::Bool(false)) {
                    warren_cli_assets::errln!(
                        "unchanged: version {} is this text",
                        field(&set, "version")
                    );
                } else {
                    warren_cli_assets::errln!("policy version {} set", field(&set, "version"));
                }
            }
        }
        PolicyCommand::Test { network, file } => {
            let text = read_policy_file(file)?;
            let body = json!({ "text": text });
            let path = format!("{}/test", base(network));
            let answer = client
                .call(Method::POST, &path, Some(&body))
                .await
                .context("testing the policy")?;
            if as_json {
                print_json(&answer)?;
            } else {
                print_tests(&answer);
                let rows: Vec<Vec<String>> = items(&answer, "members")
                    .iter()
                    .map(|m| {
                        ["name", "peers", "inbound_rules", "outbound_rules"]
                            .iter()
                            .map(|k| field(m, k))
                            .collect()
                    })
                    .collect();
                table(&["MEMBER", "PEERS", "INBOUND", "OUTBOUND"], &rows);
                warren_cli_assets::errln!(
                    "ok: this policy would be version {}",
                    field(&answer, "would_be_version")
                );
            }
        }
        PolicyCommand::Explain {
            network,
            from,
            to,
            port,
        } => {
            let path = format!(
                "{}/explain?from={}&to={}&port={}",
                base(network),
                query_value(from),
                query_value(to),
                query_value(port)
            );
            let answer = client.call(Method::GET, &path, None).await?;
            if as_json {
                print_json(&answer)?;
            } else {
                let verdict = if answer.get("allowed") == Some(&Value::Bool(true)) {
                    "allow"
                } else {
                    "deny"
                };
                let rule = match answer.get("rule").and_then(Value::as_str) {
                    Some(rule) => rule.to_string(),
                    None => "no rule".to_string(),
                };
                outln!("{verdict} ({rule}): {}", field(&answer, "reason"));
            }
        }
        PolicyCommand::History { network } => {
            let path = format!("{}/history", base(network));
            let found = client.call(Method::GET, &path, None).await?;
            if as_json {
                print_json(&found)?;
            } else {
                let rows: Vec<Vec<String>> = items(&found, "versions")
                    .iter()
                    .map(|v| {
                        let lines = v
                            .get("text")
                            .and_then(Value::as_str)
                            .map_or(0, |t| t.lines().count());
                        vec![
                            field(v, "version"),
                            field(v, "created_by"),
                            field(v, "created_at"),
                            lines.to_string(),
                        ]
                    })
                    .collect();
                table(&["VERSION", "BY", "AT", "LINES"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::query_value;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("laptop-ana"), "laptop-ana");
        assert_eq!(query_value("fd00::1"), "fd00::1");
        assert_eq!(query_value("a&b=c d"), "a%26b%3Dc%20d");
    }
}
