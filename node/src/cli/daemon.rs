//! `warren daemon`: run the agent in the foreground.

use std::path::PathBuf;

use clap::Args;

use super::Cli;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The agent's TOML configuration.
    #[arg(long, env = "WARREN_CONFIG")]
    config: PathBuf,
}

pub fn run(cli: &Cli, args: &DaemonArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let socket = cli.socket_or(config.node.socket.clone());
    super::runtime()?.block_on(crate::daemon::run(config, socket))
}
