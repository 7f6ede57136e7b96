//! Sites, end to end with the real binaries: two emulated Kubernetes
//! clusters, W and M, that both use `10.96.0.0/12` for services
//! (kube-proxy-style DNAT to a pod namespace, dnsmasq as cluster DNS), each
//! behind a master that advertises the range for its own site, and a
//! laptop behind its own NAT.
//!
//! - The laptop reaches `members.default.svc.m.<zone>` and
//!   `readers.default.svc.w.<zone>` by name: both services sit behind the
//!   same ClusterIP, and each answer comes from the right cluster, through
//!   the mapped addresses the names resolve to. SRV gives the port.
//! - The access policy names a site: the laptop reaches M and not W.
//! - Two masters of one site fail over within 15 s; two sites never do.
//! - A pod in W reaches a service of M by its mesh name, through W's
//!   cluster DNS forwarding the mesh's zone to W's master; under a policy,
//!   a rule for W covers its pods too, on the ports it names.
//! - Without sites, the emulated cluster answers through a plain route
//!   (the master's filter lets kube-proxy's DNAT through).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use warren_lab::dns::{dig, dig_waiting};
use warren_lab::kube_lab::{KubeService, KubeSpec, DNS_IP, DOMAIN};
use warren_lab::routes_lab::{fetch, reaches, refused_fast, RoutesLab, Site, SiteSpec};
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, Lab};

const RANGE: &str = "10.96.0.0/12";
/// Both clusters' service: the same ClusterIP in each.
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
/// The network the routes lab makes is named `sites`.
const ZONE: &str = "sites.warren.internal";
/// The controller's default range for mapped prefixes.
const MAPPED_RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(100, 64, 0, 0), 10);

/// How long a change (approval, acceptance, policy) gets to take effect.
const SETTLE: Duration = Duration::from_secs(15);
/// The issue's bound on fail-over.
const FAILOVER_WITHIN: Duration = Duration::from_secs(15);

fn kube(service: &str) -> KubeSpec {
    KubeSpec {
        services: vec![KubeService::http(service, CLUSTER_IP, 80)],
    }
}

fn http(addr: impl Into<IpAddr>) -> SocketAddr {
    SocketAddr::new(addr.into(), 80)
}

/// `<service>.default.svc.<site>.<zone>`
fn mesh_name(service: &str, site: &str) -> String {
    format!("{service}.default.svc.{site}.{ZONE}")
}

fn in_mapped_range(addr: Ipv4Addr) -> bool {
    let (base, len) = MAPPED_RANGE;
    u32::from(addr) >> (32 - len) == u32::from(base) >> (32 - len)
}

/// `warren routes advertise RANGE [more...] --site SITE` with the
/// cluster's DNS, on master `on`.
fn advertise(on: &Site, site: &str, more: &[String]) -> anyhow::Result<()> {
    let mut args = vec![
        "routes".to_owned(),
        "advertise".to_owned(),
        RANGE.to_owned(),
    ];
    args.extend(more.iter().cloned());
    for a in [
        "--site",
        site,
        "--dns-domain",
        DOMAIN,
        "--dns-server",
        &DNS_IP.to_string(),
    ] {
        args.push(a.to_owned());
    }
    on.warren(&args)?;
    Ok(())
}

/// Waits until `server` answers `name` with exactly one A record, asked
/// from inside `from`'s host namespace.
fn resolve(ns: &warren_lab::netns::Netns, server: IpAddr, name: &str) -> anyhow::Result<Ipv4Addr> {
    Ok(wait::until(
        format!("{server} to resolve {name}"),
        SETTLE,
        || {
            let answer = dig(ns, server, name, "A")?;
            Ok(match answer.data("A").as_slice() {
                [one] => match one.parse::<Ipv4Addr>() {
                    Ok(addr) => Poll::Ready(addr),
                    Err(_) => Poll::Pending(answer.raw.clone()),
                },
                _ => Poll::Pending(format!("{}: {}", answer.status, answer.raw)),
            })
        },
    )?)
}

