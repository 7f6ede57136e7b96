//! Sites, end to end with the real binaries: emulated Kubernetes clusters
//! (kube-proxy-style DNAT to a pod namespace, dnsmasq as cluster DNS)
//! behind masters that advertise their service range for a site.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::ensure;
use warren_lab::dns::dig;
use warren_lab::kube_lab::{KubeService, KubeSpec, DNS_IP};
use warren_lab::routes_lab::{fetch, Fetched, RoutesLab, Site, SiteSpec};
use warren_lab::wait::{self, Poll};
use warren_lab::e2e;

const RANGE: &str = "10.96.0.0/12";
const MEMBERS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);

/// How long a change (approval, acceptance) gets to take effect.
const SETTLE: Duration = Duration::from_secs(15);

fn kube(services: &[(&str, Ipv4Addr)]) -> KubeSpec {
    KubeSpec {
        services: services
            .iter()
            .map(|(name, ip)| KubeService::http(name, *ip, 80))
            .collect(),
    }
}

/// Waits until `site` fetches `http://addr/` and returns what answered.
fn reaches(site: &Site, addr: impl Into<IpAddr>, within: Duration) -> anyhow::Result<Fetched> {
    let addr = SocketAddr::new(addr.into(), 80);
    Ok(wait::until(format!("{} to fetch http://{addr}/", site.name), within, || {
        Ok(match fetch(&site.host, addr, Duration::from_secs(1))? {
            Ok(f) => Poll::Ready(f),
            Err(why) => Poll::Pending(why),
        })
    })?)
}

#[test]
fn the_emulated_cluster_answers_through_a_plain_route() {
    e2e("the_emulated_cluster_answers_through_a_plain_route", |lab| {
        let world = RoutesLab::build(
            lab,
            &[
                SiteSpec::kube_master("m", RANGE, kube(&[("members", MEMBERS)])),
                SiteSpec::laptop("laptop"),
            ],
        )?;
        world.join("m")?;
        world.join("laptop")?;
        let (m, laptop) = (world.site("m")?, world.site("laptop")?);
        m.warren(["routes", "advertise", RANGE])?;
        world.approve("m", RANGE)?;
        laptop.warren(["routes", "accept", "on"])?;
        let got = reaches(laptop, MEMBERS, SETTLE)?;
        ensure!(got.server == "members@m", "{got:?}");
        let answer = dig(&laptop.host, DNS_IP.into(), "members.default.svc.cluster.local", "A")?;
        ensure!(answer.data("A") == ["10.96.0.20"], "{}", answer.raw);
        let srv = dig(&laptop.host, DNS_IP.into(), "_http._tcp.members.default.svc.cluster.local", "SRV")?;
        ensure!(srv.data("SRV") == ["0 0 80 members.default.svc.cluster.local."], "{}", srv.raw);
        Ok(())
    });
}
