//! People sign devices in: a real OpenID provider (`oidc-provider`, in a
//! namespace of its own), a real browser (headless Chromium over
//! WebDriver, in the device's namespace), the real controller with its
//! HTTPS pages, and `warren join` without a key.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use warren_lab::browser::Browser;
use warren_lab::identity_lab::{join_without_key, printed_sign_in_url, IdentityLab};
use warren_lab::mesh::{ping_pairs, Mesh};
use warren_lab::netns::Netns;
use warren_lab::oidc;
use warren_lab::process::Process;
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, ping, Lab};

const SETTLE: Duration = Duration::from_secs(15);
/// How soon a disabled user's devices must be gone from every peer.
const CUT_OFF: Duration = Duration::from_secs(10);

/// Waits until agent `of` is (`present`) or is not in `at`'s netmap of
/// `net`, for at most [`CUT_OFF`]; how long it took.
fn wait_in_netmap(
    mesh: &Mesh,
    net: &str,
    of: &str,
    at: &str,
    present: bool,
) -> anyhow::Result<Duration> {
    let key = mesh.agent(of)?.public_key().to_owned();
    let started = Instant::now();
    wait::until(format!("{of} in {at}'s netmap: {present}"), CUT_OFF, || {
        let there = mesh
            .agent(at)?
            .status()?
            .peers_in(net)
            .iter()
            .any(|p| p.public_key() == Some(&key));
        Ok(if there == present {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("{of} in {at}'s netmap: {there}"))
        })
    })?;
    Ok(started.elapsed())
}

#[test]
fn a_person_signs_a_device_in_and_it_is_theirs() {
    e2e("identity::sign_in", |lab| {
        // The provider runs while `_idp` lives: to the end of the test.
        let IdentityLab {
            mut mesh,
            net,
            public_url,
            provider: _idp,
        } = IdentityLab::build(lab, &["a", "b"])?;
        // b is a server: its key gives it a tag, not an owner.
        let key = mesh
            .controller
            .admin(&["key", "create", &net, "--reusable", "--tag", "tag:server"])?
            .trim()
            .to_owned();
        mesh.join_ok("b", &net, Some(&key))?;
        mesh.agent_mut("b")?
            .wait_state(&net, "authorized", SETTLE)?;

        let started = Instant::now();
        let mut join = join_without_key(lab, &mesh, &net, "a", "60s")?;
        let url = printed_sign_in_url(&mut join, &public_url)?;
        println!("warren join showed {url}");
        // The status says the same while it waits.
        let status = mesh.agent("a")?.status()?;
        let shown = status
            .find_network(&net)
            .context("a's network")?
            .0
            .get("sign_in_url")
            .and_then(|u| u.as_str())
            .map(str::to_owned);
        ensure!(
            shown.as_deref() == Some(url.as_str()),
            "status shows {shown:?}"
        );

        let mut browser = Browser::start(lab, mesh.ns("a")?)?;
        browser.goto(&url)?;
        ensure!(
            browser.text("#device")? == "a",
            "the page names device {:?}",
            browser.text("#device")?
        );
        browser.click("#sign-in")?;
        oidc::sign_in(&browser, "ana", "any password")?;
        browser.wait_for_text("Connect this device?", SETTLE)?;
        ensure!(
            browser.text("#user")? == "ana@example.com",
            "signed in as {:?}",
            browser.text("#user")?
        );
        let here = browser.current_url()?;
        ensure!(
            !here.contains("code=") && !here.contains("state="),
            "the provider's code stays in the address bar: {here}"
        );
        browser.click("#confirm")?;
        browser.wait_for_text("is connected to", SETTLE)?;

        let exit = join.wait_exit(SETTLE)?;
        let out = join.stdout();
        ensure!(
            exit.success(),
            "warren join: {exit}: {out} {}",
            join.stderr()
        );
        ensure!(
            out.contains("owned by ana@example.com"),
            "warren join printed {out:?}"
        );
        println!(
            "signed in and connected in {:?}: {}",
            started.elapsed(),
            out.trim()
        );

        // The controller knows whose device it is, and says who did it.
        let a_id = mesh.agent("a")?.node_id().to_owned();
        let member = mesh.controller.member(&net, &a_id)?;
        ensure!(
            member.state == "authorized" && member.json["owner"] == "ana@example.com",
            "member a: {}",
            member.json
        );
        let audit = mesh.controller.audit(None)?;
        for (action, actor) in [
            ("user.sign_in", "user:ana@example.com"),
            ("member.sign_in", "user:ana@example.com"),
        ] {
            ensure!(
                audit
                    .iter()
                    .any(|e| e.action == action && e.actor.as_deref() == Some(actor)),
                "no {action} by {actor} in the audit log"
            );
        }
        let status = mesh.agent("a")?.status_human()?;
        ensure!(status.contains("owner ana@example.com"), "status: {status}");
        for r in ping_pairs(&mesh, &net, &["a", "b"], 3)? {
            ensure!(r.ok(), "{} -> {}: {}", r.from, r.to, r.report.render());
        }
        browser.close()?;

        // Whoever leaves loses their devices at every peer within 10 s;
        // enabled again, they are back.
        let users = mesh.controller.admin(&["user", "list"])?;
        ensure!(
            users.contains("ana@example.com") && users.contains("ops"),
            "user list: {users}"
        );
        mesh.controller
            .admin(&["user", "disable", "ana@example.com"])?;
        let took = wait_in_netmap(&mesh, &net, "a", "b", false)?;
        println!("a left b's netmap {took:?} after its owner was disabled");
        ensure!(
            mesh.controller.member(&net, &a_id)?.state == "revoked",
            "a disabled owner's device is not shown as revoked"
        );
        mesh.controller
            .admin(&["user", "enable", "ana@example.com"])?;
        mesh.agent_mut("a")?
            .wait_state(&net, "authorized", SETTLE)?;
        for r in ping_pairs(&mesh, &net, &["a", "b"], 3)? {
            ensure!(
                r.ok(),
                "after enable: {} -> {}: {}",
                r.from,
                r.to,
                r.report.render()
            );
        }
        let audit = mesh.controller.audit(None)?;
        for action in ["user.disable", "user.enable"] {
            ensure!(
                audit.iter().any(|e| e.action == action),
                "no {action} in the audit log"
            );
        }
        rules_name_people_and_their_groups(lab, &mesh, &net)?;
        a_device_expires_and_its_owner_signs_it_in_again(lab, &mesh, &net, &public_url)?;
        // Deleted, a person takes their devices along.
        mesh.controller
            .admin(&["user", "delete", "ana@example.com"])?;
        let took = wait_in_netmap(&mesh, &net, "a", "b", false)?;
        println!("a left b's netmap {took:?} after its owner was deleted");
        let users = mesh.controller.admin(&["user", "list"])?;
        ensure!(!users.contains("ana@example.com"), "user list: {users}");
        mesh.ensure_running()?;
        Ok(())
    });
}

