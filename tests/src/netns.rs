//! A named network namespace that deletes itself, and ends every process
//! still inside it, when dropped.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt as _;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::command;
use crate::error::{LabError, Result};
use crate::in_netns;

/// Guard for one network namespace made with `ip netns add`.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up. Fails if it exists:
    /// the lab never adopts a namespace it did not make.
    pub fn create(name: &str) -> Result<Netns> {
        command::run(&mut command::command("ip", ["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program` as a builder, for callers that need to
    /// add arguments, environment or stdio before running it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = exec_in(&self.name);
        cmd.arg(program);
        cmd
    }

    /// Runs `program args...` inside the namespace; errors on non-zero exit.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(program);
        cmd.args(args);
        command::run(&mut cmd)
    }

    /// Like [`Netns::exec`] but returns stdout as text.
    pub fn output<I, S>(&self, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(program);
        cmd.args(args);
        command::run_stdout(&mut cmd)
    }

    /// `ip -n NAME args...`: configures links, addresses and routes of this
    /// namespace only.
    pub fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(&self.name).args(args);
        command::run_stdout(&mut cmd)
    }

    /// Sets a sysctl of this namespace (only `net.*` keys are per namespace;
    /// anything else would leak to the host, so it is refused).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        if !key.starts_with("net.") {
            return Err(LabError::Invalid(format!(
                "sysctl {key} is not namespaced; refusing to touch the host"
            )));
        }
        self.exec("sysctl", ["-q", "-w", &format!("{key}={value}")])
            .map(|_| ())
    }

    /// Runs `f` on a thread inside this namespace; see [`in_netns::run`].
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        in_netns::run(&self.name, f)
    }

    /// Starts `f` on a background thread inside this namespace.
    pub fn spawn<T, F>(&self, f: F) -> Result<in_netns::NetnsThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        in_netns::spawn(&self.name, f)
    }

    /// Waits until `pid` has entered this namespace (or has ended).
    ///
    /// `ip netns exec` is a process in the host namespace until it switches
    /// and execs the program, so a spawn returns before its child is
    /// inside. A teardown in that window would not find the child, which
    /// then enters the deleted namespace and runs on. Spawners wait here
    /// so that every process they hand out is one teardown can see.
    pub fn wait_entered(&self, pid: u32) -> Result<()> {
        let path = format!("{NETNS_RUN_DIR}/{}", self.name);
        let inode = std::fs::metadata(&path)
            .map_err(|e| LabError::io(format!("reading {path}"), e))?
            .ino();
        let want = format!("net:[{inode}]");
        let deadline = Instant::now() + ENTER_WAIT;
        loop {
            match std::fs::read_link(format!("/proc/{pid}/ns/net")) {
                Ok(link) if link.as_os_str() == want.as_str() => return Ok(()),
                // Gone already: nothing is left that teardown could miss.
                Err(_) => return Ok(()),
                Ok(_) if is_dead(pid) => return Ok(()),
                Ok(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("process {pid} to enter namespace {}", self.name),
                    after: ENTER_WAIT,
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// PIDs of processes whose network namespace is this one.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let out = command::run_stdout(&mut command::command("ip", ["netns", "pids", &self.name]))?;
        out.split_whitespace()
            .map(|p| {
                p.parse().map_err(|_| LabError::Output {
                    what: "ip netns pids".to_owned(),
                    detail: out.clone(),
                })
            })
            .collect()
    }

    fn teardown(&self) -> Result<()> {
        let me = std::process::id();
        // Only processes inside a namespace this guard created can be listed
        // here, so they are ours (spawned by the lab); never our own PID,
        // which may have a thread inside but lives in the host namespace.
        match self.pids() {
            Ok(pids) => {
                let pids: Vec<u32> = pids.into_iter().filter(|&p| p != me).collect();
                for &pid in &pids {
                    // The process may exit between listing and signalling.
                    let _ = command::signal(pid, "KILL");
                }
                // SIGKILL is delivered when the target next runs; on a busy
                // machine that can be a while after kill(1) returns. Wait
                // until each is gone (or a zombie, which holds nothing) so
                // that dropping the guard means the processes have ended.
                for pid in pids {
                    if !wait_dead(pid, TEARDOWN_KILL_WAIT) {
                        eprintln!(
                            "warren-lab: process {pid} in {} outlived SIGKILL for {TEARDOWN_KILL_WAIT:?}",
                            self.name
                        );
                    }
                }
            }
            // Still delete the name below; the error is reported.
            Err(e) => eprintln!("warren-lab: listing processes in {}: {e}", self.name),
        }
        command::run(&mut command::command("ip", ["netns", "delete", &self.name])).map(|_| ())
    }
}

/// Where `ip netns add` puts its namespace files.
const NETNS_RUN_DIR: &str = "/run/netns";

/// How long a spawner waits for `ip netns exec` to switch namespaces.
const ENTER_WAIT: Duration = Duration::from_secs(5);

/// How long a namespace guard waits for the processes it killed to end.
const TEARDOWN_KILL_WAIT: Duration = Duration::from_secs(5);

/// True once `pid` has exited or is a zombie; false if it still runs after
/// `limit`.
fn wait_dead(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if is_dead(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process is dead for our purposes when `/proc/<pid>/stat` is gone or
/// names state `Z` (exited, waiting for its parent to reap it).
fn is_dead(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The command name is in parentheses and may hold spaces or ')'; the
    // state is the first field after the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("warren-lab: cleaning up namespace {}: {e}", self.name);
        }
    }
}

/// `ip netns exec NS`, to be followed by the program and its arguments.
/// The host's proxy settings are left out: a lab namespace cannot reach
/// the host's proxy, and a test that wants one sets its own.
pub fn exec_in(ns: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    for var in ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"] {
        cmd.env_remove(var);
    }
    cmd
}
