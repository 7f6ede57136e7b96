//! Three controller replicas on one PostgreSQL database, with real agents,
//! as `docs/high-availability.md` sets them up. PostgreSQL is Debian's
//! server, started by the test; each replica runs in a namespace of its
//! own (`serve --database`, the server's Unix socket) with a copy of one
//! data directory (one key and certificate for all).
//!
//! - An invite made on one replica carries every replica's address.
//! - The agents spread over the replicas. The one most of them use is
//!   killed (SIGKILL) while each agent pings another every 100 ms: every
//!   agent is back on another
//!   replica within 5 s, at most one ping in a hundred is lost, nobody
//!   went offline (no flapping), and every network created through the
//!   dead replica before the kill is there.
//! - An approval and a revocation made through one replica reach agents
//!   connected to the others within 1 s.
//! - PostgreSQL is killed and started again: the replicas reconnect, a
//!   write on each succeeds, and changes made afterwards still reach agents
//!   on other replicas (the replicas listen again).
//! - The audit chain verifies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use warren_lab::command;
use warren_lab::controller::{self, Controller};
use warren_lab::managed::ManagedAgent;
use warren_lab::postgres::Postgres;
use warren_lab::star::Star;
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, ping};

const POOL: &str = "10.171.0.0/16";
const SETTLE: Duration = Duration::from_secs(10);
/// The bound for an agent to move to another replica.
const MOVED_WITHIN: Duration = Duration::from_secs(5);
/// The bound for a change on one replica to reach an agent on another.
const HEARD_WITHIN: Duration = Duration::from_secs(1);
const REPLICAS: [&str; 3] = ["ctl1", "ctl2", "ctl3"];
const AGENTS: [&str; 3] = ["a", "b", "c"];
/// Pings each agent sends while the replica dies, 100 ms apart.
const PINGS: u16 = 100;

/// `(node ID, control address)` of every online member, from the
/// database: which replica holds each one's connection.
fn placement(postgres: &Postgres) -> warren_lab::error::Result<Vec<(String, String)>> {
    let out = postgres.sql(
        "warren",
        "SELECT m.node_id, coalesce(r.control, '-') FROM members m \
         LEFT JOIN replicas r ON r.id = m.online_replica WHERE m.online = 1 \
         ORDER BY 1",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(n, r)| (n.to_owned(), r.to_owned()))
        .collect())
}

/// The replica (index into `replicas`) the node `node` is connected to.
fn replica_of(postgres: &Postgres, replicas: &[Controller], node: &str) -> anyhow::Result<usize> {
    let placed = placement(postgres)?;
    let (_, control) = placed
        .iter()
        .find(|(n, _)| n == node)
        .with_context(|| format!("{node} is online nowhere: {placed:?}"))?;
    replicas
        .iter()
        .position(|r| r.quic_addr().to_string() == *control)
        .with_context(|| format!("{node} is on an unknown replica {control}"))
}

/// A replica on each of `roles`' hosts, one after another (the first
/// makes the key they share), on the database at `url`.
fn start_replicas(
    lab: &warren_lab::Lab,
    star: &Star,
    roles: &[&str],
    url: &str,
) -> anyhow::Result<Vec<Controller>> {
    let mut replicas = Vec::new();
    for role in roles {
        let spoke = star.spoke(role)?;
        let quic = SocketAddr::new(spoke.addr.into(), controller::QUIC_PORT);
        replicas.push(Controller::start_replica(
            lab,
            &spoke.ns,
            quic,
            role,
            &["--database", url],
        )?);
    }
    Ok(replicas)
}

/// `warren-controller network invite NET ARGS...`: the code it printed.
fn invite(ctl: &Controller, net: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["network", "invite", net];
    all.extend_from_slice(args);
    let out = ctl.admin(&all)?;
    out.split_whitespace()
        .find(|w| w.starts_with("wj1_"))
        .map(str::to_owned)
        .with_context(|| format!("no code in {out:?}"))
}

