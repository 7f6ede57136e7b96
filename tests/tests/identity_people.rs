//! People beyond their devices, with the real provider and browser: an
//! admin signs in on the controller and the API takes their session where
//! it takes a token; a person the provider drops loses their devices at
//! the next check.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use warren_lab::browser::Browser;
use warren_lab::identity_lab::{sign_in_from_device_page, IdentityLab};
use warren_lab::mesh::ping_pairs;
use warren_lab::oidc;
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, Lab};

const SETTLE: Duration = Duration::from_secs(15);
/// The lab's check interval at the provider (production: an hour).
const RECHECK: &str = "2s";

/// `curl` in the agent's namespace against the controller's HTTPS API with
/// a session cookie: (status, body).
fn curl(
    lab: &IdentityLab,
    from: &str,
    method: &str,
    path: &str,
    session: &str,
    origin: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let url = format!("{}{path}", lab.public_url);
    let cookie = format!("Cookie: __Host-warren-session={session}");
    let mut args = vec![
        "-sk",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "-H",
        &cookie,
        "--max-time",
        "10",
    ];
    let origin = origin.map(|o| format!("Origin: {o}"));
    if let Some(origin) = &origin {
        args.extend(["-H", origin.as_str()]);
    }
    if let Some(body) = body {
        args.extend(["-H", "Content-Type: application/json", "--data", body]);
    }
    args.push(&url);
    let out = lab.mesh.ns(from)?.output("curl", args)?;
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    Ok((code.parse().context("curl's status code")?, body.to_owned()))
}

fn sign_in_on_controller(lab: &Lab, world: &IdentityLab, login: &str) -> anyhow::Result<Browser> {
    let browser = Browser::start(lab, world.mesh.ns("a")?)?;
    browser.goto(&format!("{}/login", world.public_url))?;
    browser.click("#sign-in")?;
    oidc::sign_in(&browser, login, "any password")?;
    Ok(browser)
}