/// The laptop's DNS stub: its overlay address in the lab's network.
fn stub(world: &RoutesLab, site: &Site) -> anyhow::Result<IpAddr> {
    Ok(site.overlay_v4(&world.network)?.into())
}

/// Fetches `addr` from `site` repeatedly for `hold`; fails on any answer.
fn never_reaches(site: &Site, addr: Ipv4Addr, hold: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + hold;
    while Instant::now() < until {
        if let Ok(f) = fetch(&site.host, http(addr), Duration::from_millis(700))? {
            bail!(
                "{} reached http://{addr}/ and should not have: {f:?}",
                site.name
            );
        }
    }
    Ok(())
}

/// Clusters W (service `readers`) and M (service `members`), and more
/// masters of M named in `m_masters` beyond the first, and a laptop; all
/// joined, every master advertising the range for its site with the
/// cluster's DNS, approved, and the laptop accepting routes.
fn two_clusters(lab: &Lab, m_masters: &[&str]) -> anyhow::Result<RoutesLab> {
    let mut specs = vec![SiteSpec::kube_master("w", RANGE, kube("readers"))];
    for name in m_masters {
        specs.push(SiteSpec::kube_master(name, RANGE, kube("members")));
    }
    specs.push(SiteSpec::laptop("laptop"));
    let world = RoutesLab::build(lab, &specs)?;
    for spec in &specs {
        world.join(&spec.name)?;
    }
    advertise(world.site("w")?, "w", &[])?;
    world.approve("w", RANGE)?;
    for name in m_masters {
        advertise(world.site(name)?, "m", &[])?;
        world.approve(name, RANGE)?;
    }
    world.site("laptop")?.warren(["routes", "accept", "on"])?;
    Ok(world)
}

