//! `warren-controller`: serve, tokens, fingerprint, and the admin CLI.
//!
//! # Layout
//! - `cli/`: one file per subcommand, the config file, the API client and
//!   table output. Everything else lives in the library crate.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    trace_command_line();
    cli::run(cli::Cli::parse())
}

/// `WARREN_CLI_TRACE=FILE` appends this command line to FILE (arguments
/// tab-separated), as the agent does: the doc check's proof that the
/// test suites ran every documented command.
fn trace_command_line() {
    if let Some(path) = std::env::var_os("WARREN_CLI_TRACE") {
        let args: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let text = format!("{}\n", args.join("\t"));
        // Best effort: the trace never stops the command.
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = std::io::Write::write_all(&mut file, text.as_bytes());
        }
    }
}
