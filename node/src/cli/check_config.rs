//! `warren check-config`: validate a config file and print what would take effect.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use warren_cli_assets::out;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[arg(long, env = "WARREN_CONFIG")]
    config: PathBuf,
}

pub fn run(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    config.read_private_key()?;
    let text = toml::to_string_pretty(&config).context("printing the effective config")?;
    out!("{text}");
    Ok(())
}
