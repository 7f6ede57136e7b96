//! Waiting for a joined network to settle (`warren join`, `warren up`):
//! what each state means for the wait and the exit code, and the one
//! progress line on a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use warren_proto::control::RefusalKind;
use warren_proto::local_api::{ControllerErrorKind, NetworkState, NetworkStatus, Status};
use warren_proto::text::printable;

use super::exit::{self, Exit};
use crate::client;

/// Where a join stands, read from its network's status.
#[derive(Debug)]
pub enum Step {
    /// Not settled: keep waiting; the text says what for.
    Wait(String),
    /// A member with its tunnel up.
    Up,
    /// Waiting for an admin's approval.
    Pending,
    /// Waiting for its owner to sign in on a page (`sign_in_url`).
    SignIn,
    /// Settled badly, or `--wait` ran out: the exit code and the message.
    Fail(u8, String),
}

/// What network `net`'s status means for a join that has waited since
/// `started` and may wait `wait`; `reached`: whether the controller was
/// connected at some point of the wait.
pub fn step(net: &NetworkStatus, wait: Duration, timed_out: bool, reached: bool) -> Step {
    let id = &net.id;
    let controller = net.controller.as_deref().unwrap_or("?");
    let message = net.message.as_deref().map(printable).unwrap_or_default();
    match net.state {
        NetworkState::Authorized | NetworkState::Static => Step::Up,
        NetworkState::Pending if net.sign_in_url.is_some() => Step::SignIn,
        NetworkState::Pending => Step::Pending,
        NetworkState::Refused => match net.refusal {
            Some(RefusalKind::Key) => Step::Fail(
                exit::KEY_REFUSED,
                format!("the controller refused the pre-auth key for {id}: {message}; an admin makes a new one with `warren-controller key create {id}`"),
            ),
            Some(RefusalKind::UnknownNetwork) => Step::Fail(
                exit::JOIN_REFUSED,
                format!("the controller at {controller} has no network {id}: check the network ID"),
            ),
            Some(RefusalKind::Revoked) => Step::Fail(
                exit::JOIN_REFUSED,
                format!("the controller refused {id}: this node is revoked; an admin may `warren-controller member authorize` it again"),
            ),
            _ => Step::Fail(
                exit::JOIN_REFUSED,
                format!("the controller refused the join of {id}: {message}"),
            ),
        },
        NetworkState::Expired => Step::Fail(
            exit::JOIN_REFUSED,
            format!("{id}: {message}; `warren login {id}` signs the device in again"),
        ),
        NetworkState::Conflict => Step::Fail(
            exit::JOIN_CONFLICT,
            format!("this agent refused the netmap of {id}: {message}"),
        ),
        NetworkState::Failed => Step::Fail(
            exit::JOIN_CONFLICT,
            format!("this agent could not keep the data plane of {id} running: {message}"),
        ),
        NetworkState::Connecting | NetworkState::Stale | NetworkState::Down => {
            let error = net.controller_error.as_ref();
            if let Some(e) = error.filter(|e| e.kind == ControllerErrorKind::FingerprintMismatch) {
                return Step::Fail(
                    exit::FINGERPRINT_MISMATCH,
                    format!("the controller at {controller} presented another certificate than the one pinned ({}); compare --fingerprint with what `warren-controller fingerprint` prints on the controller", printable(&e.message)),
                );
            }
            let wait = humantime::format_duration(wait);
            match (timed_out, reached || net.controller_connected) {
                (false, false) => Step::Wait(format!("connecting to the controller at {controller}")),
                (false, true) => Step::Wait("waiting for the controller's answer".to_owned()),
                (true, false) => Step::Fail(
                    exit::CONTROLLER_UNREACHABLE,
                    format!(
                        "could not reach the controller at {controller} within {wait}{}",
                        error.map(|e| format!(": {}", printable(&e.message))).unwrap_or_else(|| ": no answer".to_owned())
                    ),
                ),
                (true, true) => Step::Fail(
                    exit::JOIN_TIMEOUT,
                    format!("connected to the controller at {controller}, but it did not answer for {id} within {wait}"),
                ),
            }
        }
    }
}

