//! A data plane that dies, as a user sees it: the TUN device is deleted
//! under the agent's feet, the agent notices (its reads fail), `status`
//! shows the death and `status --check` fails, and the data plane comes
//! back by itself on the same address, so peers ping it again.

use std::time::Duration;

use anyhow::ensure;
use warren_lab::command;
use warren_lab::e2e;
use warren_lab::mesh::Mesh;
use warren_lab::ping;
use warren_lab::wait::Poll;

const SETTLE: Duration = Duration::from_secs(10);

#[test]
fn a_data_plane_whose_tun_vanishes_is_reported_and_restarted() {
    e2e("supervision::tun_vanishes", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "b"])?;
        let net = mesh.network_joined_by("sup", "10.164.0.0/16", &["a", "b"], SETTLE)?;
        let a4 = mesh.overlay_addr("a", &net, false)?;
        ping::wait_reachable(mesh.ns("b")?, a4, SETTLE)?;
        let interface = mesh
            .agent("a")?
            .status()?
            .network(&net)?
            .interface()
            .unwrap_or("warren0")
            .to_owned();

        mesh.ns("a")?.ip(["link", "del", &interface])?;
        // Seen dead (restart pending) or already back: either way the
        // death is on record.
        let status =
            mesh.agent_mut("a")?
                .wait_status("the data plane's death in status", SETTLE, |s| {
                    let deaths = s
                        .json
                        .pointer("/networks/0/data_plane/deaths")
                        .and_then(serde_json::Value::as_u64);
                    Ok(match deaths {
                        Some(n) if n >= 1 => Poll::Ready(s.clone()),
                        _ => Poll::Pending(s.json.to_string()),
                    })
                })?;
        println!("{}", status.json);
        let error = status
            .json
            .pointer("/networks/0/data_plane/last_error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        ensure!(
            error.contains("TUN"),
            "the death does not say what failed: {}",
            status.json
        );
        let check = command::output(&mut mesh.agent("a")?.command(["status", "--check"]))?;
        let said = String::from_utf8_lossy(&check.stdout).into_owned();
        println!("{said}");
        ensure!(
            check.status.code() == Some(3) && said.contains("data plane died"),
            "status --check does not report the death: {said}"
        );
        let human = mesh.agent("a")?.status_human()?;
        println!("{human}");
        ensure!(
            human.contains("data plane died 1 time(s)"),
            "`warren status` does not show the death: {human}"
        );

        // Back by itself, on the same interface and address.
        let status = mesh.agent_mut("a")?.wait_status(
            "the data plane to be back",
            Duration::from_secs(15),
            |s| {
                let net = s.network(&net)?;
                let back = net.state()? == "authorized"
                    && net.interface().is_some()
                    && s.json
                        .pointer("/networks/0/data_plane/restart_in_secs")
                        .is_none();
                Ok(if back {
                    Poll::Ready(s.clone())
                } else {
                    Poll::Pending(s.json.to_string())
                })
            },
        )?;
        ensure!(
            status.network(&net)?.ipv4()? == a4,
            "the restarted data plane is on another address: {}",
            status.json
        );
        let links = mesh.ns("a")?.ip(["-o", "link", "show"])?;
        ensure!(
            links.contains(&interface),
            "{interface} is not back: {links}"
        );
        ping::wait_reachable(mesh.ns("a")?, mesh.overlay_addr("b", &net, false)?, SETTLE)?;
        ping::wait_reachable(mesh.ns("b")?, a4, SETTLE)?;
        mesh.ensure_running()?;
        Ok(())
    });
}
