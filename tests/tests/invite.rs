//! Joining by invite code, as the quick start shows it: root on the
//! controller's host runs `warren-controller network create` and
//! `warren-controller network invite NET --address ADDR --new-key
//! --max-uses 2 --expires 1h` with no token (the CLI uses the admin
//! socket; another user running the same is refused), and two fresh
//! agents run the `warren join CODE` it printed with nothing else (no
//! controller address, no fingerprint, no name, no key flag); both come
//! up, pinning the controller's certificate, the key is spent, and one
//! reaches the other by name (`warren ping NAME`, and ICMP to the FQDN
//! through the agent's DNS stub). A code with one character changed, or cut short, is refused
//! as a usage error (exit 2) that says to check for a typo, and joins
//! nothing; a code whose key has expired (made without --address: the
//! controller's own QUIC address) is refused with the bad-key exit code
//! 13; a code with an existing key and two controller addresses joins,
//! and the agent keeps both addresses.

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::command;
use warren_lab::controller::{self, Controller};
use warren_lab::dns::NetnsResolvConf;
use warren_lab::managed::ManagedAgent;
use warren_lab::mesh::{Mesh, CONTROLLER_ROLE};
use warren_lab::star::Star;
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, Netns};

const POOL: &str = "10.163.0.0/16";
const SETTLE: Duration = Duration::from_secs(10);
/// A second controller address for the code: never dialled (the agent
/// uses the first), kept for the replicas to come.
const REPLICA: &str = "replica.lab.invalid:7443";
/// The user `nobody`.
const NOBODY: u32 = 65534;

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// `warren-controller network invite ARGS...`, as root through the admin
/// socket: the code in the one line it prints, `warren join CODE`.
fn invite(ctl: &Controller, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["network", "invite"];
    all.extend_from_slice(args);
    let out = ctl.local_admin(&all)?;
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    let words: Vec<&str> = lines
        .first()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    ensure!(
        lines.len() == 1 && words.len() == 3 && words[..2] == ["warren", "join"],
        "network invite printed {out:?}, not one `warren join CODE` line"
    );
    ensure!(words[2].starts_with("wj1_"), "{out}");
    Ok(words[2].to_owned())
}

/// `warren join CODE` on `agent`, and nothing else.
fn join_code(agent: &ManagedAgent, code: &str) -> anyhow::Result<Output> {
    Ok(command::output(&mut agent.command(["join", code]))?)
}

/// The FQDN in `joined NET as FQDN (ADDRESSES)`.
fn joined_as(out: &Output, net: &str) -> anyhow::Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("joined {net} as ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .with_context(|| format!("no `{prefix}FQDN` line: {}", text(out)))
}

