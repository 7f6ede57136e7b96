//! `token create|list|revoke`: API tokens, straight in the database (the
//! operator on the server; audited as `system`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use time::OffsetDateTime;
use warren_cli_assets::outln;
use warren_controller::data_dir;
use warren_controller::store::{Actor, Scope, SqlStore, Store, TokenSpec};
use warren_proto::NetworkId;

use super::output;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it once; only its hash is kept.
    Create(CreateArgs),
    /// List tokens (never their secrets): state, scope, network, expiry, last use.
    List(ListArgs),
    /// Revoke a token by ID; every controller sharing the database refuses it at once.
    Revoke(RevokeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    /// Read and change everything.
    Admin,
    /// Read everything, change nothing.
    Auditor,
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// The controller's data directory.
    #[arg(long, env = "WARREN_DATA_DIR")]
    data_dir: PathBuf,
    /// The PostgreSQL URL `serve --database` keeps state in [default: SQLite in the data directory].
    #[arg(long, env = "WARREN_DATABASE", hide_env_values = true)]
    database: Option<String>,
}

impl DataDirArg {
    /// Opens the controller's store: made with its data directory
    /// (0700, keys and certificate) if this runs before the first `serve`,
    /// exactly as `serve` would.
    pub async fn open(&self) -> anyhow::Result<SqlStore> {
        let dir = &self.data_dir;
        let opened = |e| anyhow::anyhow!("opening data directory {}: {e}", dir.display());
        match &self.database {
            Some(url) => {
                let url = super::config::check_database(url)?;
                data_dir::open_keys(dir).map_err(opened)?;
                SqlStore::connect_postgres(&url).await.with_context(|| {
                    format!("connecting to {}", super::config::redact_password(&url))
                })
            }
            None => {
                let identity = data_dir::open(dir).map_err(opened)?;
                SqlStore::open(&identity.db_path)
                    .await
                    .context("opening the database")
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    dir: DataDirArg,
    #[arg(long, value_enum)]
    scope: ScopeArg,
    /// A name for the audit log (default `token-<id>`); unique.
    #[arg(long)]
    name: Option<String>,
    /// Limit the token to one network (its ID).
    #[arg(long)]
    network: Option<NetworkId>,
    /// Expire after this long (humantime: `12h`, `90d`; at most ten years).
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<std::time::Duration>,
    /// Print JSON with the token and its ID, name, scope and the rest.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// Print the tokens as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// The token's ID (8 hex digits, from `token list`).
    id: String,
    /// Print the revoked token as JSON.
    #[arg(long)]
    json: bool,
}

/// Longest lifetime a token may be given: ten years.
const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 86_400);

pub async fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create(args) => create(args).await,
        TokenCommand::List(args) => list(args).await,
        TokenCommand::Revoke(args) => revoke(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let expires_at = match args.expires {
        None => None,
        Some(lifetime) if lifetime.is_zero() || lifetime > MAX_LIFETIME => {
            anyhow::bail!("--expires must be more than zero and at most ten years")
        }
        Some(lifetime) => Some(OffsetDateTime::now_utc() + lifetime),
    };
    let scope = match args.scope {
        ScopeArg::Admin => Scope::Admin,
        ScopeArg::Auditor => Scope::Auditor,
    };
    let spec = TokenSpec {
        scope,
        name: args.name,
        network_id: args.network,
        expires_at,
    };
    let store = args.dir.open().await?;
    let made = store.create_token(&Actor::system(), spec).await;
    store.close().await;
    let made = made.context("creating the token")?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&made)?);
    } else {
        outln!("{}", made.secret);
        warren_cli_assets::errln!(
            "token {} ({:?}, {}) created; it is shown only now",
            made.token.name,
            made.token.scope,
            made.token.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let store = args.dir.open().await?;
    let tokens = store.list_tokens().await;
    store.close().await;
    let tokens = serde_json::to_value(tokens.context("listing tokens")?)?;
    if args.json {
        return output::json(&serde_json::json!({ "tokens": tokens })).map(|()| ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = tokens
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|t| {
            [
                "id",
                "name",
                "scope",
                "state",
                "network_id",
                "expires_at",
                "last_used_at",
                "created_by",
            ]
            .iter()
            .map(|key| output::field(t, key))
            .collect()
        })
        .collect();
    output::table(
        &[
            "ID",
            "NAME",
            "SCOPE",
            "STATE",
            "NETWORK",
            "EXPIRES",
            "LAST USED",
            "CREATED BY",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let id = args.id.to_ascii_lowercase();
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!("a token ID is 8 hex digits (see `token list`)");
    }
    let store = args.dir.open().await?;
    let revoked = store.revoke_token(&Actor::system(), &id).await;
    store.close().await;
    let token = revoked.with_context(|| format!("revoking token {id}"))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&token)?);
    } else {
        outln!(
            "token {} ({}) revoked at {}",
            token.name,
            token.id,
            token.revoked_at.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}
