//! `user list|disable|enable`: the people who signed devices in.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

use super::output::{field, items, json as print_json, table};
use super::ApiArgs;

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// List users: e-mail, name, groups, state, last sign-in.
    List,
    /// Cut a user's devices off at every peer until enabled again (USER: an ID or an e-mail address).
    Disable { user: String },
    /// Let a disabled user's devices back in.
    Enable { user: String },
    /// Delete a user and every device they signed in (from every network).
    Delete { user: String },
}

const HEADERS: [&str; 6] = ["EMAIL", "NAME", "GROUPS", "STATE", "LAST-SIGN-IN", "ID"];

fn row(u: &Value) -> Vec<String> {
    let groups = u
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let state = if u.get("disabled").and_then(Value::as_bool) == Some(true) {
        "disabled"
    } else {
        "active"
    };
    vec![
        field(u, "email"),
        field(u, "name"),
        groups,
        state.to_owned(),
        field(u, "last_sign_in"),
        field(u, "id"),
    ]
}

pub async fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let answer = match &args.command {
        UserCommand::List => {
            let found = client.call(Method::GET, "/api/v1/users", None).await?;
            if args.api.json {
                print_json(&found)?;
            } else {
                let rows: Vec<_> = items(&found, "users").iter().map(row).collect();
                table(&HEADERS, &rows);
            }
            return Ok(ExitCode::SUCCESS);
        }
        UserCommand::Disable { user } => {
            let path = format!("/api/v1/users/{}/disable", encode(user));
            client.call(Method::POST, &path, None).await?
        }
        UserCommand::Enable { user } => {
            let path = format!("/api/v1/users/{}/enable", encode(user));
            client.call(Method::POST, &path, None).await?
        }
        UserCommand::Delete { user } => {
            let path = format!("/api/v1/users/{}", encode(user));
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

/// A path segment: an e-mail address keeps its `@`.
fn encode(text: &str) -> String {
    super::output::percent_encode(text, b"@")
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::encode("ana@example.com"), "ana@example.com");
        assert_eq!(super::encode("a/b c"), "a%2Fb%20c");
    }
}