/// The access policy by person and by the provider's groups: ana (in the
/// provider's group ops) owns a; b joined with a key that tagged it
/// tag:server, and has no owner.
fn rules_name_people_and_their_groups(lab: &Lab, mesh: &Mesh, net: &str) -> anyhow::Result<()> {
    let set = |name: &str, text: &str| -> anyhow::Result<()> {
        let file = lab.dir().join(format!("{name}.toml"));
        std::fs::write(&file, text)?;
        let path = file.to_str().context("policy path")?;
        mesh.controller.admin(&["policy", "set", net, path])?;
        Ok(())
    };
    let (a4, b4) = (
        mesh.overlay_addr("a", net, false)?,
        mesh.overlay_addr("b", net, false)?,
    );
    set(
        "policy-ops",
        "provider-groups = [\"ops\"]\n\n[[allow]]\nfrom = [\"group:ops\"]\nto = [\"tag:server\"]\nports = [\"icmp\"]\n",
    )?;
    // b may no longer start a flow to a (the default let it) ...
    let gone = unreachable_within(mesh.ns("b")?, a4, SETTLE)?;
    println!("group:ops policy: b -> a refused after {gone:?}");
    // ... while a, in the provider's group ops, reaches b.
    ping::wait_reachable(mesh.ns("a")?, b4, SETTLE)?;
    set(
        "policy-eve",
        "[[allow]]\nfrom = [\"user:eve@elsewhere.test\"]\nto = [\"b\"]\nports = [\"icmp\"]\n",
    )?;
    let gone = unreachable_within(mesh.ns("a")?, b4, SETTLE)?;
    println!("user:eve policy: ana's a -> b refused after {gone:?}");
    set(
        "policy-ana",
        "[[allow]]\nfrom = [\"user:ana@example.com\"]\nto = [\"b\"]\nports = [\"icmp\"]\n",
    )?;
    ping::wait_reachable(mesh.ns("a")?, b4, SETTLE)?;
    Ok(())
}

