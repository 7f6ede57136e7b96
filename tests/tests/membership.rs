//! Membership through the controller, end to end: a controller and three
//! agents on a routed star. One agent joins with a pre-auth key, two wait
//! for approval and are authorized through the CLI; all ping each other by
//! overlay IPv4 and IPv6 and move TCP data. Revoking one cuts it off from
//! every peer within 10 s, and `member list` and the audit log tell the
//! story in order, on a chain that `audit verify` accepts.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use warren_lab::controller::{AuditEntry, Controller};
use warren_lab::e2e;
use warren_lab::mesh::{ping_pairs, Mesh};
use warren_lab::ping::{self, Pinger};
use warren_lab::transfer::{tcp_transfer, TransferSpec};
use warren_lab::wait::{self, Poll};
use warren_lab::Netns;

const POOL: &str = "10.147.0.0/16";

/// How long a join, an authorization or a revocation gets to reach an agent.
const SETTLE: Duration = Duration::from_secs(10);

/// The bound on cutting a revoked member off.
const REVOKE_WITHIN: Duration = Duration::from_secs(10);

/// How long a cut must hold to count as one.
const CUT_HOLDS: Duration = Duration::from_secs(3);

fn assert_pings_ok(mesh: &Mesh, net: &str, names: &[&str]) -> anyhow::Result<()> {
    let results = ping_pairs(mesh, net, names, 3)?;
    let mut failed = Vec::new();
    for r in &results {
        println!("{} -> {}: {}", r.from, r.to, r.report.render());
        if !r.ok() {
            failed.push(format!(
                "{} -> {} ({}): {}/{} replies",
                r.from, r.to, r.report.dst, r.report.received, r.report.sent
            ));
        }
    }
    ensure!(failed.is_empty(), "pings failed: {}", failed.join("; "));
    Ok(())
}

/// Checks that `expected` (action, node or any) occurs in `entries` in this
/// order, other entries in between allowed.
fn assert_in_order(
    entries: &[AuditEntry],
    expected: &[(&str, Option<&str>)],
) -> anyhow::Result<()> {
    let mut rest = entries.iter();
    for (action, target) in expected {
        let found = rest
            .any(|e| e.action == *action && target.is_none_or(|t| e.target.as_deref() == Some(t)));
        if !found {
            let log: Vec<String> = entries.iter().map(AuditEntry::brief).collect();
            bail!(
                "audit log lacks {action} {} after the entries before it; log in order:\n  {}",
                target.unwrap_or("*"),
                log.join("\n  ")
            );
        }
    }
    Ok(())
}

/// One probe per direction between `cut` and each of `others`: whether any
/// of them got a reply.
fn any_reachable(
    cut: (&Netns, IpAddr),
    others: &[(&Netns, IpAddr)],
    seq: u16,
) -> anyhow::Result<bool> {
    let probe = Duration::from_millis(300);
    let mut any = false;
    for (ns, addr) in others {
        any |= Pinger::open(cut.0, *addr)?.ping_once(seq, probe)?.is_some();
        any |= Pinger::open(ns, cut.1)?.ping_once(seq, probe)?.is_some();
    }
    Ok(any)
}

/// Waits until no probe crosses between `cut` and `others` and that holds
/// for [`CUT_HOLDS`]. Returns when, counted from `since`, the first round of
/// that quiet streak ended: an upper bound on how long the cut took.
fn measure_cut(
    since: Instant,
    cut: (&Netns, IpAddr),
    others: &[(&Netns, IpAddr)],
) -> anyhow::Result<Duration> {
    let give_up = REVOKE_WITHIN + CUT_HOLDS + Duration::from_secs(5);
    let mut quiet_since: Option<Duration> = None;
    let mut seq: u16 = 1000;
    loop {
        let replied = any_reachable(cut, others, seq)?;
        seq = seq.wrapping_add(1);
        let now = since.elapsed();
        if replied {
            quiet_since = None;
        } else {
            let first = *quiet_since.get_or_insert(now);
            if now >= first + CUT_HOLDS {
                return Ok(first);
            }
        }
        if now > give_up {
            bail!("still reachable {now:?} after the revocation was issued");
        }
    }
}

fn member_states(ctl: &Controller, net: &str) -> anyhow::Result<Vec<(String, String, bool)>> {
    Ok(ctl
        .members(net)?
        .into_iter()
        .map(|m| (m.name, m.state, m.authorized))
        .collect())
}

