//! `warren join` as a user types it, and what it says back: each way a
//! join fails has its own exit code and a message that names the cause
//! (controller unreachable 10, certificate mismatch 11, refused or revoked
//! 12, bad key 13, no answer 14); a pending join prints the node ID and the
//! admin's exact command, which works when run; joining without a
//! fingerprint needs `--trust-first-use` and prints the certificate it
//! pinned; a second join with corrected flags takes them, and one that
//! would change what the controller holds is refused with the reason.

use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::command;
use warren_lab::e2e;
use warren_lab::managed::ManagedAgent;
use warren_lab::mesh::Mesh;

const SETTLE: Duration = Duration::from_secs(10);
const POOL: &str = "10.161.0.0/16";
/// A network ID no controller has.
const NO_SUCH_NETWORK: &str = "0123456789abcdef";

/// `warren join NET ARGS...` on `agent` (named after the agent unless
/// ARGS name it): how it exited and what it said.
fn join(agent: &ManagedAgent, net: &str, args: &[&str]) -> anyhow::Result<Output> {
    let mut all = vec!["join", net];
    if !args.contains(&"--name") {
        all.extend(["--name", agent.name()]);
    }
    all.extend_from_slice(args);
    Ok(command::output(&mut agent.command(&all))?)
}

/// `warren join NET --controller CONTROLLER --fingerprint FP EXTRA...`.
fn join_via(
    agent: &ManagedAgent,
    net: &str,
    controller: &str,
    fp: &str,
    extra: &[&str],
) -> anyhow::Result<Output> {
    let mut args = vec!["--controller", controller, "--fingerprint", fp];
    args.extend_from_slice(extra);
    join(agent, net, &args)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// The join exited with `code` and said `why` on stderr.
fn fails(out: &Output, code: i32, why: &str) -> anyhow::Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(code) && stderr.contains(why),
        "expected exit {code} saying {why:?}: {}",
        text(out)
    );
    Ok(())
}

#[test]
fn each_failed_join_has_its_own_exit_code_and_says_why() {
    e2e("join::failures", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "b"])?;
        let net = mesh.controller.network_create("honest", POOL)?;
        let other = mesh.controller.network_create("other", "10.162.0.0/16")?;
        let key = mesh.controller.key_create(&net, true)?;
        let addr = mesh.controller.quic_addr().to_string();
        let fp = mesh.controller.fingerprint().to_owned();
        // Nothing listens on this port of the controller's host.
        let nowhere = format!("{}:7999", mesh.controller.quic_addr().ip());
        let a = mesh.agent("a")?;

        let out = join_via(a, &net, &nowhere, &fp, &["--wait", "3s"])?;
        println!("unreachable: {}", text(&out));
        fails(
            &out,
            10,
            &format!("could not reach the controller at {nowhere} within 3s"),
        )?;

        // Corrected on a second run: the agent takes the new controller.
        let wrong = "00".repeat(32);
        let out = join_via(a, &net, &addr, &wrong, &[])?;
        println!("wrong fingerprint: {}", text(&out));
        fails(&out, 11, "another certificate than the one pinned")?;
        ensure!(
            String::from_utf8_lossy(&out.stderr)
                .contains(&format!("controller {nowhere} -> {addr}")),
            "the second join did not say it moved the network: {}",
            text(&out)
        );

        let out = join_via(a, &net, &addr, &fp, &["--key", "wk_not-a-key"])?;
        println!("bad key: {}", text(&out));
        fails(&out, 13, "refused the pre-auth key")?;
        ensure!(
            String::from_utf8_lossy(&out.stderr).contains("fingerprint -> "),
            "the corrected fingerprint was not reported: {}",
            text(&out)
        );

        let out = join_via(a, NO_SUCH_NETWORK, &addr, &fp, &[])?;
        println!("unknown network: {}", text(&out));
        fails(&out, 12, &format!("has no network {NO_SUCH_NETWORK}"))?;

        // With a good key at last: up, exit 0.
        let out = join_via(a, &net, &addr, &fp, &["--key", &key])?;
        println!("good key: {}", text(&out));
        ensure!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("joined"),
            "{}",
            text(&out)
        );

        // Revoked, the same join is refused.
        let a_node = a.node_id().to_owned();
        mesh.controller.revoke(&net, &a_node)?;
        mesh.agent_mut("a")?.wait_state(&net, "refused", SETTLE)?;
        let a = mesh.agent("a")?;
        let out = join_via(a, &net, &addr, &fp, &["--key", &key])?;
        println!("revoked: {}", text(&out));
        fails(&out, 12, "revoked")?;

        // No answer: b is connected through one network when the
        // controller freezes, and asks for another.
        let b = mesh.agent("b")?;
        let out = join_via(b, &net, &addr, &fp, &["--key", &key])?;
        ensure!(out.status.success(), "{}", text(&out));
        mesh.controller.signal("STOP")?;
        let b = mesh.agent("b")?;
        let out = join_via(b, &other, &addr, &fp, &["--wait", "2s"]);
        mesh.controller.signal("CONT")?;
        let out = out?;
        println!("no answer: {}", text(&out));
        fails(&out, 14, "did not answer")?;
        mesh.ensure_running()?;
        Ok(())
    });
}

