//! People sign devices in: a real OpenID provider (`oidc-provider`, in a
//! namespace of its own), a real browser (headless Chromium over
//! WebDriver, in the device's namespace), the real controller with its
//! HTTPS pages, and `warren join` without a key.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use warren_lab::browser::Browser;
use warren_lab::controller::{self, Controller};
use warren_lab::managed::ManagedAgent;
use warren_lab::mesh::{ping_pairs, Mesh, CONTROLLER_ROLE};
use warren_lab::netns::Netns;
use warren_lab::oidc::{self, OidcClient, OidcProvider, OidcUser};
use warren_lab::process::Process;
use warren_lab::star::Star;
use warren_lab::wait::{self, Poll};
use warren_lab::{e2e, ping, Lab};

const POOL: &str = "10.147.0.0/16";
const SETTLE: Duration = Duration::from_secs(15);
/// How soon a disabled user's devices must be gone from every peer.
const CUT_OFF: Duration = Duration::from_secs(10);
const IDP_PORT: u16 = 9000;
const HTTPS_PORT: u16 = 7482;
const CLIENT_ID: &str = "warren-lab";
const CLIENT_SECRET: &str = "lab-client-secret";

struct IdentityLab {
    mesh: Mesh,
    /// A network where people sign devices in (every network is).
    net: String,
    _provider: OidcProvider,
    public_url: String,
}

fn build(lab: &Lab) -> anyhow::Result<IdentityLab> {
    let star = Star::build(lab, &[CONTROLLER_ROLE, "idp", "a", "b"])?;
    let idp = star.spoke("idp")?;
    let ctl = star.spoke(CONTROLLER_ROLE)?;
    let https = SocketAddr::new(ctl.addr.into(), HTTPS_PORT);
    let public_url = format!("https://{https}");
    let provider = OidcProvider::start(
        lab,
        &idp.ns,
        SocketAddr::new(idp.addr.into(), IDP_PORT),
        &[OidcClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: vec![format!("{public_url}/oidc/callback")],
        }],
        &[
            OidcUser {
                login: "ana".into(),
                email: "ana@example.com".into(),
                name: "Ana".into(),
                groups: vec!["ops".into()],
            },
            OidcUser {
                login: "eve".into(),
                email: "eve@elsewhere.test".into(),
                name: "Eve".into(),
                groups: vec![],
            },
        ],
    )?;
    let dir = lab.subdir("controller-config")?;
    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n"))?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let config = dir.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "listen-https = \"{https}\"\npublic-url = \"{public_url}\"\n\n[oidc]\n\
             issuer = \"{issuer}\"\nclient-id = \"{CLIENT_ID}\"\nclient-secret-file = \"{secret}\"\n\
             allowed-domains = [\"example.com\"]\n",
            issuer = provider.issuer(),
            secret = secret.display(),
        ),
    )?;
    let config = config.to_str().context("config path")?.to_owned();
    let controller = Controller::start_with(
        lab,
        &ctl.ns,
        SocketAddr::new(ctl.addr.into(), controller::QUIC_PORT),
        &["--config", &config],
    )?;
    let agents = ["a", "b"]
        .iter()
        .map(|name| ManagedAgent::start(lab, &star.spoke(name)?.ns, name, None))
        .collect::<warren_lab::Result<Vec<_>>>()?;
    let net = controller.network_create("corp", POOL)?;
    Ok(IdentityLab {
        net,
        mesh: Mesh {
            agents,
            controller,
            star,
        },
        _provider: provider,
        public_url,
    })
}

/// `warren join NETID` on `name` without a key, in the background.
fn join_without_key(lab: &Lab, mesh: &Mesh, name: &str, net: &str) -> anyhow::Result<Process> {
    let agent = mesh.agent(name)?;
    let quic = mesh.controller.quic_addr().to_string();
    let cmd = agent.command([
        "join",
        net,
        "--controller",
        &quic,
        "--fingerprint",
        mesh.controller.fingerprint(),
        "--name",
        name,
        "--sign-in-wait",
        "60s",
    ]);
    Ok(Process::spawn(lab.dir(), &format!("join-{name}"), cmd)?)
}

