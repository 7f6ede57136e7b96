//! `warren-controller serve` on the NAT lab's internet, bound to the one
//! server address (QUIC and both STUN ports), with the admin calls the NAT
//! suites need and the relay counters of its `/metrics`.
//!
//! The server address sits on the internet namespace's loopback, and the
//! route back to each router leaves by a link with an address of its own:
//! a multi-homed host. [`Listen::ServerAddress`] binds everything to
//! 192.0.2.10; [`Listen::Wildcard`] keeps the controller's default wildcard
//! addresses (and serves DNS on `[::]:53`), whose UDP answers must leave
//! from 192.0.2.10 all the same, or the NATs drop them.

use std::ffi::OsStr;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::command;
use crate::controller::{controller_bin, http_get, parse_audit, parse_members, AuditEntry, Member};
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns::Netns;
use crate::process::Process;
use crate::topology::NatLab;
use crate::wait::{self, Poll};

/// Where nodes reach the controller.
pub const QUIC: SocketAddrV4 = SocketAddrV4::new(NatLab::SERVER, 7443);

/// The two STUN ports (two, so agents can tell a symmetric NAT): the
/// controller's defaults.
pub const STUN_PORTS: [u16; 2] = warren_proto::stun::DEFAULT_PORTS;

/// Where the controller's DNS answers when [`Listen::Wildcard`] serves it.
pub const DNS_PORT: u16 = 53;

/// What the controller binds its UDP services to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// QUIC and both STUN ports on [`NatLab::SERVER`] only.
    ServerAddress,
    /// The defaults (`[::]:7443`, `[::]:3478`, `[::]:3479`) and DNS on
    /// `[::]:53`: every address of the namespace, nodes still use
    /// [`NatLab::SERVER`].
    Wildcard,
}

/// The admin API, on the internet namespace's own loopback.
pub const API: &str = "127.0.0.1:7480";

/// Where a relay-only instance (`warren-controller relay`) listens for
/// nodes when the lab runs one, on the controller's own address.
pub const RELAY_QUIC: SocketAddrV4 = SocketAddrV4::new(NatLab::SERVER, 7444);

/// The relay-only instance's `/healthz` and `/metrics`.
pub const RELAY_METRICS: &str = "127.0.0.1:7481";

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Log filter unless `WARREN_LAB_CONTROLLER_LOG` says otherwise.
const DEFAULT_LOG: &str = "info,warren_controller=debug";

/// Relay counters from the controller's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// `warren_relay_frames_total`: frames forwarded.
    pub frames: u64,
    /// `warren_relay_bytes_total`: payload bytes forwarded.
    pub bytes: u64,
    /// `warren_relay_dropped_total{reason="offline"}`: frames for a
    /// destination with no connection here.
    pub offline: u64,
    /// `warren_relay_absence_notices_total`: senders told so.
    pub absence_notices: u64,
}

/// `warren-controller ARGS...` in namespace `ns`, with `token` in the
/// environment (never on the command line).
fn controller_command<I, S>(ns: &str, bin: &Path, token: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = crate::netns::exec_in(ns);
    cmd.arg(bin)
        .args(args)
        .env("WARREN_API", format!("http://{API}"))
        .env("WARREN_TOKEN", token);
    cmd
}

/// The `fingerprint:` line that `serve` and `relay` print once they listen.
fn printed_fingerprint(process: &Process) -> Option<String> {
    process
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint:"))
        .map(|f| f.trim().to_owned())
}

/// Starts `warren-controller relay` at [`RELAY_QUIC`], with a state
/// directory of its own, reading the database in `data_dir`; returns it
/// with the fingerprint of its own certificate once `/healthz` answers.
fn start_relay_instance(
    lab: &Lab,
    internet: &Netns,
    bin: &Path,
    data_dir: &Path,
    log: &str,
) -> Result<(Process, String)> {
    let state_dir = lab.subdir("relay-state")?;
    let relay_quic = RELAY_QUIC.to_string();
    let args: Vec<&OsStr> = vec![
        "relay".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--state-dir".as_ref(),
        state_dir.as_os_str(),
        "--listen-quic".as_ref(),
        relay_quic.as_ref(),
        "--listen-metrics".as_ref(),
        RELAY_METRICS.as_ref(),
    ];
    let mut relay = lab.spawn_in(
        internet,
        "relay",
        bin,
        args,
        &[("RUST_LOG", log), ("WARREN_LOG", log)],
    )?;
    let metrics = parse_addr(RELAY_METRICS)?;
    let fingerprint = wait::until(
        "the relay-only instance to answer /healthz",
        READY_TIMEOUT,
        || {
            relay.ensure_running()?;
            Ok(
                match (
                    printed_fingerprint(&relay),
                    http_get(internet, metrics, "/healthz"),
                ) {
                    (Some(f), Ok((200, _))) => Poll::Ready(f),
                    (f, health) => Poll::Pending(format!("fingerprint {f:?}, /healthz {health:?}")),
                },
            )
        },
    )?;
    Ok((relay, fingerprint))
}

