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