#[test]
fn three_replicas_survive_the_loss_of_one_and_of_postgresql() {
    e2e("replicas::failover", |lab| {
        let mut postgres = Postgres::start().context("starting PostgreSQL")?;
        postgres.create_database("warren")?;
        let url = postgres.socket_url("warren");
        let mut roles = REPLICAS.to_vec();
        roles.extend(AGENTS);
        roles.push("d");
        let star = Star::build(lab, &roles)?;
        let mut replicas = start_replicas(lab, &star, &REPLICAS, &url)?;
        let fingerprints: Vec<&str> = replicas.iter().map(Controller::fingerprint).collect();
        ensure!(
            fingerprints.iter().all(|f| *f == fingerprints[0]),
            "replicas serve different certificates: {fingerprints:?}"
        );
        let mut agents = Vec::new();
        for name in AGENTS {
            agents.push(ManagedAgent::start_with(
                lab,
                &star.spoke(name)?.ns,
                name,
                None,
                &[],
            )?);
        }

        // One invite, made on the first replica, names all three.
        let net = replicas[0].network_create("lab", POOL)?;
        let code = invite(&replicas[0], &net, &["--new-key", "--max-uses", "3"])?;
        for agent in &mut agents {
            let out = command::output(&mut agent.command(["join", &code]))?;
            ensure!(
                out.status.success(),
                "{} joins: {}",
                agent.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            agent.wait_state(&net, "authorized", SETTLE)?;
        }
        let state = std::fs::read_to_string(agents[0].state_dir().join("networks.json"))?;
        for replica in &replicas {
            let address = replica.quic_addr().to_string();
            ensure!(
                state.contains(&address),
                "the invite did not carry {address}: {state}"
            );
        }
        // Agents spread over the replicas; the one most of them use dies.
        let placed = wait::until("every agent online", SETTLE, || {
            let placed = placement(&postgres)?;
            Ok(if placed.len() == AGENTS.len() {
                Poll::Ready(placed)
            } else {
                Poll::Pending(format!("{placed:?}"))
            })
        })?;
        let used = |i: usize| {
            let address = replicas[i].quic_addr().to_string();
            placed.iter().filter(|(_, r)| *r == address).count()
        };
        let victim = (0..REPLICAS.len())
            .max_by_key(|i| used(*i))
            .context("no replicas")?;
        println!(
            "agents per replica: {:?}; killing {}",
            (0..REPLICAS.len()).map(used).collect::<Vec<_>>(),
            REPLICAS[victim]
        );
        let live: Vec<usize> = (0..REPLICAS.len()).filter(|i| *i != victim).collect();
        let mut overlay = Vec::new();
        for agent in &agents {
            overlay.push(agent.status()?.network(&net)?.ipv4()?);
        }
        for (i, agent) in agents.iter().enumerate() {
            let to = overlay[(i + 1) % overlay.len()];
            ping::wait_reachable(&star.spoke(agent.name())?.ns, to.into(), SETTLE)?;
        }

        // Writes acknowledged by that replica just before it dies.
        let written: Vec<String> = (1..=5).map(|i| format!("kept{i}")).collect();
        for (i, name) in written.iter().enumerate() {
            replicas[victim].network_create(name, &format!("10.{}.0.0/16", 180 + i))?;
        }

        // It dies under pings.
        let (reports, moved) = std::thread::scope(|scope| -> anyhow::Result<_> {
            let mut pings = Vec::new();
            for (i, agent) in agents.iter().enumerate() {
                let ns = &star.spoke(agent.name())?.ns;
                let to = overlay[(i + 1) % overlay.len()];
                pings.push(scope.spawn(move || {
                    ping::ping(
                        ns,
                        to.into(),
                        PINGS,
                        Duration::from_millis(100),
                        Duration::from_millis(500),
                    )
                }));
            }
            std::thread::sleep(Duration::from_secs(2));
            replicas[victim].kill()?;
            let killed = Instant::now();
            let moved = wait::until("every agent on another replica", MOVED_WITHIN, || {
                let placed = placement(&postgres)?;
                let dead = replicas[victim].quic_addr().to_string();
                Ok(
                    if placed.len() == AGENTS.len() && placed.iter().all(|(_, r)| *r != dead) {
                        Poll::Ready(killed.elapsed())
                    } else {
                        Poll::Pending(format!("{placed:?}"))
                    },
                )
            });
            let mut reports = Vec::new();
            for ping in pings {
                let report = ping
                    .join()
                    .map_err(|_| anyhow::anyhow!("a ping thread panicked"))??;
                reports.push(report);
            }
            Ok((reports, moved))
        })?;
        let moved = moved?;
        println!(
            "every agent on another replica {:.1} s after the kill",
            moved.as_secs_f64()
        );
        for report in &reports {
            let lost = report.sent - report.received;
            println!("ping {}: {lost} of {} lost", report.dst, report.sent);
            ensure!(
                lost * 100 <= report.sent,
                "more than one ping in a hundred lost:\n{}",
                report.render()
            );
        }
        let (x, y) = (live[0], live[1]);
        let networks = replicas[x].admin(&["network", "list"])?;
        for name in &written {
            ensure!(
                networks.contains(name.as_str()),
                "network {name}, acknowledged before the kill, is gone: {networks}"
            );
        }
        let flaps: Vec<String> = replicas[x]
            .audit(Some(&net))?
            .iter()
            .filter(|e| e.action == "member.offline")
            .map(|e| e.brief())
            .collect();
        ensure!(flaps.is_empty(), "members went offline: {flaps:?}");

        // An approval through one replica reaches an agent on another.
        let mut d = ManagedAgent::start_with(lab, &star.spoke("d")?.ns, "d", None, &[])?;
        let pending = d.join_at(
            replicas[x].quic_addr(),
            replicas[x].fingerprint(),
            &net,
            None,
            &[],
        )?;
        ensure!(pending.status.success(), "d joins: {pending:?}");
        d.wait_state(&net, "pending", SETTLE)?;
        replicas[y].authorize(&net, d.node_id())?;
        let approved = Instant::now();
        d.wait_state(&net, "authorized", HEARD_WITHIN)?;
        // d joined through one replica's address; it keeps every replica's
        // that the replica named, for its next start.
        let other_address = replicas[y].quic_addr().to_string();
        let d_state = d.state_dir().join("networks.json");
        wait::until("d to keep the other replicas' addresses", SETTLE, || {
            let state = std::fs::read_to_string(&d_state).unwrap_or_default();
            Ok(if state.contains(&other_address) {
                Poll::Ready(())
            } else {
                Poll::Pending(state)
            })
        })?;
        println!(
            "an approval on {} reached d on {} in {:.0} ms",
            REPLICAS[y],
            REPLICAS[x],
            approved.elapsed().as_secs_f64() * 1000.0
        );

        // PostgreSQL crashes and comes back under the replicas.
        postgres.kill()?;
        postgres.resume()?;
        for i in live.iter().copied() {
            let replica = &replicas[i];
            let name = format!("after{i}");
            let pool = format!("10.{}.0.0/16", 190 + i);
            wait::until(
                format!("a write on replica {} after PostgreSQL is back", i + 1),
                SETTLE * 3,
                || {
                    let out =
                        replica.admin_output(&["network", "create", &name, "--pool", &pool])?;
                    Ok(if out.status.success() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending(String::from_utf8_lossy(&out.stderr).into_owned())
                    })
                },
            )?;
        }

        // A revocation through one replica reaches its member on another,
        // over the listening connection the replicas made again.
        wait::until(
            "c online again after PostgreSQL's restart",
            SETTLE * 2,
            || {
                Ok(
                    match replica_of(&postgres, &replicas, agents[2].node_id()) {
                        Ok(i) => Poll::Ready(i),
                        Err(e) => Poll::Pending(e.to_string()),
                    },
                )
            },
        )?;
        let c_id = agents[2].node_id().to_owned();
        let on = replica_of(&postgres, &replicas, &c_id)?;
        let other = if on == x { y } else { x };
        // The replicas' followers poll once a second besides listening:
        // give them a second to be listening again before timing it.
        std::thread::sleep(Duration::from_secs(2));
        replicas[other].revoke(&net, &c_id)?;
        let revoked = Instant::now();
        agents[2].wait_state(&net, "refused", HEARD_WITHIN)?;
        println!(
            "a revocation on replica {} reached c on replica {} in {:.0} ms",
            other + 1,
            on + 1,
            revoked.elapsed().as_secs_f64() * 1000.0
        );
        ping::wait_reachable(&star.spoke("a")?.ns, overlay[1].into(), SETTLE)?;

        let verify = replicas[x].audit_verify()?;
        println!("audit verify: {}", verify.trim());
        ensure!(verify.starts_with("audit chain ok"), "{verify}");
        for i in live {
            replicas[i].ensure_running()?;
        }
        for agent in agents.iter_mut().chain(std::iter::once(&mut d)) {
            agent.ensure_running()?;
        }
        Ok(())
    });
}

