//! WireGuard key pairs on disk (base64 x25519, the format both `warren` and
//! `wg` read), made either by `warren key generate` or by `wg genkey`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::command;
use crate::error::{LabError, Result};

/// A private key file and the matching public key.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private_key_file: PathBuf,
    pub public_key: String,
}

fn check_base64_key(what: &str, key: &str) -> Result<()> {
    // 32 bytes in base64 are 44 characters ending in '='.
    let ok = key.len() == 44
        && key.ends_with('=')
        && key[..43]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    if ok {
        Ok(())
    } else {
        Err(LabError::Output {
            what: what.to_owned(),
            detail: format!("not a base64 WireGuard key: {key:?}"),
        })
    }
}

impl KeyPair {
    /// `warren key generate FILE`; checks the file mode and that
    /// `warren key public FILE` agrees with the printed public key.
    pub fn generate_with_warren(warren: &Path, file: &Path) -> Result<KeyPair> {
        let public_key =
            command::run_stdout(Command::new(warren).args(["key", "generate"]).arg(file))?
                .trim()
                .to_owned();
        check_base64_key("warren key generate", &public_key)?;
        let mode = fs::metadata(file)
            .map_err(|e| LabError::io(format!("reading {}", file.display()), e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(LabError::Output {
                what: "warren key generate".to_owned(),
                detail: format!(
                    "{} has mode {:o}, expected 0600",
                    file.display(),
                    mode & 0o777
                ),
            });
        }
        let again = command::run_stdout(Command::new(warren).args(["key", "public"]).arg(file))?;
        if again.trim() != public_key {
            return Err(LabError::Output {
                what: "warren key public".to_owned(),
                detail: format!(
                    "printed {:?}, generate printed {public_key:?}",
                    again.trim()
                ),
            });
        }
        Ok(KeyPair {
            private_key_file: file.to_owned(),
            public_key,
        })
    }

    /// `wg genkey` into `file` (mode 0600) and `wg pubkey` for the public key.
    pub fn generate_with_wg(file: &Path) -> Result<KeyPair> {
        let private = command::run_stdout(&mut command::command("wg", ["genkey"]))?;
        let private = private.trim();
        check_base64_key("wg genkey", private)?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .map_err(|e| LabError::io(format!("creating {}", file.display()), e))?;
        writeln!(f, "{private}")
            .map_err(|e| LabError::io(format!("writing {}", file.display()), e))?;
        let public_key = wg_pubkey(private)?;
        Ok(KeyPair {
            private_key_file: file.to_owned(),
            public_key,
        })
    }
}

/// The public key of a base64 private key, via `wg pubkey` on stdin.
pub fn wg_pubkey(private: &str) -> Result<String> {
    let mut cmd = command::command("wg", ["pubkey"]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: command::describe(&cmd),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{private}").map_err(|e| LabError::io("writing to wg pubkey", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io("waiting for wg pubkey", e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: "wg pubkey".to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    check_base64_key("wg pubkey", &public)?;
    Ok(public)
}
