//! The controller refuses what it must not accept at sign-in, end to end:
//! an ID token for another audience, an expired ID token, and a replayed
//! callback (the provider's code and state used a second time). A real
//! OpenID provider (`oidc-provider`) issues the tokens, signed with its own
//! key; a real browser (headless Chromium) follows the pages.
//!
//! The wrong tokens come from the provider's admin endpoint
//! ([`OidcProvider::rewrite_next_id_token`]): one claim changed, signed
//! again with the provider's key. After each refusal the same device signs
//! in with a token that went through the same rewrite with nothing changed,
//! and is accepted: so the refusal was for the claim, not the signature.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use warren_lab::browser::Browser;
use warren_lab::controller::AuditEntry;
use warren_lab::identity_lab::{sign_in_from_device_page, IdentityLab, CLIENT_ID, PAGE_WAIT};
use warren_lab::oidc::{IdTokenRewrite, TokenGrant};
use warren_lab::process::Process;
use warren_lab::{e2e, Lab};

/// The title of the controller's page when it refuses a sign-in.
const REFUSED: &str = "Sign-in failed";
/// The title of the page that asks to connect the device.
const CONFIRM: &str = "Connect this device?";
const USER: &str = "ana@example.com";

#[test]
fn an_id_token_for_another_audience_is_refused() {
    e2e("identity_refusals::audience", |lab| {
        refused_then_accepted(
            lab,
            &[
                // Issued to another client only.
                (
                    IdTokenRewrite::claim("aud", json!("someone-else")),
                    "Invalid audiences",
                ),
                // Issued to another client that names us too: a token
                // meant for someone else is not ours to accept either.
                (
                    IdTokenRewrite::claim("aud", json!(["someone-else", CLIENT_ID]))
                        .and("azp", json!("someone-else")),
                    "Invalid audiences",
                ),
            ],
        )
    });
}

#[test]
fn an_expired_id_token_is_refused() {
    e2e("identity_refusals::expired", |lab| {
        refused_then_accepted(
            lab,
            &[(
                IdTokenRewrite::expired(Duration::from_secs(2 * 3600)),
                "Expired",
            )],
        )
    });
}

/// Each rewrite in turn: the sign-in is refused on the page with `why` in
/// its reason, audited as `user.sign_in_failed`, the device stays pending
/// and `warren join` stops waiting, saying why. Then a token through the
/// same rewrite path with nothing changed signs the device in.
fn refused_then_accepted(lab: &Lab, refusals: &[(IdTokenRewrite, &str)]) -> anyhow::Result<()> {
    let mut world = IdentityLab::build(lab, &["a"])?;
    let mut browser = Browser::start(lab, world.mesh.ns("a")?)?;
    let a_id = world.mesh.agent("a")?.node_id().to_owned();

    for (n, (rewrite, why)) in refusals.iter().enumerate() {
        let mut join = world.join_without_key(lab, "a", "60s")?;
        let page = world.printed_sign_in_url(&mut join)?;
        world.provider.rewrite_next_id_token(rewrite)?;
        sign_in_from_device_page(&browser, &page, &world.public_url, "ana")?;
        browser.wait_for_text(REFUSED, PAGE_WAIT)?;
        let reason = browser.text("#reason")?;
        let changed = Value::Object(rewrite.set.clone());
        ensure!(
            reason.contains("the ID token was refused") && reason.contains(why),
            "{changed}: the page says {reason:?}"
        );
        // The controller did get that token: one code exchange, answered
        // with the rewritten token, and nothing after it.
        let log = world.provider.log()?;
        ensure!(
            log.token_grants == vec![code_grant(); n + 1],
            "token endpoint answers: {:?}",
            log.token_grants
        );
        let sent = &log
            .id_token_rewrites
            .get(n)
            .context("the provider rewrote no ID token")?
            .claims;
        for (claim, value) in &rewrite.set {
            ensure!(&sent[claim] == value, "the token went out with {sent}");
        }
        ensure!(
            sent["iss"] == json!(world.provider.issuer()) && sent["email"] == json!(USER),
            "the token differs in more than {changed}: {sent}"
        );
        println!("{changed} refused: {reason}");

        let member = world.mesh.controller.member(&world.net, &a_id)?;
        ensure!(member.state == "pending", "member a: {}", member.json);
        let exit = join.wait_exit(PAGE_WAIT)?;
        let said = join.stderr();
        ensure!(
            !exit.success() && said.contains("the sign-in was refused") && said.contains(why),
            "warren join after a refused sign-in: {exit}: {said}"
        );
        let audit = world.mesh.controller.audit(None)?;
        let failed = actions(&audit, "user.sign_in_failed");
        ensure!(
            failed.len() == n + 1 && failed[n].json.to_string().contains(why),
            "user.sign_in_failed entries: {:?}",
            failed.iter().map(|e| &e.json).collect::<Vec<_>>()
        );
        for action in ["user.sign_in", "member.sign_in"] {
            ensure!(
                actions(&audit, action).is_empty(),
                "a refused token left {action} in the audit log"
            );
        }
    }

    // The control: the same rewrite path, nothing changed, is accepted.
    let mut join = world.join_without_key(lab, "a", "60s")?;
    let page = world.printed_sign_in_url(&mut join)?;
    world
        .provider
        .rewrite_next_id_token(&IdTokenRewrite::unchanged())?;
    sign_in_from_device_page(&browser, &page, &world.public_url, "ana")?;
    browser.wait_for_text(CONFIRM, PAGE_WAIT)?;
    ensure!(
        world.provider.log()?.id_token_rewrites.len() == refusals.len() + 1,
        "the accepted token did not go through the rewrite"
    );
    connect_and_finish(&browser, &mut join)?;
    let member = world.mesh.controller.member(&world.net, &a_id)?;
    ensure!(
        member.state == "authorized" && member.json["owner"] == USER,
        "member a after the control sign-in: {}",
        member.json
    );
    browser.close()?;
    world.mesh.ensure_running()?;
    world.provider.ensure_running()?;
    Ok(())
}

