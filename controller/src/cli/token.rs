//! `token create`: makes an API token directly in the database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use warren_controller::data_dir;
use warren_controller::store::{Scope, SqliteStore, Store};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it once; only its hash is kept.
    Create(CreateArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    /// Read and change everything.
    Admin,
    /// Read everything, change nothing.
    Auditor,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The controller's data directory.
    #[arg(long, env = "WARREN_DATA_DIR")]
    data_dir: PathBuf,
    #[arg(long, value_enum)]
    scope: ScopeArg,
    /// A name for the audit log (default `token-<id>`); unique.
    #[arg(long)]
    name: Option<String>,
    /// Print JSON with the token and its ID, name and scope.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::Create(args) = command;
    // Opening makes the directory (0700), keys and certificate if this
    // runs before the first `serve`, exactly as `serve` would.
    let identity = data_dir::open(&args.data_dir)
        .with_context(|| format!("opening data directory {}", args.data_dir.display()))?;
    let store = SqliteStore::open(&identity.db_path)
        .await
        .context("opening the database")?;
    let scope = match args.scope {
        ScopeArg::Admin => Scope::Admin,
        ScopeArg::Auditor => Scope::Auditor,
    };
    let made = store
        .create_token(scope, args.name.as_deref())
        .await
        .context("creating the token")?;
    store.close().await;
    if args.json {
        let out = serde_json::json!({
            "token": made.secret,
            "id": made.token.id,
            "name": made.token.name,
            "scope": made.token.scope,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", made.secret);
        eprintln!(
            "token {} ({:?}, {}) created; it is shown only now",
            made.token.name, made.token.scope, made.token.id
        );
    }
    Ok(ExitCode::SUCCESS)
}
