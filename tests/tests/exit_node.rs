//! Exit nodes, end to end with the real binaries: a member offers
//! `0.0.0.0/0`, an admin approves it, and a laptop behind its own NAT sends
//! its default traffic there. The internet's web server then sees the exit
//! site's address; excluded prefixes still go the laptop's own way; the
//! tunnel itself (peers, controller) keeps working, because the agent's
//! own packets never enter it. `exit-node off`, a clean stop and a crash
//! followed by a restart all leave no route or rule behind.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use warren_lab::command;
use warren_lab::ping::Pinger;
use warren_lab::routes_lab::{fetch, Fetched, RoutesLab, Site, SiteSpec, WEB, WEB_EXCLUDED};
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, Netns};

const SETTLE: Duration = Duration::from_secs(15);

fn web(addr: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(addr.into(), 80)
}

/// Waits until `site` fetches `addr` and is seen from `from`.
fn seen_from(site: &Site, addr: Ipv4Addr, from: Ipv4Addr) -> anyhow::Result<Fetched> {
    let what = format!("{} to reach http://{addr}/ as {from}", site.name);
    Ok(wait::until(what, SETTLE, || {
        Ok(
            match fetch(&site.host, web(addr), Duration::from_secs(1))? {
                Ok(f) if f.seen_from == std::net::IpAddr::V4(from) => Poll::Ready(f),
                Ok(f) => Poll::Pending(format!("seen from {}", f.seen_from)),
                Err(why) => Poll::Pending(why),
            },
        )
    })?)
}

/// `ip rule` and Warren's table in `ns`.
fn policy(ns: &Netns) -> anyhow::Result<(String, String)> {
    let rules = ns.ip(["-4", "rule", "show"])?;
    let table = ns
        .ip(["-4", "route", "show", "table", "22354"])
        .unwrap_or_default();
    Ok((rules, table))
}

fn assert_clean(ns: &Netns, when: &str) -> anyhow::Result<()> {
    let (rules, table) = policy(ns)?;
    ensure!(
        !rules.contains("22354")
            && !rules.contains("0x5752")
            && !rules.contains("suppress_prefixlength"),
        "rules left {when}:\n{rules}"
    );
    ensure!(table.trim().is_empty(), "routes left {when}:\n{table}");
    let nft = ns.output("nft", ["list", "tables"])?;
    ensure!(!nft.contains("inet warren"), "filter left {when}: {nft}");
    Ok(())
}

