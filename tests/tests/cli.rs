//! The commands the docs show that no scenario suite needs, run for real
//! against a controller and two agents and checked by what they change:
//! networks, pre-auth keys, members and route rules listed, shown and
//! deleted; `warren ping`, `routes withdraw`/`masquerade`, the service
//! list; `check-config` and `generate-assets` of both programs; token
//! list and revoke; audit export and verification against the export; and
//! a relay-only instance answering its health check. `packaging/ci-check.sh`
//! proves from the test run's command trace that every documented command
//! ran somewhere (`WARREN_CLI_TRACE`).

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use serde_json::Value;
use warren_lab::command;
use warren_lab::controller::{http_get, Controller};
use warren_lab::e2e;
use warren_lab::managed::ManagedAgent;
use warren_lab::mesh::Mesh;
use warren_lab::process::Process;
use warren_lab::wait::{self, Poll};
use warren_lab::Lab;

const POOL: &str = "10.151.0.0/16";
const SETTLE: Duration = Duration::from_secs(10);
const SUBNET: &str = "10.152.7.0/24";

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `warren ARGS` on an agent: its stdout, or an error with everything it said.
fn warren(agent: &ManagedAgent, args: &[&str]) -> anyhow::Result<String> {
    let out = command::output(&mut agent.command(args))?;
    ensure!(
        out.status.success(),
        "warren {}: {}",
        args.join(" "),
        text(&out)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn warren_json(agent: &ManagedAgent, args: &[&str]) -> anyhow::Result<Value> {
    let mut args = args.to_vec();
    args.push("--json");
    let out = warren(agent, &args)?;
    serde_json::from_str(&out).with_context(|| format!("warren {}: {out}", args.join(" ")))
}

/// A command that must fail: its stderr, checked to say `why`.
fn refused(ctl: &Controller, args: &[&str], why: &str) -> anyhow::Result<()> {
    let out = ctl.admin_output(args)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains(why),
        "warren-controller {} should fail saying {why:?}: {}",
        args.join(" "),
        text(&out)
    );
    Ok(())
}

/// The array a list command prints, whether bare or under one key.
fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Object(map) => map
            .values()
            .find_map(|v| v.as_array().cloned())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn mentions(items: &[Value], needle: &str) -> bool {
    items.iter().any(|item| item.to_string().contains(needle))
}

/// Networks, keys, members and route rules: list, show, delete.
fn controller_admin(mesh: &mut Mesh, net: &str, key: &str) -> anyhow::Result<()> {
    let ctl = &mesh.controller;
    let spare = ctl.network_create("spare", "10.153.0.0/16")?;
    let networks = list(&ctl.admin_json(&["network", "list"])?);
    ensure!(
        mentions(&networks, net) && mentions(&networks, &spare),
        "network list lacks {net} or {spare}: {networks:?}"
    );
    let shown = ctl.admin_json(&["network", "show", &spare])?;
    ensure!(
        shown.to_string().contains("spare") && shown.to_string().contains("10.153.0.0/16"),
        "network show {spare}: {shown}"
    );
    ctl.admin(&["network", "delete", &spare])?;
    let networks = list(&ctl.admin_json(&["network", "list"])?);
    ensure!(
        !mentions(&networks, &spare),
        "deleted network still listed: {networks:?}"
    );
    refused(ctl, &["network", "show", &spare], "not found")?;

    // Pre-auth keys: listed by ID (never the secret), deleted, then refused.
    let made = ctl.admin_json(&["key", "create", net])?;
    let (Some(id), Some(extra)) = (made["id"].as_str(), made["key"].as_str()) else {
        bail!("key create --json: {made}");
    };
    let keys = list(&ctl.admin_json(&["key", "list", net])?);
    ensure!(
        keys.len() >= 2 && mentions(&keys, id),
        "key list shows {keys:?}"
    );
    ensure!(
        !mentions(&keys, extra) && !mentions(&keys, key),
        "key list prints secrets: {keys:?}"
    );
    ctl.admin(&["key", "delete", net, id])?;
    let left = list(&ctl.admin_json(&["key", "list", net])?);
    ensure!(left.len() == keys.len() - 1, "key delete left {left:?}");
    // A capped key that never expires is asked for in so many words; a
    // default one expires.
    let capped = ctl.admin_json(&[
        "key",
        "create",
        net,
        "--max-uses",
        "2",
        "--expires",
        "never",
    ])?;
    ensure!(
        capped["max_uses"] == 2 && capped["reusable"] == true && capped["expires_at"].is_null(),
        "key create --max-uses 2 --expires never: {capped}"
    );
    ensure!(
        made["max_uses"] == 1 && made["expires_at"].is_string(),
        "a default key: {made}"
    );
    refused(
        ctl,
        &["key", "create", net, "--max-uses", "0"],
        "--max-uses",
    )?;
    let capped_id = capped["id"].as_str().context("key id")?;
    ctl.admin(&["key", "delete", net, capped_id])?;
    // A deleted key authorizes nobody: z is refused or left pending.
    let joined = mesh.join("z", net, Some(extra))?;
    println!("join with a deleted key: {}", joined.render());
    let z = mesh.agent("z")?.node_id().to_owned();
    let authorized = mesh
        .controller
        .members(net)?
        .into_iter()
        .any(|m| m.node_id == z && m.authorized);
    ensure!(!authorized, "a deleted pre-auth key authorized z");

    // Members: show one, delete the other; the deleted one loses its peer.
    let ctl = &mesh.controller;
    let x = mesh.agent("x")?.node_id().to_owned();
    let y = mesh.agent("y")?.node_id().to_owned();
    let member = ctl.admin_json(&["member", "show", net, &x])?;
    ensure!(
        member.to_string().contains("\"x\"") && member.to_string().contains("10.151."),
        "member show: {member}"
    );

    // Route auto-approval rules: add, list, remove.
    ctl.admin(&["route", "auto-approve", "add", "--node", &y, net, SUBNET])?;
    let rules = list(&ctl.admin_json(&["route", "auto-approve", "list", net])?);
    ensure!(mentions(&rules, SUBNET), "auto-approve list: {rules:?}");
    ctl.admin(&["route", "auto-approve", "remove", "--node", &y, net, SUBNET])?;
    let rules = list(&ctl.admin_json(&["route", "auto-approve", "list", net])?);
    ensure!(!mentions(&rules, SUBNET), "rule still listed: {rules:?}");

    ctl.admin(&["member", "delete", net, &y])?;
    let members = ctl.members(net)?;
    ensure!(
        members.iter().all(|m| m.node_id != y),
        "member delete left {y} listed"
    );
    wait::until("x to lose its deleted peer y", SETTLE, || {
        let peers = mesh.agent("x")?.status()?.peers_in(net).len();
        Ok(match peers {
            0 => Poll::Ready(()),
            n => Poll::Pending(format!("{n} peers")),
        })
    })?;
    Ok(())
}

/// `warren ping`, routes withdraw and masquerade, the service list.
fn agent_commands(mesh: &Mesh, net: &str) -> anyhow::Result<()> {
    let x = mesh.agent("x")?;
    let pong = warren(x, &["ping", "y"])?;
    ensure!(pong.contains("pong"), "warren ping y: {pong}");

    let y = mesh.agent("y")?;
    warren(y, &["routes", "advertise", SUBNET])?;
    let advertised = |agent: &ManagedAgent| -> anyhow::Result<String> {
        Ok(warren_json(agent, &["routes", "list"])?["networks"].to_string())
    };
    ensure!(
        advertised(y)?.contains(SUBNET),
        "routes list: {}",
        advertised(y)?
    );
    let routes = list(&mesh.controller.admin_json(&["route", "list", net])?);
    ensure!(mentions(&routes, SUBNET), "route list: {routes:?}");
    warren(y, &["routes", "withdraw", SUBNET])?;
    ensure!(
        !advertised(y)?.contains(SUBNET),
        "withdrawn: {}",
        advertised(y)?
    );

    for state in ["on", "off"] {
        warren(y, &["routes", "masquerade", state])?;
        let routes = warren_json(y, &["routes", "list"])?;
        let on = routes
            .pointer("/filter/masquerade")
            .and_then(Value::as_bool);
        ensure!(on == Some(state == "on"), "masquerade {state}: {routes}");
    }

    warren(x, &["service", "add", "web", "8080"])?;
    let services = warren_json(x, &["service", "list"])?;
    ensure!(
        services.to_string().contains("web"),
        "service list: {services}"
    );
    warren(x, &["service", "remove", "web"])?;
    let services = warren_json(x, &["service", "list"])?;
    ensure!(
        !services.to_string().contains("\"web\""),
        "service removed: {services}"
    );
    Ok(())
}

/// `check-config` and `generate-assets` of both programs.
fn offline_commands(mesh: &Mesh, dir: &std::path::Path) -> anyhow::Result<()> {
    let x = mesh.agent("x")?;
    let good = dir.join("warren.toml");
    std::fs::write(&good, "[node]\nlisten-port = 51900\n")?;
    let shown = warren(
        x,
        &["check-config", "--config", good.to_str().context("path")?],
    )?;
    ensure!(shown.contains("51900"), "check-config prints: {shown}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[node]\nlisten-prot = 1\n")?;
    let out = command::output(&mut x.command([
        "check-config",
        "--config",
        bad.to_str().context("path")?,
    ]))?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("listen-prot"),
        "a misspelt key: {}",
        text(&out)
    );

    let ctl = &mesh.controller;
    let conf = dir.join("controller.toml");
    std::fs::write(&conf, "relay-rate = 1000000\n")?;
    let shown = ctl.admin(&["check-config", "--config", conf.to_str().context("path")?])?;
    ensure!(
        shown.contains("1000000"),
        "controller check-config prints: {shown}"
    );
    std::fs::write(&conf, "relay-rate = \"fast\"\n")?;
    refused(
        ctl,
        &["check-config", "--config", conf.to_str().context("path")?],
        "relay-rate",
    )?;

    for (program, out) in [
        ("warren", dir.join("assets-warren")),
        ("warren-controller", dir.join("assets-ctl")),
    ] {
        let path = out.to_str().context("path")?;
        let done = if program == "warren" {
            command::output(&mut x.command(["generate-assets", "--out", path]))?
        } else {
            ctl.admin_output(&["generate-assets", "--out", path])?
        };
        ensure!(
            done.status.success(),
            "{program} generate-assets: {}",
            text(&done)
        );
        for file in [
            format!("man/{program}.1"),
            format!("completions/{program}.bash"),
            "reference.md".to_owned(),
        ] {
            ensure!(
                out.join(&file).is_file(),
                "{program} generate-assets made no {file}"
            );
        }
    }
    Ok(())
}