/// Drops UDP between `ns` and `other` (both ways), in `ns`: no direct path.
fn block_udp(
    lab: &warren_lab::Lab,
    ns: &warren_lab::Netns,
    other: std::net::Ipv4Addr,
) -> anyhow::Result<()> {
    let path = lab.subdir("nft")?.join(format!("{}-block.nft", ns.name()));
    std::fs::write(
        &path,
        format!(
            "table inet lab_block {{\n\
             chain output {{ type filter hook output priority 0; ip daddr {other} meta l4proto udp drop; }}\n\
             chain input {{ type filter hook input priority 0; ip saddr {other} meta l4proto udp drop; }}\n\
             }}\n"
        ),
    )?;
    ns.exec("nft", [std::ffi::OsStr::new("-f"), path.as_os_str()])?;
    Ok(())
}

/// Two agents on two replicas, with no direct path between them (UDP
/// between their hosts dropped): their packets go through both replicas,
/// a's replica passing them to b's.
#[test]
fn nodes_on_different_replicas_relay_to_each_other() {
    e2e("replicas::relay", |lab| {
        let postgres = Postgres::start().context("starting PostgreSQL")?;
        postgres.create_database("warren")?;
        let url = postgres.socket_url("warren");
        let star = Star::build(lab, &["ctl1", "ctl2", "a", "b"])?;
        let mut replicas = start_replicas(lab, &star, &["ctl1", "ctl2"], &url)?;
        block_udp(lab, &star.spoke("a")?.ns, star.spoke("b")?.addr)?;
        let net = replicas[0].network_create("lab", POOL)?;
        let key = replicas[0].key_create(&net, true)?;
        let mut agents = Vec::new();
        for (name, replica) in [("a", &replicas[0]), ("b", &replicas[1])] {
            let agent = ManagedAgent::start_with(lab, &star.spoke(name)?.ns, name, None, &[])?;
            let out = agent.join_at(
                replica.quic_addr(),
                replica.fingerprint(),
                &net,
                Some(&key),
                &[],
            )?;
            ensure!(out.status.success(), "{name} joins: {out:?}");
            agents.push(agent);
        }
        for agent in &mut agents {
            agent.wait_state(&net, "authorized", SETTLE)?;
        }
        for (i, agent) in agents.iter().enumerate() {
            let on = replica_of(&postgres, &replicas, agent.node_id())?;
            ensure!(
                on == i,
                "{} is on replica {}, not {}",
                agent.name(),
                on + 1,
                i + 1
            );
        }
        let b_addr = agents[1].status()?.network(&net)?.ipv4()?;
        let a_ns = &star.spoke("a")?.ns;
        let took = ping::wait_reachable(a_ns, b_addr.into(), SETTLE * 3)?;
        println!(
            "a reaches b through two replicas after {:.1} s",
            took.as_secs_f64()
        );
        let report = ping::ping(
            a_ns,
            b_addr.into(),
            20,
            Duration::from_millis(100),
            Duration::from_secs(1),
        )?;
        println!("{}", report.render());
        ensure!(
            report.received == report.sent,
            "pings through two replicas lost:\n{}",
            report.render()
        );
        // Relayed, not direct (status names the relay as the endpoint).
        let status = agents[0].status()?;
        let peer = status.peer(agents[1].public_key())?;
        ensure!(
            peer.endpoint()?.as_deref() == Some("relay"),
            "a reaches b at {:?}, not through the relay",
            peer.endpoint()?
        );
        for replica in &mut replicas {
            replica.ensure_running()?;
        }
        Ok(())
    });
}
