//! Output of the real `warren` binary into a pipe whose reader has gone
//! (`warren ... | head -1` once head has exited): the command ends quietly
//! with success, never with a panic about a broken pipe. The commands here
//! need no daemon; they print the way every other command does
//! (`warren_cli_assets::outln!`).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_warren");

/// Runs `warren ARGS` with stdout to a pipe whose read end is closed and
/// checks it ends quietly with success; `ARGS` must print something.
fn ends_quietly(args: &[&str]) {
    let shown = Command::new(BIN).args(args).output().unwrap();
    assert!(
        shown.status.success() && !shown.stdout.is_empty(),
        "{args:?}: {shown:?}"
    );
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(stderr.is_empty(), "{args:?} says: {stderr}");
}

#[test]
fn output_whose_reader_is_gone_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    let key_arg = key.to_str().unwrap();
    let generated = Command::new(BIN)
        .args(["key", "generate", key_arg])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let config = dir.path().join("warren.toml");
    std::fs::write(&config, "[node]\nprivate-key-file = \"node.key\"\n").unwrap();

    ends_quietly(&["key", "public", key_arg]);
    ends_quietly(&["check-config", "--config", config.to_str().unwrap()]);
}
