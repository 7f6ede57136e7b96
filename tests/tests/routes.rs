//! Subnet routes, end to end with the real binaries: a master agent in
//! front of a "cluster" whose service address answers HTTP, laptops behind
//! their own NATs. A laptop reaches the service only after the master
//! advertised the range, an admin approved it and the laptop accepted
//! routes; never before, and no longer after revocation or `accept off`.
//! Hosts on the master's LAN cannot send into the overlay (dropped and
//! counted). Two masters bridge their clusters (site to site). Two routers
//! for one prefix fail over within 15 s. An IPv6 range routes like an IPv4
//! one, masquerade included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::Value;
use warren_lab::routes_lab::{fetch, Fetched, RoutesLab, Site, SiteSpec};
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, Lab};

const SERVICE_A: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SERVICE_B: Ipv4Addr = Ipv4Addr::new(10, 112, 0, 10);
const RANGE_A: &str = "10.96.0.0/12";
const RANGE_B: &str = "10.112.0.0/12";
/// A dual-stack cluster's IPv6 service range and a service in it.
const RANGE6_A: &str = "fd00:96::/64";
const SERVICE6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0x10);

/// How long a change (approval, acceptance) gets to take effect.
const SETTLE: Duration = Duration::from_secs(15);
/// The bound on fail-over.
const FAILOVER_WITHIN: Duration = Duration::from_secs(15);

fn service(addr: impl Into<IpAddr>) -> SocketAddr {
    SocketAddr::new(addr.into(), 80)
}

/// Waits until `site` fetches `addr` and returns what answered.
fn reaches(site: &Site, addr: impl Into<IpAddr>, within: Duration) -> anyhow::Result<Fetched> {
    let addr = addr.into();
    let what = format!("{} to fetch http://{addr}/", site.name);
    Ok(wait::until(what, within, || {
        Ok(
            match fetch(&site.host, service(addr), Duration::from_secs(1))? {
                Ok(f) => Poll::Ready(f),
                Err(why) => Poll::Pending(why),
            },
        )
    })?)
}

/// Fetches `addr` from `site` repeatedly for `hold`; fails on any answer.
fn never_reaches(site: &Site, addr: impl Into<IpAddr>, hold: Duration) -> anyhow::Result<()> {
    let addr = addr.into();
    let until = Instant::now() + hold;
    while Instant::now() < until {
        if let Ok(f) = fetch(&site.host, service(addr), Duration::from_millis(700))? {
            bail!(
                "{} reached http://{addr}/ and should not have: {f:?}",
                site.name
            );
        }
    }
    Ok(())
}

/// Waits until `site` no longer reaches `addr`.
fn loses(site: &Site, addr: impl Into<IpAddr>, within: Duration) -> anyhow::Result<()> {
    let addr = addr.into();
    let what = format!("{} to lose http://{addr}/", site.name);
    wait::until(what, within, || {
        Ok(
            match fetch(&site.host, service(addr), Duration::from_millis(700))? {
                Ok(f) => Poll::Pending(format!("still answered by {f:?}")),
                Err(_) => Poll::Ready(()),
            },
        )
    })?;
    never_reaches(site, addr, Duration::from_secs(2))
}

fn filter_drops(site: &Site) -> warren_lab::Result<u64> {
    let routes = site.routes()?;
    routes
        .pointer("/filter/dropped_into_overlay_packets")
        .and_then(Value::as_u64)
        .ok_or_else(|| warren_lab::LabError::Output {
            what: "warren routes list --json".to_owned(),
            detail: format!("no filter counter in {routes}"),
        })
}

/// Warren's routing table in the site host's namespace, as `ip` prints it.
fn warren_table(site: &Site) -> anyhow::Result<String> {
    Ok(site
        .host
        .ip(["-4", "route", "show", "table", "22354"])
        .unwrap_or_default())
}

