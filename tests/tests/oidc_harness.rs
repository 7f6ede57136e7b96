//! The sign-in harness proves itself: a real OpenID provider in one
//! namespace, headless Chromium and a redirect receiver (the client) in
//! another, on a star.
//!
//! A configured user signs in through the login page; the redirect carries
//! the request's `state` and a code, which the client exchanges (with the
//! PKCE verifier) for an ID token naming the issuer, the client, the nonce,
//! the user's email and groups. A used code is refused. With
//! `offline_access` the provider's session signs the user in without the
//! form and a refresh token is issued and works. An unknown login is
//! refused on the page and never reaches the client. A user removed at the
//! provider while it runs can neither refresh nor sign in again.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, ErrorKind, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};
use warren_lab::browser::Browser;
use warren_lab::http1::{form_encode, query_pairs};
use warren_lab::in_netns::NetnsThread;
use warren_lab::oidc::{
    jwt_claims, random_token, sign_in, OidcClient, OidcProvider, OidcUser, Pkce, TokenGrant,
};
use warren_lab::star::Star;
use warren_lab::{e2e, LabError, Netns};

const IDP_PORT: u16 = 9000;
const CALLBACK_PORT: u16 = 8080;
const CALLBACK_PATH: &str = "/cb";
/// How long the client waits for the browser to bring it a redirect.
const CALLBACK_WAIT: Duration = Duration::from_secs(15);
/// How long the client listens for a redirect that must not come.
const QUIET_WAIT: Duration = Duration::from_secs(2);
/// What the receiver's page says, for the browser to show.
const RECEIVED: &str = "redirect received";

/// The client's end of the redirect: an HTTP listener in the client's
/// namespace that hands every request for [`CALLBACK_PATH`] to the test.
struct RedirectReceiver {
    stop: Arc<AtomicBool>,
    thread: Option<NetnsThread<()>>,
    targets: Receiver<String>,
}

impl RedirectReceiver {
    fn start(ns: &Netns, addr: SocketAddr) -> anyhow::Result<RedirectReceiver> {
        let listener = ns
            .run(move || TcpListener::bind(addr))?
            .with_context(|| format!("binding the redirect receiver on {addr}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, targets) = mpsc::channel();
        let flag = stop.clone();
        let thread = ns.spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    // A thread per connection: Chromium opens spare
                    // connections that never carry a request.
                    Ok((stream, _)) => {
                        let tx = tx.clone();
                        std::thread::spawn(move || match Self::answer(stream, &tx) {
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(e) => eprintln!("redirect receiver: {e}"),
                            Ok(()) => {}
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })?;
        Ok(RedirectReceiver {
            stop,
            thread: Some(thread),
            targets,
        })
    }

    fn answer(stream: TcpStream, tx: &Sender<String>) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
                break;
            }
        }
        let (status, body) = if target.starts_with(CALLBACK_PATH) {
            // Gone only if the test has finished listening.
            let _ = tx.send(target);
            (
                "200 OK",
                format!("<!DOCTYPE html><title>client</title><p id=done>{RECEIVED}</p>"),
            )
        } else {
            ("404 Not Found", String::new())
        };
        let mut stream = reader.into_inner();
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// The next redirect's request target (`/cb?code=...`).
    fn next(&self, within: Duration) -> anyhow::Result<String> {
        self.targets.recv_timeout(within).map_err(|e| match e {
            RecvTimeoutError::Timeout => anyhow::anyhow!(
                "timed out after {within:?} waiting for the browser to reach {CALLBACK_PATH}"
            ),
            RecvTimeoutError::Disconnected => anyhow::anyhow!("the redirect receiver stopped"),
        })
    }

    /// Errors if a redirect arrives within `within`.
    fn none_within(&self, within: Duration) -> anyhow::Result<()> {
        match self.targets.recv_timeout(within) {
            Ok(target) => bail!("the client received a redirect it should not have: {target}"),
            Err(RecvTimeoutError::Timeout) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => bail!("the redirect receiver stopped"),
        }
    }
}

impl Drop for RedirectReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if let Err(e) = t.join() {
                eprintln!("redirect receiver: {e}");
            }
        }
    }
}