/// `token create|list|revoke` on the data directory: a network-scoped
/// token sees only its network, and once revoked the running controller
/// refuses it.
fn token_commands(mesh: &Mesh, net: &str) -> anyhow::Result<()> {
    let ctl = &mesh.controller;
    let dir = ctl.data_dir().to_str().context("path")?;
    let made = ctl.admin(&[
        "token",
        "create",
        "--data-dir",
        dir,
        "--scope",
        "auditor",
        "--name",
        "ci",
        "--network",
        net,
        "--expires",
        "90d",
        "--json",
    ])?;
    let made: Value = serde_json::from_str(&made).with_context(|| made.clone())?;
    let (Some(id), Some(secret)) = (made["id"].as_str(), made["token"].as_str()) else {
        bail!("token create --json: {made}");
    };
    let as_ci = |args: &[&str]| -> anyhow::Result<Output> {
        let mut cmd = ctl.command(args);
        cmd.env("WARREN_TOKEN", secret);
        Ok(command::output(&mut cmd)?)
    };
    let spare = ctl.network_create("unseen", "10.154.0.0/16")?;
    let out = as_ci(&["network", "list", "--json"])?;
    let seen = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && seen.contains(net) && !seen.contains(&spare),
        "a token scoped to {net} lists: {}",
        text(&out)
    );
    let tokens = ctl.admin_json(&["token", "list", "--data-dir", dir])?;
    let listed = list(&tokens);
    ensure!(
        listed
            .iter()
            .any(|t| t["id"] == id && t["network_id"] == net && t["expires_at"].is_string()),
        "token list: {tokens}"
    );
    ensure!(
        !tokens.to_string().contains(secret),
        "token list prints secrets"
    );
    ctl.admin(&["token", "revoke", "--data-dir", dir, id])?;
    let out = as_ci(&["network", "list"])?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("revoked"),
        "a revoked token still works: {}",
        text(&out)
    );
    ctl.admin(&["network", "delete", &spare])?;
    Ok(())
}