#[test]
fn join_approve_ping_revoke_and_audit() {
    e2e("membership::lifecycle", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "b", "c"])?;
        let net = mesh.controller.network_create("lab", POOL)?;
        println!("network {net}");
        let key = mesh.controller.key_create(&net, false)?;

        // A brings a pre-auth key and is in at once.
        let out = mesh.join_ok("a", &net, Some(&key))?;
        println!("{}", out.render());
        mesh.agent_mut("a")?
            .wait_state(&net, "authorized", SETTLE)?;
        let a4 = mesh.overlay_addr("a", &net, false)?;
        ensure!(
            out.stdout.starts_with("joined") && out.stdout.contains(&format!("{a4}/")),
            "`warren join --key` should say a joined with {a4}: {}",
            out.render()
        );

        // B and C wait for an admin, and say so.
        for name in ["b", "c"] {
            let out = mesh.join_ok(name, &net, None)?;
            println!("{}", out.render());
            let status = mesh.agent_mut(name)?.wait_state(&net, "pending", SETTLE)?;
            let n = status.network(&net)?;
            ensure!(
                out.stdout.contains("waiting for an admin")
                    || n.message().is_some_and(|m| m.contains("waiting")),
                "{name} is pending but neither `warren join` nor `warren status` says it waits for approval: {}\n{}",
                out.render(),
                status.json
            );
            ensure!(
                status.peers_in(&net).is_empty(),
                "pending {name} already has peers: {}",
                status.json
            );
        }
        let states = member_states(&mesh.controller, &net)?;
        println!("members before approval: {states:?}");
        for (name, state, authorized) in &states {
            let want = if name == "a" { "authorized" } else { "pending" };
            ensure!(
                state == want && *authorized == (want == "authorized"),
                "member {name} is {state} (authorized: {authorized}), expected {want}: {states:?}"
            );
        }
        ensure!(states.len() == 3, "expected 3 members: {states:?}");
        let a_status = mesh.agent("a")?.status()?;
        ensure!(
            a_status.peers_in(&net).is_empty(),
            "a sees pending members as peers: {}",
            a_status.json
        );

        for name in ["b", "c"] {
            let node = mesh.agent(name)?.node_id().to_owned();
            mesh.controller.authorize(&net, &node)?;
        }
        for name in ["b", "c"] {
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
        }

        assert_pings_ok(&mesh, &net, &["a", "b", "c"])?;
        let b4 = mesh.overlay_addr("b", &net, false)?;
        let a6 = mesh.overlay_addr("a", &net, true)?;
        let report = tcp_transfer(mesh.ns("a")?, mesh.ns("b")?, b4, TransferSpec::mib(8))
            .context("8 MiB a -> b over overlay IPv4")?;
        println!("a -> b: {:.0} Mbit/s", report.mbit_per_s());
        let report = tcp_transfer(mesh.ns("c")?, mesh.ns("a")?, a6, TransferSpec::mib(2))
            .context("2 MiB c -> a over overlay IPv6")?;
        println!("c -> a: {:.0} Mbit/s", report.mbit_per_s());

        // The controller's view agrees with the agents'.
        for m in mesh.controller.members(&net)? {
            let agent = mesh
                .agent(&m.name)
                .with_context(|| format!("member {m:?}"))?;
            ensure!(
                m.node_id == agent.node_id(),
                "member {m:?} vs agent node ID {}",
                agent.node_id()
            );
            ensure!(
                m.state == "authorized" && m.authorized,
                "member {m:?} not authorized"
            );
            let v4 = mesh.overlay_addr(&m.name, &net, false)?.to_string();
            ensure!(
                m.addresses
                    .iter()
                    .any(|a| a.split('/').next() == Some(v4.as_str())),
                "member {} lists {:?}, its agent has {v4}",
                m.name,
                m.addresses
            );
        }
        let online = wait::until("all members online", SETTLE, || {
            let members = mesh.controller.members(&net)?;
            Ok(if members.iter().all(|m| m.online) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!(
                    "{:?}",
                    members
                        .iter()
                        .map(|m| (&m.name, m.online))
                        .collect::<Vec<_>>()
                ))
            })
        });
        online?;

        // Revoke C: it is cut off both ways within the bound.
        let c_node = mesh.agent("c")?.node_id().to_owned();
        let c4 = mesh.overlay_addr("c", &net, false)?;
        let b6 = mesh.overlay_addr("b", &net, true)?;
        let c6 = mesh.overlay_addr("c", &net, true)?;
        let revoked_at = Instant::now();
        mesh.controller.revoke(&net, &c_node)?;
        let others = [(mesh.ns("a")?, a4), (mesh.ns("b")?, b4)];
        let cut_after = measure_cut(revoked_at, (mesh.ns("c")?, c4), &others)?;
        println!("c cut off (IPv4) within {cut_after:?} of the revocation");
        ensure!(
            cut_after <= REVOKE_WITHIN,
            "c was reachable {cut_after:?} after its revocation (bound {REVOKE_WITHIN:?})"
        );
        let others6 = [(mesh.ns("a")?, a6), (mesh.ns("b")?, b6)];
        ensure!(
            !any_reachable((mesh.ns("c")?, c6), &others6, 1)?,
            "c is still reachable over overlay IPv6 after the revocation"
        );
        let status = mesh.agent_mut("c")?.wait_state(&net, "refused", SETTLE)?;
        println!(
            "c's status after the revocation: {} ({:?})",
            status.network(&net)?.state()?,
            status.network(&net)?.message()
        );
        let c_key = mesh.agent("c")?.public_key().to_owned();
        for name in ["a", "b"] {
            let s = mesh.agent(name)?.status()?;
            ensure!(
                s.peers_in(&net)
                    .iter()
                    .all(|p| p.public_key() != Some(c_key.as_str())),
                "{name} still has revoked c as a peer: {}",
                s.json
            );
        }
        // The others keep their tunnel.
        let report = ping::ping(
            mesh.ns("a")?,
            b4,
            3,
            Duration::from_millis(100),
            Duration::from_secs(2),
        )?;
        ensure!(
            report.received == 3,
            "a -> b after c's revocation:\n{}",
            report.render()
        );

        let states = member_states(&mesh.controller, &net)?;
        println!("members after the revocation: {states:?}");
        ensure!(
            states
                .iter()
                .any(|(n, s, auth)| n == "c" && s == "revoked" && !auth),
            "member list does not show c revoked: {states:?}"
        );
        ensure!(
            states
                .iter()
                .filter(|(_, s, auth)| s == "authorized" && *auth)
                .count()
                == 2,
            "a and b should stay authorized: {states:?}"
        );

        let entries = mesh.controller.audit(None)?;
        for e in &entries {
            println!(
                "audit: {} by {}",
                e.brief(),
                e.actor.as_deref().unwrap_or("?")
            );
        }
        let (a, b) = (mesh.agent("a")?.node_id(), mesh.agent("b")?.node_id());
        assert_in_order(
            &entries,
            &[
                ("network.create", None),
                ("key.create", None),
                ("member.join", Some(a)),
                ("member.join", Some(b)),
                ("member.join", Some(&c_node)),
                ("member.authorize", Some(b)),
                ("member.authorize", Some(&c_node)),
                ("member.revoke", Some(&c_node)),
            ],
        )?;
        for node in [a, b, c_node.as_str()] {
            assert_in_order(
                &entries,
                &[("member.join", Some(node)), ("member.online", Some(node))],
            )?;
        }
        let verify = mesh.controller.audit_verify().context("audit verify")?;
        println!("audit verify: {}", verify.trim());
        mesh.ensure_running()?;
        Ok(())
    });
}