/// One authorization request, built by hand as a client would.
struct AuthRequest {
    state: String,
    nonce: String,
    pkce: Pkce,
    url: String,
}

impl AuthRequest {
    fn new(issuer: &str, client: &OidcClient, scope: &str, extra: &[(&str, &str)]) -> Self {
        let state = random_token(16);
        let nonce = random_token(16);
        let pkce = Pkce::generate();
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", client.redirect_uris[0].as_str()),
            ("scope", scope),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        params.extend_from_slice(extra);
        let url = format!("{issuer}/auth?{}", form_encode(&params));
        AuthRequest {
            state,
            nonce,
            pkce,
            url,
        }
    }

    /// The code of a redirect, after checking it answers this request.
    fn code_in(&self, target: &str, issuer: &str) -> anyhow::Result<String> {
        let pairs = query_pairs(target);
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        ensure!(
            get("error").is_none(),
            "the provider redirected with an error: {target}"
        );
        ensure!(
            get("state") == Some(self.state.as_str()),
            "redirect {target} does not carry state {}",
            self.state
        );
        ensure!(
            get("iss") == Some(issuer),
            "redirect {target} does not name issuer {issuer}"
        );
        get("code")
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .with_context(|| format!("no code in redirect {target}"))
    }

    fn exchange(
        &self,
        provider: &OidcProvider,
        from: &Netns,
        client: &OidcClient,
        code: &str,
    ) -> anyhow::Result<(u16, Value)> {
        Ok(provider.token_request(
            from,
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", client.redirect_uris[0].as_str()),
                ("code_verifier", self.pkce.verifier.as_str()),
            ],
        )?)
    }
}

fn id_token_of(tokens: &Value) -> anyhow::Result<Value> {
    let jwt = tokens["id_token"]
        .as_str()
        .with_context(|| format!("no id_token in {tokens}"))?;
    Ok(jwt_claims(jwt)?)
}

