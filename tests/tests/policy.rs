//! Access policy, end to end with the real binaries: agents behind their
//! own NATs, a controller on the "internet", real TCP, UDP-borne WireGuard
//! and ICMP over IPv4 and IPv6.
//!
//! - The cluster-master scenario: a master serves 10.96.0.0/12; a laptop in
//!   `group:ops` reaches one service address on tcp 6379 and is refused on
//!   tcp 443 of another in the same range; a laptop in `group:dev` reaches
//!   tcp 3000 of the master only. Each laptop sees only the peers its
//!   policy gives it something to do with. Refusals come at once (ICMP
//!   administratively prohibited), not as a hang.
//! - `warren explain` on a node and `policy explain` on the controller
//!   agree with what the packets did, and the node lists its drops.
//! - A policy whose own tests fail is refused and the old one stays.
//! - Replies to an allowed flow pass while new flows the other way are
//!   refused; a withdrawn rule cuts an open TCP connection within 2 s; a
//!   20 s grant works and then stops within 5 s of its end.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::Value;
use warren_lab::routes_lab::{reaches, refused_fast, HttpServer, RoutesLab, Site, SiteSpec};
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, link, Lab};

const RANGE: &str = "10.96.0.0/12";
/// The service the ops group may reach, on tcp 6379.
const REDIS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Another service in the same range, on tcp 443: nobody may.
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const SETTLE: Duration = Duration::from_secs(15);
/// How long a refused connection may take to fail.
const FAST: Duration = Duration::from_millis(1500);

const CLUSTER_POLICY: &str = r#"
[groups]
ops = ["ana"]
dev = ["bo"]

[[allow]]
from = ["group:ops"]
to = ["10.96.0.0/12"]
ports = ["tcp:6379"]

[[allow]]
from = ["group:dev"]
to = ["master"]
ports = ["tcp:3000", "icmp"]

[[test]]
from = "bo"
to = "10.96.0.10"
port = "tcp:6379"
expect = "deny"

[[test]]
from = "ana"
to = "10.96.0.10"
port = "tcp:6379"
expect = "allow"
"#;

