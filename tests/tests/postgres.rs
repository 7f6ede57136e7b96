//! The controller keeps its state in PostgreSQL, end to end. The test
//! starts Debian's PostgreSQL server (as the `postgres` user, in a
//! temporary directory); the controller runs in a lab namespace with
//! `serve --database` and reaches the server over its Unix socket. Three
//! agents join (one with a key, two by approval) and ping each other.
//! - The controller is killed (SIGKILL) and started again on the same
//!   database: every member is still there with its address, the agents
//!   reconnect, and a revocation made afterwards reaches its member.
//! - PostgreSQL is killed under the running controller and started again:
//!   a write meanwhile is refused, not acknowledged; the controller
//!   reconnects, the next write succeeds, nothing is lost, and the audit
//!   chain verifies.

use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::e2e;
use warren_lab::mesh::{ping_pairs, Mesh};
use warren_lab::postgres::Postgres;
use warren_lab::wait::{self, Poll};

const POOL: &str = "10.147.0.0/16";
const SETTLE: Duration = Duration::from_secs(10);

fn all_ping(mesh: &Mesh, net: &str, names: &[&str]) -> anyhow::Result<()> {
    let results = ping_pairs(mesh, net, names, 3)?;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{} -> {}: {}", r.from, r.to, r.report.render()))
        .collect();
    ensure!(failed.is_empty(), "pings failed: {}", failed.join("; "));
    Ok(())
}

/// Members as `name state address`, sorted, from `member list`.
fn member_lines(mesh: &Mesh, net: &str) -> anyhow::Result<Vec<String>> {
    let mut lines: Vec<String> = mesh
        .controller
        .members(net)?
        .iter()
        .map(|m| format!("{} {} {:?}", m.name, m.state, m.addresses))
        .collect();
    lines.sort();
    Ok(lines)
}

#[test]
fn the_controller_keeps_its_state_in_postgresql() {
    e2e("postgres::controller", |lab| {
        let mut postgres = Postgres::start().context("starting PostgreSQL")?;
        postgres.create_database("warren")?;
        let url = postgres.socket_url("warren");
        let mut mesh = Mesh::build_with_controller(lab, &["a", "b", "c"], &["--database", &url])?;
        let net = mesh.controller.network_create("lab", POOL)?;
        let key = mesh.controller.key_create(&net, false)?;
        mesh.join_ok("a", &net, Some(&key))?;
        for name in ["b", "c"] {
            mesh.join_ok(name, &net, None)?;
            mesh.agent_mut(name)?.wait_state(&net, "pending", SETTLE)?;
            let node = mesh.agent(name)?.node_id().to_owned();
            mesh.controller.authorize(&net, &node)?;
        }
        for name in ["a", "b", "c"] {
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
        }
        all_ping(&mesh, &net, &["a", "b", "c"])?;
        // The state is in PostgreSQL, not in a SQLite file beside it.
        let stored = postgres.sql("warren", "SELECT count(*) FROM members")?;
        ensure!(stored == "3", "members rows in PostgreSQL: {stored:?}");
        ensure!(
            !mesh.controller.data_dir().join("controller.db").exists(),
            "the controller made a SQLite database although it runs on PostgreSQL"
        );

        // A crash of the controller loses nothing.
        let before = member_lines(&mesh, &net)?;
        mesh.controller.kill()?;
        mesh.restart_controller(lab)?;
        let after = member_lines(&mesh, &net)?;
        ensure!(
            before == after,
            "members changed across a restart:\n{before:?}\n{after:?}"
        );
        wait::until("every member back online", SETTLE * 2, || {
            let members = mesh.controller.members(&net)?;
            Ok(if members.iter().all(|m| m.online) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{members:?}"))
            })
        })?;
        let c = mesh.agent("c")?.node_id().to_owned();
        mesh.controller.revoke(&net, &c)?;
        mesh.agent_mut("c")?.wait_state(&net, "refused", SETTLE)?;
        all_ping(&mesh, &net, &["a", "b"])?;

        // PostgreSQL itself crashes and comes back under the controller.
        postgres.kill()?;
        let refused = mesh.controller.admin_output(&[
            "network",
            "create",
            "down",
            "--pool",
            "10.148.0.0/16",
        ])?;
        let said = String::from_utf8_lossy(&refused.stderr);
        ensure!(
            !refused.status.success() && said.contains("database is unavailable"),
            "a write with PostgreSQL down: {:?}, {said}",
            refused.status
        );
        postgres.resume()?;
        let second = wait::until("a write after PostgreSQL is back", SETTLE * 3, || {
            let out = mesh.controller.admin_output(&[
                "network",
                "create",
                "after",
                "--pool",
                "10.149.0.0/16",
            ])?;
            Ok(if out.status.success() {
                Poll::Ready(())
            } else {
                Poll::Pending(String::from_utf8_lossy(&out.stderr).into_owned())
            })
        });
        second?;
        let c_now = mesh.controller.member(&net, &c)?;
        ensure!(c_now.state == "revoked", "c after the restarts: {c_now:?}");
        all_ping(&mesh, &net, &["a", "b"])?;
        let verify = mesh.controller.audit_verify()?;
        println!("audit verify: {}", verify.trim());
        mesh.ensure_running()?;
        Ok(())
    });
}