#[test]
fn a_replayed_callback_is_refused() {
    e2e("identity_refusals::replay", |lab| {
        let mut world = IdentityLab::build(lab, &["a"])?;
        let mut join = world.join_without_key(lab, "a", "60s")?;
        let page = world.printed_sign_in_url(&mut join)?;
        let mut browser = Browser::start(lab, world.mesh.ns("a")?)?;
        sign_in_from_device_page(&browser, &page, &world.public_url, "ana")?;
        browser.wait_for_text(CONFIRM, PAGE_WAIT)?;

        // The URL the provider sent the browser to, code and state in it.
        let log = world.provider.log()?;
        let [callback] = log.authorization_redirects.as_slice() else {
            bail!("authorization responses: {:?}", log.authorization_redirects);
        };
        let prefix = format!("{}/oidc/callback?", world.public_url);
        ensure!(
            callback.starts_with(&prefix)
                && callback.contains("code=")
                && callback.contains("state="),
            "the provider sent the browser to {callback}"
        );
        ensure!(
            log.token_grants == vec![code_grant()],
            "token endpoint answers: {:?}",
            log.token_grants
        );

        // Replayed in the same browser (its cookie and all) before the
        // device is confirmed: refused, and no second confirmation.
        replay_is_refused(&world, &browser, callback, "before confirming")?;
        // The sign-in that was shown still finishes, once.
        browser.goto(&format!("{page}/confirm"))?;
        browser.wait_for_text(CONFIRM, PAGE_WAIT)?;
        connect_and_finish(&browser, &mut join)?;
        // And replayed after: refused again.
        replay_is_refused(&world, &browser, callback, "after confirming")?;
        // From a browser that never started this sign-in: refused too.
        let mut stranger = Browser::start(lab, world.mesh.ns("a")?)?;
        replay_is_refused(&world, &stranger, callback, "in another browser")?;
        stranger.close()?;

        let a_id = world.mesh.agent("a")?.node_id().to_owned();
        let member = world.mesh.controller.member(&world.net, &a_id)?;
        ensure!(
            member.state == "authorized" && member.json["owner"] == USER,
            "member a: {}",
            member.json
        );
        let audit = world.mesh.controller.audit(None)?;
        for action in ["user.sign_in", "member.sign_in"] {
            let n = actions(&audit, action).len();
            ensure!(n == 1, "{n} {action} entries in the audit log");
        }
        browser.close()?;
        world.mesh.ensure_running()?;
        world.provider.ensure_running()?;
        Ok(())
    });
}

/// `callback` opened in `browser` gets the controller's refusal, never the
/// confirmation, and the controller does not take the code to the
/// provider again (its state is used once).
fn replay_is_refused(
    world: &IdentityLab,
    browser: &Browser,
    callback: &str,
    when: &str,
) -> anyhow::Result<()> {
    browser.goto(callback)?;
    browser.wait_for_text(REFUSED, PAGE_WAIT)?;
    let title = browser.title()?;
    let text = browser.page_source()?;
    ensure!(
        title.contains(REFUSED) && !text.contains(CONFIRM) && !text.contains("id=\"confirm\""),
        "replayed {when}: {}",
        browser.whereabouts()
    );
    let grants = world.provider.log()?.token_grants;
    ensure!(
        grants == vec![code_grant()],
        "replayed {when}: the token endpoint answered {grants:?}"
    );
    println!("replayed {when}: {}", browser.text("#reason")?);
    Ok(())
}

/// Clicks "Connect" on the confirmation; `warren join` finishes as ana's.
fn connect_and_finish(browser: &Browser, join: &mut Process) -> anyhow::Result<()> {
    browser.click("#confirm")?;
    browser.wait_for_text("is connected to", PAGE_WAIT)?;
    let exit = join.wait_exit(PAGE_WAIT)?;
    let out = join.stdout();
    ensure!(
        exit.success() && out.contains(&format!("owned by {USER}")),
        "warren join: {exit}: {out} {}",
        join.stderr()
    );
    Ok(())
}

/// One successful authorization-code exchange at the token endpoint.
fn code_grant() -> TokenGrant {
    TokenGrant {
        grant_type: Some("authorization_code".into()),
        status: 200,
        error: None,
    }
}

fn actions<'a>(audit: &'a [AuditEntry], action: &str) -> Vec<&'a AuditEntry> {
    audit.iter().filter(|e| e.action == action).collect()
}
