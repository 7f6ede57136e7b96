//! A named network namespace that deletes itself, and ends every process
//! still inside it, when dropped.

use std::ffi::OsStr;
use std::process::{Command, Output};

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
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec"]).arg(&self.name).arg(program);
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
                for pid in pids.into_iter().filter(|&p| p != me) {
                    // The process may exit between listing and signalling.
                    let _ = command::signal(pid, "KILL");
                }
            }
            // Still delete the name below; the error is reported.
            Err(e) => eprintln!("warren-lab: listing processes in {}: {e}", self.name),
        }
        command::run(&mut command::command("ip", ["netns", "delete", &self.name])).map(|_| ())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("warren-lab: cleaning up namespace {}: {e}", self.name);
        }
    }
}
