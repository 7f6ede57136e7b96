//! `warren down` and `warren up` as a user types them: down takes the
//! interface and the peers away but keeps the membership, address and name
//! (also across a daemon restart), `status` shows the network as down and
//! `status --check` does not count it as a problem; up brings it back on
//! the same overlay address and the peers ping it again.

use std::time::Duration;

use anyhow::ensure;
use warren_lab::command;
use warren_lab::e2e;
use warren_lab::mesh::Mesh;
use warren_lab::ping;

const SETTLE: Duration = Duration::from_secs(10);

#[test]
fn down_and_up_keep_the_membership_and_the_address() {
    e2e("updown::keep_address", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "b"])?;
        let net = mesh.network_joined_by("updown", "10.163.0.0/16", &["a", "b"], SETTLE)?;
        let a4 = mesh.overlay_addr("a", &net, false)?;
        let a6 = mesh.overlay_addr("a", &net, true)?;
        let a_node = mesh.agent("a")?.node_id().to_owned();
        ping::wait_reachable(mesh.ns("b")?, a4, SETTLE)?;

        let down = command::run_stdout(&mut mesh.agent("a")?.command(["down", &net]))?;
        println!("{down}");
        ensure!(
            down.contains("is down") && down.contains(&format!("{a4}/")),
            "`warren down` should say what stays: {down}"
        );
        let status = mesh.agent_mut("a")?.wait_state(&net, "down", SETTLE)?;
        let shown = status.network(&net)?;
        ensure!(
            shown.interface().is_none() && status.peers_in(&net).is_empty(),
            "a down network keeps its interface or peers: {}",
            status.json
        );
        ensure!(
            shown.ipv4()? == a4,
            "status of a down network lost its address: {}",
            status.json
        );
        let links = mesh.ns("a")?.ip(["-o", "link", "show"])?;
        ensure!(
            !links.contains("warren0"),
            "warren0 is still there: {links}"
        );
        let human = mesh.agent("a")?.status_human()?;
        println!("{human}");
        ensure!(
            human.contains(&format!("network {net} updown: down")),
            "`warren status` does not show the network down: {human}"
        );
        let check = command::output(&mut mesh.agent("a")?.command(["status", "--check"]))?;
        ensure!(
            check.status.success(),
            "a network taken down on purpose made the agent unhealthy: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        // Still a member at the controller: down is not leave.
        let member = mesh.controller.member(&net, &a_node)?;
        ensure!(
            member.authorized,
            "down gave up the membership: {}",
            member.json
        );
        ensure!(
            ping::ping(
                mesh.ns("b")?,
                a4,
                2,
                Duration::from_millis(100),
                Duration::from_secs(1)
            )?
            .received
                == 0,
            "b still reaches a while a is down"
        );

        // A restart keeps it down.
        mesh.restart_agent(lab, "a")?;
        std::thread::sleep(Duration::from_secs(1));
        let status = mesh.agent("a")?.status()?;
        ensure!(
            status.network(&net)?.state()? == "down",
            "a restart brought the network up: {}",
            status.json
        );

        let up = command::output(&mut mesh.agent("a")?.command(["up", &net]))?;
        let stdout = String::from_utf8_lossy(&up.stdout);
        println!("up: {stdout} {}", String::from_utf8_lossy(&up.stderr));
        ensure!(
            up.status.success() && stdout.starts_with("joined"),
            "`warren up` did not come up: {stdout}"
        );
        let status = mesh
            .agent_mut("a")?
            .wait_state(&net, "authorized", SETTLE)?;
        let back = status.network(&net)?;
        ensure!(
            back.ipv4()? == a4 && back.ipv6()? == a6,
            "a came back on another address: {} (was {a4}, {a6})",
            status.json
        );
        // Traffic from a starts a new session at once; b's old session
        // with a died with a's interface, as across a restart (b alone
        // would find out only at WireGuard's rekey timeout).
        ping::wait_reachable(mesh.ns("a")?, mesh.overlay_addr("b", &net, false)?, SETTLE)?;
        ping::wait_reachable(mesh.ns("b")?, a4, SETTLE)?;
        mesh.ensure_running()?;
        Ok(())
    });
}