/// The IPv6 half of Warren's routing table.
fn warren_table6(site: &Site) -> anyhow::Result<String> {
    Ok(site
        .host
        .ip(["-6", "route", "show", "table", "22354"])
        .unwrap_or_default())
}

/// A master site `a` and a site "laptop", both joined.
fn master_and_laptop(lab: &Lab, master: SiteSpec) -> anyhow::Result<RoutesLab> {
    let world = RoutesLab::build(lab, &[master, SiteSpec::laptop("laptop")])?;
    world.join("a")?;
    world.join("laptop")?;
    Ok(world)
}

#[test]
fn laptops_reach_a_cluster_service_only_through_approved_accepted_routes() {
    e2e(
        "laptops_reach_a_cluster_service_only_through_approved_accepted_routes",
        |lab| {
            let world = master_and_laptop(lab, SiteSpec::master("a", Some((RANGE_A, SERVICE_A))))?;
            let master = world.site("a")?;
            let laptop = world.site("laptop")?;

            // Advertised and accepted, not approved: never reachable.
            master.warren(["routes", "advertise", RANGE_A])?;
            let listed = laptop.warren(["routes", "accept", "on"])?;
            println!("laptop after accept on:\n{listed}");
            never_reaches(laptop, SERVICE_A, Duration::from_secs(4))?;
            ensure!(
                warren_table(laptop)?.trim().is_empty(),
                "a route before approval"
            );
            let pending = master.routes()?;
            ensure!(
                pending.pointer("/networks/0/advertised/0/state") == Some(&Value::from("pending")),
                "master should see its route waiting for approval: {pending}"
            );

            world.approve("a", RANGE_A)?;
            let t0 = Instant::now();
            let got = reaches(laptop, SERVICE_A, SETTLE)?;
            println!(
                "reached the cluster service {:?} after approval: {got:?}",
                t0.elapsed()
            );
            ensure!(got.server == "cluster-a", "{got:?}");
            // Masquerade: the cluster sees the master's address on its link.
            ensure!(got.seen_from == master.cluster_gateway(), "{got:?}");
            let table = warren_table(laptop)?;
            ensure!(
                table.contains(RANGE_A) && table.contains("warren0"),
                "laptop table: {table}"
            );
            let state = master.routes()?;
            ensure!(
                state.pointer("/networks/0/advertised/0/state") == Some(&Value::from("primary")),
                "{state}"
            );
            println!("laptop routes:\n{}", laptop.warren(["routes", "list"])?);
            println!("master routes:\n{}", master.warren(["routes", "list"])?);

            // `accept off` takes the route away; on again brings it back.
            laptop.warren(["routes", "accept", "off"])?;
            loses(laptop, SERVICE_A, SETTLE)?;
            ensure!(
                warren_table(laptop)?.trim().is_empty(),
                "route left after accept off"
            );
            laptop.warren(["routes", "accept", "on"])?;
            reaches(laptop, SERVICE_A, SETTLE)?;

            // A host on the master's LAN (the cluster) cannot send into the
            // overlay, with a spoofed overlay source or its own.
            spoofing_is_dropped_and_counted(&world, master, laptop)?;

            // Revocation of the approval takes it away.
            let node = master.agent.node_id().to_owned();
            world
                .admin(["route", "revoke", &world.network, &node, RANGE_A])
                .map_err(anyhow::Error::msg)?;
            loses(laptop, SERVICE_A, SETTLE)?;
            let audit = world
                .admin(["audit", "--json"])
                .map_err(anyhow::Error::msg)?;
            for action in ["route.advertise", "route.approve", "route.unapprove"] {
                ensure!(audit.contains(action), "audit log lacks {action}");
            }
            Ok(())
        },
    );
}