/// `policy set` with `text`, kept in the lab's folder as `policy-NAME.toml`.
fn set_policy(lab: &Lab, world: &RoutesLab, name: &str, text: &str) -> anyhow::Result<()> {
    let file = lab.dir().join(format!("policy-{name}.toml"));
    std::fs::write(&file, text)?;
    world
        .admin(["policy", "set", &world.network, &file.to_string_lossy()])
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[test]
fn a_laptop_reaches_services_of_two_clusters_by_name() {
    e2e("a_laptop_reaches_services_of_two_clusters_by_name", |lab| {
        let world = two_clusters(lab, &["m"])?;
        let laptop = world.site("laptop")?;
        let stub = stub(&world, laptop)?;
        let members = resolve(&laptop.host, stub, &mesh_name("members", "m"))?;
        let readers = resolve(&laptop.host, stub, &mesh_name("readers", "w"))?;
        println!("members.m -> {members}, readers.w -> {readers}");
        ensure!(
            members != readers && in_mapped_range(members) && in_mapped_range(readers),
            "the same ClusterIP in two sites must resolve to two mapped addresses: {members}, {readers}"
        );
        let got = reaches(&laptop.host, http(members), SETTLE)?;
        ensure!(got.server == "members@m", "members answered by {got:?}");
        let got = reaches(&laptop.host, http(readers), SETTLE)?;
        ensure!(got.server == "readers@w", "readers answered by {got:?}");

        // SRV for the named port: the port and a name that resolves.
        let srv_name = format!("_http._tcp.{}", mesh_name("members", "m"));
        let srv = dig(&laptop.host, stub, &srv_name, "SRV")?;
        let want = format!("0 0 80 {}.", mesh_name("members", "m"));
        ensure!(srv.data("SRV") == [want.as_str()], "SRV: {}", srv.raw);
        // A name the cluster does not know: its NXDOMAIN, passed through.
        let none = dig(&laptop.host, stub, &mesh_name("nobody", "m"), "A")?;
        ensure!(none.status == "NXDOMAIN", "unknown service: {}", none.raw);

        // The controller lists both sites' routes, each with its mapping.
        let listed = world
            .admin(["route", "list", &world.network])
            .map_err(anyhow::Error::msg)?;
        println!("{listed}");
        for site in ["w", "m"] {
            ensure!(
                listed
                    .lines()
                    .any(|l| l.contains(RANGE) && l.split_whitespace().any(|w| w == site)),
                "route list shows no {RANGE} for site {site}:\n{listed}"
            );
        }

        // The policy names a site: the laptop keeps M, loses W.
        let policy = r#"
[[allow]]
from = ["laptop"]
to = ["site:m"]
ports = ["tcp:80", "udp:53", "tcp:53"]
"#;
        set_policy(lab, &world, "site-m", policy)?;
        wait::until("the policy to cut the laptop off W", SETTLE, || {
            Ok(
                match fetch(&laptop.host, http(readers), Duration::from_millis(700))? {
                    Ok(f) => Poll::Pending(format!("still answered by {f:?}")),
                    Err(_) => Poll::Ready(()),
                },
            )
        })?;
        // W's peer is not even in the laptop's map any more: nothing routes there.
        never_reaches(laptop, readers, Duration::from_secs(3))?;
        let got = reaches(&laptop.host, http(members), SETTLE)?;
        ensure!(got.server == "members@m", "members answered by {got:?}");
        let resolved = resolve(&laptop.host, stub, &mesh_name("members", "m"))?;
        ensure!(resolved == members, "{resolved} != {members}");
        // W's DNS server is inside W too: its names no longer resolve.
        let cut = dig_waiting(&laptop.host, stub, &mesh_name("readers", "w"), "A", 5)?;
        ensure!(
            cut.status == "SERVFAIL",
            "readers.w under the policy: {}",
            cut.raw
        );
        Ok(())
    });
}

#[test]
fn two_masters_of_one_site_fail_over_and_two_sites_never_do() {
    e2e(
        "two_masters_of_one_site_fail_over_and_two_sites_never_do",
        |lab| {
            let mut world = two_clusters(lab, &["m1", "m2"])?;
            let laptop = world.site("laptop")?;
            let stub = stub(&world, laptop)?;
            let members = resolve(&laptop.host, stub, &mesh_name("members", "m"))?;
            let readers = resolve(&laptop.host, stub, &mesh_name("readers", "w"))?;
            let first = reaches(&laptop.host, http(members), SETTLE)?;
            let got = reaches(&laptop.host, http(readers), SETTLE)?;
            ensure!(got.server == "readers@w", "readers answered by {got:?}");

            // m's primary dies without a word: its standby takes over.
            let (_, standby) = world.fail_over(
                &first,
                "laptop",
                http(members),
                "members@",
                ["m1", "m2"],
                FAILOVER_WITHIN,
            )?;

            // W's only master dies: W's services are gone, and nothing of M's
            // ever answers for them.
            world
                .site_mut("w")?
                .agent
                .process()
                .context("w's agent runs")?
                .signal("KILL")?;
            let laptop = world.site("laptop")?;
            wait::until("the laptop to lose W", Duration::from_secs(40), || {
                Ok(
                    match fetch(&laptop.host, http(readers), Duration::from_millis(500))? {
                        Ok(f) if f.server == "readers@w" => {
                            Poll::Pending("still answered by w".into())
                        }
                        Ok(f) => {
                            return Err(warren_lab::LabError::Invalid(format!(
                                "another site answered for W: {f:?}"
                            )))
                        }
                        Err(_) => Poll::Ready(()),
                    },
                )
            })?;
            never_reaches(laptop, readers, Duration::from_secs(20))?;
            let got = reaches(&laptop.host, http(members), SETTLE)?;
            ensure!(got.server == format!("members@{standby}"), "{got:?}");
            Ok(())
        },
    );
}

#[test]
fn a_pod_in_one_cluster_reaches_a_service_of_another_by_its_mesh_name() {
    e2e(
        "a_pod_in_one_cluster_reaches_a_service_of_another_by_its_mesh_name",
        |lab| {
            let mut world = RoutesLab::build(
                lab,
                &[
                    SiteSpec::kube_master("w", RANGE, kube("readers")),
                    SiteSpec::kube_master("m", RANGE, kube("members")),
                ],
            )?;
            world.join("w")?;
            world.join("m")?;
            // W routes its pod network into the mesh (site to site) and
            // accepts M's routes; M accepts W's, for the way back.
            let pods = world.site("w")?.node_subnet();
            advertise(world.site("w")?, "w", std::slice::from_ref(&pods))?;
            world.approve("w", RANGE)?;
            world.approve("w", &pods)?;
            advertise(world.site("m")?, "m", &[])?;
            world.approve("m", RANGE)?;
            for name in ["w", "m"] {
                world.site(name)?.warren(["routes", "accept", "on"])?;
            }
            // W's cluster DNS forwards the mesh's zone to W's master's stub,
            // as a CoreDNS stub domain would.
            let w_stub = stub(&world, world.site("w")?)?;
            let w = world.site_mut("w")?;
            let cluster_dns = w.cluster_host();
            w.kube
                .as_mut()
                .context("w is a kube master")?
                .forward(ZONE, w_stub)?;
            let w = world.site("w")?;
            let pod = w.cluster.as_ref().context("w's pods")?;
            let members = resolve(pod, cluster_dns.into(), &mesh_name("members", "m"))?;
            println!("a pod in w resolves members.m to {members}");
            ensure!(in_mapped_range(members), "{members}");
            let got = reaches(pod, http(members), SETTLE)?;
            ensure!(got.server == "members@m", "answered by {got:?}");

            // Under a policy, a member sends from its own addresses and
            // from the routes it serves: a rule for W gives W's pods what
            // it gives W's master. DNS only: they resolve, HTTP is refused...
            let dns_only = r#"
[[allow]]
from = ["w"]
to = ["site:m"]
ports = ["udp:53", "tcp:53"]
"#;
            set_policy(lab, &world, "w-dns", dns_only)?;
            wait::until("the policy to keep w's pods off m's HTTP", SETTLE, || {
                Ok(
                    match fetch(pod, http(members), Duration::from_millis(700))? {
                        Ok(f) => Poll::Pending(format!("still answered by {f:?}")),
                        Err(_) => Poll::Ready(()),
                    },
                )
            })?;
            let why = refused_fast(pod, http(members), Duration::from_secs(2))?;
            println!("a pod in w with DNS only: {why}");
            let again = resolve(pod, cluster_dns.into(), &mesh_name("members", "m"))?;
            ensure!(again == members, "members.m now resolves to {again}");
            // ...until the rule names the port.
            let with_http = dns_only.replace(r#""tcp:53"]"#, r#""tcp:53", "tcp:80"]"#);
            set_policy(lab, &world, "w-http", &with_http)?;
            let got = reaches(pod, http(members), SETTLE)?;
            ensure!(got.server == "members@m", "answered by {got:?}");
            Ok(())
        },
    );
}

#[test]
fn the_emulated_cluster_answers_through_a_plain_route() {
    e2e(
        "the_emulated_cluster_answers_through_a_plain_route",
        |lab| {
            let world = RoutesLab::build(
                lab,
                &[
                    SiteSpec::kube_master("m", RANGE, kube("members")),
                    SiteSpec::laptop("laptop"),
                ],
            )?;
            world.join("m")?;
            world.join("laptop")?;
            let (m, laptop) = (world.site("m")?, world.site("laptop")?);
            m.warren(["routes", "advertise", RANGE])?;
            world.approve("m", RANGE)?;
            laptop.warren(["routes", "accept", "on"])?;
            let got = reaches(&laptop.host, http(CLUSTER_IP), SETTLE)?;
            ensure!(got.server == "members@m", "{got:?}");
            let name = format!("members.default.svc.{DOMAIN}");
            let answer = dig(&laptop.host, DNS_IP.into(), &name, "A")?;
            ensure!(answer.data("A") == ["10.96.0.20"], "{}", answer.raw);
            let srv = dig(
                &laptop.host,
                DNS_IP.into(),
                &format!("_http._tcp.{name}"),
                "SRV",
            )?;
            ensure!(
                srv.data("SRV") == [format!("0 0 80 {name}.").as_str()],
                "{}",
                srv.raw
            );
            Ok(())
        },
    );
}
