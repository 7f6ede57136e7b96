//! The exit codes of `warren`, beyond 0 (done), 1 (error) and 2 (usage),
//! and the error that carries one out of a command.

/// A command line that makes no sense (clap exits with it too).
pub const USAGE: u8 = 2;
/// `warren status --check`: something is unhealthy (printed on stdout).
pub const UNHEALTHY: u8 = 3;
/// `warren join`/`up`: the controller could not be reached within `--wait`.
pub const CONTROLLER_UNREACHABLE: u8 = 10;
/// `warren join`/`up`: the controller's certificate is not the one pinned.
pub const FINGERPRINT_MISMATCH: u8 = 11;
/// `warren join`/`up`: the controller refused the join (unknown network,
/// revoked node, too many waiting, a refused or lapsed sign-in).
pub const JOIN_REFUSED: u8 = 12;
/// `warren join`: the pre-auth key is wrong, used up or expired.
pub const KEY_REFUSED: u8 = 13;
/// `warren join`/`up`: the controller was reached but did not answer within
/// `--wait` (or nobody signed the device in within `--sign-in-wait`).
pub const JOIN_TIMEOUT: u8 = 14;
/// `warren join`/`up`: this agent refused the network's netmap (for
/// example a pool that overlaps another network's), or its data plane
/// kept dying.
pub const JOIN_CONFLICT: u8 = 15;

/// The exit codes as `warren join --help` and `warren up --help` list them.
pub const JOIN_HELP: &str = "\
Exit status:
  0   the network is up, or waits for an admin's approval (the node ID and
      the command that approves it are printed); with --no-wait, the
      request was taken
  1   error (the agent cannot be reached, a bad flag value, a join that
      would change what the controller holds: the message says why)
  2   usage (also an invite code that does not read: a typo, a part
      missing)
  10  the controller could not be reached within --wait
  11  the controller's certificate does not match --fingerprint
  12  the controller refused the join (unknown network, revoked node, ...)
  13  the pre-auth key is wrong, used up or expired
  14  the controller was reached but did not answer within --wait, or
      nobody signed the device in within --sign-in-wait
  15  this agent refused the network (e.g. its pool overlaps another's)
      or its data plane kept dying
On 10-15 the network stays joined and the agent keeps trying: run
`warren join` again with corrected flags, or `warren leave`.";

/// The exit codes of `warren status --check`.
pub const STATUS_HELP: &str = "\
Exit status:
  0  healthy (with --check), or status printed
  1  error (the agent cannot be reached)
  3  with --check: something is unhealthy; each problem is printed";

/// The exit codes of `warren netcheck`.
pub const NETCHECK_HELP: &str = "\
Exit status:
  0   the report is printed; with --controller, the QUIC handshake with
      the controller completed (and its certificate matches --fingerprint)
  1   error (without --controller: the agent cannot be reached)
  2   usage (also a --fingerprint that is not 64 hex digits)
  10  with --controller: no QUIC handshake with the controller (the report
      is printed: its path line reads \"cannot reach the controller\")
  11  with --controller: the controller's certificate does not match
      --fingerprint (the report shows the one it has)";

/// A command's failure with its own exit code; `main` prints the message
/// and exits with the code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    /// The error to return from a command that exits with `code`.
    pub fn error(code: u8, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code,
            message: message.into(),
        })
    }
}

/// The code to exit with for a command's error.
pub fn code_of(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Exit>().map_or(1, |e| e.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_in_the_help_and_codes_differ() {
        let join = [
            CONTROLLER_UNREACHABLE,
            FINGERPRINT_MISMATCH,
            JOIN_REFUSED,
            KEY_REFUSED,
            JOIN_TIMEOUT,
            JOIN_CONFLICT,
        ];
        for code in join {
            assert!(
                JOIN_HELP.contains(&format!("\n  {code}  ")),
                "{code} missing from the join help"
            );
        }
        assert!(STATUS_HELP.contains(&format!("\n  {UNHEALTHY}  ")));
        for code in [USAGE, CONTROLLER_UNREACHABLE, FINGERPRINT_MISMATCH] {
            assert!(
                NETCHECK_HELP.contains(&format!("\n  {code} ")),
                "{code} missing from the netcheck help"
            );
        }
        let mut all: Vec<u8> = join.to_vec();
        all.extend([0, 1, 2, UNHEALTHY]);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), join.len() + 4, "two meanings share a code");
    }

    #[test]
    fn an_error_carries_its_code_through_context() {
        use anyhow::Context;
        let plain = anyhow::anyhow!("plain");
        assert_eq!(code_of(&plain), 1);
        let coded: anyhow::Result<()> = Err(Exit::error(KEY_REFUSED, "key"));
        let wrapped = coded.context("joining").unwrap_err();
        assert_eq!(code_of(&wrapped), KEY_REFUSED);
    }
}
