//! The hidden `generate-assets` subcommand that `warren` and
//! `warren-controller` share: man pages, shell completions and the Markdown
//! command reference from a program's clap definitions, for the packages
//! and the docs; `--check` parses a documented command line without running
//! it. Also the command-line trace (`WARREN_CLI_TRACE`) by which the doc
//! check proves that the tests ran every documented command, and the
//! `outln!`/`out!` macros both programs print their output with.
//!
//! # Layout
//! - this file: [`AssetsArgs`] and [`run`] for the subcommand,
//!   [`record_command_line`] for the trace.
//! - [`stdout`]: command output that ends quietly when its reader is gone.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Command, Parser};
use clap_complete::Shell;

pub mod stdout;

#[derive(Debug, Args)]
pub struct AssetsArgs {
    /// Folder for `man/`, `completions/` and `reference.md` (made if missing).
    #[arg(long, required_unless_present = "check")]
    out: Option<PathBuf>,
    /// Only parse the command line after `--` as the program would, and run nothing.
    #[arg(long, requires = "command", conflicts_with = "out")]
    check: bool,
    /// The command line to check, without the program name.
    #[arg(last = true)]
    command: Vec<String>,
}

/// Runs `generate-assets` for the program `bin` whose command line is `P`.
pub fn run<P: Parser>(
    bin: &'static str,
    version: &'static str,
    args: &AssetsArgs,
) -> anyhow::Result<()> {
    if args.check {
        return check::<P>(bin, &args.command);
    }
    let Some(out) = &args.out else {
        anyhow::bail!("--out DIR is required");
    };
    generate(bin, version, P::command(), out)
}

/// With `WARREN_CLI_TRACE=FILE`, appends the program's command line to FILE
/// (arguments tab-separated, one line per run), for the documentation
/// checks of the test suites. Only debug builds do it: a release build (a
/// package) never writes its command line anywhere, whatever the
/// environment says. The values of secret flags are replaced by `-`.
/// Best effort: a trace that cannot be written never stops the command.
pub fn record_command_line() {
    if !cfg!(debug_assertions) {
        return;
    }
    let Some(path) = std::env::var_os("WARREN_CLI_TRACE") else {
        return;
    };
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let line = redact(&args).join("\t") + "\n";
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    let _ = file.and_then(|mut f| f.write_all(line.as_bytes()));
}

/// Flags whose values are secrets: pre-auth keys and API tokens.
const SECRET_FLAGS: [&str; 2] = ["--key", "--token"];

/// `args` with the value of every secret flag (`--key VALUE`,
/// `--key=VALUE`) replaced by `-`, which still parses.
fn redact(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("-".to_owned());
            hide_next = false;
            continue;
        }
        match arg.split_once('=') {
            Some((flag, _)) if SECRET_FLAGS.contains(&flag) => out.push(format!("{flag}=-")),
            _ => {
                hide_next = SECRET_FLAGS.contains(&arg.as_str());
                out.push(arg.clone());
            }
        }
    }
    out
}

/// Ok when clap accepts `args` (a request for help or the version counts);
/// prints the command they name (`warren routes advertise`).
fn check<P: Parser>(bin: &str, args: &[String]) -> anyhow::Result<()> {
    let argv = std::iter::once(bin.to_owned()).chain(args.iter().cloned());
    match P::try_parse_from(argv) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) => {}
        Err(e) => anyhow::bail!("`{bin} {}` does not parse:\n{}", args.join(" "), e.render()),
    }
    // The subcommands among the words, even where they ask for help: what
    // the coverage check compares with the trace.
    let mut root = P::command();
    root.build();
    let mut at = &root;
    let mut path = vec![bin];
    for word in args {
        if let Some(sub) = at.find_subcommand(word) {
            path.push(sub.get_name());
            at = sub;
        }
    }
    crate::outln!("ok: {}", path.join(" "));
    Ok(())
}

fn generate(
    bin: &'static str,
    version: &'static str,
    cmd: Command,
    out: &Path,
) -> anyhow::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut visible = without_hidden(bin, version, &cmd);
    clap_mangen::generate_to(visible.clone(), &man)
        .with_context(|| format!("writing man pages to {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut visible, bin, &completions)
            .with_context(|| format!("writing {shell} completions to {}", completions.display()))?;
    }
    let reference = out.join("reference.md");
    std::fs::write(&reference, markdown(bin, visible))
        .with_context(|| format!("writing {}", reference.display()))?;
    Ok(())
}

/// The root command without its hidden subcommands, which clap_complete
/// would otherwise offer.
fn without_hidden(bin: &'static str, version: &'static str, cmd: &Command) -> Command {
    let mut out = Command::new(bin)
        .version(version)
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .subcommand_required(true)
        .propagate_version(cmd.is_propagate_version_set());
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out
}

/// Every command's `--help`, one section each, for the docs site.
fn markdown(bin: &str, mut cmd: Command) -> String {
    cmd.build();
    let mut text = format!(
        "# `{bin}` commands\n\n\
         Generated from the command-line definitions by `{bin} generate-assets`\n\
         (run `packaging/tools/cli-reference.sh` after changing them): what\n\
         `--help` prints for each command, and what the man pages say.\n"
    );
    append_sections(&cmd, &mut text);
    text
}

fn append_sections(cmd: &Command, text: &mut String) {
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name());
    let help = cmd.clone().render_long_help().to_string();
    text.push_str(&format!(
        "\n## `{name}`\n\n```text\n{}\n```\n",
        help.trim_end()
    ));
    for sub in cmd.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            append_sections(sub, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flag_values_never_reach_the_trace() {
        let args: Vec<String> = [
            "warren",
            "join",
            "abc",
            "--key",
            "wk-secret",
            "--token=t0k",
            "--name",
            "n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            redact(&args),
            [
                "warren",
                "join",
                "abc",
                "--key",
                "-",
                "--token=-",
                "--name",
                "n"
            ]
        );
    }
}