/// A running controller in the internet namespace.
#[derive(Debug)]
pub struct NatController {
    ns: String,
    bin: PathBuf,
    token: String,
    fingerprint: String,
    process: Process,
    /// `warren-controller relay` reading the same database, if started.
    relay_instance: Option<Process>,
}

impl NatController {
    /// Starts `serve` in `internet`, waits for `/healthz` and makes an
    /// admin token. `relay_rate` overrides the per-node relay quota
    /// (bytes per second; the controller's default is 12,500,000).
    pub fn start(lab: &Lab, internet: &Netns, relay_rate: Option<u64>) -> Result<NatController> {
        Self::start_with(lab, internet, relay_rate, false)
    }

    /// [`NatController::start_with`], bound as `listen` says.
    pub fn start_listening(
        lab: &Lab,
        internet: &Netns,
        relay_rate: Option<u64>,
        relay_instance: bool,
        listen: Listen,
    ) -> Result<NatController> {
        Self::start_inner(lab, internet, relay_rate, relay_instance, listen)
    }

    /// [`NatController::start`], and with `relay_instance` also a
    /// relay-only instance at [`RELAY_QUIC`] that the controller names to
    /// its nodes (`--advertise-relay`), so they relay through it.
    pub fn start_with(
        lab: &Lab,
        internet: &Netns,
        relay_rate: Option<u64>,
        relay_instance: bool,
    ) -> Result<NatController> {
        Self::start_inner(
            lab,
            internet,
            relay_rate,
            relay_instance,
            Listen::ServerAddress,
        )
    }

    fn start_inner(
        lab: &Lab,
        internet: &Netns,
        relay_rate: Option<u64>,
        relay_instance: bool,
        listen: Listen,
    ) -> Result<NatController> {
        let bin = controller_bin()?;
        let data_dir = lab.subdir("controller")?;
        let log =
            std::env::var("WARREN_LAB_CONTROLLER_LOG").unwrap_or_else(|_| DEFAULT_LOG.to_owned());
        // An admin token, made offline as an operator would. It also makes
        // the data directory and the database a relay-only instance reads.
        let mut cmd = controller_command(internet.name(), &bin, "", ["token", "create"]);
        cmd.args(["--scope", "admin", "--data-dir"]).arg(&data_dir);
        let token = last_word(&command::run_stdout(&mut cmd)?, "token create")?;
        // The instance first: the controller names it with its fingerprint.
        let relay = if relay_instance {
            Some(start_relay_instance(lab, internet, &bin, &data_dir, &log)?)
        } else {
            None
        };
        let quic = QUIC.to_string();
        let stun: Vec<String> = STUN_PORTS
            .iter()
            .map(|p| SocketAddrV4::new(NatLab::SERVER, *p).to_string())
            .collect();
        let dns = format!("[::]:{DNS_PORT}");
        let mut args: Vec<&OsStr> = vec![
            "serve".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--listen-api".as_ref(),
            API.as_ref(),
        ];
        match listen {
            Listen::ServerAddress => {
                args.extend([OsStr::new("--listen-quic"), quic.as_ref()]);
                for addr in &stun {
                    args.extend([OsStr::new("--listen-stun"), addr.as_ref()]);
                }
            }
            Listen::Wildcard => args.extend([OsStr::new("--listen-dns"), dns.as_ref()]),
        }
        let rate = relay_rate.map(|r| r.to_string());
        if let Some(rate) = &rate {
            args.extend([OsStr::new("--relay-rate"), rate.as_ref()]);
        }
        let relay_quic = RELAY_QUIC.to_string();
        if let Some((_, relay_fingerprint)) = &relay {
            args.extend([
                OsStr::new("--advertise-relay"),
                relay_quic.as_ref(),
                OsStr::new("--advertise-relay-fingerprint"),
                relay_fingerprint.as_ref(),
            ]);
        }
        let mut process = lab.spawn_in(
            internet,
            "controller",
            &bin,
            args,
            &[("RUST_LOG", &log), ("WARREN_LOG", &log)],
        )?;
        let api = parse_addr(API)?;
        // `serve` prints its fingerprint once everything listens.
        let fingerprint = wait::until("the controller to answer /healthz", READY_TIMEOUT, || {
            process.ensure_running()?;
            Ok(
                match (
                    printed_fingerprint(&process),
                    http_get(internet, api, "/healthz"),
                ) {
                    (Some(f), Ok((200, _))) => Poll::Ready(f),
                    (f, health) => Poll::Pending(format!("fingerprint {f:?}, /healthz {health:?}")),
                },
            )
        })?;
        if let Some((_, relay_fingerprint)) = &relay {
            if *relay_fingerprint == fingerprint {
                return Err(LabError::Output {
                    what: "warren-controller relay".into(),
                    detail: "it serves the controller's own certificate".into(),
                });
            }
        }
        Ok(NatController {
            ns: internet.name().to_owned(),
            bin,
            token,
            fingerprint,
            process,
            relay_instance: relay.map(|(process, _)| process),
        })
    }

