//! `warren status` and `warren status --check` as monitoring uses them:
//! healthy (exit 0) with the controller up; once the controller is killed,
//! unhealthy (exit 3, saying the controller is unreachable) past the
//! grace period and not before; healthy again when it is back. The summary
//! names the controller's state and the peers' paths.

use std::process::Output;
use std::time::Duration;

use anyhow::ensure;
use warren_lab::command;
use warren_lab::e2e;
use warren_lab::managed::ManagedAgent;
use warren_lab::mesh::Mesh;
use warren_lab::wait::{self, Poll};

const SETTLE: Duration = Duration::from_secs(10);
/// The controller closes idle QUIC connections after 8 s and the agent
/// after 20 s: the agent notices a dead controller within that, plus slack.
const NOTICE: Duration = Duration::from_secs(40);

fn check(agent: &ManagedAgent, grace: &str) -> warren_lab::Result<Output> {
    command::output(&mut agent.command(["status", "--check", "--grace", grace]))
}

fn said(out: &Output) -> String {
    format!(
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_goes_unhealthy_when_the_controller_is_cut_off() {
    e2e("status_check::controller_cut_off", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "b"])?;
        let net = mesh.network_joined_by("watched", "10.164.0.0/16", &["a", "b"], SETTLE)?;
        let b4 = mesh.overlay_addr("b", &net, false)?;
        warren_lab::ping::wait_reachable(mesh.ns("a")?, b4, SETTLE)?;

        let out = check(mesh.agent("a")?, "30s")?;
        println!("healthy: {}", said(&out));
        ensure!(
            out.status.code() == Some(0) && String::from_utf8_lossy(&out.stdout) == "healthy\n",
            "{}",
            said(&out)
        );
        let human = wait::until("a's summary to show b direct", SETTLE, || {
            let human = mesh.agent("a")?.status_human()?;
            Ok(
                if human.contains("peers 1 direct, 0 relayed, 0 unreachable") {
                    Poll::Ready(human)
                } else {
                    Poll::Pending(human)
                },
            )
        })?;
        println!("{human}");
        ensure!(
            human
                .lines()
                .next()
                .is_some_and(|l| l.ends_with(": healthy"))
                && human.contains(&format!(
                    "controller {} connected",
                    mesh.controller.quic_addr()
                )),
            "the summary does not come first: {human}"
        );
        let b_line = human.lines().find(|l| l.trim_start().starts_with("b "));
        ensure!(
            b_line.is_some_and(|l| l.contains(&b4.to_string()) && l.contains("direct")),
            "no one-line peer entry for b: {human}"
        );

        mesh.controller.kill()?;
        let out = wait::until("status --check to fail", NOTICE, || {
            let out = check(mesh.agent("a")?, "2s")?;
            Ok(if out.status.code() == Some(3) {
                Poll::Ready(out)
            } else {
                Poll::Pending(said(&out))
            })
        })?;
        println!("unhealthy: {}", said(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            stdout.contains(&format!(
                "unhealthy: network {net}: controller {} unreachable",
                mesh.controller.quic_addr()
            )),
            "--check does not say what is wrong: {}",
            said(&out)
        );
        // Within the grace the same state is still healthy.
        let out = check(mesh.agent("a")?, "1h")?;
        ensure!(
            out.status.code() == Some(0),
            "grace ignored: {}",
            said(&out)
        );
        // The data plane runs on without the controller.
        warren_lab::ping::wait_reachable(mesh.ns("a")?, b4, SETTLE)?;

        mesh.restart_controller(lab)?;
        wait::until("status --check to pass again", NOTICE, || {
            let out = check(mesh.agent("a")?, "2s")?;
            Ok(if out.status.code() == Some(0) {
                Poll::Ready(())
            } else {
                Poll::Pending(said(&out))
            })
        })?;
        mesh.ensure_running()?;
        Ok(())
    });
}
