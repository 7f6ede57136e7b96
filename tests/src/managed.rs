//! The real `warren` binary as a controller-managed node: `warren daemon`
//! with a state dir and no config file, driven by `warren join`, `leave`
//! and `status` inside its namespace. It can be restarted on the same state
//! dir, as a reboot would.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::command;
use crate::controller::Controller;
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns::Netns;
use crate::process::Process;
use crate::status::Status;
use crate::wait::{self, Poll};

/// How long a daemon gets to answer `warren status` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Log filter given to daemons unless `WARREN_LAB_LOG` overrides it.
const DEFAULT_LOG: &str = "info,warren=debug,warren_engine=debug";

/// What `warren join` printed and how it exited.
#[derive(Debug, Clone)]
pub struct JoinOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl JoinOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Everything it printed, for messages.
    pub fn render(&self) -> String {
        format!(
            "`{}` exited with {}\nstdout: {}\nstderr: {}",
            self.command,
            self.status,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// A `warren daemon` that joins networks through controllers.
#[derive(Debug)]
pub struct ManagedAgent {
    name: String,
    ns: String,
    bin: PathBuf,
    state_dir: PathBuf,
    socket: PathBuf,
    listen_port: Option<u16>,
    starts: u32,
    public_key: String,
    node_id: String,
    process: Option<Process>,
    /// More `daemon` flags (e.g. `--dns-manage resolv-conf`), kept across restarts.
    extra_args: Vec<String>,
    /// More environment for the daemon (e.g. a `PATH` with a fake `nft`),
    /// from the next (re)start on.
    extra_env: Vec<(String, String)>,
}

impl ManagedAgent {
    /// Starts `warren daemon --state-dir` in `ns` (the state dir lives in
    /// the lab's directory, named after `name`) and waits until it answers
    /// `warren status`. `listen_port` overrides the daemon's base port.
    pub fn start(
        lab: &Lab,
        ns: &Netns,
        name: &str,
        listen_port: Option<u16>,
    ) -> Result<ManagedAgent> {
        Self::start_with(lab, ns, name, listen_port, &[])
    }

    /// [`ManagedAgent::start`] with more `daemon` flags. Agents leave the
    /// system's resolver alone (`WARREN_DNS_MANAGE=off`) unless these say
    /// `--dns-manage`: a namespace without its own `/etc/netns/NAME/resolv.conf`
    /// sees the host's. Birthday probing is off unless they say
    /// `--hard-nat-probing true`.
    pub fn start_with(
        lab: &Lab,
        ns: &Netns,
        name: &str,
        listen_port: Option<u16>,
        extra_args: &[&str],
    ) -> Result<ManagedAgent> {
        let state_dir = lab.subdir(&format!("node-{name}"))?;
        let mut agent = ManagedAgent {
            name: name.to_owned(),
            ns: ns.name().to_owned(),
            bin: crate::warren::warren_bin()?,
            socket: state_dir.join("warren.sock"),
            state_dir,
            listen_port,
            starts: 0,
            public_key: String::new(),
            node_id: String::new(),
            process: None,
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            extra_env: Vec::new(),
        };
        agent.spawn(lab, ns)?;
        let status = agent.status()?;
        agent.public_key = status.public_key()?.to_owned();
        agent.node_id = status.node_id()?.to_owned();
        Ok(agent)
    }

    fn spawn(&mut self, lab: &Lab, ns: &Netns) -> Result<()> {
        self.starts += 1;
        let label = match self.starts {
            1 => format!("warren-{}", self.name),
            n => format!("warren-{}-{n}", self.name),
        };
        let log = env::var("WARREN_LAB_LOG").unwrap_or_else(|_| DEFAULT_LOG.to_owned());
        let port = self.listen_port.map(|p| p.to_string());
        let mut args: Vec<&OsStr> = vec![
            "daemon".as_ref(),
            "--state-dir".as_ref(),
            self.state_dir.as_os_str(),
            "--socket".as_ref(),
            self.socket.as_os_str(),
        ];
        if let Some(port) = &port {
            args.extend([OsStr::new("--listen-port"), OsStr::new(port)]);
        }
        args.extend(self.extra_args.iter().map(OsStr::new));
        // Birthday probing is off unless a lab turns it on (`--hard-nat-probing
        // true` among the flags): the NAT matrix checks what plain probing
        // reaches, which is deterministic; `hard_nat` checks the rest.
        let mut envs = vec![
            ("WARREN_LOG", log.as_str()),
            ("WARREN_DNS_MANAGE", "off"),
            ("WARREN_HARD_NAT_PROBING", "false"),
        ];
        envs.extend(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let process = lab.spawn_in(ns, &label, &self.bin, args, &envs)?;
        self.process = Some(process);
        wait::until(
            format!("warren-{} to answer status", self.name),
            READY_TIMEOUT,
            || {
                self.ensure_running()?;
                Ok(match self.status() {
                    Ok(_) => Poll::Ready(()),
                    Err(e) => Poll::Pending(e.to_string()),
                })
            },
        )
    }

    /// SIGTERM (SIGKILL after a grace period) and start again on the same
    /// state dir; waits until the new daemon answers `warren status`.
    /// Returns how the old daemon exited.
    pub fn restart(&mut self, lab: &Lab, ns: &Netns) -> Result<Option<ExitStatus>> {
        let exited = self.stop()?;
        self.spawn(lab, ns)?;
        Ok(exited)
    }

    /// Sets the daemon's environment variable `key` (replacing what an
    /// earlier call set, `None` removing it) for its next (re)start.
    pub fn set_daemon_env(&mut self, key: &str, value: Option<&str>) {
        self.extra_env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.extra_env.push((key.to_owned(), value.to_owned()));
        }
    }

    /// Stops the daemon (SIGTERM, then SIGKILL) and returns how it exited.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        self.process.take().map(|mut p| p.stop()).transpose()
    }

    /// `warren ARGS... --socket PATH` inside the agent's namespace.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = crate::netns::exec_in(&self.ns);
        cmd.arg(&self.bin)
            .args(args)
            .arg("--socket")
            .arg(&self.socket);
        cmd
    }

    /// `warren join NETID` against `controller` (its address and pinned
    /// fingerprint), as node `name` of the lab, with an optional pre-auth
    /// key. A refusal is an outcome here, not an error.
    pub fn join(
        &self,
        controller: &Controller,
        network: &str,
        key: Option<&str>,
    ) -> Result<JoinOutput> {
        self.join_at(
            controller.quic_addr(),
            controller.fingerprint(),
            network,
            key,
            &[],
        )
    }

    /// `warren join NETID` against the controller at `addr` with certificate
    /// `fingerprint`, with more `join` flags in `extra`.
    pub fn join_at(
        &self,
        addr: std::net::SocketAddr,
        fingerprint: &str,
        network: &str,
        key: Option<&str>,
        extra: &[&str],
    ) -> Result<JoinOutput> {
        let addr = addr.to_string();
        let mut args = vec![
            "join",
            network,
            "--controller",
            &addr,
            "--fingerprint",
            fingerprint,
            "--name",
            &self.name,
            "--wait",
            "10s",
        ];
        if let Some(key) = key {
            args.extend(["--key", key]);
        }
        args.extend_from_slice(extra);
        let mut cmd = self.command(args);
        let out = command::output(&mut cmd)?;
        Ok(JoinOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            // The key is a secret only for show; keep it out of messages.
            command: command::describe(&cmd).replace(key.unwrap_or("\u{0}"), "<key>"),
        })
    }

    /// `warren leave NETID`.
    pub fn leave(&self, network: &str) -> Result<String> {
        command::run_stdout(&mut self.command(["leave", network]))
    }

    /// `warren status --json`, parsed.
    pub fn status(&self) -> Result<Status> {
        Status::parse(&command::run_stdout(
            &mut self.command(["status", "--json"]),
        )?)
    }

    /// `warren status` as a user reads it.
    pub fn status_human(&self) -> Result<String> {
        command::run_stdout(&mut self.command(["status"]))
    }

    /// Polls `warren status` until `look` says ready or `within` runs out.
    pub fn wait_status<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut look: impl FnMut(&Status) -> Result<Poll<T>>,
    ) -> Result<T> {
        let what = format!("{} on {}", what, self.name);
        wait::until(what, within, || {
            self.ensure_running()?;
            look(&self.status()?)
        })
    }

    /// Waits until the agent's `network` reaches `state` ("authorized",
    /// "pending", ...) and returns that status.
    pub fn wait_state(&mut self, network: &str, state: &str, within: Duration) -> Result<Status> {
        let what = format!("network {network} to be {state}");
        self.wait_status(&what, within, |s| {
            let seen = match s.find_network(network) {
                Some(n) if n.state()? == state => return Ok(Poll::Ready(s.clone())),
                Some(n) => format!("{} ({})", n.state()?, n.message().unwrap_or("")),
                None => "not joined".to_owned(),
            };
            Ok(Poll::Pending(seen))
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace the daemon runs in.
    pub fn netns_name(&self) -> &str {
        &self.ns
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The node ID the agent reports (what `member` commands take).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The daemon's process, while it runs.
    pub fn process(&mut self) -> Option<&mut Process> {
        self.process.as_mut()
    }

    /// Errors (with the log tail) if the daemon has died or was stopped.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.process.as_mut() {
            Some(p) => p.ensure_running(),
            None => Err(LabError::Invalid(format!(
                "warren-{} is not running",
                self.name
            ))),
        }
    }
}
