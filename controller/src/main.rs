//! `warren-controller`: serve, tokens, fingerprint, and the admin CLI.
//!
//! # Layout
//! - `cli/`: one file per subcommand, the config file, the API client and
//!   table output. Everything else lives in the library crate.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    warren_cli_assets::record_command_line();
    cli::run(cli::Cli::parse())
}