    /// `warren-controller ARGS...` in the internet namespace, with the admin
    /// token in the environment (never on the command line).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        controller_command(&self.ns, &self.bin, &self.token, args)
    }

    /// Creates network `name` on `pool` and returns its ID.
    pub fn network_create(&self, name: &str, pool: &str) -> Result<String> {
        let out =
            command::run_stdout(&mut self.command(["network", "create", name, "--pool", pool]))?;
        last_word(&out, "network create")
    }

    /// A reusable pre-auth key for `network`.
    pub fn key_create(&self, network: &str) -> Result<String> {
        let out = command::run_stdout(&mut self.command(["key", "create", network, "--reusable"]))?;
        last_word(&out, "key create")
    }

    /// `ARGS... --json`, parsed.
    pub fn admin_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut cmd = self.command(args);
        cmd.arg("--json");
        let out = command::run_stdout(&mut cmd)?;
        serde_json::from_str(&out).map_err(|e| LabError::Output {
            what: command::describe(&cmd),
            detail: format!("{e}: {out}"),
        })
    }

    /// `member list NETID --json`.
    pub fn members(&self, network: &str) -> Result<Vec<Member>> {
        parse_members(&self.admin_json(&["member", "list", network])?)
    }

    /// `audit --network NETID --json`, oldest first.
    pub fn audit(&self, network: &str) -> Result<Vec<AuditEntry>> {
        parse_audit(&self.admin_json(&["audit", "--network", network])?)
    }

    /// The admin token the lab made (for `warren-lab demo --keep` to hand
    /// to the person exploring the lab).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The certificate fingerprint that agents pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Reads the controller's relay counters from `/metrics`.
    pub fn relay_counters(&self, internet: &Netns) -> Result<RelayCounters> {
        counters_at(internet, parse_addr(API)?)
    }

    /// Reads the relay-only instance's counters from its `/metrics`.
    pub fn instance_relay_counters(&self, internet: &Netns) -> Result<RelayCounters> {
        counters_at(internet, parse_addr(RELAY_METRICS)?)
    }

    /// Errors (with the log tail) if `serve`, or the relay-only instance,
    /// has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()?;
        match &mut self.relay_instance {
            Some(relay) => relay.ensure_running(),
            None => Ok(()),
        }
    }
}

impl NatController {
    /// SIGKILLs the relay-only instance, as a crash would.
    pub fn kill_relay_instance(&mut self) -> Result<()> {
        let relay = self
            .relay_instance
            .as_mut()
            .ok_or_else(|| LabError::Invalid("this lab runs no relay-only instance".to_owned()))?;
        relay.signal("KILL")?;
        relay.wait_exit(Duration::from_secs(5))?;
        self.relay_instance = None;
        Ok(())
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr> {
    text.parse()
        .map_err(|_| LabError::Invalid(format!("bad address {text}")))
}

fn counters_at(internet: &Netns, api: SocketAddr) -> Result<RelayCounters> {
    let (code, body) = http_get(internet, api, "/metrics")?;
    if code != 200 {
        return Err(LabError::Output {
            what: format!("GET http://{api}/metrics"),
            detail: format!("HTTP {code}: {body}"),
        });
    }
    Ok(RelayCounters {
        frames: metric(&body, "warren_relay_frames_total"),
        bytes: metric(&body, "warren_relay_bytes_total"),
        offline: metric(&body, "warren_relay_dropped_total{reason=\"offline\"}"),
        absence_notices: metric(&body, "warren_relay_absence_notices_total"),
    })
}

/// The sum of every sample of `name` (with any labels), or the one sample
/// whose name and labels are `name` when it has labels; 0 if absent.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let matches = if name.contains('{') {
                key == name
            } else {
                key.split('{').next()? == name
            };
            matches.then(|| value.trim().parse::<f64>().ok())?
        })
        // Prometheus prints counters as floats; these are whole numbers.
        .map(|v| v as u64)
        .sum()
}

/// The last whitespace-separated word of a command's output.
fn last_word(out: &str, what: &str) -> Result<String> {
    out.split_whitespace()
        .last()
        .map(str::to_owned)
        .ok_or_else(|| LabError::Output {
            what: format!("warren-controller {what}"),
            detail: format!("empty output {out:?}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_with_and_without_labels() {
        let text = "# TYPE warren_relay_frames_total counter\nwarren_relay_frames_total 12\n\
                    warren_relay_bytes_total 3400\nwarren_relay_refused_total{reason=\"quota\"} 2\n\
                    warren_relay_refused_total{reason=\"replay\"} 1\n";
        assert_eq!(metric(text, "warren_relay_frames_total"), 12);
        assert_eq!(metric(text, "warren_relay_bytes_total"), 3400);
        assert_eq!(metric(text, "warren_relay_refused_total"), 3);
        assert_eq!(metric(text, "warren_relay_stream_frames_total"), 0);
        assert_eq!(
            metric(text, "warren_relay_refused_total{reason=\"quota\"}"),
            2
        );
    }
}
