//! warren: Warren's agent (`warren daemon`) and the CLI that talks to it.
//!
//! # Layout
//! - `cli/`: one file per subcommand; clap definitions in `cli/mod.rs`.
//! - `daemon/`: the event loop, the hot data path and the local API server.
//! - `platform/`: OS seams: TUN device, UDP socket, socket options.
//! - `config`: the agent's TOML configuration.
//! - `client`: the local-API client the CLI uses.
//! - `state`: the state directory: node key, joined networks, cached netmaps.

mod cli;
mod client;
mod config;
mod daemon;
mod platform;
mod state;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
