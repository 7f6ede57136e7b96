//! warren: Warren's agent (`warren daemon`) and the CLI that talks to it.
//!
//! # Layout
//! - `cli/`: one file per subcommand; clap definitions in `cli/mod.rs`.
//! - `daemon/`: the event loop, the hot data path and the local API server.
//! - `dns/`: the DNS stubs, split DNS (resolved or resolv.conf) and published services.
//! - `platform/`: OS seams: TUN device, UDP socket, socket options.
//! - `routes/`: subnet routes, exit nodes, policy routing and the stateful filter.
//! - `metrics/`: the opt-in Prometheus endpoint (`[metrics] listen`).
//! - `portmap/`: port mapping at the default gateway (PCP, NAT-PMP, UPnP IGD): request, renew, delete.
//! - `netcheck`: `warren netcheck --controller`'s own probes: QUIC, STUN, port mapping.
//! - `config`: the agent's TOML configuration.
//! - `client`: the local-API client the CLI uses.
//! - `state`: the state directory: node key, joined networks, cached netmaps.

mod cli;
mod client;
mod config;
mod daemon;
mod dns;
mod metrics;
mod netcheck;
mod platform;
mod portmap;
mod routes;
mod state;

use std::process::ExitCode;

fn main() -> ExitCode {
    warren_cli_assets::record_command_line();
    cli::main()
}
