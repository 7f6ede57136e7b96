//! A node in two networks keeps them apart (issue 11, item 8; issue 12).
//!
//! Router `r` is a member of networks A and B. In A it serves a cluster's
//! range (10.96.0.0/12) and offers to be an exit node, both approved in A
//! only; on its host, a web server listens on every address. Member `m`
//! belongs to B only. To attack, `m` stops its agent and speaks WireGuard
//! to `r` itself (wireguard-go with `m`'s own node key, so `r` knows the
//! peer), routing everything into the tunnel, as a member of B who
//! controls its own machine can. Through that tunnel:
//! - `r`'s address in B answers (the channel is real);
//! - the cluster range that only A may use does not;
//! - `r`'s address in A (services and DNS stub there) does not;
//! - the internet through `r`, an exit node only in A, does not.
//!
//! And `r` counts what it dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use warren_lab::keys::KeyPair;
use warren_lab::mesh::Mesh;
use warren_lab::node_spec::{NodeSpec, PeerSpec};
use warren_lab::routes_lab::{fetch, reaches, HttpServer};
use warren_lab::wggo::WgGo;
use warren_lab::{e2e, link, Lab};

const RANGE: &str = "10.96.0.0/12";
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SETTLE: Duration = Duration::from_secs(15);

/// Builds a cluster namespace behind `r` whose service answers HTTP, as in
/// the routes suites: r forwards 10.96.0.0/12 to it.
fn cluster_behind(lab: &Lab, mesh: &Mesh) -> anyhow::Result<(warren_lab::Netns, HttpServer)> {
    let host = mesh.ns("r")?;
    let cluster = lab.netns("cl")?;
    let (host_if, cluster_if) = (lab.ifname("rc")?, lab.ifname("cr")?);
    let _veth = link::veth(host, &host_if, &cluster, &cluster_if)?;
    link::add_addr(host, &host_if, "172.31.0.1/24")?;
    link::add_addr(&cluster, &cluster_if, "172.31.0.2/24")?;
    link::add_addr(&cluster, "lo", &format!("{SERVICE}/32"))?;
    link::add_route(&cluster, "default", "172.31.0.1".parse()?)?;
    link::add_route(host, RANGE, "172.31.0.2".parse()?)?;
    link::enable_forwarding(host)?;
    let server = HttpServer::start(&cluster, SocketAddr::new(SERVICE.into(), 80), "cluster")?;
    Ok((cluster, server))
}

/// Fetches `addr` from `ns` for a few seconds; any answer is a failure.
fn never_answers(ns: &warren_lab::Netns, addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    for _ in 0..3 {
        if let Ok(f) = fetch(ns, addr, Duration::from_secs(1))? {
            bail!("{what}: http://{addr}/ answered through r: {f:?}");
        }
    }
    Ok(())
}

fn listen_port(mesh: &Mesh, agent: &str, network: &str) -> anyhow::Result<u16> {
    let status = mesh.agent(agent)?.status()?;
    let port = status
        .network(network)?
        .0
        .get("listen_port")
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("{agent}'s listen port in {network}"))?;
    Ok(u16::try_from(port)?)
}

fn dropped_inbound(mesh: &Mesh, network: &str) -> anyhow::Result<u64> {
    let status = mesh.agent("r")?.status()?;
    let net = status.network(network)?;
    net.0
        .pointer("/filter/dropped_inbound/no_rule")
        .and_then(serde_json::Value::as_u64)
        .context("r's status has no filter drop counter")
}