#[test]
fn pending_prints_the_approve_command_and_first_use_prints_the_pin() {
    e2e("join::pending_and_first_use", |lab| {
        let mut mesh = Mesh::build(lab, &["p"])?;
        let net = mesh.controller.network_create("waiting", POOL)?;
        let addr = mesh.controller.quic_addr().to_string();
        let p = mesh.agent("p")?;

        // No fingerprint and no say-so: a usage error, nothing joined.
        let out = join(p, &net, &["--controller", &addr])?;
        println!("no fingerprint: {}", text(&out));
        ensure!(
            out.status.code() == Some(2)
                && String::from_utf8_lossy(&out.stderr).contains("--trust-first-use"),
            "{}",
            text(&out)
        );
        ensure!(p.status()?.find_network(&net).is_none(), "joined anyway");

        let out = join(p, &net, &["--controller", &addr, "--trust-first-use"])?;
        println!("pending, first use: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let node = p.node_id().to_owned();
        ensure!(out.status.success(), "{}", text(&out));
        ensure!(
            stdout.contains(&format!("node ID {node}")) && stdout.contains("waiting for an admin"),
            "no node ID in: {}",
            text(&out)
        );
        ensure!(
            stderr.contains("pinned") && stderr.contains(mesh.controller.fingerprint()),
            "the pinned certificate was not printed: {}",
            text(&out)
        );
        let shown = p.status()?;
        ensure!(
            shown.network(&net)?.0["fingerprint"] == mesh.controller.fingerprint(),
            "status does not show the pin: {}",
            shown.json
        );

        // The command as printed is the one that works.
        let line = stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("warren-controller member authorize"))
            .with_context(|| format!("no approve command in {stdout}"))?;
        ensure!(
            line == format!("warren-controller member authorize {net} {node}"),
            "{line}"
        );
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        mesh.controller.admin(&words)?;
        mesh.agent_mut("p")?
            .wait_state(&net, "authorized", SETTLE)?;

        // A member's name is the controller's: a new --name is refused
        // with the admin's command; the same join again changes nothing.
        let p = mesh.agent("p")?;
        let fp = mesh.controller.fingerprint().to_owned();
        let out = join_via(p, &net, &addr, &fp, &["--name", "renamed"])?;
        println!("rename: {}", text(&out));
        fails(
            &out,
            1,
            &format!("warren-controller member rename {net} {node} renamed"),
        )?;
        let out = join_via(p, &net, &addr, &fp, &[])?;
        ensure!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("joined"),
            "the same join again: {}",
            text(&out)
        );
        mesh.ensure_running()?;
        Ok(())
    });
}
