//! One agent in several networks of one controller: a TUN interface and a
//! working mesh per network, an overlapping pool refused with a clear
//! message (without harming the network it overlaps), and `warren leave`
//! taking the interface down and the node out of its peers' status.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::e2e;
use warren_lab::mesh::{ping_pairs, Mesh};
use warren_lab::ping::ping;
use warren_lab::wait::{self, Poll};
use warren_lab::Netns;

/// How long a join or a leave gets to reach every agent.
const SETTLE: Duration = Duration::from_secs(10);

/// Link names in `ns` (`ip -o link` lists "N: NAME[@PEER]: <...>").
fn links(ns: &Netns) -> warren_lab::Result<BTreeSet<String>> {
    let out = ns.ip(["-o", "link", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect())
}

fn pings_ok(mesh: &Mesh, net: &str) -> anyhow::Result<()> {
    let results = ping_pairs(mesh, net, &["x", "y"], 3)?;
    for r in &results {
        println!("[{net}] {} -> {}: {}", r.from, r.to, r.report.render());
        ensure!(
            r.ok(),
            "[{net}] {} -> {} ({}) lost replies",
            r.from,
            r.to,
            r.report.dst
        );
    }
    Ok(())
}

#[test]
fn two_networks_overlap_refused_and_leave() {
    e2e("networks::two_and_overlap", |lab| {
        let mut mesh = Mesh::build(lab, &["x", "y"])?;
        let ctl = &mesh.controller;
        let one = ctl.network_create("one", "10.147.0.0/16")?;
        let two = ctl.network_create("two", "10.148.0.0/16")?;
        let clash = ctl.network_create("clash", "10.147.0.0/16")?;
        let key_one = ctl.key_create(&one, true)?;
        let key_two = ctl.key_create(&two, true)?;
        let key_clash = ctl.key_create(&clash, true)?;
        for (net, key) in [(&one, &key_one), (&two, &key_two)] {
            for name in ["x", "y"] {
                mesh.join_ok(name, net, Some(key))?;
            }
        }
        for net in [&one, &two] {
            for name in ["x", "y"] {
                mesh.agent_mut(name)?
                    .wait_state(net, "authorized", SETTLE)?;
            }
        }

        // Two networks, two interfaces, each with its own pool.
        let status = mesh.agent("x")?.status()?;
        let if_one = status
            .network(&one)?
            .interface()
            .context("network one has no interface")?
            .to_owned();
        let if_two = status
            .network(&two)?
            .interface()
            .context("network two has no interface")?
            .to_owned();
        ensure!(if_one != if_two, "both networks on {if_one}");
        let x_links = links(mesh.ns("x")?)?;
        println!("x's links: {x_links:?}");
        ensure!(
            x_links.contains(&if_one) && x_links.contains(&if_two),
            "x's links {x_links:?} lack {if_one} or {if_two}"
        );
        let x_one = status.network(&one)?.ipv4()?;
        let x_two = status.network(&two)?.ipv4()?;
        ensure!(
            x_one.octets()[..2] == [10, 147] && x_two.octets()[..2] == [10, 148],
            "x's addresses {x_one} / {x_two} are not from the pools"
        );
        pings_ok(&mesh, &one)?;
        pings_ok(&mesh, &two)?;

        // A third network whose pool overlaps the first is refused.
        let out = mesh.join("x", &clash, Some(&key_clash))?;
        println!("{}", out.render());
        let status = mesh.agent_mut("x")?.wait_status(
            "the overlapping network to be refused",
            SETTLE,
            |s| {
                Ok(match s.find_network(&clash) {
                    None if !out.success() => Poll::Ready(s.clone()),
                    Some(n) if n.state()? == "conflict" => Poll::Ready(s.clone()),
                    Some(n) => Poll::Pending(format!("{} {:?}", n.state()?, n.message())),
                    None => Poll::Pending("not listed".into()),
                })
            },
        )?;
        let message = match status.find_network(&clash) {
            Some(n) => n.message().unwrap_or_default().to_owned(),
            None => format!("{} {}", out.stdout, out.stderr),
        };
        println!("overlap refused: {message}");
        ensure!(
            message.to_lowercase().contains("overlap"),
            "the refusal does not say the pools overlap: {message:?}"
        );
        if !out.success() {
            ensure!(
                out.stderr.to_lowercase().contains("overlap"),
                "`warren join` failed without saying why: {}",
                out.render()
            );
        }
        let after = links(mesh.ns("x")?)?;
        ensure!(
            after == x_links,
            "links changed with the refused network: {x_links:?} -> {after:?}"
        );
        ensure!(
            status.network(&one)?.state()? == "authorized",
            "network one is no longer authorized: {}",
            status.json
        );
        pings_ok(&mesh, &one).context("network one after the overlap was refused")?;

        // Leaving takes the interface down and x out of y's status.
        println!("{}", mesh.agent("x")?.leave(&one)?.trim());
        wait::until(format!("{if_one} to disappear"), SETTLE, || {
            let now = links(mesh.ns("x")?)?;
            Ok(if now.contains(&if_one) {
                Poll::Pending(format!("{now:?}"))
            } else {
                Poll::Ready(())
            })
        })?;
        ensure!(
            mesh.agent("x")?.status()?.find_network(&one).is_none(),
            "x still lists network one after leaving it"
        );
        let x_key = mesh.agent("x")?.public_key().to_owned();
        mesh.agent_mut("y")?
            .wait_status("x to leave y's peers in network one", SETTLE, |s| {
                let peers = s.peers_in(&one);
                Ok(
                    if peers.iter().any(|p| p.public_key() == Some(x_key.as_str())) {
                        Poll::Pending(format!("{} peers, x among them", peers.len()))
                    } else {
                        Poll::Ready(())
                    },
                )
            })?;
        let x_node = mesh.agent("x")?.node_id().to_owned();
        wait::until("x to leave network one's member list", SETTLE, || {
            let members = mesh.controller.members(&one)?;
            Ok(if members.iter().any(|m| m.node_id == x_node) {
                Poll::Pending(format!("{} members, x among them", members.len()))
            } else {
                Poll::Ready(())
            })
        })?;
        let y_two = mesh.overlay_addr("y", &two, false)?;
        let report = ping(
            mesh.ns("x")?,
            y_two,
            3,
            Duration::from_millis(100),
            Duration::from_secs(2),
        )?;
        ensure!(
            report.received == 3,
            "network two after leaving one:\n{}",
            report.render()
        );
        mesh.ensure_running()?;
        Ok(())
    });
}