/// Polls the agent until network `id` settles or `wait` runs out, showing
/// what it waits for: one line redrawn on a terminal, a plain line per
/// change otherwise. Returns the last status and where it stands.
pub fn wait_for(
    runtime: &tokio::runtime::Runtime,
    socket: &Path,
    id: &str,
    wait: Duration,
) -> anyhow::Result<(NetworkStatus, Step)> {
    let started = Instant::now();
    let mut line = Line::new(id);
    let mut reached = false;
    loop {
        let status: Status = runtime.block_on(client::get(socket, "/v1/status"))?;
        let Some(net) = status.networks.into_iter().find(|n| n.id == id) else {
            line.clear();
            return Err(Exit::error(
                1,
                format!("network {id} is no longer joined (left meanwhile?)"),
            ));
        };
        reached |= net.controller_connected;
        let timed_out = started.elapsed() >= wait;
        match step(&net, wait, timed_out, reached) {
            Step::Wait(what) => line.show(&what, started.elapsed()),
            settled => {
                line.clear();
                return Ok((net, settled));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The progress line on stderr.
struct Line {
    id: String,
    terminal: bool,
    shown: Option<String>,
}

impl Line {
    fn new(id: &str) -> Line {
        Line {
            id: id.to_owned(),
            terminal: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    fn show(&mut self, what: &str, elapsed: Duration) {
        let mut err = std::io::stderr();
        if self.terminal {
            let _ = write!(
                err,
                "\r\x1b[2Kjoining {}: {what} ({}s)",
                self.id,
                elapsed.as_secs()
            );
            let _ = err.flush();
            self.shown = Some(what.to_owned());
        } else if self.shown.as_deref() != Some(what) {
            let _ = writeln!(err, "joining {}: {what}", self.id);
            self.shown = Some(what.to_owned());
        }
    }

    fn clear(&mut self) {
        if self.terminal && self.shown.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::local_api::ControllerError;

    fn net(state: NetworkState) -> NetworkStatus {
        let mut status: NetworkStatus = serde_json::from_value(serde_json::json!({
            "id": "8056c2e21c000001", "name": null, "controller": "192.0.2.10:7443",
            "controller_connected": false, "state": "connecting", "message": null,
            "fqdn": null, "interface": null, "listen_port": 51820, "addresses": [],
            "mtu": 1420, "offload": false, "netmap_version": null,
            "counters": serde_json::to_value(warren_proto::local_api::Counters::default()).unwrap(),
        }))
        .unwrap();
        status.state = state;
        status
    }

    const WAIT: Duration = Duration::from_secs(10);

    fn code(step: Step) -> Option<u8> {
        match step {
            Step::Fail(code, _) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn each_failure_has_its_own_code() {
        let mut refused = net(NetworkState::Refused);
        refused.message = Some(warren_proto::control::refusal::KEY.into());
        refused.refusal = Some(RefusalKind::Key);
        assert_eq!(
            code(step(&refused, WAIT, false, true)),
            Some(exit::KEY_REFUSED)
        );
        refused.refusal = Some(RefusalKind::Revoked);
        assert_eq!(
            code(step(&refused, WAIT, false, true)),
            Some(exit::JOIN_REFUSED)
        );
        refused.refusal = Some(RefusalKind::UnknownNetwork);
        let Step::Fail(_, text) = step(&refused, WAIT, false, true) else {
            panic!("not a failure")
        };
        assert!(text.contains("has no network 8056c2e21c000001"), "{text}");
        assert_eq!(
            code(step(&net(NetworkState::Conflict), WAIT, false, true)),
            Some(exit::JOIN_CONFLICT)
        );

        let mut mismatch = net(NetworkState::Connecting);
        mismatch.controller_error = Some(ControllerError {
            kind: ControllerErrorKind::FingerprintMismatch,
            message: "does not match the pinned".into(),
        });
        // Known at once: no need to wait the time out.
        assert_eq!(
            code(step(&mismatch, WAIT, false, false)),
            Some(exit::FINGERPRINT_MISMATCH)
        );

        let connecting = net(NetworkState::Connecting);
        assert!(matches!(
            step(&connecting, WAIT, false, false),
            Step::Wait(_)
        ));
        assert_eq!(
            code(step(&connecting, WAIT, true, false)),
            Some(exit::CONTROLLER_UNREACHABLE)
        );
        // Reached, but no answer for the network.
        assert_eq!(
            code(step(&connecting, WAIT, true, true)),
            Some(exit::JOIN_TIMEOUT)
        );
    }

    #[test]
    fn up_and_pending_settle_the_wait() {
        assert!(matches!(
            step(&net(NetworkState::Authorized), WAIT, false, true),
            Step::Up
        ));
        assert!(matches!(
            step(&net(NetworkState::Pending), WAIT, false, true),
            Step::Pending
        ));
        let mut people = net(NetworkState::Pending);
        people.sign_in_url = Some("https://c.example/signin/x".into());
        assert!(matches!(step(&people, WAIT, false, true), Step::SignIn));
    }
}