/// An admin ends a's sign-in: a leaves b's netmap and says it expired;
/// `warren login` on a and its owner in a browser bring it back, with the
/// network's (shorter) period and a warning that it ends within a week.
fn a_device_expires_and_its_owner_signs_it_in_again(
    lab: &Lab,
    mesh: &Mesh,
    net: &str,
    public_url: &str,
) -> anyhow::Result<()> {
    let a_id = mesh.agent("a")?.node_id().to_owned();
    let b4 = mesh.overlay_addr("b", net, false)?;
    mesh.controller.admin(&["member", "expire", net, &a_id])?;
    let took = wait_in_netmap(mesh, net, "a", "b", false)?;
    println!("a left b's netmap {took:?} after its sign-in ended");
    ensure!(
        mesh.controller.member(net, &a_id)?.json["expired"] == true,
        "the controller does not show a as expired"
    );
    let shown = wait::until("a to say its sign-in ran out", SETTLE, || {
        let status = mesh.agent("a")?.status_human()?;
        Ok(
            if status.contains(": expired") && status.contains("warren login") {
                Poll::Ready(status)
            } else {
                Poll::Pending(status)
            },
        )
    })?;
    println!("a's status once expired:\n{shown}");
    ensure!(
        ping::ping(
            mesh.ns("a")?,
            b4,
            2,
            Duration::from_millis(200),
            Duration::from_secs(1)
        )?
        .received
            == 0,
        "an expired device still reaches b"
    );

    // A shorter period from now on: the renewed sign-in ends within a week.
    mesh.controller
        .admin(&["network", "set", net, "--device-expiry", "5d"])?;
    let agent = mesh.agent("a")?;
    let mut login = Process::spawn(
        lab.dir(),
        "login-a",
        agent.command(["login", net, "--sign-in-wait", "60s"]),
    )?;
    let url = printed_sign_in_url(&mut login, public_url)?;
    let mut browser = Browser::start(lab, mesh.ns("a")?)?;
    browser.goto(&url)?;
    browser.click("#sign-in")?;
    oidc::sign_in(&browser, "ana", "any password")?;
    browser.wait_for_text("Connect this device?", SETTLE)?;
    browser.click("#confirm")?;
    browser.wait_for_text("is connected to", SETTLE)?;
    let exit = login.wait_exit(SETTLE)?;
    let out = login.stdout();
    ensure!(
        exit.success() && out.contains("signed in again") && out.contains("ana@example.com"),
        "warren login: {exit}: {out} {}",
        login.stderr()
    );
    browser.close()?;
    wait_in_netmap(mesh, net, "a", "b", true)?;
    ping::wait_reachable(mesh.ns("a")?, b4, SETTLE)?;
    let status = mesh.agent("a")?.status_human()?;
    ensure!(
        status.contains("warning: the sign-in expires in 4days"),
        "no warning a week before: {status}"
    );
    let audit = mesh.controller.audit(None)?;
    ensure!(
        audit
            .iter()
            .filter(|e| e.action == "member.sign_in")
            .count()
            >= 2,
        "the second sign-in is not in the audit log"
    );
    ensure!(
        audit.iter().any(|e| e.action == "member.expire"),
        "no member.expire in the audit log"
    );
    Ok(())
}

/// How long until three echoes in a row from `ns` to `dst` go unanswered.
fn unreachable_within(ns: &Netns, dst: IpAddr, within: Duration) -> anyhow::Result<Duration> {
    let pinger = ping::Pinger::open(ns, dst)?;
    let start = Instant::now();
    let (mut seq, mut lost) = (1u16, 0);
    while start.elapsed() < within {
        if pinger.ping_once(seq, Duration::from_millis(300))?.is_some() {
            lost = 0;
        } else {
            lost += 1;
            if lost == 3 {
                return Ok(start.elapsed());
            }
        }
        seq = seq.wrapping_add(1);
    }
    anyhow::bail!("{dst} still answered from {} after {within:?}", ns.name())
}

#[test]
fn a_person_outside_the_allowed_domains_is_refused_and_the_device_stays_pending() {
    e2e("identity::refused", |lab| {
        // The provider runs while `_idp` lives: to the end of the test.
        let IdentityLab {
            mut mesh,
            net,
            public_url,
            provider: _idp,
        } = IdentityLab::build(lab, &["a", "b"])?;
        let mut join = join_without_key(lab, &mesh, &net, "a", "60s")?;
        let url = printed_sign_in_url(&mut join, &public_url)?;
        let mut browser = Browser::start(lab, mesh.ns("a")?)?;
        browser.goto(&url)?;
        browser.click("#sign-in")?;
        oidc::sign_in(&browser, "eve", "any password")?;
        browser.wait_for_text("Sign-in failed", SETTLE)?;
        let reason = browser.text("#reason")?;
        ensure!(
            reason.contains("eve@elsewhere.test may not sign in here"),
            "the page says {reason:?}"
        );
        // warren join stops waiting and says why.
        let exit = join.wait_exit(SETTLE)?;
        let said = join.stderr();
        ensure!(
            !exit.success()
                && said.contains("the sign-in was refused")
                && said.contains("may not sign in here"),
            "warren join after a refusal: {exit}: {said}"
        );
        // A made-up or replayed round trip is refused too.
        browser.goto(&format!(
            "{public_url}/oidc/callback?state=forged&code=forged"
        ))?;
        browser.wait_for_text("Sign-in failed", SETTLE)?;
        let a_id = mesh.agent("a")?.node_id().to_owned();
        let member = mesh.controller.member(&net, &a_id)?;
        ensure!(member.state == "pending", "member a: {}", member.json);
        let audit = mesh.controller.audit(None)?;
        ensure!(
            audit.iter().any(|e| e.action == "user.sign_in_failed"
                && e.json.to_string().contains("may not sign in here")),
            "no user.sign_in_failed entry"
        );
        browser.close()?;
        mesh.ensure_running()?;
        Ok(())
    });
}
