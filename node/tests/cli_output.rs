//! Output of the real `warren` binary into a pipe whose reader has gone
//! (`warren ... | head -1` once head has exited): the command ends quietly
//! with success, never with a panic about a broken pipe. The commands here
//! need no daemon; they print the way every other command does
//! (`warren_cli_assets::outln!`).
#![allow(clippy::unwrap_used)]

use std::process::Command;

use warren_lab::command::run_without_reader;

const BIN: &str = env!("CARGO_BIN_EXE_warren");

fn warren(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    command
}

#[test]
fn output_whose_reader_is_gone_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    let key_arg = key.to_str().unwrap();
    let generated = warren(&["key", "generate", key_arg]).output().unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let config = dir.path().join("warren.toml");
    std::fs::write(&config, "[node]\nprivate-key-file = \"node.key\"\n").unwrap();

    run_without_reader(&mut warren(&["key", "public", key_arg])).unwrap();
    run_without_reader(&mut warren(&[
        "check-config",
        "--config",
        config.to_str().unwrap(),
    ]))
    .unwrap();
}

/// A command that fails while its stderr has no reader still exits with
/// its own status, never with a panic about the broken pipe (101).
#[test]
fn a_failure_whose_stderr_reader_is_gone_keeps_its_exit_status() {
    let args = ["check-config", "--config", "/nonexistent/warren.toml"];
    let said = warren(&args).output().unwrap();
    assert!(
        !said.status.success() && !said.stderr.is_empty(),
        "{said:?}"
    );
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let quiet = warren(&args)
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(quiet.code(), said.status.code(), "{quiet:?}");
    assert_ne!(quiet.code(), Some(101), "panicked");
}