#[test]
fn single_use_key_admits_only_one_node() {
    e2e("membership::single_use_key", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "b"])?;
        let net = mesh.controller.network_create("once", POOL)?;
        let key = mesh.controller.key_create(&net, false)?;
        let first = mesh.join_ok("a", &net, Some(&key))?;
        println!("{}", first.render());
        mesh.agent_mut("a")?
            .wait_state(&net, "authorized", SETTLE)?;

        let second = mesh.join("b", &net, Some(&key))?;
        println!("{}", second.render());
        // A used key must not let anyone in: the join waits for approval
        // or is refused, never authorized.
        let status =
            mesh.agent_mut("b")?
                .wait_status("the second join to settle", SETTLE, |s| {
                    Ok(match s.find_network(&net).map(|n| n.state()).transpose()? {
                        Some("connecting") => Poll::Pending("connecting".into()),
                        _ => Poll::Ready(s.clone()),
                    })
                })?;
        let state = status.find_network(&net).map(|n| n.state()).transpose()?;
        println!(
            "b after joining with a used key: {state:?}, join exit {}",
            second.status
        );
        ensure!(
            matches!(state, Some("pending") | Some("refused") | None),
            "b joined with a used single-use key and is {state:?}: {}",
            status.json
        );
        let b_node = mesh.agent("b")?.node_id().to_owned();
        let members = mesh.controller.members(&net)?;
        let authorized: Vec<&str> = members
            .iter()
            .filter(|m| m.authorized)
            .map(|m| m.name.as_str())
            .collect();
        ensure!(authorized == ["a"], "authorized members: {authorized:?}");
        if let Some(m) = members.iter().find(|m| m.node_id == b_node) {
            ensure!(m.state == "pending", "b is a member in state {}", m.state);
        }
        // Still not in after a moment, and a does not see it.
        std::thread::sleep(Duration::from_secs(2));
        let status = mesh.agent("b")?.status()?;
        ensure!(
            status.find_network(&net).map(|n| n.state()).transpose()? != Some("authorized"),
            "b became authorized: {}",
            status.json
        );
        ensure!(
            mesh.agent("a")?.status()?.peers_in(&net).is_empty(),
            "a has b as a peer"
        );
        mesh.ensure_running()?;
        Ok(())
    });
}

