//! The real `warren-controller` as a lab service: `serve` inside a
//! namespace with its data dir in the lab's directory, an admin token, and
//! the admin CLI run inside the same namespace (where the loopback API
//! listens), parsed into what the suites check.

use std::env;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::command::{self, describe};
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns::Netns;
use crate::process::Process;
use crate::wait::{self, Poll};

/// Where the controller listens for nodes, on every address of its namespace.
pub const QUIC_PORT: u16 = 7443;

/// The admin API: the binary's default, on the namespace's own loopback, so
/// the admin CLI needs no `--api`.
pub const API_ADDR: &str = "127.0.0.1:7480";

/// How long `serve` gets to answer `/healthz` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Log filter given to the controller unless `WARREN_LAB_CONTROLLER_LOG`
/// overrides it.
const DEFAULT_LOG: &str = "info,warren_controller=debug";

/// Finds the `warren-controller` binary: `$WARREN_CONTROLLER_BIN`, else next
/// to the running executable or one level up (as [`crate::warren::warren_bin`]).
pub fn controller_bin() -> Result<PathBuf> {
    if let Some(path) = env::var_os("WARREN_CONTROLLER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = env::current_exe().map_err(|e| LabError::io("locating the running executable", e))?;
    let mut tried = Vec::new();
    if let Some(dir) = exe.parent() {
        for candidate in [
            dir.join("warren-controller"),
            dir.join("../warren-controller"),
        ] {
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate.display().to_string());
        }
    }
    Err(LabError::Invalid(format!(
        "warren-controller binary not found (tried {}); build it with `cargo build -p warren-controller` or set WARREN_CONTROLLER_BIN",
        tried.join(", ")
    )))
}

/// One member as `member list --json` shows it.
#[derive(Debug, Clone)]
pub struct Member {
    pub node_id: String,
    pub name: String,
    /// "pending", "authorized" or "revoked".
    pub state: String,
    pub authorized: bool,
    pub online: bool,
    /// Overlay addresses as printed (with or without a prefix length).
    pub addresses: Vec<String>,
    pub json: Value,
}

impl Member {
    fn parse(json: &Value) -> Result<Member> {
        let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
        let missing = |key: &str| LabError::Output {
            what: "warren-controller member list --json".to_owned(),
            detail: format!("member without {key}: {json}"),
        };
        // The API may list addresses as one array or as ipv4 + ipv6.
        let addresses = match json.get("addresses").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            None => ["ipv4", "ipv6"].iter().filter_map(|k| text(k)).collect(),
        };
        Ok(Member {
            node_id: text("node_id").ok_or_else(|| missing("node_id"))?,
            // A pending member has no name yet, only the one it asked for.
            name: text("name")
                .or_else(|| text("requested_name"))
                .unwrap_or_default(),
            state: text("state").ok_or_else(|| missing("state"))?,
            authorized: json
                .get("authorized")
                .and_then(Value::as_bool)
                .ok_or_else(|| missing("authorized"))?,
            online: json
                .get("online")
                .and_then(Value::as_bool)
                .ok_or_else(|| missing("online"))?,
            addresses,
            json: json.clone(),
        })
    }
}

/// One audit-log entry.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub action: String,
    /// The node, key or network the entry is about, if any.
    pub target: Option<String>,
    pub network_id: Option<String>,
    pub actor: Option<String>,
    pub json: Value,
}

impl AuditEntry {
    fn parse(json: &Value) -> Result<AuditEntry> {
        let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(AuditEntry {
            action: text("action").ok_or_else(|| LabError::Output {
                what: "warren-controller audit --json".to_owned(),
                detail: format!("entry without action: {json}"),
            })?,
            target: text("target"),
            network_id: text("network_id"),
            actor: text("actor"),
            json: json.clone(),
        })
    }

    /// One line for failure messages: "action target".
    pub fn brief(&self) -> String {
        format!("{} {}", self.action, self.target.as_deref().unwrap_or("-"))
    }
}