#[test]
fn an_admin_signs_in_and_the_api_takes_their_session_where_it_takes_a_token() {
    e2e("identity::admin_session", |lab| {
        let world = IdentityLab::build_with(
            lab,
            &["a"],
            "\n[roles]\nadmins = [\"group:ops\"]\nauditors = [\"user:nobody@example.com\"]\n",
        )?;
        let mut browser = sign_in_on_controller(lab, &world, "ana")?;
        browser.wait_for_text("Signed in as", SETTLE)?;
        ensure!(
            browser.text("#role")? == "admin",
            "ana's role: {}",
            browser.text("#role")?
        );
        let here = browser.current_url()?;
        ensure!(
            !here.contains("code="),
            "the code stays in the address bar: {here}"
        );
        // The browser reads the API with its session.
        browser.goto(&format!("{}/api/v1/networks", world.public_url))?;
        let source = browser.page_source()?;
        ensure!(
            source.contains(&world.net),
            "the API through the session: {source}"
        );
        let session = browser
            .cookie("__Host-warren-session")?
            .context("no session cookie")?;

        // A change with the session: from the pages' origin only.
        let origin = world.public_url.clone();
        let body = r#"{"name":"made-by-ana"}"#;
        let (status, answer) = curl(
            &world,
            "a",
            "POST",
            "/api/v1/networks",
            &session,
            Some(&origin),
            Some(body),
        )?;
        ensure!(status == 201, "POST with the session: {status} {answer}");
        let (status, answer) = curl(
            &world,
            "a",
            "POST",
            "/api/v1/networks",
            &session,
            Some("https://elsewhere.test"),
            Some(r#"{"name":"forged"}"#),
        )?;
        ensure!(status == 403, "a cross-site POST: {status} {answer}");
        let audit = world.mesh.controller.audit(None)?;
        ensure!(
            audit.iter().any(|e| e.action == "network.create"
                && e.actor.as_deref() == Some("user:ana@example.com")),
            "the audit log does not name ana for the network she made"
        );
        ensure!(
            audit.iter().any(|e| e.action == "user.session_start"),
            "no user.session_start in the audit log"
        );

        // Signed out, the session is gone.
        browser.goto(&format!("{}/me", world.public_url))?;
        browser.click("#sign-out")?;
        browser.wait_for_text("You are signed out", SETTLE)?;
        let (status, _) = curl(&world, "a", "GET", "/api/v1/networks", &session, None, None)?;
        ensure!(status == 401, "the ended session still reads: {status}");
        browser.close()?;

        // bo holds no role: a session for the console's portal, which
        // the API does not take.
        let mut browser = sign_in_on_controller(lab, &world, "bo")?;
        browser.wait_for_text("Signed in as", SETTLE)?;
        ensure!(
            browser.text("#role")? == "member",
            "bo's role: {}",
            browser.text("#role")?
        );
        let session = browser
            .cookie("__Host-warren-session")?
            .context("no session cookie for bo")?;
        let (status, answer) = curl(&world, "a", "GET", "/api/v1/networks", &session, None, None)?;
        ensure!(
            status == 403 && answer.contains("holds no admin or auditor role"),
            "the API with bo's session: {status} {answer}"
        );
        browser.close()?;
        Ok(())
    });
}

#[test]
fn a_person_the_provider_drops_loses_their_devices_at_the_next_check() {
    e2e("identity::provider_drops", |lab| {
        let mut world = IdentityLab::build_with(
            lab,
            &["a", "b"],
            &format!("recheck-every = \"{RECHECK}\"\n"),
        )?;
        let net = world.net.clone();
        let key = world.mesh.controller.key_create(&net, true)?;
        world.mesh.join_ok("b", &net, Some(&key))?;
        world
            .mesh
            .agent_mut("b")?
            .wait_state(&net, "authorized", SETTLE)?;
        let mut join = world.join_without_key(lab, "a", "60s")?;
        let page = world.printed_sign_in_url(&mut join)?;
        let mut browser = Browser::start(lab, world.mesh.ns("a")?)?;
        sign_in_from_device_page(&browser, &page, &world.public_url, "ana")?;
        browser.wait_for_text("Connect this device?", SETTLE)?;
        browser.click("#confirm")?;
        browser.wait_for_text("is connected to", SETTLE)?;
        browser.close()?;
        let exit = join.wait_exit(SETTLE)?;
        ensure!(exit.success(), "warren join: {exit}: {}", join.stderr());
        for r in ping_pairs(&world.mesh, &net, &["a", "b"], 2)? {
            ensure!(r.ok(), "{} -> {}: {}", r.from, r.to, r.report.render());
        }
        // Checks that find ana still there change nothing.
        std::thread::sleep(Duration::from_secs(3));
        ensure!(
            world
                .mesh
                .controller
                .member(&net, world.mesh.agent("a")?.node_id())?
                .state
                == "authorized",
            "a passing check cut a off"
        );

        world.provider.remove_user("ana")?;
        let removed = Instant::now();
        let a_key = world.mesh.agent("a")?.public_key().to_owned();
        wait::until(
            "a to leave b's netmap after ana left the provider",
            SETTLE,
            || {
                let there = world
                    .mesh
                    .agent("b")?
                    .status()?
                    .peers_in(&net)
                    .iter()
                    .any(|p| p.public_key() == Some(&a_key));
                Ok(if there {
                    Poll::Pending("a is still a peer".into())
                } else {
                    Poll::Ready(())
                })
            },
        )?;
        println!(
            "a left b's netmap {:?} after ana was removed at the provider (checks every {RECHECK})",
            removed.elapsed()
        );
        let audit = world.mesh.controller.audit(None)?;
        let entry = audit
            .iter()
            .find(|e| e.action == "user.removed_at_provider")
            .context("no user.removed_at_provider in the audit log")?;
        ensure!(
            entry.json.to_string().contains("invalid_grant"),
            "the entry does not say why: {}",
            entry.json
        );
        let users = world.mesh.controller.admin(&["user", "list"])?;
        ensure!(
            users
                .lines()
                .any(|l| l.contains("ana@example.com") && l.contains("disabled")),
            "user list: {users}"
        );
        world.mesh.ensure_running()?;
        Ok(())
    });
}
