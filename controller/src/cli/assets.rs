//! `warren-controller generate-assets` (hidden): man pages, shell
//! completions and the Markdown command reference from the clap
//! definitions, for the packages and the docs; `--check` parses a
//! documented command line without running it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Command, CommandFactory, Parser};
use clap_complete::Shell;

use super::Cli;

const BIN: &str = "warren-controller";

#[derive(Debug, Args)]
pub struct AssetsArgs {
    /// Folder for `man/`, `completions/` and `reference.md` (made if missing).
    #[arg(long, required_unless_present = "check")]
    out: Option<PathBuf>,
    /// Only parse the command line after `--` as `warren-controller` would,
    /// and run nothing.
    #[arg(long, requires = "command", conflicts_with = "out")]
    check: bool,
    /// The command line to check, without the program name.
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(args: &AssetsArgs) -> anyhow::Result<()> {
    if args.check {
        return check(&args.command);
    }
    let Some(out) = &args.out else {
        anyhow::bail!("--out DIR is required");
    };
    generate(Cli::command(), out)
}

/// Ok when clap accepts `args` (a request for help or the version counts).
fn check(args: &[String]) -> anyhow::Result<()> {
    let argv = std::iter::once(BIN.to_owned()).chain(args.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) => {}
        Err(e) => anyhow::bail!("`{BIN} {}` does not parse:\n{}", args.join(" "), e.render()),
    }
    // The command it names (`warren routes advertise`), for the coverage
    // check: the subcommands among the words, even where they ask for help.
    let mut root = Cli::command();
    root.build();
    let mut at = &root;
    let mut path = vec![BIN];
    for word in args {
        if let Some(sub) = at.find_subcommand(word) {
            path.push(sub.get_name());
            at = sub;
        }
    }
    println!("ok: {}", path.join(" "));
    Ok(())
}

fn generate(cmd: Command, out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut visible = without_hidden(&cmd);
    clap_mangen::generate_to(visible.clone(), &man)
        .with_context(|| format!("writing man pages to {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut visible, BIN, &completions)
            .with_context(|| format!("writing {shell} completions to {}", completions.display()))?;
    }
    let reference = out.join("reference.md");
    std::fs::write(&reference, markdown(visible))
        .with_context(|| format!("writing {}", reference.display()))?;
    Ok(())
}

/// The root command without its hidden subcommands, which clap_complete
/// would otherwise offer.
fn without_hidden(cmd: &Command) -> Command {
    let mut out = Command::new(BIN)
        .version(env!("CARGO_PKG_VERSION"))
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
fn markdown(mut cmd: Command) -> String {
    cmd.build();
    let mut text = format!(
        "# `{BIN}` commands\n\n\
         Generated from the command-line definitions by `{BIN} generate-assets`\n\
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