/// The controller addresses the agent keeps for network `net`.
fn kept_controllers(agent: &ManagedAgent, net: &str) -> anyhow::Result<Vec<String>> {
    let path = agent.state_dir().join("networks.json");
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let network = file["networks"]
        .as_array()
        .and_then(|nets| nets.iter().find(|n| n["network_id"] == net))
        .with_context(|| format!("{net} not in {file}"))?;
    Ok(network["controllers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// ICMP to `name` from `ns`, resolved by the system's resolver there.
fn ping_name(ns: &Netns, name: &str) -> anyhow::Result<String> {
    Ok(wait::until(format!("ping {name}"), SETTLE, || {
        let out = command::output(ns.command("ping").args(["-c", "1", "-W", "1", name]))?;
        Ok(if out.status.success() {
            Poll::Ready(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Poll::Pending(text(&out))
        })
    })?)
}

#[test]
fn a_fresh_agent_joins_with_the_code_alone_and_reaches_the_other_by_name() {
    e2e("invite::join_and_ping_by_name", |lab| {
        let star = Star::build(lab, &[CONTROLLER_ROLE, "a", "b"])?;
        // a resolves names as a laptop would: through its resolv.conf,
        // which its agent points at the stub (the namespace's own file).
        let resolv_a = NetnsResolvConf::create(&star.spoke("a")?.ns, b"nameserver 192.0.2.74\n")?;
        let ctl = star.spoke(CONTROLLER_ROLE)?;
        let controller = Controller::start(
            lab,
            &ctl.ns,
            SocketAddr::new(ctl.addr.into(), controller::QUIC_PORT),
        )?;
        let a = ManagedAgent::start_with(
            lab,
            &star.spoke("a")?.ns,
            "a",
            None,
            &["--dns-manage", "resolv-conf"],
        )?;
        let b = ManagedAgent::start(lab, &star.spoke("b")?.ns, "b", None)?;
        let mut mesh = Mesh {
            agents: vec![a, b],
            controller,
            star,
        };
        let ctl = &mesh.controller;
        // Root on the controller's host needs no token: the admin socket.
        let out = ctl.local_admin(&["network", "create", "office", "--pool", POOL])?;
        let net = out.trim().to_owned();
        ensure!(net.len() == 16, "network create printed {out:?}");
        let audit = ctl.admin_json(&["audit", "--action", "network.create"])?;
        ensure!(
            audit["entries"][0]["actor"] == "local:root",
            "the audit log names root on the admin socket: {audit}"
        );
        // Anyone else running the same is refused, and makes nothing.
        for args in [&["network", "create", "evil"][..], &["network", "list"]] {
            let out = command::output(&mut ctl.local_command_as(NOBODY, args))?;
            println!("as nobody, {}: {}", args.join(" "), text(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(
                out.status.code() == Some(1)
                    && (stderr.contains("permission denied") || stderr.contains("403 forbidden"))
                    && stderr.contains("root"),
                "{}",
                text(&out)
            );
        }
        let networks = ctl.admin_json(&["network", "list"])?;
        ensure!(
            !networks.to_string().contains("evil"),
            "nobody made a network: {networks}"
        );

        // As the quick start has it: one code with a key for two joins.
        let first = ctl.quic_addr().to_string();
        let code = invite(
            ctl,
            &[
                &net,
                "--address",
                &first,
                "--new-key",
                "--max-uses",
                "2",
                "--expires",
                "1h",
            ],
        )?;
        println!("the code ({} characters): {code}", code.len());
        let mut fqdns = Vec::new();
        for name in ["a", "b"] {
            let out = join_code(mesh.agent(name)?, &code)?;
            println!("{name} joins: {}", text(&out));
            ensure!(out.status.success(), "{}", text(&out));
            ensure!(
                !String::from_utf8_lossy(&out.stderr).contains("on first use"),
                "a code pins the certificate; nothing is trusted on first use: {}",
                text(&out)
            );
            fqdns.push(joined_as(&out, &net)?);
            ensure!(
                mesh.agent(name)?.status()?.network(&net)?.0["fingerprint"]
                    == mesh.controller.fingerprint(),
                "{name} does not pin the controller's certificate"
            );
        }
        let b_fqdn = fqdns[1].clone();
        ensure!(fqdns[0] != b_fqdn, "both joined as {b_fqdn}");
        // The key is spent: the code joins nobody else.
        let keys = mesh.controller.admin_json(&["key", "list", &net])?;
        ensure!(
            keys["keys"][0]["uses"] == 2 && keys["keys"][0]["usable"] == false,
            "the code's key after two joins: {keys}"
        );

        // Each reaches the other by name.
        let b_name = b_fqdn.split('.').next().unwrap_or_default().to_owned();
        let a_ns = mesh.ns("a")?;
        let pong = wait::until(format!("warren ping {b_name}"), SETTLE, || {
            let out = command::output(&mut mesh.agent("a")?.command(["ping", &b_name]))?;
            Ok(match out.status.success() {
                true => Poll::Ready(String::from_utf8_lossy(&out.stdout).into_owned()),
                false => Poll::Pending(text(&out)),
            })
        })?;
        println!("warren ping {b_name}: {}", pong.trim());
        ensure!(pong.contains("pong"), "{pong}");
        let icmp = ping_name(a_ns, &b_fqdn)?;
        println!("ping {b_fqdn}: {}", icmp.lines().next().unwrap_or_default());
        let b_v4 = mesh.overlay_addr("b", &net, false)?.to_string();
        let b_v6 = mesh.overlay_addr("b", &net, true)?.to_string();
        ensure!(
            icmp.contains(&format!("({b_v4})")) || icmp.contains(&format!("({b_v6})")),
            "{b_fqdn} did not resolve to b's overlay address {b_v4} or {b_v6}: {icmp}"
        );
        mesh.ensure_running()?;
        drop(mesh);
        drop(resolv_a);
        Ok(())
    });
}

#[test]
fn a_mistyped_code_and_an_expired_key_are_refused_with_their_exit_codes() {
    e2e("invite::typo_and_expired", |lab| {
        let mut mesh = Mesh::build(lab, &["c"])?;
        let net = mesh.controller.network_create("typos", POOL)?;
        let code = invite(&mesh.controller, &[&net, "--new-key"])?;

        let mut typo: Vec<char> = code.chars().collect();
        let at = typo.len() / 2;
        typo[at] = if typo[at] == 'x' { 'y' } else { 'x' };
        let typo: String = typo.into_iter().collect();
        let out = join_code(mesh.agent("c")?, &typo)?;
        println!("one character changed: {}", text(&out));
        ensure!(
            out.status.code() == Some(2)
                && String::from_utf8_lossy(&out.stderr)
                    .contains("invite code checksum does not match: check for a typo"),
            "{}",
            text(&out)
        );
        let cut = &code[..code.len() - 3];
        let out = join_code(mesh.agent("c")?, cut)?;
        println!("cut short: {}", text(&out));
        ensure!(out.status.code() == Some(2), "{}", text(&out));
        ensure!(
            mesh.agent("c")?.status()?.find_network(&net).is_none(),
            "a bad code joined"
        );

        // A key that expired between the invite and the join.
        let expired = invite(&mesh.controller, &[&net, "--new-key", "--expires", "1s"])?;
        std::thread::sleep(Duration::from_millis(1500));
        let out = join_code(mesh.agent("c")?, &expired)?;
        println!("expired key: {}", text(&out));
        ensure!(
            out.status.code() == Some(13)
                && String::from_utf8_lossy(&out.stderr).contains("refused the pre-auth key"),
            "{}",
            text(&out)
        );
        // A code with an existing key and two controller addresses: it
        // joins, and the agent keeps both addresses.
        let key = mesh.controller.key_create(&net, false)?;
        let first = mesh.controller.quic_addr().to_string();
        let good = invite(
            &mesh.controller,
            &[
                &net,
                "--key",
                &key,
                "--address",
                &first,
                "--address",
                REPLICA,
            ],
        )?;
        let out = join_code(mesh.agent("c")?, &good)?;
        println!("existing key, two addresses: {}", text(&out));
        ensure!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("joined"),
            "{}",
            text(&out)
        );
        let kept = kept_controllers(mesh.agent("c")?, &net)?;
        ensure!(
            kept == [first.clone(), REPLICA.to_owned()],
            "c keeps the controller addresses {kept:?}"
        );
        mesh.ensure_running()?;
        Ok(())
    });
}