/// `audit export` and `audit verify --against`: the export verifies
/// against the running controller and its pinned fingerprint, and an export
/// whose head was altered, or checked against another fingerprint, fails.
fn audit_commands(mesh: &Mesh, dir: &std::path::Path) -> anyhow::Result<()> {
    let ctl = &mesh.controller;
    let file = dir.join("audit-export.json");
    let path = file.to_str().context("path")?;
    let said = ctl.admin(&["audit", "export", "--out", path])?;
    ensure!(said.contains("exported"), "audit export: {said}");
    let export: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    let head = &export["head"];
    let last = export["entries"].as_array().and_then(|e| e.last().cloned());
    ensure!(
        head["id"].as_i64().is_some_and(|id| id > 0)
            && last.is_some_and(|l| l["hash"] == head["hash"])
            && head["fingerprint"] == ctl.fingerprint(),
        "audit export wrote {head}"
    );
    // Later entries do not disturb the anchor.
    let spare = ctl.network_create("anchored", "10.154.0.0/16")?;
    ctl.admin(&["network", "delete", &spare])?;
    let ok = ctl.admin(&["audit", "verify", "--against", path])?;
    ensure!(ok.contains("is in it"), "audit verify --against: {ok}");
    ctl.admin(&[
        "audit",
        "verify",
        "--against",
        path,
        "--fingerprint",
        ctl.fingerprint(),
    ])?;
    let other = "ab".repeat(32);
    let out = ctl.admin_output(&[
        "audit",
        "verify",
        "--against",
        path,
        "--fingerprint",
        &other,
    ])?;
    ensure!(
        out.status.code() == Some(1) && String::from_utf8_lossy(&out.stdout).contains("BROKEN"),
        "an export checked against another fingerprint: {}",
        text(&out)
    );
    // A head moved forward by hand no longer carries a valid signature.
    let mut forged = export.clone();
    forged["head"]["id"] = Value::from(head["id"].as_i64().unwrap_or(0) + 1);
    let forged_file = dir.join("audit-forged.json");
    std::fs::write(&forged_file, serde_json::to_vec(&forged)?)?;
    let forged_path = forged_file.to_str().context("path")?;
    let out = ctl.admin_output(&["audit", "verify", "--against", forged_path])?;
    ensure!(
        out.status.code() == Some(1)
            && String::from_utf8_lossy(&out.stdout).contains("does not verify"),
        "a forged export: {}",
        text(&out)
    );
    Ok(())
}