#[test]
fn laptops_reach_an_ipv6_cluster_service_through_an_ipv6_route() {
    e2e("laptops_reach_an_ipv6_cluster_service", |lab| {
        let world = master_and_laptop(
            lab,
            SiteSpec::master("a", Some((RANGE_A, SERVICE_A))).with_v6_cluster(RANGE6_A, SERVICE6_A),
        )?;
        let master = world.site("a")?;
        let laptop = world.site("laptop")?;

        master.warren(["routes", "advertise", RANGE6_A])?;
        laptop.warren(["routes", "accept", "on"])?;
        never_reaches(laptop, SERVICE6_A, Duration::from_secs(3))?;
        ensure!(
            !warren_table6(laptop)?.contains("fd00:96::"),
            "an IPv6 route before approval: {}",
            warren_table6(laptop)?
        );

        world.approve("a", RANGE6_A)?;
        let got = reaches(laptop, SERVICE6_A, SETTLE)?;
        println!("reached [{SERVICE6_A}]:80 through the IPv6 route: {got:?}");
        ensure!(got.server == "cluster-a", "{got:?}");
        // Masquerade works for IPv6 too: the master's address on the link.
        ensure!(
            got.seen_from == IpAddr::from(master.cluster_gateway6()),
            "{got:?}"
        );
        let table = warren_table6(laptop)?;
        ensure!(
            table.contains("fd00:96::/64") && table.contains("warren0"),
            "laptop IPv6 table: {table}"
        );
        // Only the IPv6 range was approved: the IPv4 service stays out of reach.
        never_reaches(laptop, SERVICE_A, Duration::from_secs(2))?;

        let node = master.agent.node_id().to_owned();
        world
            .admin(["route", "revoke", &world.network, &node, RANGE6_A])
            .map_err(anyhow::Error::msg)?;
        loses(laptop, SERVICE6_A, SETTLE)?;
        ensure!(
            !warren_table6(laptop)?.contains("fd00:96::"),
            "IPv6 route left after revocation: {}",
            warren_table6(laptop)?
        );
        Ok(())
    });
}

fn spoofing_is_dropped_and_counted(
    world: &RoutesLab,
    master: &Site,
    laptop: &Site,
) -> anyhow::Result<()> {
    let cluster = master.cluster.as_ref().context("master has a cluster")?;
    let laptop_ip = laptop.overlay_v4(&world.network)?;
    // The cluster routes the overlay through its master, and claims
    // overlay addresses for itself.
    cluster.ip([
        "route",
        "add",
        "10.147.0.0/16",
        "via",
        &master.cluster_gateway().to_string(),
    ])?;
    let spoofed = Ipv4Addr::new(10, 147, 0, 250);
    let victim = Ipv4Addr::new(10, 147, 0, 251);
    for addr in [spoofed, victim] {
        cluster.ip(["addr", "add", &format!("{addr}/32"), "dev", "lo"])?;
    }
    let listener = laptop
        .host
        .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 7777)))??;
    listener.set_read_timeout(Some(Duration::from_millis(300)))?;
    let before = filter_drops(master)?;
    let sources = [spoofed, victim, master.cluster_host()];
    for source in sources {
        let socket = cluster.run(move || UdpSocket::bind((source, 0)))??;
        for _ in 0..5 {
            socket.send_to(b"let me in", (laptop_ip, 7777))?;
        }
    }
    let mut buf = [0u8; 64];
    if let Ok((n, from)) = listener.recv_from(&mut buf) {
        bail!("the laptop got {n} bytes from {from} through the master");
    }
    let after = wait::until(
        "the master to count the drops",
        Duration::from_secs(5),
        || {
            let now = filter_drops(master)?;
            Ok(if now >= before + 15 {
                Poll::Ready(now)
            } else {
                Poll::Pending(format!("{} dropped", now - before))
            })
        },
    )?;
    println!(
        "master's filter dropped {} packets from its LAN into the overlay",
        after - before
    );
    // The laptop's engine never saw them either.
    let spoofed_at_laptop = laptop.agent.status()?.counter("dropped_spoofed")?;
    ensure!(
        spoofed_at_laptop == 0,
        "laptop counted {spoofed_at_laptop} spoofed packets"
    );
    Ok(())
}