/// A pending member holds no name and no address, and a revoked one cannot
/// undo its revocation by leaving and joining again, even with a reusable
/// key: the agent says it is refused, `member list` still shows it
/// revoked, and no peer lets it in.
#[test]
fn pending_holds_nothing_and_revocation_sticks() {
    e2e("membership::revocation_sticks", |lab| {
        let mut mesh = Mesh::build(lab, &["a", "m", "p"])?;
        let net = mesh.controller.network_create("sticky", POOL)?;
        let key = mesh.controller.key_create(&net, true)?;
        for name in ["a", "m"] {
            mesh.join_ok(name, &net, Some(&key))?;
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
        }
        assert_pings_ok(&mesh, &net, &["a", "m"])?;

        // P waits for approval holding nothing: no address, no name in
        // the zone, no presence.
        mesh.join_ok("p", &net, None)?;
        mesh.agent_mut("p")?.wait_state(&net, "pending", SETTLE)?;
        let p_node = mesh.agent("p")?.node_id().to_owned();
        let pending = mesh.controller.member(&net, &p_node)?;
        println!("pending member: {}", pending.json);
        ensure!(
            pending.addresses.is_empty() && pending.json["name"].is_null() && !pending.online,
            "a pending member holds an address, a name or presence: {}",
            pending.json
        );
        ensure!(
            pending.name == "p",
            "member list should show the name p asked for: {}",
            pending.json
        );

        let m_node = mesh.agent("m")?.node_id().to_owned();
        let m4 = mesh.overlay_addr("m", &net, false)?;
        let a4 = mesh.overlay_addr("a", &net, false)?;
        mesh.controller.revoke(&net, &m_node)?;
        mesh.agent_mut("m")?.wait_state(&net, "refused", SETTLE)?;

        // M leaves and joins again with the reusable key.
        let left = mesh.agent("m")?.leave(&net);
        println!("m leaves: {left:?}");
        let again = mesh.join("m", &net, Some(&key))?;
        println!("m joins again: {}", again.render());
        let status = mesh.agent_mut("m")?.wait_state(&net, "refused", SETTLE)?;
        println!(
            "m after leaving and joining again: {:?}",
            status.network(&net)?.message()
        );
        // Holds for a while: nothing turns it back into a member.
        std::thread::sleep(Duration::from_secs(2));
        let member = mesh.controller.member(&net, &m_node)?;
        ensure!(
            member.state == "revoked" && !member.authorized,
            "m is {} after leave and join: {}",
            member.state,
            member.json
        );
        let status = mesh.agent("m")?.status()?;
        ensure!(
            status.find_network(&net).map(|n| n.state()).transpose()? != Some("authorized"),
            "m is authorized again: {}",
            status.json
        );
        ensure!(
            !any_reachable((mesh.ns("m")?, m4), &[(mesh.ns("a")?, a4)], 1)?,
            "revoked m reaches a after leaving and joining again"
        );
        let entries = mesh.controller.audit(Some(&net))?;
        ensure!(
            !entries
                .iter()
                .any(|e| e.action == "member.leave" && e.target.as_deref() == Some(m_node.as_str())),
            "the audit log records m leaving: its row was deleted"
        );
        mesh.ensure_running()?;
        Ok(())
    });
}
