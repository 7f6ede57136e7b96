//! The console in a real browser (headless Chromium over WebDriver) in a
//! namespace lab with the controller, agents and the OpenID provider: an
//! admin approves a pending member and watches it come online without a
//! reload; follows a service's link from the portal to the service,
//! through the mesh; a policy edit with a failing test is refused and a
//! good one lands in the audit timeline; a person whose policy does not
//! reach the service does not see it; changes without the form token or
//! from a foreign origin are refused; a break-glass code signs an admin in.
//!
//! Screenshots of each page land in `target/screenshots/console/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context};
use warren_lab::browser::Browser;
use warren_lab::command;
use warren_lab::identity_lab::{sign_in_from_device_page, IdentityLab};
use warren_lab::oidc;
use warren_lab::routes_lab::HttpServer;
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, Lab};

const SETTLE: Duration = Duration::from_secs(20);

/// What the member's web service answers (and the address it was asked
/// from, which tells the mesh's path).
const SERVICE_PAGE: &str = "grafana through the mesh, asked by";

const POLICY_FAILING: &str =
    "[[allow]]\nfrom = [\"a\", \"b\", \"srv\"]\nto = [\"*\"]\nports = [\"*\"]\n\n\
[[test]]\nfrom = \"c\"\nto = \"srv\"\nport = \"tcp:3000\"\nexpect = \"allow\"\n";

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/console")
}

fn shot(browser: &Browser, name: &str) -> anyhow::Result<()> {
    let path = screenshot_dir().join(format!("{name}.png"));
    browser.screenshot(&path)?;
    eprintln!("console: screenshot {}", path.display());
    Ok(())
}

/// Signs in on the console's `/login` as `login` (through the provider's
/// form, or straight back if the provider still knows the browser).
fn console_sign_in(browser: &Browser, public_url: &str, login: &str) -> anyhow::Result<()> {
    browser.goto(&format!("{public_url}/login"))?;
    browser.click("#sign-in")?;
    let at_form = wait::until("the provider's form or the console", SETTLE, || {
        if browser.find_now(oidc::LOGIN_FORM)?.is_some() {
            return Ok(Poll::Ready(true));
        }
        if browser
            .current_url()?
            .starts_with(&format!("{public_url}/console"))
        {
            return Ok(Poll::Ready(false));
        }
        Ok(Poll::Pending(browser.whereabouts()))
    })?;
    if at_form {
        oidc::sign_in(browser, login, "any password")?;
    }
    browser.wait_for_text("Signed in as", SETTLE)?;
    Ok(())
}

/// Waits until `css` matches on the page as it is, without navigating.
fn wait_for(browser: &Browser, what: &str, css: &str) -> anyhow::Result<()> {
    wait::until(what.to_owned(), SETTLE, || {
        Ok(match browser.find_now(css)? {
            Some(_) => Poll::Ready(()),
            None => Poll::Pending(browser.whereabouts()),
        })
    })?;
    Ok(())
}

/// `curl` a form POST to the console from `from`'s namespace with a
/// session cookie: the status code.
fn post_form(
    world: &IdentityLab,
    from: &str,
    path: &str,
    session: &str,
    origin: &str,
    form: &str,
) -> anyhow::Result<u16> {
    let url = format!("{}{path}", world.public_url);
    let cookie = format!("Cookie: __Host-warren-session={session}");
    let origin = format!("Origin: {origin}");
    let args = [
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
        "-H",
        &cookie,
        "-H",
        &origin,
        "--data",
        form,
        &url,
    ];
    let out = world.mesh.ns(from)?.output("curl", args)?;
    out.trim().parse().context("curl's status code")
}

fn member_id(world: &IdentityLab, name: &str) -> anyhow::Result<String> {
    let members = world.mesh.controller.members(&world.net)?;
    Ok(members
        .iter()
        .find(|m| m.name == name)
        .with_context(|| format!("no member {name}"))?
        .node_id
        .clone())
}

#[test]
fn people_use_the_console_in_a_real_browser() {
    e2e("console::browser", run);
}