#[test]
fn two_masters_bridge_their_clusters_site_to_site() {
    e2e("two_masters_bridge_their_clusters_site_to_site", |lab| {
        // The network approves each master's own ranges automatically;
        // each advertises them and accepts the other's.
        let world = RoutesLab::bridged_masters(
            lab,
            &[("a", RANGE_A, SERVICE_A), ("b", RANGE_B, SERVICE_B)],
        )?;
        let (a, b) = (world.site("a")?, world.site("b")?);
        let cluster_a = a.cluster.as_ref().context("cluster a")?;
        let cluster_b = b.cluster.as_ref().context("cluster b")?;
        let from_a = wait::until("cluster a to reach cluster b's service", SETTLE, || {
            Ok(
                match fetch(cluster_a, service(SERVICE_B), Duration::from_secs(1))? {
                    Ok(f) => Poll::Ready(f),
                    Err(why) => Poll::Pending(why),
                },
            )
        })?;
        ensure!(from_a.server == "cluster-b", "{from_a:?}");
        ensure!(
            from_a.seen_from == b.cluster_gateway(),
            "b masquerades: {from_a:?}"
        );
        let from_b = wait::until("cluster b to reach cluster a's service", SETTLE, || {
            Ok(
                match fetch(cluster_b, service(SERVICE_A), Duration::from_secs(1))? {
                    Ok(f) => Poll::Ready(f),
                    Err(why) => Poll::Pending(why),
                },
            )
        })?;
        ensure!(from_b.server == "cluster-a", "{from_b:?}");
        println!("site to site: a -> {from_a:?}, b -> {from_b:?}");
        let listed = world
            .admin(["route", "list", &world.network])
            .map_err(anyhow::Error::msg)?;
        println!("{listed}");
        ensure!(
            listed.matches("system").count() == 4,
            "auto-approved by the rules:\n{listed}"
        );
        Ok(())
    });
}

#[test]
fn a_second_router_takes_over_within_15_seconds() {
    e2e("a_second_router_takes_over_within_15_seconds", |lab| {
        let mut world = RoutesLab::build(
            lab,
            &[
                SiteSpec::master("a", Some((RANGE_A, SERVICE_A))),
                SiteSpec::master("c", Some((RANGE_A, SERVICE_A))),
                SiteSpec::laptop("laptop"),
            ],
        )?;
        for name in ["a", "c", "laptop"] {
            world.join(name)?;
        }
        for name in ["a", "c"] {
            world.site(name)?.warren(["routes", "advertise", RANGE_A])?;
            world.approve(name, RANGE_A)?;
        }
        // The same prefix twice is no conflict, an overlapping one is, and
        // so is one that would capture the controller's address.
        let node_a = world.site("a")?.agent.node_id().to_owned();
        match world.admin(["route", "approve", &world.network, &node_a, "192.0.2.0/24"]) {
            Err(e) if e.contains("controller's address 192.0.2.10") => println!("refused: {e}"),
            other => bail!("a route over the controller was not refused: {other:?}"),
        }
        let node = world.site("c")?.agent.node_id().to_owned();
        let refused = world.admin(["route", "approve", &world.network, &node, "10.96.0.0/16"]);
        match refused {
            Err(e) if e.contains("overlaps 10.96.0.0/12") => {
                println!("refused as it should be: {e}")
            }
            other => bail!("an overlapping route was not refused: {other:?}"),
        }
        let laptop = world.site("laptop")?;
        laptop.warren(["routes", "accept", "on"])?;
        let first = reaches(laptop, SERVICE_A, SETTLE)?;
        // The primary dies without a word (SIGKILL: no clean close).
        world.fail_over(
            &first,
            "laptop",
            service(SERVICE_A),
            "cluster-",
            ["a", "c"],
            FAILOVER_WITHIN,
        )?;
        Ok(())
    });
}
