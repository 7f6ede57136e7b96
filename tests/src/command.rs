//! Running external tools (`ip`, `nft`, `wg`, ...) with errors that show the
//! full command line and its stderr.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// Renders a command for error messages and logs. Display only: commands are
/// always built with `Command::args`, never parsed from this string.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Bound on any one tool invocation: a wedged `warren status` or `ip` must
/// fail the test, not hang it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cmd` to completion and returns its output, or an error carrying its
/// stderr if it exits non-zero or runs longer than [`RUN_TIMEOUT`].
pub fn run(cmd: &mut Command) -> Result<Output> {
    let output = output(cmd)?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: describe(cmd),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

/// Runs `cmd` to completion and returns its output whatever its exit status,
/// for callers that check a refusal; errors only if it cannot start or runs
/// longer than [`RUN_TIMEOUT`].
pub fn output(cmd: &mut Command) -> Result<Output> {
    output_to(cmd, Stdio::piped())
}

/// Runs `cmd` twice: once to see that it prints something, then with its
/// stdout to a pipe whose reader has already gone, as in `cmd | head -1`
/// once `head` has exited. That run must end as a command whose reader
/// left should: exit 0 and nothing on stderr (above all no panic about a
/// broken pipe).
pub fn run_without_reader(cmd: &mut Command) -> Result<()> {
    if run(cmd)?.stdout.is_empty() {
        return Err(LabError::Invalid(format!(
            "`{}` printed nothing, so a missing reader proves nothing",
            describe(cmd)
        )));
    }
    let (reader, writer) = std::io::pipe().map_err(|e| LabError::io("making a pipe", e))?;
    drop(reader);
    let out = output_to(cmd, writer.into())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stderr.trim().is_empty() {
        return Ok(());
    }
    Err(LabError::Invalid(format!(
        "`{}` with no reader for its output ended with {}, saying: {}",
        describe(cmd),
        out.status,
        stderr.trim()
    )))
}

/// [`output`], with the child's stdout going to `stdout` (a pipe of ours
/// is drained; anything else is the caller's).
fn output_to(cmd: &mut Command, stdout: Stdio) -> Result<Output> {
    let command = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    // Drain both pipes on threads so a chatty child cannot block on a full
    // pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                // Our own child, by its handle.
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Timeout {
                    what: format!("`{command}` to finish"),
                    after: RUN_TIMEOUT,
                });
            }
            Err(e) => return Err(LabError::io(format!("waiting for `{command}`"), e)),
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Runs `cmd` and returns its stdout as text.
pub fn run_stdout(cmd: &mut Command) -> Result<String> {
    let output = run(cmd)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Builds `program args...`.
pub fn command<I, S>(program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// Sends `signal` (e.g. "TERM", "KILL") to one process by PID. Uses the
/// `kill` binary so that the crate needs no unsafe code for signals.
pub fn signal(pid: u32, signal: &str) -> Result<()> {
    run(&mut command(
        "kill",
        [format!("-{signal}"), pid.to_string()],
    ))
    .map(|_| ())
}