/// Chromium's leftovers in the host's /tmp and home, to prove none appear.
fn chromium_litter() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir("/tmp") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("org.chromium.") || name.starts_with(".org.chromium.") {
                found.insert(format!("/tmp/{name}"));
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let config = std::path::Path::new(&home).join(".config");
        if let Ok(entries) = std::fs::read_dir(&config) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("chromium") {
                    found.insert(config.join(name).display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn browser_signs_in_through_a_real_provider() {
    e2e("oidc_harness::sign_in", |lab| {
        let litter_before = chromium_litter();
        let star = Star::build(lab, &["idp", "client"])?;
        let idp = star.spoke("idp")?;
        let rp = star.spoke("client")?;
        let callback = SocketAddr::new(rp.addr.into(), CALLBACK_PORT);
        let client = OidcClient {
            client_id: "warren-lab".into(),
            client_secret: random_token(24),
            redirect_uris: vec![format!("http://{callback}{CALLBACK_PATH}")],
        };
        let alice = OidcUser {
            login: "alice".into(),
            email: "alice@example.org".into(),
            name: "Alice Example".into(),
            groups: vec!["ops".into(), "warren-admins".into()],
        };

        let t = Instant::now();
        let mut provider = OidcProvider::start(
            lab,
            &idp.ns,
            SocketAddr::new(idp.addr.into(), IDP_PORT),
            std::slice::from_ref(&client),
            std::slice::from_ref(&alice),
        )?;
        let provider_start = t.elapsed();
        let issuer = provider.issuer().to_owned();
        let receiver = RedirectReceiver::start(&rp.ns, callback)?;
        let t = Instant::now();
        let mut browser = Browser::start(lab, &rp.ns)?;
        let browser_start = t.elapsed();

        // A configured user signs in through the form.
        let auth = AuthRequest::new(&issuer, &client, "openid email groups", &[]);
        let t = Instant::now();
        browser.goto(&auth.url)?;
        sign_in(&browser, &alice.login, "any password will do")?;
        let target = receiver.next(CALLBACK_WAIT)?;
        let full_sign_in = t.elapsed();
        let code = auth.code_in(&target, &issuer)?;
        browser.wait_for_text(RECEIVED, Duration::from_secs(5))?;

        let t = Instant::now();
        let (status, tokens) = auth.exchange(&provider, &rp.ns, &client, &code)?;
        let exchange = t.elapsed();
        ensure!(status == 200, "token endpoint answered {status}: {tokens}");
        let claims = id_token_of(&tokens)?;
        ensure!(claims["iss"] == json!(issuer), "iss in {claims}");
        ensure!(claims["aud"] == json!(client.client_id), "aud in {claims}");
        ensure!(claims["nonce"] == json!(auth.nonce), "nonce in {claims}");
        ensure!(claims["email"] == json!(alice.email), "email in {claims}");
        ensure!(
            claims["email_verified"] == json!(true),
            "email_verified in {claims}"
        );
        ensure!(
            claims["groups"] == json!(alice.groups),
            "groups in {claims}"
        );
        ensure!(
            tokens.get("refresh_token").is_none(),
            "a refresh token without offline_access: {tokens}"
        );
        let (status, again) = auth.exchange(&provider, &rp.ns, &client, &code)?;
        ensure!(
            status == 400 && again["error"] == json!("invalid_grant"),
            "a used code was answered {status}: {again}"
        );

        // offline_access: the provider's session signs alice in without
        // the form, and the refresh token works.
        let offline = AuthRequest::new(&issuer, &client, "openid email groups offline_access", &[]);
        let t = Instant::now();
        browser.goto(&offline.url)?;
        let target = receiver.next(CALLBACK_WAIT)?;
        let sso_sign_in = t.elapsed();
        let code = offline.code_in(&target, &issuer)?;
        let (status, tokens) = offline.exchange(&provider, &rp.ns, &client, &code)?;
        ensure!(status == 200, "token endpoint answered {status}: {tokens}");
        ensure!(id_token_of(&tokens)?["nonce"] == json!(offline.nonce));
        let refresh = tokens["refresh_token"]
            .as_str()
            .with_context(|| format!("no refresh token with offline_access: {tokens}"))?;
        let (status, refreshed) = provider.token_request(
            &rp.ns,
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )?;
        ensure!(status == 200, "refresh answered {status}: {refreshed}");
        let claims = id_token_of(&refreshed)?;
        ensure!(
            claims["email"] == json!(alice.email) && claims["groups"] == json!(alice.groups),
            "refreshed ID token claims {claims}"
        );

        // An unknown login is refused on the page and gets no code.
        let stranger = AuthRequest::new(
            &issuer,
            &client,
            "openid email groups",
            &[("prompt", "login")],
        );
        browser.goto(&stranger.url)?;
        match sign_in(&browser, "mallory", "whatever") {
            Err(LabError::SignInRefused { message, .. }) => ensure!(
                message.contains("unknown login"),
                "the refusal says {message:?}"
            ),
            Err(e) => return Err(e.into()),
            Ok(()) => bail!("an unknown login was let in: {}", browser.whereabouts()),
        }
        receiver.none_within(QUIET_WAIT)?;
        let url = browser.current_url()?;
        ensure!(
            url.starts_with(&issuer),
            "after a refusal the browser is at {url}"
        );

        provider.ensure_running()?;
        let t = Instant::now();
        browser.close()?;
        let browser_close = t.elapsed();
        provider.stop()?;
        let litter = chromium_litter();
        let new: Vec<_> = litter.difference(&litter_before).collect();
        ensure!(new.is_empty(), "Chromium left {new:?} outside the lab");

        println!(
            "oidc_harness timings: provider start {provider_start:?}, browser start \
             {browser_start:?}, sign-in through the form (page load to redirect) \
             {full_sign_in:?}, code exchange {exchange:?}, signed-in session to redirect \
             {sso_sign_in:?}, browser close {browser_close:?}"
        );
        Ok(())
    });
}

#[test]
fn a_user_removed_at_the_provider_can_neither_refresh_nor_sign_in() {
    e2e("oidc_harness::remove_user", |lab| {
        let star = Star::build(lab, &["idp", "client"])?;
        let idp = star.spoke("idp")?;
        let rp = star.spoke("client")?;
        let callback = SocketAddr::new(rp.addr.into(), CALLBACK_PORT);
        let client = OidcClient {
            client_id: "warren-lab".into(),
            client_secret: random_token(24),
            redirect_uris: vec![format!("http://{callback}{CALLBACK_PATH}")],
        };
        let bob = OidcUser {
            login: "bob".into(),
            email: "bob@example.org".into(),
            name: "Bob".into(),
            groups: vec![],
        };
        let provider = OidcProvider::start(
            lab,
            &idp.ns,
            SocketAddr::new(idp.addr.into(), IDP_PORT),
            std::slice::from_ref(&client),
            std::slice::from_ref(&bob),
        )?;
        let issuer = provider.issuer().to_owned();
        let receiver = RedirectReceiver::start(&rp.ns, callback)?;
        let mut browser = Browser::start(lab, &rp.ns)?;

        let auth = AuthRequest::new(&issuer, &client, "openid email offline_access", &[]);
        browser.goto(&auth.url)?;
        sign_in(&browser, &bob.login, "any password")?;
        let code = auth.code_in(&receiver.next(CALLBACK_WAIT)?, &issuer)?;
        let (status, tokens) = auth.exchange(&provider, &rp.ns, &client, &code)?;
        ensure!(status == 200, "token endpoint answered {status}: {tokens}");
        let refresh_token = tokens["refresh_token"]
            .as_str()
            .with_context(|| format!("no refresh token with offline_access: {tokens}"))?;
        let refresh = || {
            provider.token_request(
                &rp.ns,
                &client,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
            )
        };
        let (status, refreshed) = refresh()?;
        ensure!(status == 200, "refresh answered {status}: {refreshed}");

        provider.remove_user(&bob.login)?;
        let (status, refused) = refresh()?;
        ensure!(
            status == 400 && refused["error"] == json!("invalid_grant"),
            "a removed user's refresh was answered {status}: {refused}"
        );
        ensure!(
            provider.remove_user(&bob.login).is_err(),
            "removing a user twice was not an error"
        );
        let grant = |grant_type: &str, status: u16, error: Option<&str>| TokenGrant {
            grant_type: Some(grant_type.into()),
            status,
            error: error.map(str::to_owned),
        };
        let log = provider.log()?;
        ensure!(
            log.token_grants
                == [
                    grant("authorization_code", 200, None),
                    grant("refresh_token", 200, None),
                    grant("refresh_token", 400, Some("invalid_grant")),
                ],
            "the provider's log of token answers: {:?}",
            log.token_grants
        );

        // Nor can they sign in again.
        let again = AuthRequest::new(&issuer, &client, "openid email", &[("prompt", "login")]);
        browser.goto(&again.url)?;
        match sign_in(&browser, &bob.login, "any password") {
            Err(LabError::SignInRefused { message, .. }) => ensure!(
                message.contains("unknown login"),
                "the refusal says {message:?}"
            ),
            Err(e) => return Err(e.into()),
            Ok(()) => bail!("a removed user was let in: {}", browser.whereabouts()),
        }
        receiver.none_within(QUIET_WAIT)?;
        browser.close()?;
        Ok(())
    });
}