/// The sign-in page `warren join` printed, once it has.
fn printed_sign_in_url(join: &mut Process, public_url: &str) -> anyhow::Result<String> {
    Ok(wait::until(
        "warren join to print a sign-in page",
        SETTLE,
        || {
            let err = join.stderr();
            if let Some(url) = err
                .split_whitespace()
                .find(|w| w.starts_with(&format!("{public_url}/signin/")))
            {
                return Ok(Poll::Ready(url.to_owned()));
            }
            if let Some(status) = join.exit_status()? {
                return Err(warren_lab::LabError::Invalid(format!(
                    "warren join exited ({status}) before showing a page: {err}"
                )));
            }
            Ok(Poll::Pending(err))
        },
    )?)
}

#[test]
fn a_person_signs_a_device_in_and_it_is_theirs() {
    e2e("identity::sign_in", |lab| {
        // The provider runs while `_idp` lives: to the end of the test.
        let IdentityLab {
            mut mesh,
            net,
            public_url,
            _provider: _idp,
        } = build(lab)?;
        let key = mesh.controller.key_create(&net, true)?;
        mesh.join_ok("b", &net, Some(&key))?;
        mesh.agent_mut("b")?
            .wait_state(&net, "authorized", SETTLE)?;

        let started = Instant::now();
        let mut join = join_without_key(lab, &mesh, "a", &net)?;
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
        let a_key = mesh.agent("a")?.public_key().to_owned();
        let disabled = Instant::now();
        mesh.controller
            .admin(&["user", "disable", "ana@example.com"])?;
        mesh.agent_mut("b")?
            .wait_status("a to leave b's netmap", CUT_OFF, |s| {
                let there = s
                    .peers_in(&net)
                    .iter()
                    .any(|p| p.public_key() == Some(&a_key));
                Ok(if there {
                    Poll::Pending("a is still a peer".into())
                } else {
                    Poll::Ready(())
                })
            })?;
        println!(
            "a left b's netmap {:?} after its owner was disabled",
            disabled.elapsed()
        );
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
        let deleted = Instant::now();
        mesh.controller
            .admin(&["user", "delete", "ana@example.com"])?;
        mesh.agent_mut("b")?
            .wait_status("a to leave b's netmap", CUT_OFF, |s| {
                let there = s
                    .peers_in(&net)
                    .iter()
                    .any(|p| p.public_key() == Some(&a_key));
                Ok(if there {
                    Poll::Pending("a is still a peer".into())
                } else {
                    Poll::Ready(())
                })
            })?;
        println!(
            "a left b's netmap {:?} after its owner was deleted",
            deleted.elapsed()
        );
        let users = mesh.controller.admin(&["user", "list"])?;
        ensure!(!users.contains("ana@example.com"), "user list: {users}");
        mesh.ensure_running()?;
        Ok(())
    });
}

/// The access policy by person and by the provider's groups: ana (in the
/// provider's group ops) owns a, b carries a key and no owner.
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
        "provider-groups = [\"ops\"]\n\n[[allow]]\nfrom = [\"group:ops\"]\nto = [\"b\"]\nports = [\"icmp\"]\n",
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
    let a_key = mesh.agent("a")?.public_key().to_owned();
    let b4 = mesh.overlay_addr("b", net, false)?;
    let expired = Instant::now();
    mesh.controller.admin(&["member", "expire", net, &a_id])?;
    let b_status = |what: &str, gone: bool| -> anyhow::Result<()> {
        wait::until(what, CUT_OFF, || {
            let s = mesh.agent("b")?.status()?;
            let there = s
                .peers_in(net)
                .iter()
                .any(|p| p.public_key() == Some(&a_key));
            Ok(if there != gone {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("a in b's netmap: {there}"))
            })
        })?;
        Ok(())
    };
    b_status("a to leave b's netmap after its sign-in ended", true)?;
    println!(
        "a left b's netmap {:?} after its sign-in ended",
        expired.elapsed()
    );
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
    b_status("a to be back in b's netmap", false)?;
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
            _provider: _idp,
        } = build(lab)?;
        let mut join = join_without_key(lab, &mesh, "a", &net)?;
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
        join.stop()?;
        browser.close()?;
        mesh.ensure_running()?;
        Ok(())
    });
}