#[test]
fn a_member_of_one_network_cannot_use_the_other_through_a_shared_node() {
    e2e(
        "a_member_of_one_network_cannot_use_the_other_through_a_shared_node",
        |lab| {
            let mut mesh = Mesh::build(lab, &["r", "m"])?;
            let ctl = &mesh.controller;
            let net_a = ctl.network_create("a", "10.147.0.0/16")?;
            let net_b = ctl.network_create("b", "10.148.0.0/16")?;
            let key_a = ctl.key_create(&net_a, true)?;
            let key_b = ctl.key_create(&net_b, true)?;
            mesh.join_ok("r", &net_a, Some(&key_a))?;
            mesh.join_ok("r", &net_b, Some(&key_b))?;
            mesh.join_ok("m", &net_b, Some(&key_b))?;
            let (_cluster, _cluster_web) = cluster_behind(lab, &mesh)?;
            let r = mesh.agent("r")?;
            r.command([
                "routes",
                "advertise",
                RANGE,
                "0.0.0.0/0",
                "--network",
                &net_a,
            ])
            .output()
            .context("warren routes advertise")?;
            for prefix in [RANGE, "0.0.0.0/0"] {
                ctl.admin(&["route", "approve", &net_a, r.node_id(), prefix])?;
            }
            let unspecified: IpAddr = "::".parse()?;
            let _r_web = HttpServer::start(mesh.ns("r")?, SocketAddr::new(unspecified, 8000), "r")?;
            let ctl_spoke = mesh.host("ctl")?;
            let ctl_web_addr = SocketAddr::new(ctl_spoke.addr.into(), 8081);
            let _ctl_web = HttpServer::start(&ctl_spoke.ns, ctl_web_addr, "internet")?;

            let r_a = mesh.overlay_addr("r", &net_a, false)?;
            let r_b = mesh.overlay_addr("r", &net_b, false)?;
            let m_b = mesh.overlay_addr("m", &net_b, false)?;
            // Through its own agent, m reaches r in B: the lab works.
            reaches(mesh.ns("m")?, SocketAddr::new(r_b, 8000), SETTLE)?;

            // m takes over its WireGuard identity and routes everything to r.
            let r_endpoint = SocketAddr::new(
                mesh.host("r")?.addr.into(),
                listen_port(&mesh, "r", &net_b)?,
            );
            // m keeps its port: r answers where m's agent was.
            let m_port = listen_port(&mesh, "m", &net_b)?;
            let r_key = r.public_key().to_owned();
            let m_key = KeyPair {
                private_key_file: mesh.agent("m")?.state_dir().join("node.key"),
                public_key: mesh.agent("m")?.public_key().to_owned(),
            };
            mesh.agent_mut("m")?.stop()?;
            // r remembers the handshake timestamp of m's agent; boringtun
            // counts TAI64 from a base 27 s above wireguard-go's, so r
            // would take wireguard-go's first handshakes for replays. A
            // restarted r has forgotten it (the attack does not need this:
            // an attacker's own stack can use boringtun's base).
            mesh.restart_agent(lab, "r")?;
            mesh.agent_mut("r")?
                .wait_state(&net_b, "authorized", SETTLE)?;
            let spec = NodeSpec {
                name: "m".into(),
                key: m_key,
                listen_port: m_port,
                addresses: vec![format!("{m_b}/16")],
                peers: vec![PeerSpec {
                    public_key: r_key.clone(),
                    endpoint: Some(r_endpoint),
                    allowed_ips: vec!["0.0.0.0/0".into()],
                    persistent_keepalive: Some(1),
                }],
            };
            let m_ns = mesh.ns("m")?;
            let wg = WgGo::start(lab, m_ns, &spec)?;
            for dst in [
                RANGE.to_string(),
                format!("{r_a}/32"),
                format!("{}/32", ctl_web_addr.ip()),
            ] {
                m_ns.ip(["route", "add", &dst, "dev", wg.ifname()])?;
            }
            // The channel is real: r in B answers over m's own WireGuard.
            reaches(m_ns, SocketAddr::new(r_b, 8000), SETTLE)?;
            ensure!(
                wg.latest_handshake(m_ns, &r_key)?.is_some(),
                "wireguard-go shook hands with r"
            );
            let before = dropped_inbound(&mesh, &net_b)?;

            never_answers(
                m_ns,
                SocketAddr::new(SERVICE.into(), 80),
                "A's subnet route",
            )?;
            never_answers(m_ns, SocketAddr::new(r_a, 8000), "r's address in A")?;
            never_answers(m_ns, ctl_web_addr, "A's exit node")?;
            let pinged = m_ns.exec("ping", ["-c", "1", "-W", "1", &r_a.to_string()]);
            ensure!(pinged.is_err(), "m pinged r's address in A: {pinged:?}");

            let after = dropped_inbound(&mesh, &net_b)?;
            ensure!(
                after >= before + 4,
                "r's B filter counted {} drops for m's attempts (expected at least 4)",
                after - before
            );
            // Behind the engine, the forwarding filter keeps them apart too:
            // A's route is A's interface's, and B's member B's.
            let status = mesh.agent("r")?.status()?;
            let (if_a, if_b) = (
                status
                    .network(&net_a)?
                    .interface()
                    .context("A's interface")?
                    .to_owned(),
                status
                    .network(&net_b)?
                    .interface()
                    .context("B's interface")?
                    .to_owned(),
            );
            let own = mesh
                .ns("r")?
                .output("nft", ["list", "set", "inet", "warren", "net_own4"])?;
            ensure!(
                own.contains(&format!("\"{if_a}\" . 10.96.0.0/12")) && !own.contains(&if_b),
                "A's route belongs to A's interface only: {own}"
            );
            let members = mesh
                .ns("r")?
                .output("nft", ["list", "set", "inet", "warren", "net_members4"])?;
            ensure!(
                members.contains(&format!("\"{if_b}\" . {m_b}"))
                    && !members.contains(&format!("\"{if_a}\" . {m_b}")),
                "m is a member on B's interface only: {members}"
            );
            // And what B allows still works over the same tunnel.
            reaches(m_ns, SocketAddr::new(r_b, 8000), SETTLE)?;
            Ok(())
        },
    );
}
