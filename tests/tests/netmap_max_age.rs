//! Cached netmaps have a maximum age, end to end: two agents run with
//! `--netmap-max-age` of a few seconds. With the controller killed they
//! keep working until the map they hold is that old, then stop trusting
//! their peers (no peers, pings fail, `warren status` says why). When the
//! controller is back they recover. A restart while stale does not bring
//! the old map back.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use warren_lab::e2e;
use warren_lab::mesh::{ping_pairs, Mesh};
use warren_lab::ping::Pinger;
use warren_lab::Netns;

const POOL: &str = "10.147.0.0/16";

/// The maximum age the agents run with.
const MAX_AGE: &str = "8s";

/// How long a join gets to reach an agent.
const SETTLE: Duration = Duration::from_secs(10);

/// From the kill until both agents say stale: the QUIC idle timeout that
/// tells them the controller is gone (8 s), the maximum age, a check
/// interval and slack.
const STALE_WITHIN: Duration = Duration::from_secs(40);

/// How long the agents get to come back once the controller is.
const RECOVER_WITHIN: Duration = Duration::from_secs(45);

fn assert_pings(mesh: &Mesh, net: &str, when: &str) -> anyhow::Result<()> {
    let results = ping_pairs(mesh, net, &["a", "b"], 2)?;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{} -> {} ({})", r.from, r.to, r.report.render()))
        .collect();
    ensure!(
        failed.is_empty(),
        "{when}: pings failed: {}",
        failed.join("; ")
    );
    println!("{when}: pings ok");
    Ok(())
}

/// Whether any of a few echoes from `ns` to `dst` is answered.
fn answers(ns: &Netns, dst: IpAddr) -> anyhow::Result<bool> {
    let pinger = Pinger::open(ns, dst)?;
    for seq in 0..3 {
        if pinger.ping_once(seq, Duration::from_millis(500))?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

#[test]
fn a_netmap_past_its_max_age_is_not_trusted_until_the_controller_confirms_it() {
    e2e("netmap_max_age::outage", |lab| {
        let mut mesh = Mesh::build_with(lab, &["a", "b"], &["--netmap-max-age", MAX_AGE])?;
        let net = mesh.controller.network_create("lab", POOL)?;
        let key = mesh.controller.key_create(&net, true)?;
        for name in ["a", "b"] {
            mesh.join_ok(name, &net, Some(&key))?;
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
        }
        assert_pings(&mesh, &net, "with the controller up")?;
        let b4 = mesh.overlay_addr("b", &net, false)?;

        mesh.controller.kill()?;
        let killed = Instant::now();
        println!("controller killed");
        // Well within the maximum age (and before the agents even know the
        // controller is gone): nothing changes.
        std::thread::sleep(Duration::from_secs(3));
        assert_pings(&mesh, &net, "3 s into the outage")?;

        for name in ["a", "b"] {
            let status = mesh
                .agent_mut(name)?
                .wait_state(&net, "stale", STALE_WITHIN)?;
            let n = status.network(&net)?;
            println!(
                "{name} stale {:?} after the kill: {}",
                killed.elapsed(),
                n.message().unwrap_or("")
            );
            ensure!(
                n.message().is_some_and(|m| m.contains("netmap-max-age")),
                "{name}'s status does not say why the network is stale: {}",
                status.json
            );
            ensure!(
                status.peers_in(&net).is_empty(),
                "{name} still lists peers in a stale network: {}",
                status.json
            );
        }
        if killed.elapsed() < Duration::from_secs(8) {
            bail!(
                "stale after {:?}, before the maximum age of {MAX_AGE} could pass",
                killed.elapsed()
            );
        }
        ensure!(
            !answers(mesh.ns("a")?, b4)?,
            "a still reaches b over the overlay with a stale netmap"
        );

        // A restart without the controller does not make the old map young:
        // the agent does not even start the data plane from it.
        mesh.restart_agent(lab, "a")?;
        std::thread::sleep(Duration::from_secs(2));
        let status = mesh.agent("a")?.status()?;
        let state = status.network(&net)?.state()?.to_owned();
        ensure!(
            state == "stale" && status.peers_in(&net).is_empty(),
            "after a restart a's network is {state}: {}",
            status.json
        );
        let log = mesh
            .agent_mut("a")?
            .process()
            .map(|p| p.stderr())
            .unwrap_or_default();
        ensure!(
            log.contains("cached netmap is past netmap-max-age")
                && !log.contains("using cached netmap"),
            "after a restart a brought the stale map back:\n{}",
            warren_lab::process::tail(&log, 30)
        );

        mesh.restart_controller(lab)?;
        println!("controller back");
        for name in ["a", "b"] {
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", RECOVER_WITHIN)?;
        }
        assert_pings(&mesh, &net, "with the controller back")?;
        Ok(())
    });
}
