//! One lab = one test's world: a unique name prefix, a temp dir for keys,
//! configs and logs, and the log registry printed when the test fails.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{LabError, Result};
use crate::names;
use crate::netns::Netns;
use crate::process::{LogFiles, Process};

/// Context shared by everything one test builds.
#[derive(Debug)]
pub struct Lab {
    test: String,
    prefix: String,
    dir: tempfile::TempDir,
    logs: Mutex<Vec<LogFiles>>,
}

impl Lab {
    /// A new lab for the test called `test`.
    pub fn new(test: &str) -> Result<Lab> {
        let prefix = names::lab_prefix();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .map_err(|e| LabError::io("creating the lab's temp dir", e))?;
        Ok(Lab {
            test: test.to_owned(),
            prefix,
            dir,
            logs: Mutex::new(Vec::new()),
        })
    }

    pub fn test_name(&self) -> &str {
        &self.test
    }

    /// The prefix every namespace and interface of this lab starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's private directory (removed when the lab is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A subdirectory of the lab's directory, created if missing.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        fs::create_dir_all(&path)
            .map_err(|e| LabError::io(format!("creating {}", path.display()), e))?;
        Ok(path)
    }

    /// An interface name for `role`, unique to this lab.
    pub fn ifname(&self, role: &str) -> Result<String> {
        names::ifname(&self.prefix, role)
    }

    /// A fresh namespace named after `role`.
    pub fn netns(&self, role: &str) -> Result<Netns> {
        Netns::create(&self.ifname(role)?)
    }

    /// Spawns `program args...` inside `ns`, logging to the lab's directory
    /// under `label` (which must be unique within the lab).
    pub fn spawn_in<I, S>(
        &self,
        ns: &Netns,
        label: &str,
        program: impl AsRef<OsStr>,
        args: I,
        envs: &[(&str, &str)],
    ) -> Result<Process>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = ns.command(program);
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let process = Process::spawn(self.dir.path(), label, cmd)?;
        self.register(process.logs().clone());
        // On error the guard is dropped, which ends the child by its PID.
        ns.wait_entered(process.pid())?;
        Ok(process)
    }

    /// Remembers logs to print if the test fails.
    pub fn register(&self, logs: LogFiles) {
        if let Ok(mut all) = self.logs.lock() {
            all.push(logs);
        }
    }

    /// Keeps the lab's directory (keys, configs, logs, captures) after the
    /// lab is gone and returns its path.
    pub fn keep_dir(self) -> PathBuf {
        self.dir.keep()
    }

    /// Prints every registered log to stderr.
    pub fn print_logs(&self) {
        let all = match self.logs.lock() {
            Ok(all) => all.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for logs in all {
            eprintln!("{}", logs.render());
        }
    }
}

/// Whether this process runs with effective UID 0. Read from /proc so the
/// crate keeps its single unsafe block for setns.
pub fn is_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Runs one end-to-end test body in a fresh [`Lab`].
///
/// Without root the test prints a skip notice and returns, except under CI
/// (`CI` set), where a skip would hide a broken setup, so it fails instead.
/// On error or panic every log of the lab is printed before the test fails;
/// with `WARREN_LAB_KEEP` set the lab's directory is kept for a closer look.
pub fn e2e<F>(test: &str, body: F)
where
    F: FnOnce(&Lab) -> anyhow::Result<()>,
{
    if !is_root() {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: needs root (network namespaces), and CI must run it");
        }
        // Straight to the stderr handle: the test harness captures the
        // print macros of passing tests, and a skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {test} needs root (network namespaces, TUN, nftables)"
        );
        return;
    }
    let lab = match Lab::new(test) {
        Ok(lab) => lab,
        Err(e) => panic!("{test}: cannot create the lab: {e}"),
    };
    // Everything the body built is dropped (processes stopped, namespaces
    // deleted) before the logs are printed; the log files outlive it.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| body(&lab)));
    if let Ok(Ok(())) = outcome {
        return;
    }
    // The cause first: CI keeps the head and the tail of a long output,
    // and the logs below would push a message at their end out of both.
    match &outcome {
        Ok(Err(e)) => eprintln!("{test} failed: {e:#}"),
        Err(payload) => eprintln!(
            "{test} panicked: {}",
            crate::in_netns::panic_message(payload.as_ref())
        ),
        Ok(Ok(())) => {}
    }
    lab.print_logs();
    if std::env::var_os("WARREN_LAB_KEEP").is_some() {
        eprintln!("{test}: lab files kept in {}", lab.keep_dir().display());
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{test} failed: {e:#}"),
        Err(payload) => panic::resume_unwind(payload),
    }
}
