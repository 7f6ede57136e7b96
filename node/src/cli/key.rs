//! `warren key generate|public`: WireGuard-compatible key files.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use warren_cli_assets::outln;
use warren_proto::NodePrivateKey;

use crate::config::read_private_key;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new private key to FILE (mode 0600) and print its public key.
    Generate { file: PathBuf },
    /// Print the public key of the private key in FILE.
    Public { file: PathBuf },
}

pub fn run(cmd: &KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Generate { file } => {
            let key = NodePrivateKey::generate();
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(file)
                .with_context(|| format!("creating {} (it must not exist yet)", file.display()))?;
            writeln!(out, "{}", key.to_base64())
                .with_context(|| format!("writing {}", file.display()))?;
            outln!("{}", key.public_key());
        }
        KeyCommand::Public { file } => {
            outln!("{}", read_private_key(file)?.public_key());
        }
    }
    Ok(())
}
