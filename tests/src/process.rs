//! A child process started by the lab (usually inside a namespace), with its
//! output captured to files and a Drop that ends it by PID.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::command::{self, describe};
use crate::error::{LabError, Result};

/// How long a process gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// Lines of a log shown in error messages.
const TAIL_LINES: usize = 60;

/// Lines of each log printed when a test fails; the whole files stay in
/// the lab's directory when `WARREN_LAB_KEEP` is set.
const FAILURE_LINES: usize = 300;

/// Paths of one process's captured output.
#[derive(Debug, Clone)]
pub struct LogFiles {
    pub label: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl LogFiles {
    /// The tails of both logs, headed by the label, for printing after a
    /// failure.
    pub fn render(&self) -> String {
        format!(
            "===== {label} stdout ({}, last {FAILURE_LINES} lines) =====\n{}\n===== {label} stderr ({}, last {FAILURE_LINES} lines) =====\n{}\n",
            self.stdout.display(),
            tail(&read_lossy(&self.stdout), FAILURE_LINES),
            self.stderr.display(),
            tail(&read_lossy(&self.stderr), FAILURE_LINES),
            label = self.label,
        )
    }
}

fn read_lossy(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<cannot read: {e}>"),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running child. Dropping it sends SIGTERM, then SIGKILL after a grace
/// period, always by the PID this guard spawned.
#[derive(Debug)]
pub struct Process {
    child: Child,
    logs: LogFiles,
    command: String,
}

impl Process {
    /// Spawns `cmd` with stdout and stderr going to `DIR/LABEL.stdout` and
    /// `DIR/LABEL.stderr`.
    pub fn spawn(dir: &Path, label: &str, mut cmd: Command) -> Result<Process> {
        let logs = LogFiles {
            label: label.to_owned(),
            stdout: dir.join(format!("{label}.stdout")),
            stderr: dir.join(format!("{label}.stderr")),
        };
        let open = |p: &Path| {
            File::create(p).map_err(|e| LabError::io(format!("creating {}", p.display()), e))
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(open(&logs.stdout)?))
            .stderr(Stdio::from(open(&logs.stderr)?));
        let command = describe(&cmd);
        let child = cmd.spawn().map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
        Ok(Process {
            child,
            logs,
            command,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.logs.label
    }

    pub fn logs(&self) -> &LogFiles {
        &self.logs
    }

    /// The command line it was started with (for messages).
    pub fn command_line(&self) -> &str {
        &self.command
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.logs.stdout)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.logs.stderr)
    }

    /// `None` while running, the exit status once it has exited.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .map_err(|e| LabError::io(format!("checking on {}", self.logs.label), e))
    }

    /// Errors with the stderr tail if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.exit_status()? {
            None => Ok(()),
            Some(status) => Err(LabError::Exited {
                label: self.logs.label.clone(),
                status,
                log: tail(&self.stderr(), TAIL_LINES),
            }),
        }
    }

    /// Waits up to `within` for `needle` in its stderr or stdout (a
    /// daemon's "listening" line); errors if it exits first.
    pub fn wait_for_output(&mut self, needle: &str, within: Duration) -> Result<()> {
        let what = format!("{} to say {needle:?}", self.logs.label);
        crate::wait::until(what, within, || {
            self.ensure_running()?;
            let log = self.stderr() + &self.stdout();
            Ok(match log.contains(needle) {
                true => crate::wait::Poll::Ready(()),
                false => crate::wait::Poll::Pending(log),
            })
        })
    }

    /// Sends `sig` (e.g. "INT") to the process if it still runs.
    pub fn signal(&mut self, sig: &str) -> Result<()> {
        if self.exit_status()?.is_none() {
            command::signal(self.pid(), sig)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("{} to exit", self.logs.label),
                    after: timeout,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within the grace period.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.signal("TERM")?;
        match self.wait_exit(TERM_GRACE) {
            Ok(status) => Ok(status),
            Err(_) => {
                self.child
                    .kill()
                    .map_err(|e| LabError::io(format!("killing {}", self.logs.label), e))?;
                self.child
                    .wait()
                    .map_err(|e| LabError::io(format!("reaping {}", self.logs.label), e))
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("warren-lab: stopping {}: {e}", self.logs.label);
        }
    }
}
