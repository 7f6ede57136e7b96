//! The real `warren` binary as a lab node: key generation, a TOML config in
//! the lab's directory, `warren daemon` inside a namespace, and
//! `warren status` to observe it.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::command;
use crate::error::{LabError, Result};
use crate::keys::KeyPair;
use crate::lab::Lab;
use crate::netns::Netns;
use crate::node_spec::NodeSpec;
use crate::process::Process;
use crate::status::Status;

/// How long a daemon gets to answer `warren status` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Log filter given to daemons unless `WARREN_LAB_LOG` overrides it.
const DEFAULT_LOG: &str = "debug";

/// Finds the `warren` binary: `$WARREN_BIN`, else next to the running
/// executable or one level up (test executables live in `target/*/deps`).
pub fn warren_bin() -> Result<PathBuf> {
    if let Some(path) = env::var_os("WARREN_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = env::current_exe().map_err(|e| LabError::io("locating the running executable", e))?;
    let mut tried = Vec::new();
    if let Some(dir) = exe.parent() {
        for candidate in [dir.join("warren"), dir.join("../warren")] {
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate.display().to_string());
        }
    }
    Err(LabError::Invalid(format!(
        "warren binary not found (tried {}); build it with `cargo build -p warren-node` or set WARREN_BIN",
        tried.join(", ")
    )))
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigFile {
    node: NodeSection,
    peer: Vec<PeerSection>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct NodeSection {
    private_key_file: PathBuf,
    listen_port: u16,
    addresses: Vec<String>,
    interface_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    socket: PathBuf,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct PeerSection {
    public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    allowed_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    persistent_keepalive: Option<String>,
}

/// A key pair made by `warren key generate` in the lab's directory.
pub fn generate_key(lab: &Lab, name: &str) -> Result<KeyPair> {
    let dir = lab.subdir(&format!("warren-{name}"))?;
    KeyPair::generate_with_warren(&warren_bin()?, &dir.join("node.key"))
}

/// A running `warren daemon`.
#[derive(Debug)]
pub struct Agent {
    name: String,
    ns: String,
    bin: PathBuf,
    config: PathBuf,
    socket: PathBuf,
    ifname: String,
    public_key: String,
    process: Process,
}

impl Agent {
    /// Writes the config for `spec`, starts the daemon in `ns` and waits
    /// until it answers `warren status`.
    pub fn start(lab: &Lab, ns: &Netns, spec: &NodeSpec) -> Result<Agent> {
        let bin = warren_bin()?;
        let dir = lab.subdir(&format!("warren-{}", spec.name))?;
        let ifname = lab.ifname(&format!("w{}", spec.name))?;
        let socket = dir.join("warren.sock");
        let config = dir.join("warren.toml");
        let file = ConfigFile {
            node: NodeSection {
                private_key_file: spec.key.private_key_file.clone(),
                listen_port: spec.listen_port,
                addresses: spec.addresses.clone(),
                interface_name: ifname.clone(),
                mtu: None,
                socket: socket.clone(),
            },
            peer: spec
                .peers
                .iter()
                .map(|p| PeerSection {
                    public_key: p.public_key.clone(),
                    endpoint: p.endpoint.map(|e| e.to_string()),
                    allowed_ips: p.allowed_ips.clone(),
                    persistent_keepalive: p.persistent_keepalive.map(|s| format!("{s}s")),
                })
                .collect(),
        };
        let text = toml::to_string(&file).map_err(|e| LabError::Invalid(e.to_string()))?;
        fs::write(&config, text)
            .map_err(|e| LabError::io(format!("writing {}", config.display()), e))?;

        let log = env::var("WARREN_LAB_LOG").unwrap_or_else(|_| DEFAULT_LOG.to_owned());
        let process = lab.spawn_in(
            ns,
            &format!("warren-{}", spec.name),
            &bin,
            [
                std::ffi::OsStr::new("daemon"),
                "--config".as_ref(),
                config.as_os_str(),
            ],
            &[("RUST_LOG", &log), ("WARREN_LOG", &log)],
        )?;
        let mut agent = Agent {
            name: spec.name.clone(),
            ns: ns.name().to_owned(),
            bin,
            config,
            socket,
            ifname,
            public_key: spec.key.public_key.clone(),
            process,
        };
        agent.wait_ready()?;
        Ok(agent)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.process.ensure_running()?;
            let last = match self.status() {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("warren-{} to answer status (last: {last})", self.name),
                    after: READY_TIMEOUT,
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `warren status ARGS --socket PATH` run inside the agent's namespace.
    fn status_command(&self, json: bool) -> Command {
        let mut cmd = crate::netns::exec_in(&self.ns);
        cmd.arg(&self.bin).arg("status");
        if json {
            cmd.arg("--json");
        }
        cmd.arg("--socket").arg(&self.socket);
        cmd
    }

    /// `warren status --json`, parsed.
    pub fn status(&self) -> Result<Status> {
        Status::parse(&command::run_stdout(&mut self.status_command(true))?)
    }

    /// `warren status` as a user reads it.
    pub fn status_human(&self) -> Result<String> {
        command::run_stdout(&mut self.status_command(false))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The TUN interface the daemon was told to create.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The local API socket the daemon listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Errors (with the log tail) if the daemon has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()
    }
}