/// The elements of a list answer: a bare array, or the first array found
/// under a usual envelope key.
/// The members of what `member list --json` printed (`{"members": [...]}`).
pub fn parse_members(json: &Value) -> Result<Vec<Member>> {
    list_items(json, "warren-controller member list --json")?
        .iter()
        .map(Member::parse)
        .collect()
}

/// The entries of what `audit --json` printed, oldest first.
pub fn parse_audit(json: &Value) -> Result<Vec<AuditEntry>> {
    list_items(json, "warren-controller audit --json")?
        .iter()
        .map(AuditEntry::parse)
        .collect()
}

fn list_items<'a>(json: &'a Value, what: &str) -> Result<&'a Vec<Value>> {
    if let Some(items) = json.as_array() {
        return Ok(items);
    }
    ["items", "entries", "members", "events", "data"]
        .iter()
        .find_map(|k| json.get(k).and_then(Value::as_array))
        .ok_or_else(|| LabError::Output {
            what: what.to_owned(),
            detail: format!("expected a list: {json}"),
        })
}

/// The first whitespace-separated word of `text` that `accept` takes.
fn find_word(text: &str, accept: impl Fn(&str) -> bool) -> Option<&str> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
        .find(|w| accept(w))
}

fn is_hex(text: &str, digits: usize) -> bool {
    text.len() == digits && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// A running (or killed, to be restarted) `warren-controller serve`.
#[derive(Debug)]
pub struct Controller {
    ns: String,
    bin: PathBuf,
    data_dir: PathBuf,
    quic: SocketAddr,
    token: String,
    fingerprint: String,
    starts: u32,
    process: Option<Process>,
    /// More `serve` flags (e.g. `--listen-dns`), kept across restarts.
    extra_args: Vec<String>,
    /// Names its log files: `controller`, or a replica's own name.
    label: String,
}

impl Controller {
    /// Starts `serve` in `ns` with QUIC on `quic` and the API on
    /// [`API_ADDR`], waits for `/healthz`, then makes an admin token and
    /// reads the certificate fingerprint.
    pub fn start(lab: &Lab, ns: &Netns, quic: SocketAddr) -> Result<Controller> {
        Self::start_with(lab, ns, quic, &[])
    }

    /// [`Controller::start`] with more `serve` flags, e.g. `--listen-dns ADDR`.
    pub fn start_with(
        lab: &Lab,
        ns: &Netns,
        quic: SocketAddr,
        extra_args: &[&str],
    ) -> Result<Controller> {
        Self::start_replica(lab, ns, quic, "controller", extra_args)
    }

    /// A replica of the controller: its logs named `label`, and the same
    /// data directory (key and certificate) as every other replica of
    /// this lab; the state is in the database `extra_args` name with
    /// `--database`. Start replicas one after another: the first makes
    /// the key.
    pub fn start_replica(
        lab: &Lab,
        ns: &Netns,
        quic: SocketAddr,
        label: &str,
        extra_args: &[&str],
    ) -> Result<Controller> {
        let mut controller = Controller {
            ns: ns.name().to_owned(),
            bin: controller_bin()?,
            data_dir: lab.subdir("controller")?,
            quic,
            token: String::new(),
            fingerprint: String::new(),
            starts: 0,
            process: None,
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            label: label.to_owned(),
        };
        controller.spawn(lab, ns)?;
        let out = controller.offline(&["token", "create", "--scope", "admin"])?;
        controller.token = Self::token_in(&out)?;
        let out = controller.offline(&["fingerprint"])?;
        controller.fingerprint = find_word(&out, |w| is_hex(&w.replace(':', ""), 64))
            .map(|w| w.replace(':', "").to_ascii_lowercase())
            .ok_or_else(|| LabError::Output {
                what: "warren-controller fingerprint".to_owned(),
                detail: format!("no 64-hex-digit fingerprint in {out:?}"),
            })?;
        Ok(controller)
    }

    /// The token is the output's only line without spaces, else its last word.
    fn token_in(out: &str) -> Result<String> {
        let lines: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines
            .iter()
            .find(|l| !l.contains(char::is_whitespace))
            .copied()
            .or_else(|| lines.last().and_then(|l| l.split_whitespace().last()))
            .map(str::to_owned)
            .ok_or_else(|| LabError::Output {
                what: "warren-controller token create".to_owned(),
                detail: format!("no token in {out:?}"),
            })
    }

    fn spawn(&mut self, lab: &Lab, ns: &Netns) -> Result<()> {
        self.starts += 1;
        let label = match self.starts {
            1 => self.label.clone(),
            n => format!("{}-{n}", self.label),
        };
        let log = env::var("WARREN_LAB_CONTROLLER_LOG").unwrap_or_else(|_| DEFAULT_LOG.to_owned());
        let quic = self.quic.to_string();
        let process = lab.spawn_in(
            ns,
            &label,
            &self.bin,
            [
                "serve".as_ref(),
                "--data-dir".as_ref(),
                self.data_dir.as_os_str(),
                "--listen-quic".as_ref(),
                quic.as_ref(),
                "--listen-api".as_ref(),
                std::ffi::OsStr::new(API_ADDR),
            ]
            .into_iter()
            .chain(self.extra_args.iter().map(|a| a.as_ref())),
            &[("RUST_LOG", &log), ("WARREN_LOG", &log)],
        )?;
        self.process = Some(process);
        self.wait_ready(ns)
    }

    fn wait_ready(&mut self, ns: &Netns) -> Result<()> {
        let api: SocketAddr = API_ADDR
            .parse()
            .map_err(|_| LabError::Invalid(format!("bad API address {API_ADDR}")))?;
        wait::until("the controller to answer /healthz", READY_TIMEOUT, || {
            if let Some(p) = self.process.as_mut() {
                p.ensure_running()?;
            }
            Ok(match http_get(ns, api, "/healthz") {
                Ok((200, _)) => Poll::Ready(()),
                Ok((code, body)) => Poll::Pending(format!("HTTP {code}: {body}")),
                Err(e) => Poll::Pending(e.to_string()),
            })
        })
    }

    /// SIGKILL, as a crash or a pulled plug would end it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(p) = self.process.as_mut() {
            p.signal("KILL")?;
            p.wait_exit(Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// Sends `sig` to `serve`: "STOP" freezes it with its connections
    /// open (a controller that no longer answers), "CONT" thaws it.
    pub fn signal(&mut self, sig: &str) -> Result<()> {
        match self.process.as_mut() {
            Some(p) => p.signal(sig),
            None => Err(LabError::Invalid("the controller is not running".into())),
        }
    }

    /// Starts `serve` again on the same data dir and addresses.
    pub fn restart(&mut self, lab: &Lab, ns: &Netns) -> Result<()> {
        if let Some(mut old) = self.process.take() {
            old.stop()?;
        }
        self.spawn(lab, ns)
    }

    /// Errors (with the log tail) if `serve` has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.process.as_mut() {
            Some(p) => p.ensure_running(),
            None => Err(LabError::Invalid("the controller is not running".into())),
        }
    }

    /// The address nodes join through.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic
    }

    /// The certificate fingerprint nodes pin (64 lowercase hex digits).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The admin token the lab made (a throwaway lab's, shown for `--keep`).
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `warren-controller ARGS...` inside the controller's namespace with the
    /// admin token in `WARREN_TOKEN`.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = crate::netns::exec_in(&self.ns);
        cmd.arg(&self.bin)
            .args(args)
            .env("WARREN_API", format!("http://{API_ADDR}"))
            .env("WARREN_TOKEN", &self.token);
        cmd
    }

    /// The admin socket `serve` keeps in its data directory by default.
    pub fn admin_socket(&self) -> PathBuf {
        self.data_dir.join("admin.sock")
    }

    /// `warren-controller ARGS...` as the quick start runs it on the
    /// controller's host: as root, with no token and no API URL, so that
    /// the CLI uses the admin socket (named in `WARREN_ADMIN_SOCKET`, as
    /// the lab's is not where the packaged controller keeps it).
    pub fn local_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.local_command_through(&[], args)
    }

    /// [`Controller::local_command`] run as user and group `uid` with no
    /// supplementary groups (`setpriv`), as someone other than root would.
    pub fn local_command_as(&self, uid: u32, args: &[&str]) -> Command {
        let id = uid.to_string();
        let setpriv = [
            "setpriv",
            "--reuid",
            &id,
            "--regid",
            &id,
            "--clear-groups",
            "--",
        ];
        self.local_command_through(&setpriv, args)
    }

    /// `ip netns exec NS WRAPPER... warren-controller ARGS...` for the admin socket.
    fn local_command_through<I, S>(&self, wrapper: &[&str], args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = crate::netns::exec_in(&self.ns);
        cmd.args(wrapper)
            .arg(&self.bin)
            .args(args)
            .env("WARREN_ADMIN_SOCKET", self.admin_socket())
            .env_remove("WARREN_API")
            .env_remove("WARREN_TOKEN");
        cmd
    }

    /// An admin command through the admin socket (see
    /// [`Controller::local_command`]): its stdout.
    pub fn local_admin(&self, args: &[&str]) -> Result<String> {
        command::run_stdout(&mut self.local_command(args))
    }

    /// `warren-controller ARGS...` run in another namespace (another
    /// machine) against the API at `api` (e.g. the HTTPS listener), with the
    /// admin token in `WARREN_TOKEN` and nothing else set: the caller adds
    /// how to trust an `https://` API.
    pub fn remote_command<I, S>(&self, ns: &Netns, api: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = crate::netns::exec_in(ns.name());
        cmd.arg(&self.bin)
            .args(args)
            .env("WARREN_API", api)
            .env("WARREN_TOKEN", &self.token)
            .env_remove("WARREN_API_FINGERPRINT")
            .env_remove("WARREN_API_CA");
        cmd
    }

    /// A data-dir command (`token create`, `fingerprint`): `--data-dir` added.
    fn offline(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.command(args);
        cmd.arg("--data-dir").arg(&self.data_dir);
        // The commands that write the database itself need to know where
        // it is when it is not the data directory's SQLite file.
        if matches!(args.first(), Some(&"token") | Some(&"console")) {
            if let Some(url) = self.database() {
                cmd.arg("--database").arg(url);
            }
        }
        command::run_stdout(&mut cmd)
    }

    /// The `--database` URL `serve` was started with, if any.
    pub fn database(&self) -> Option<&str> {
        self.extra_args
            .iter()
            .position(|a| a == "--database")
            .and_then(|i| self.extra_args.get(i + 1))
            .map(String::as_str)
    }

    /// `console login-code`: a one-time break-glass code for the console.
    pub fn console_login_code(&self) -> Result<String> {
        self.offline(&["console", "login-code"])
            .map(|out| out.trim().to_owned())
    }

    /// An admin command's output, whatever its exit status.
    pub fn admin_output(&self, args: &[&str]) -> Result<Output> {
        command::output(&mut self.command(args))
    }

    /// An admin command's stdout; a non-zero exit is an error with stderr.
    pub fn admin(&self, args: &[&str]) -> Result<String> {
        command::run_stdout(&mut self.command(args))
    }

    /// An admin command with `--json`, parsed.
    pub fn admin_json(&self, args: &[&str]) -> Result<Value> {
        let mut cmd = self.command(args);
        cmd.arg("--json");
        let out = command::run_stdout(&mut cmd)?;
        serde_json::from_str(&out).map_err(|e| LabError::Output {
            what: describe(&cmd),
            detail: format!("{e}: {out}"),
        })
    }

    /// `network create NAME --pool POOL`: the new network's ID.
    pub fn network_create(&self, name: &str, pool: &str) -> Result<String> {
        let out = self.admin(&["network", "create", name, "--pool", pool])?;
        find_word(&out, |w| is_hex(w, 16))
            .map(str::to_owned)
            .ok_or_else(|| LabError::Output {
                what: format!("warren-controller network create {name}"),
                detail: format!("no 16-hex-digit network ID in {out:?}"),
            })
    }

    /// `key create NETID [--reusable]`: the pre-auth key.
    pub fn key_create(&self, network: &str, reusable: bool) -> Result<String> {
        let mut args = vec!["key", "create", network];
        if reusable {
            args.push("--reusable");
        }
        let json = self.admin_json(&args)?;
        json.get("key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| LabError::Output {
                what: "warren-controller key create --json".to_owned(),
                detail: format!("no key in {json}"),
            })
    }

    /// `member list NETID --json`.
    pub fn members(&self, network: &str) -> Result<Vec<Member>> {
        parse_members(&self.admin_json(&["member", "list", network])?)
    }

    /// The member with this node ID.
    pub fn member(&self, network: &str, node_id: &str) -> Result<Member> {
        self.members(network)?
            .into_iter()
            .find(|m| m.node_id == node_id)
            .ok_or_else(|| LabError::Output {
                what: format!("warren-controller member list {network}"),
                detail: format!("no member {node_id}"),
            })
    }

    /// `member list NETID` as a person reads it.
    pub fn member_table(&self, network: &str) -> Result<String> {
        self.admin(&["member", "list", network])
    }

    /// `member authorize NETID NODE`.
    pub fn authorize(&self, network: &str, node_id: &str) -> Result<()> {
        self.admin(&["member", "authorize", network, node_id])
            .map(|_| ())
    }

    /// `member revoke NETID NODE`.
    pub fn revoke(&self, network: &str, node_id: &str) -> Result<()> {
        self.admin(&["member", "revoke", network, node_id])
            .map(|_| ())
    }

    /// `audit --json [--network NETID]`, oldest first as the API orders it.
    pub fn audit(&self, network: Option<&str>) -> Result<Vec<AuditEntry>> {
        let mut args = vec!["audit"];
        if let Some(net) = network {
            args.extend(["--network", net]);
        }
        parse_audit(&self.admin_json(&args)?)
    }

    /// `audit verify`: its output if the chain holds, an error if not.
    pub fn audit_verify(&self) -> Result<String> {
        self.admin(&["audit", "verify"])
    }
}

/// A minimal HTTP/1.0 GET from inside `ns`: (status code, body).
pub fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    let path = path.to_owned();
    ns.run(move || -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        let code = reply
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((code, body))
    })?
    .map_err(|e| LabError::io(format!("GET {url}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tokens_ids_and_lists() -> Result<()> {
        assert_eq!(Controller::token_in("wtk_abc123\n")?, "wtk_abc123");
        assert_eq!(
            Controller::token_in("admin token (shown once):\nwtk_abc123\n")?,
            "wtk_abc123"
        );
        assert_eq!(
            find_word("created network lab: 8f3a01c2d4e5f607\n", |w| is_hex(w, 16)),
            Some("8f3a01c2d4e5f607")
        );
        let members = serde_json::json!({"members": [{
            "node_id": "0a1b2c3d4e", "name": "a", "state": "authorized",
            "authorized": true, "online": false,
            "ipv4": "10.147.0.1", "ipv6": "fd00::1"}]});
        let m = Member::parse(&list_items(&members, "t")?[0])?;
        assert_eq!(m.addresses, vec!["10.147.0.1", "fd00::1"]);
        assert!(list_items(&serde_json::json!({"x": 1}), "t").is_err());
        Ok(())
    }
}