fn run(lab: &Lab) -> anyhow::Result<()> {
    let mut world = IdentityLab::build_with(
        lab,
        &["a", "b", "c", "srv"],
        "\n[roles]\nadmins = [\"group:ops\"]\n",
    )?;
    let net = world.net.clone();
    let public = world.public_url.clone();
    let key = world.mesh.controller.key_create(&net, true)?;
    for name in ["a", "srv"] {
        world.mesh.join_ok(name, &net, Some(&key))?;
        world
            .mesh
            .agent_mut(name)?
            .wait_state(&net, "authorized", SETTLE)?;
    }
    // srv serves a page on its overlay address and publishes it.
    let srv_ip = world.mesh.overlay_addr("srv", &net, false)?;
    let a_ip = world.mesh.overlay_addr("a", &net, false)?;
    let _web = HttpServer::start(
        world.mesh.ns("srv")?,
        SocketAddr::new(srv_ip, 3000),
        SERVICE_PAGE,
    )?;
    command::run_stdout(&mut world.mesh.agent("srv")?.command([
        "service",
        "add",
        "grafana",
        "3000",
        "--txt",
        "scheme=http",
        "--txt",
        "path=/d/home",
        "--network",
        &net,
    ]))?;

    // ana (group ops: admin) signs in from a's namespace, a member device.
    let hosts = [("srv.corp.warren.internal", srv_ip)];
    let mut browser = Browser::start_with_hosts(lab, world.mesh.ns("a")?, &hosts)?;
    browser.set_window_size(1280, 900)?;
    console_sign_in(&browser, &public, "ana")?;
    ensure!(browser.text("#role")? == "admin", "ana's role");
    shot(&browser, "networks")?;

    // The members page follows changes: b asks to join and waits.
    browser.goto(&format!("{public}/console/networks/{net}"))?;
    wait_for(&browser, "the live stream", "body[data-live='connected']")?;
    let header = browser.find("header.top")?;
    let mut join_b = world.join_without_key(lab, "b", "60s")?;
    wait_for(
        &browser,
        "b to show up as pending without a reload",
        "tr.member[data-name='b'] .state.pending",
    )?;
    browser
        .element_text(&header)
        .context("the page was reloaded, not updated in place")?;
    shot(&browser, "members-pending")?;
    browser.click("tr.member[data-name='b'] button.approve")?;
    wait_for(
        &browser,
        "b to show authorized and online",
        "tr.member[data-name='b'] .state.authorized ~ .presence.on",
    )?;
    browser
        .element_text(&header)
        .context("approving reloaded the page")?;
    shot(&browser, "members")?;
    let joined = wait::until("warren join on b to finish", SETTLE, || {
        Ok(match join_b.exit_status()? {
            Some(status) => Poll::Ready(status),
            None => Poll::Pending(join_b.stderr()),
        })
    })?;
    ensure!(joined.success(), "warren join on b: {}", join_b.stderr());

    // The portal links to srv's service; the link leads there through the
    // mesh (the page names a's overlay address as the asker).
    browser.goto(&format!("{public}/console/portal"))?;
    let link = "http://srv.corp.warren.internal:3000/d/home";
    browser.find(&format!("a.service-link[href='{link}']"))?;
    shot(&browser, "portal")?;
    browser.click(&format!("a.service-link[href='{link}']"))?;
    browser.wait_for_text(&format!("{SERVICE_PAGE} {a_ip}"), SETTLE)?;
    shot(&browser, "service-through-the-mesh")?;

    // bo signs his laptop c in; it is his device.
    let mut join_c = world.join_without_key(lab, "c", "60s")?;
    let page = world.printed_sign_in_url(&mut join_c)?;
    let mut bo = Browser::start_with_hosts(lab, world.mesh.ns("c")?, &hosts)?;
    bo.set_window_size(1280, 900)?;
    sign_in_from_device_page(&bo, &page, &public, "bo")?;
    bo.wait_for_text("Connect this device?", SETTLE)?;
    bo.click("#confirm")?;
    bo.wait_for_text("is connected to", SETTLE)?;
    world
        .mesh
        .agent_mut("c")?
        .wait_state(&net, "authorized", SETTLE)?;

    // ana edits the policy: a failing test keeps it from being saved.
    let policy_page = format!("{public}/console/networks/{net}/policy");
    browser.goto(&policy_page)?;
    let version = browser.text("#policy-version")?;
    browser.fill("#policy-edit", POLICY_FAILING)?;
    browser.click("#policy-save")?;
    browser.wait_for_text("Not saved", SETTLE)?;
    let refused = browser.text("#policy-refused")?;
    ensure!(refused.contains("test"), "the refusal: {refused}");
    ensure!(
        browser.text("#policy-version")? == version,
        "a refused policy was saved"
    );
    shot(&browser, "policy-refused")?;
    let good = POLICY_FAILING.replace("expect = \"allow\"", "expect = \"deny\"");
    browser.fill("#policy-edit", &good)?;
    browser.click("#policy-save")?;
    browser.wait_for_text("Saved as version", SETTLE)?;
    ensure!(browser.text("#policy-version")? != version, "not saved");
    shot(&browser, "policy")?;
    browser.goto(&format!("{policy_page}?from=c&to=srv&port=tcp%3A3000"))?;
    ensure!(
        browser.text("#explained")?.starts_with("Denied"),
        "explain c -> srv: {}",
        browser.text("#explained")?
    );
    browser.goto(&format!("{public}/console/audit?action=policy.set"))?;
    let timeline = browser.text("#audit")?;
    ensure!(
        timeline.contains("user:ana@example.com") && timeline.contains("policy.set"),
        "the audit timeline: {timeline}"
    );
    ensure!(
        browser.text("#audit-verify")?.contains("verifies"),
        "the chain"
    );
    shot(&browser, "audit")?;

    // bo holds no role: the portal shows nothing his laptop cannot reach.
    console_sign_in(&bo, &public, "bo")?;
    ensure!(bo.text("#role")? == "member", "bo's role");
    bo.goto(&format!("{public}/console/portal"))?;
    bo.find("#no-services")?;
    ensure!(
        !bo.page_source()?.contains("srv.corp.warren.internal"),
        "bo sees srv's service"
    );
    shot(&bo, "portal-member")?;
    bo.goto(&format!("{public}/console/devices"))?;
    bo.find("tr[id^='device-']")?;
    ensure!(bo.text("#devices")?.contains('c'), "bo's devices");
    shot(&bo, "devices")?;

    // bo asks for grafana; ana's queue shows the request without a
    // reload, she approves it, and bo's laptop reaches the service.
    browser.goto(&format!("{public}/console/queue"))?;
    wait_for(&browser, "the live stream", "body[data-live='connected']")?;
    bo.goto(&format!("{public}/console/access"))?;
    bo.fill("#request-form input[name='service']", "grafana")?;
    bo.fill("#request-form input[name='reason']", "read the dashboards")?;
    bo.click("#request-form button")?;
    wait_for(&bo, "bo's request, pending", "tr.request.pending")?;
    shot(&bo, "access-pending")?;
    wait_for(
        &browser,
        "bo's request in the queue without a reload",
        "li.request-waiting button.approve",
    )?;
    ensure!(
        browser
            .text("#requests-waiting")?
            .contains("bo@example.com"),
        "the queue: {}",
        browser.text("#requests-waiting")?
    );
    shot(&browser, "queue-request")?;
    browser.click("li.request-waiting button.approve")?;
    wait_for(&browser, "the queue to empty", "#no-requests")?;
    let grafana = "http://srv.corp.warren.internal:3000/d/home";
    bo.goto(&format!("{public}/console/portal"))?;
    bo.click(&format!("a.service-link[href='{grafana}']"))?;
    let c_ip = world.mesh.overlay_addr("c", &net, false)?;
    bo.wait_for_text(&format!("{SERVICE_PAGE} {c_ip}"), SETTLE)?;
    bo.goto(&format!("{public}/console/access"))?;
    bo.find("li.grant")?;
    wait_for(&bo, "bo's request, approved", "tr.request.approved")?;
    shot(&bo, "access")?;

    // Forged changes: without the form token, and from another origin.
    let session = browser
        .cookie("__Host-warren-session")?
        .context("ana's session cookie")?;
    browser.goto(&format!("{public}/console/networks/{net}"))?;
    // The paths a's agent reports show on its row (it reached srv).
    wait_for(
        &browser,
        "a's reported path to srv",
        "tr.member[data-name='a'] .paths .path",
    )?;
    let csrf = browser.property("input[name='csrf']", "value")?;
    let c = member_id(&world, "c")?;
    let revoke = format!("/console/networks/{net}/members/{c}/revoke");
    let status = post_form(&world, "a", &revoke, &session, &public, "")?;
    ensure!(status == 403, "no form token: {status}");
    let status = post_form(
        &world,
        "a",
        &revoke,
        &session,
        "https://elsewhere.test",
        &format!("csrf={csrf}"),
    )?;
    ensure!(status == 403, "a foreign origin: {status}");
    ensure!(
        world.mesh.controller.member(&net, &c)?.authorized,
        "a forged change went through"
    );
    // The same token from the console's own origin does it.
    let status = post_form(
        &world,
        "a",
        &revoke,
        &session,
        &public,
        &format!("csrf={csrf}"),
    )?;
    ensure!(status == 303, "a genuine change: {status}");
    ensure!(!world.mesh.controller.member(&net, &c)?.authorized);

    // At phone width.
    browser.set_window_size(390, 844)?;
    browser.goto(&format!("{public}/console/networks/{net}"))?;
    shot(&browser, "members-phone")?;
    browser.goto(&format!("{public}/console/portal"))?;
    shot(&browser, "portal-phone")?;
    browser.close()?;

    // Break-glass: a one-time code from the server signs in an admin.
    bo.click("#sign-out")?;
    bo.wait_for_text("You are signed out", SETTLE)?;
    let code = world.mesh.controller.console_login_code()?;
    bo.goto(&format!("{public}/login"))?;
    shot(&bo, "login")?;
    bo.click("summary")?;
    bo.fill("#code", &code)?;
    bo.click("#use-code")?;
    bo.wait_for_text("Signed in as", SETTLE)?;
    ensure!(bo.text("#user")? == "break-glass@warren.invalid");
    ensure!(bo.text("#role")? == "admin");
    bo.close()?;
    drop(join_c);
    Ok(())
}
