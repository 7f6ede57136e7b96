//! `warren daemon`: run the agent in the foreground.

use std::path::PathBuf;

use clap::Args;

use super::Cli;
use crate::config::Config;
use crate::daemon::DaemonOptions;
use crate::state::DEFAULT_STATE_DIR;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The agent's TOML configuration (optional: a node that only joins
    /// networks needs none).
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// Where the node key, joined networks and cached netmaps live.
    #[arg(long, env = "WARREN_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// First UDP port; each joined network takes the next free one.
    #[arg(long, env = "WARREN_LISTEN_PORT")]
    listen_port: Option<u16>,
    /// How to point the system's resolver at the DNS stubs [default: the
    /// config file's `[dns] manage`, else auto].
    #[arg(long, value_enum, env = "WARREN_DNS_MANAGE")]
    dns_manage: Option<crate::dns::Manage>,
}

pub fn run(cli: &Cli, args: &DaemonArgs) -> anyhow::Result<()> {
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let socket = cli.socket_or(config.as_ref().and_then(|c| c.node.socket.clone()));
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.node.state_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let mut dns = config.as_ref().map(|c| c.dns.clone()).unwrap_or_default();
    if let Some(manage) = args.dns_manage {
        dns.manage = manage;
    }
    let options = DaemonOptions {
        dns,
        config,
        state_dir,
        socket,
        listen_port: args.listen_port,
    };
    super::runtime()?.block_on(crate::daemon::run(options))
}
