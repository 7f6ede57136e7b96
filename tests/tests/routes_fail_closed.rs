//! A subnet router fails closed: when its nftables filter cannot be
//! installed (here a fake `nft` first in the daemon's PATH that always
//! fails), it installs and advertises no route, and `warren routes list`
//! and `warren status` say why. With a working `nft` again the same route
//! is advertised, so the check is not vacuous.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::ensure;
use serde_json::Value;
use warren_lab::e2e;
use warren_lab::routes_lab::{fetch, RoutesLab, SiteSpec};
use warren_lab::wait::{self, Poll};

const SERVICE_A: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const RANGE_A: &str = "10.96.0.0/12";
/// How long an advertisement gets to reach the controller.
const SETTLE: Duration = Duration::from_secs(15);
/// How long the fail-closed router is watched for an advertisement.
const HOLD: Duration = Duration::from_secs(6);

const FAKE_NFT: &str =
    "#!/bin/sh\necho 'nft: fake failure (routes_fail_closed suite)' >&2\nexit 1\n";

/// Whether the controller lists `RANGE_A` among the network's routes.
fn advertised(world: &RoutesLab) -> anyhow::Result<bool> {
    let listed = world
        .admin(["route", "list", &world.network])
        .map_err(anyhow::Error::msg)?;
    Ok(listed.contains(RANGE_A))
}

#[test]
fn a_subnet_router_without_its_filter_installs_and_advertises_no_route() {
    e2e("routes_fail_closed", |lab| {
        let mut world = RoutesLab::build(
            lab,
            &[
                SiteSpec::master("a", Some((RANGE_A, "10.96.0.10".parse()?))),
                SiteSpec::laptop("laptop"),
            ],
        )?;
        let fake = lab.subdir("fake-nft")?;
        let nft = fake.join("nft");
        std::fs::write(&nft, FAKE_NFT)?;
        std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755))?;
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", fake.display());
        {
            let site = world.site_mut("a")?;
            site.agent.set_daemon_env("PATH", Some(&path));
            site.agent.restart(lab, &site.host)?;
        }
        world.join("a")?;
        world.join("laptop")?;
        let master = world.site("a")?;
        let laptop = world.site("laptop")?;
        laptop.warren(["routes", "accept", "on"])?;
        master.warren(["routes", "advertise", RANGE_A])?;

        // Nothing reaches the controller, so no peer is ever pointed at it.
        let deadline = std::time::Instant::now() + HOLD;
        while std::time::Instant::now() < deadline {
            ensure!(
                !advertised(&world)?,
                "the router advertised {RANGE_A} without a filter"
            );
            std::thread::sleep(Duration::from_millis(500));
        }

        // Both read commands say why.
        let routes = master.routes()?;
        let error = routes.get("error").and_then(Value::as_str).unwrap_or("");
        ensure!(
            error.contains("nftables filter failed") && error.contains("no route"),
            "routes list does not say the filter failed: {routes}"
        );
        ensure!(
            routes.pointer("/filter/active") == Some(&Value::Bool(false)),
            "filter shown active: {routes}"
        );
        let status = master.agent.status()?;
        let net = status.network(&world.network)?;
        ensure!(
            net.message()
                .is_some_and(|m| m.contains("nftables filter failed")),
            "status does not say why routes are withheld: {}",
            status.json
        );
        println!("fail closed: {error}");
        let human = master.warren(["routes", "list"])?;
        ensure!(
            human.contains("nftables filter failed"),
            "routes list: {human}"
        );

        // A working nft: the same advertisement goes out.
        {
            let site = world.site_mut("a")?;
            site.agent.set_daemon_env("PATH", None);
            site.agent.restart(lab, &site.host)?;
        }
        wait::until("the route to reach the controller", SETTLE, || {
            Ok(match advertised(&world) {
                Ok(true) => Poll::Ready(()),
                Ok(false) => Poll::Pending("not listed".to_owned()),
                Err(e) => Poll::Pending(format!("{e:#}")),
            })
        })?;
        world.approve("a", RANGE_A)?;
        let laptop = world.site("laptop")?;
        wait::until("the laptop to reach the service", SETTLE, || {
            Ok(
                match fetch(&laptop.host, (SERVICE_A, 80).into(), Duration::from_secs(1))? {
                    Ok(_) => Poll::Ready(()),
                    Err(why) => Poll::Pending(why),
                },
            )
        })?;
        println!("with the filter back: advertised, approved, reachable");
        Ok(())
    });
}
