//! warren: Warren's agent (`warren daemon`) and the CLI that talks to it.
//!
//! # Layout
//! - `cli/`: one file per subcommand; clap definitions in `cli/mod.rs`.
//! - `daemon/`: the event loop, the hot data path and the local API server.
//! - `dns/`: the DNS stubs, split DNS (resolved or resolv.conf) and published services.
//! - `platform/`: OS seams: TUN device, UDP socket, socket options.
//! - `routes/`: subnet routes, exit nodes, policy routing and the stateful filter.
//! - `config`: the agent's TOML configuration.
//! - `client`: the local-API client the CLI uses.
//! - `state`: the state directory: node key, joined networks, cached netmaps.

mod cli;
mod client;
mod config;
mod daemon;
mod dns;
mod platform;
mod routes;
mod state;

use std::process::ExitCode;

fn main() -> ExitCode {
    record_command_line();
    cli::main()
}

/// With `WARREN_CLI_TRACE=FILE`, appends the command line to FILE, one
/// tab-separated line per run: how the test suites prove that every
/// command the docs show was run (packaging/tools/doc-commands.py).
fn record_command_line() {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("WARREN_CLI_TRACE") else {
        return;
    };
    let args: Vec<_> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let line = args.join("\t") + "\n";
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    // A trace that cannot be written must not stop the command itself.
    let _ = file.and_then(|mut f| f.write_all(line.as_bytes()));
}
