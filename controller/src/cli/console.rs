//! `console login-code`: break-glass sign-in to the console, straight in
//! the database (the operator on the server; audited as `system`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use warren_cli_assets::outln;
use warren_controller::console::session::LOGIN_CODE_TTL_SECS;
use warren_controller::store::UserStore;

use super::token::DataDirArg;

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Print a one-time code that signs in to the console as an admin (valid 10 minutes), for a controller without an identity provider or when the provider is down.
    LoginCode(LoginCodeArgs),
}

#[derive(Debug, Args)]
pub struct LoginCodeArgs {
    #[command(flatten)]
    dir: DataDirArg,
}

pub async fn run(command: ConsoleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConsoleCommand::LoginCode(args) => {
            let store = args.dir.open().await?;
            let code = store.new_login_code(LOGIN_CODE_TTL_SECS).await;
            store.close().await;
            let code = code.context("making the code")?;
            outln!("{code}");
            warren_cli_assets::errln!(
                "enter it at the console's /login within {} minutes; it works once",
                LOGIN_CODE_TTL_SECS / 60
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