/// Writes `text` into the lab's folder and runs `policy set` with it.
fn set_policy(lab: &Lab, world: &RoutesLab, text: &str) -> Result<String, String> {
    let file = lab.dir().join(format!(
        "policy-{}.toml",
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::write(&file, text).map_err(|e| e.to_string())?;
    let path = file.to_string_lossy().into_owned();
    world.admin(["policy", "set", &world.network, &path])
}

fn v4(site: &Site, network: &str) -> anyhow::Result<Ipv4Addr> {
    Ok(site.overlay_v4(network)?)
}

fn v6(site: &Site, network: &str) -> anyhow::Result<std::net::Ipv6Addr> {
    Ok(site.agent.status()?.network(network)?.ipv6()?)
}

/// `warren explain ARGS --json` on `site`.
fn explain(site: &Site, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    all.push("--json");
    let text = site.warren(all)?;
    serde_json::from_str(&text).with_context(|| format!("warren explain: {text}"))
}

/// `policy explain` on the controller, as JSON.
fn controller_explain(
    world: &RoutesLab,
    from: &str,
    to: &str,
    port: &str,
) -> anyhow::Result<Value> {
    let text = world
        .admin([
            "policy",
            "explain",
            &world.network,
            "--from",
            from,
            "--to",
            to,
            "--port",
            port,
            "--json",
        ])
        .map_err(anyhow::Error::msg)?;
    Ok(serde_json::from_str(&text)?)
}

/// The names of the peers `site` has in its status.
fn peer_names(site: &Site) -> warren_lab::Result<Vec<String>> {
    Ok(site
        .agent
        .status()?
        .peers()
        .iter()
        .filter_map(|p| p.name().map(str::to_owned))
        .collect())
}

/// The network's filter stats in `site`'s `warren status --json`.
fn filter_stats(site: &Site, network: &str) -> anyhow::Result<Value> {
    let status = site.agent.status()?;
    let net = status.network(network)?;
    net.0
        .get("filter")
        .cloned()
        .context("no filter in warren status --json")
}

#[test]
fn a_cluster_master_serves_each_group_only_what_the_policy_allows() {
    e2e(
        "a_cluster_master_serves_each_group_only_what_the_policy_allows",
        |lab| {
            let world = RoutesLab::build(
                lab,
                &[
                    SiteSpec::master("master", Some((RANGE, REDIS))),
                    SiteSpec::laptop("ana"),
                    SiteSpec::laptop("bo"),
                ],
            )?;
            let net = world.network.clone();
            for name in ["master", "ana", "bo"] {
                world.join(name)?;
            }
            let (master, ana, bo) = (world.site("master")?, world.site("ana")?, world.site("bo")?);
            master.warren(["routes", "advertise", RANGE])?;
            world.approve("master", RANGE)?;
            ana.warren(["routes", "accept", "on"])?;
            bo.warren(["routes", "accept", "on"])?;
            let cluster = master
                .cluster
                .as_ref()
                .context("the master has a cluster")?;
            link::add_addr(cluster, "lo", &format!("{OTHER}/32"))?;
            let redis = SocketAddr::new(REDIS.into(), 6379);
            let other = SocketAddr::new(OTHER.into(), 443);
            let unspecified6: IpAddr = "::".parse()?;
            let _servers = [
                HttpServer::start(cluster, redis, "redis")?,
                HttpServer::start(cluster, other, "other")?,
                HttpServer::start(&master.host, SocketAddr::new(unspecified6, 3000), "grafana")?,
                HttpServer::start(&master.host, SocketAddr::new(unspecified6, 3001), "admin")?,
                HttpServer::start(&bo.host, SocketAddr::new(unspecified6, 8080), "bo")?,
            ];
            let (master4, master6) = (v4(master, &net)?, v6(master, &net)?);
            let grafana4 = SocketAddr::new(master4.into(), 3000);
            let grafana6 = SocketAddr::new(master6.into(), 3000);
            let admin4 = SocketAddr::new(master4.into(), 3001);
            let admin6 = SocketAddr::new(master6.into(), 3001);
            let bo_web = SocketAddr::new(v4(bo, &net)?.into(), 8080);

            // The default policy: everyone reaches everything.
            reaches(&ana.host, other, SETTLE)?;
            reaches(&ana.host, grafana4, SETTLE)?;
            reaches(&master.host, bo_web, SETTLE)?;
            ensure!(
                peer_names(ana)?.contains(&"bo".to_string()),
                "before the policy ana sees bo"
            );

            let set = set_policy(lab, &world, CLUSTER_POLICY).map_err(anyhow::Error::msg)?;
            println!("policy set: {set}");

            // ops: redis on 6379, nothing else in the range, not the master's ports.
            reaches(&ana.host, redis, SETTLE)?;
            let why = refused_fast(&ana.host, other, FAST)?;
            println!("ana -> {other}: {why}");
            refused_fast(&ana.host, SocketAddr::new(REDIS.into(), 443), FAST)?;
            refused_fast(&ana.host, grafana4, FAST)?;
            // dev: the master's tcp 3000 over IPv4 and IPv6, not 3001, not the cluster.
            reaches(&bo.host, grafana4, SETTLE)?;
            reaches(&bo.host, grafana6, SETTLE)?;
            refused_fast(&bo.host, admin4, FAST)?;
            refused_fast(&bo.host, admin6, FAST)?;
            refused_fast(&bo.host, redis, FAST)?;
            // A reply passes (bo fetched from the master); a new flow the other way does not.
            refused_fast(&master.host, bo_web, FAST)?;
            let pinged = bo
                .host
                .output("ping", ["-c", "1", "-W", "2", &master4.to_string()])?;
            ensure!(
                pinged.contains("1 received"),
                "bo may ping the master: {pinged}"
            );

            // Nobody sees a peer it has nothing to do with.
            wait::until("ana and bo to lose each other", SETTLE, || {
                let (a, b) = (peer_names(ana)?, peer_names(bo)?);
                Ok(
                    if a.contains(&"bo".to_string()) || b.contains(&"ana".to_string()) {
                        Poll::Pending(format!("ana sees {a:?}, bo sees {b:?}"))
                    } else {
                        Poll::Ready(())
                    },
                )
            })?;
            ensure!(
                peer_names(ana)? == ["master"],
                "ana sees {:?}",
                peer_names(ana)?
            );

            // Explain: the node's filter, the controller's policy and the packets agree.
            let allowed = explain(ana, &[&format!("{REDIS}:6379")])?;
            ensure!(
                allowed["verdict"] == "allow"
                    && allowed["rule"] == "allow[0]"
                    && allowed["peer"] == "master",
                "ana to redis: {allowed}"
            );
            let denied = explain(ana, &[&OTHER.to_string(), "--port", "tcp:443"])?;
            ensure!(
                denied["verdict"] == "deny" && denied["rule"].is_null(),
                "ana to other: {denied}"
            );
            let dropped = denied["recent_drops"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| {
                    d["dst"] == OTHER.to_string()
                        && d["port"] == 443
                        && d["direction"] == "outbound"
                });
            ensure!(dropped, "ana's drops list the refused 443: {denied}");
            let dev = explain(bo, &["master:3000"])?;
            ensure!(
                dev["verdict"] == "allow" && dev["rule"] == "allow[1]",
                "bo to master: {dev}"
            );
            let dev_admin = explain(bo, &["master:3001"])?;
            ensure!(
                dev_admin["verdict"] == "deny",
                "bo to master:3001: {dev_admin}"
            );
            for (from, to, port, allowed) in [
                ("ana", REDIS.to_string(), "tcp:6379", true),
                ("ana", OTHER.to_string(), "tcp:443", false),
                ("bo", "master".to_string(), "tcp:3000", true),
                ("bo", "master".to_string(), "tcp:3001", false),
                ("bo", REDIS.to_string(), "tcp:6379", false),
            ] {
                let answer = controller_explain(&world, from, &to, port)?;
                ensure!(
                    answer["allowed"] == allowed,
                    "controller explain {from} -> {to} {port}: {answer}, expected allowed={allowed}"
                );
            }
            let stats = filter_stats(ana, &net)?;
            let hits = stats["rule_hits"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["rule"] == "allow[0]" && h["direction"] == "outbound")
                .and_then(|h| h["flows"].as_u64())
                .unwrap_or(0);
            ensure!(hits >= 1, "ana counted her redis flows: {stats}");
            ensure!(
                stats["dropped_outbound"]["no_rule"].as_u64().unwrap_or(0) >= 1
                    && stats["rejects_sent"].as_u64().unwrap_or(0) >= 1,
                "ana counted her refusals: {stats}"
            );

            // A policy that fails its own test is refused; the old one stays.
            let broken = CLUSTER_POLICY.replace("expect = \"deny\"", "expect = \"allow\"");
            let refused = set_policy(lab, &world, &broken);
            match refused {
                Ok(out) => bail!("a policy failing its own test was stored: {out}"),
                Err(why) => ensure!(
                    why.contains("policy test failed") && why.contains("bo"),
                    "the refusal names the failing test: {why}"
                ),
            }
            let current = world
                .admin(["policy", "get", &net])
                .map_err(anyhow::Error::msg)?;
            ensure!(
                current.contains("expect = \"deny\""),
                "the old policy stays: {current}"
            );
            reaches(&ana.host, redis, SETTLE)?;
            refused_fast(&bo.host, redis, FAST)?;
            Ok(())
        },
    );
}

/// An open TCP connection from `client` to `server_addr`, accepted on `listener`.
fn open_connection(
    site: &Site,
    listener: &TcpListener,
    server_addr: SocketAddr,
) -> anyhow::Result<(TcpStream, TcpStream)> {
    let client = wait::until(
        format!("{} to connect to {server_addr}", site.name),
        SETTLE,
        || {
            Ok(
                match site
                    .host
                    .run(move || TcpStream::connect_timeout(&server_addr, Duration::from_secs(1)))?
                {
                    Ok(s) => Poll::Ready(s),
                    Err(e) => Poll::Pending(e.to_string()),
                },
            )
        },
    )?;
    listener.set_nonblocking(false)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
    }
    Ok((client, server))
}

/// Sends a byte each way; both arrive.
fn exchange(client: &mut TcpStream, server: &mut TcpStream) -> anyhow::Result<()> {
    let mut byte = [0u8; 1];
    client.write_all(b"c")?;
    server.set_read_timeout(Some(Duration::from_secs(3)))?;
    server
        .read_exact(&mut byte)
        .context("the server reads the client's byte")?;
    server.write_all(b"s")?;
    client.set_read_timeout(Some(Duration::from_secs(3)))?;
    client
        .read_exact(&mut byte)
        .context("the client reads the server's reply")?;
    Ok(())
}

#[test]
fn flows_follow_policy_changes_and_grants_end_on_time() {
    e2e(
        "flows_follow_policy_changes_and_grants_end_on_time",
        |lab| {
            let world = RoutesLab::build(lab, &[SiteSpec::laptop("a"), SiteSpec::laptop("b")])?;
            let net = world.network.clone();
            world.join("a")?;
            world.join("b")?;
            let (a, b) = (world.site("a")?, world.site("b")?);
            let (a4, b4) = (v4(a, &net)?, v4(b, &net)?);
            let policy = |ports: &str| {
                format!("[[allow]]\nfrom = [\"a\"]\nto = [\"b\"]\nports = [{ports}]\n")
            };
            set_policy(lab, &world, &policy("\"tcp:3000\", \"icmp\""))
                .map_err(anyhow::Error::msg)?;
            let unspecified: IpAddr = "::".parse()?;
            let listener = b
                .host
                .run(move || TcpListener::bind(SocketAddr::new(unspecified, 3000)))??;
            let _servers = [
                HttpServer::start(&b.host, SocketAddr::new(unspecified, 3001), "granted")?,
                HttpServer::start(&a.host, SocketAddr::new(unspecified, 8080), "a")?,
            ];

            // Replies to a's connection pass; b may not open one of its own.
            let (mut client, mut server) =
                open_connection(a, &listener, SocketAddr::new(b4.into(), 3000))?;
            exchange(&mut client, &mut server)?;
            refused_fast(&b.host, SocketAddr::new(a4.into(), 8080), FAST)?;
            refused_fast(&a.host, SocketAddr::new(b4.into(), 3001), FAST)?;

            // Withdraw tcp:3000: the open connection is cut within 2 s.
            set_policy(lab, &world, &policy("\"icmp\"")).map_err(anyhow::Error::msg)?;
            let withdrawn = Instant::now();
            let cut = loop {
                let mut byte = [0u8; 1];
                let sent = client.write_all(b"x");
                let outcome = match sent {
                    Err(e) => Some(format!("write: {e}")),
                    Ok(()) => match client.read(&mut byte) {
                        Ok(0) => Some("closed".to_string()),
                        Ok(_) => None,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            None
                        }
                        Err(e) => Some(format!("read: {e}")),
                    },
                };
                // The server side echoes nothing: what reaches it is drained.
                let _ = server.set_nonblocking(true);
                let _ = server.read(&mut [0u8; 64]);
                if let Some(how) = outcome {
                    break how;
                }
                if withdrawn.elapsed() > Duration::from_secs(5) {
                    bail!(
                        "the connection still runs {:?} after the rule was withdrawn",
                        withdrawn.elapsed()
                    );
                }
            };
            let took = withdrawn.elapsed();
            println!("connection cut after {took:?}: {cut}");
            ensure!(
                took <= Duration::from_secs(2),
                "the cut took {took:?}; the bound is 2 s"
            );
            refused_fast(&a.host, SocketAddr::new(b4.into(), 3000), FAST)?;

            // A 20 s grant opens tcp:3001, then ends by itself.
            let granted = SocketAddr::new(b4.into(), 3001);
            let added = Instant::now();
            let grant = world
                .admin([
                    "grant",
                    "add",
                    &net,
                    "--from",
                    "a",
                    "--to",
                    "b",
                    "--ports",
                    "tcp:3001",
                    "--for",
                    "20s",
                    "--reason",
                    "lab: a look at b's dashboard",
                ])
                .map_err(anyhow::Error::msg)?;
            println!("grant: {grant}");
            reaches(&a.host, granted, SETTLE)?;
            let ends = added + Duration::from_secs(20);
            // Its first use at each end is in the audit log, once each.
            let grant_uses = || -> warren_lab::Result<usize> {
                let audit = world
                    .admin(["audit", "--network", &net, "--json"])
                    .map_err(warren_lab::LabError::Invalid)?;
                Ok(audit.matches("\"grant.use\"").count())
            };
            wait::until("grant.use by a and b in the audit log", SETTLE, || {
                let uses = grant_uses()?;
                Ok(if uses >= 2 {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{uses} grant.use entries"))
                })
            })?;
            // Still open a little before its end.
            std::thread::sleep(Duration::from_secs(14).saturating_sub(added.elapsed()));
            reaches(&a.host, granted, Duration::from_secs(3))?;
            wait::until("the grant's flows to stop", Duration::from_secs(30), || {
                Ok(
                    match warren_lab::routes_lab::fetch(
                        &a.host,
                        granted,
                        Duration::from_millis(500),
                    )? {
                        Ok(_) => Poll::Pending("still reaches b:3001".to_string()),
                        Err(_) => Poll::Ready(()),
                    },
                )
            })?;
            let stopped = Instant::now();
            ensure!(
                stopped <= ends + Duration::from_secs(5),
                "the grant's flows stopped {:?} after its end; the bound is 5 s",
                stopped.saturating_duration_since(ends)
            );
            refused_fast(&a.host, granted, FAST)?;
            let listed = world
                .admin(["grant", "list", &net, "--all", "--json"])
                .map_err(anyhow::Error::msg)?;
            ensure!(
                listed.contains("\"active\": false") || listed.contains("\"active\":false"),
                "the grant is listed as ended: {listed}"
            );
            let uses = grant_uses()?;
            ensure!(
                uses == 2,
                "one grant.use per member that used the grant, not {uses}"
            );
            Ok(())
        },
    );
}