fn tunnel_works(world: &RoutesLab, laptop: &Site, exit: &Site) -> anyhow::Result<()> {
    let exit_ip = exit.overlay_v4(&world.network)?;
    let pinger = Pinger::open(&laptop.host, exit_ip.into())?;
    let mut answered = 0;
    for seq in 1..=10 {
        if pinger.ping_once(seq, Duration::from_millis(500))?.is_some() {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    ensure!(
        answered >= 8,
        "only {answered}/10 pings to the exit node over the overlay"
    );
    let status = laptop.agent.status()?;
    ensure!(
        status.network(&world.network)?.controller_connected()?,
        "the laptop lost its controller"
    );
    Ok(())
}

#[test]
fn a_laptop_uses_an_exit_node_without_looping_its_tunnel() {
    e2e(
        "a_laptop_uses_an_exit_node_without_looping_its_tunnel",
        |lab| {
            let mut world = RoutesLab::build(
                lab,
                &[SiteSpec::master("exit", None), SiteSpec::laptop("laptop")],
            )?;
            world.join("exit")?;
            world.join("laptop")?;
            let (exit_wan, laptop_wan) = (world.site("exit")?.wan(), world.site("laptop")?.wan());
            {
                let exit = world.site("exit")?;
                let laptop = world.site("laptop")?;
                // Without an exit node the laptop goes out through its own NAT.
                seen_from(laptop, WEB, laptop_wan)?;
                exit.warren(["routes", "advertise", "0.0.0.0/0", "::/0"])?;
                // Not approved yet: the laptop cannot use it.
                let mut cmd = laptop.agent.command(["exit-node", "use", "exit"]);
                let out = command::output(&mut cmd)?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                ensure!(
                    !out.status.success() && stderr.contains("offers no approved exit route"),
                    "exit-node use before approval: {} {stderr}",
                    out.status
                );
                world.approve("exit", "0.0.0.0/0")?;
                world.approve("exit", "::/0")?;
                wait::until("the laptop to see the exit offer", SETTLE, || {
                    let routes = laptop.routes()?;
                    let offered = routes
                        .pointer("/networks/0/exit_nodes/0/prefixes")
                        .and_then(|p| p.as_array())
                        .is_some_and(|p| p.len() == 2);
                    Ok(if offered {
                        Poll::Ready(())
                    } else {
                        Poll::Pending(routes.to_string())
                    })
                })?;
                let shown =
                    laptop.warren(["exit-node", "use", "exit", "--exclude", "198.51.100.0/24"])?;
                println!("exit-node use:\n{shown}");
                let got = seen_from(laptop, WEB, exit_wan)?;
                println!("through the exit node: {got:?}");
                let got = seen_from(laptop, WEB_EXCLUDED, laptop_wan)?;
                println!("excluded prefix: {got:?}");
                let (rules, table) = policy(&laptop.host)?;
                println!("laptop rules:\n{rules}\nlaptop table 22354:\n{table}");
                ensure!(table.contains("default dev warren0"), "{table}");
                // The tunnel keeps working and the controller stays connected,
                // for longer than a keepalive round.
                tunnel_works(&world, laptop, exit)?;
                std::thread::sleep(Duration::from_secs(6));
                tunnel_works(&world, laptop, exit)?;
                seen_from(laptop, WEB, exit_wan)?;
                let listed = laptop.warren(["exit-node", "list"])?;
                ensure!(listed.contains("active"), "{listed}");

                // Off: back to the laptop's own way out, nothing left behind.
                laptop.warren(["exit-node", "off"])?;
                seen_from(laptop, WEB, laptop_wan)?;
                let (rules, table) = policy(&laptop.host)?;
                ensure!(table.trim().is_empty(), "table after off: {table}");
                ensure!(!rules.contains("22354"), "rules after off: {rules}");
            }

            // A crash leaves the policy in place; the next start removes it
            // before it installs again from the saved choice.
            world.site("laptop")?.warren(["exit-node", "use", "exit"])?;
            seen_from(world.site("laptop")?, WEB, exit_wan)?;
            let laptop = world.site_mut("laptop")?;
            laptop
                .agent
                .process()
                .context("laptop agent")?
                .signal("KILL")?;
            std::thread::sleep(Duration::from_millis(500));
            let (rules, _) = policy(&laptop.host)?;
            ensure!(
                rules.contains("22354"),
                "a crash should leave the rules: {rules}"
            );
            laptop.agent.restart(lab, &laptop.host)?;
            let laptop = world.site("laptop")?;
            seen_from(laptop, WEB, exit_wan)?;
            let (rules, _) = policy(&laptop.host)?;
            let tables = rules.matches("lookup 22354").count();
            ensure!(tables == 1, "after restart: {tables} table rules:\n{rules}");
            let installed = laptop.agent.state_dir().join("routes-installed.json");
            ensure!(
                installed.exists(),
                "no record of installed routes at {}",
                installed.display()
            );

            // A clean stop removes everything.
            let laptop = world.site_mut("laptop")?;
            laptop.agent.stop()?;
            assert_clean(&laptop.host, "after a clean stop")?;
            ensure!(!installed.exists(), "the record outlived a clean stop");
            if laptop.host.ip(["link", "show", "warren0"]).is_ok() {
                bail!("the TUN outlived a clean stop");
            }
            Ok(())
        },
    );
}