/// A relay-only instance reading the controller's database serves its
/// health check, with a certificate of its own in its state directory.
fn relay_only(lab: &Lab, mesh: &Mesh) -> anyhow::Result<()> {
    let ctl = &mesh.controller;
    let ns = mesh.ns(warren_lab::mesh::CONTROLLER_ROLE)?;
    let metrics: SocketAddr = "127.0.0.1:7499".parse()?;
    let state = lab.dir().join("relay-state");
    let cmd = ctl.command([
        "relay",
        "--data-dir",
        ctl.data_dir().to_str().context("path")?,
        "--state-dir",
        state.to_str().context("path")?,
        "--listen-quic",
        "127.0.0.1:7498",
        "--listen-metrics",
        "127.0.0.1:7499",
    ]);
    let mut relay = Process::spawn(lab.dir(), "relay-only", cmd)?;
    let health = wait::until("the relay-only instance's /healthz", SETTLE, || {
        relay.ensure_running()?;
        Ok(match http_get(ns, metrics, "/healthz") {
            Ok((200, body)) => Poll::Ready(body),
            other => Poll::Pending(format!("{other:?}")),
        })
    });
    relay.stop()?;
    let body = health?;
    if body.trim().is_empty() {
        bail!("empty /healthz answer");
    }
    let own = ctl.admin_output(&["fingerprint", "--data-dir", state.to_str().context("path")?])?;
    let own = String::from_utf8_lossy(&own.stdout).trim().to_owned();
    ensure!(
        own.len() == 64 && own != ctl.fingerprint(),
        "the relay's fingerprint {own:?} is not its own (the controller's: {})",
        ctl.fingerprint()
    );
    Ok(())
}

#[test]
fn documented_commands_do_what_the_docs_say() {
    e2e("cli::documented_commands", |lab| {
        let mut mesh = Mesh::build(lab, &["x", "y", "z"])?;
        let net = mesh.controller.network_create("tour", POOL)?;
        let key = mesh.controller.key_create(&net, true)?;
        for name in ["x", "y"] {
            mesh.join_ok(name, &net, Some(&key))?;
            mesh.agent_mut(name)?
                .wait_state(&net, "authorized", SETTLE)?;
        }
        let dir = tempfile::tempdir()?;
        offline_commands(&mesh, dir.path())?;
        audit_commands(&mesh, dir.path())?;
        agent_commands(&mesh, &net)?;
        relay_only(lab, &mesh)?;
        token_commands(&mesh, &net)?;
        controller_admin(&mut mesh, &net, &key)?;
        mesh.ensure_running()?;
        Ok(())
    });
}
