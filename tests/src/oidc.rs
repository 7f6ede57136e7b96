//! A real OpenID provider in a lab namespace (npm's `oidc-provider`, run by
//! `tests/oidc/provider.mjs`), signing in through it in a [`Browser`], and
//! the client-side pieces a test needs: PKCE, state and nonce, the token
//! endpoint, and reading an ID token.
//!
//! The provider knows only the users it is given; its login page takes any
//! password for a known login, refuses an unknown one on the page, and
//! consent is given automatically. Its admin endpoint, on loopback in its
//! own namespace, lets a test remove a user, make the next ID token wrong
//! in one claim (still properly signed), and read what the provider
//! answered.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand_core::{OsRng, RngCore as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::browser::Browser;
use crate::error::{LabError, Result};
use crate::http1::{self, Request};
use crate::lab::Lab;
use crate::netns::Netns;
use crate::process::Process;
use crate::wait::{self, Poll};

/// How long the provider gets to listen and answer discovery (it is
/// usually ready in about half a second).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one request to the provider may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the provider gets, after the login form is sent, to send the
/// browser on to the client.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(15);

/// The login page (see `tests/oidc/provider.mjs`).
pub const LOGIN_FORM: &str = "form#login";
pub const LOGIN_FIELD: &str = "form#login input[name=login]";
pub const PASSWORD_FIELD: &str = "form#login input[name=password]";
pub const LOGIN_SUBMIT: &str = "form#login button[type=submit]";
/// What the provider's pages say when they refuse something.
pub const ERROR_TEXT: &str = "#error";

/// Numbers the providers of one test process, for labels and directories.
static NEXT_PROVIDER: AtomicU32 = AtomicU32::new(1);

/// A client (relying party) the provider knows.
#[derive(Debug, Clone, Serialize)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

/// A person who can sign in. Any password is accepted for `login`.
#[derive(Debug, Clone, Serialize)]
pub struct OidcUser {
    pub login: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
}

/// Settings beyond clients and users.
#[derive(Debug, Clone, Default)]
pub struct OidcOptions {
    /// Lifetime of ID tokens (the provider's default is an hour).
    pub id_token_ttl: Option<Duration>,
}

/// A one-shot change to the ID token of the provider's next successful code
/// exchange: the claims in `set` are replaced and the token is signed again
/// with the provider's own key, so only those claims are wrong.
#[derive(Debug, Clone, Serialize)]
pub struct IdTokenRewrite {
    pub set: Map<String, Value>,
}

impl IdTokenRewrite {
    /// Nothing changed, only signed again: the control that proves the
    /// harness's signature is one the client accepts.
    pub fn unchanged() -> IdTokenRewrite {
        IdTokenRewrite { set: Map::new() }
    }

    /// `claim` set to `value`.
    pub fn claim(claim: &str, value: Value) -> IdTokenRewrite {
        IdTokenRewrite::unchanged().and(claim, value)
    }

    /// Also `claim` set to `value`.
    pub fn and(mut self, claim: &str, value: Value) -> IdTokenRewrite {
        self.set.insert(claim.to_owned(), value);
        self
    }

    /// A token that expired `ago` before now, issued an hour before that.
    pub fn expired(ago: Duration) -> IdTokenRewrite {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = now.saturating_sub(ago.as_secs());
        IdTokenRewrite::claim("exp", json!(exp))
            .and("iat", json!(exp.saturating_sub(3600)))
            .and("auth_time", json!(exp.saturating_sub(3600)))
    }
}

/// One answer of the provider's token endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TokenGrant {
    pub grant_type: Option<String>,
    pub status: u16,
    pub error: Option<String>,
}

/// A rewritten ID token: what was asked and the claims it went out with.
#[derive(Debug, Clone, Deserialize)]
pub struct RewrittenIdToken {
    pub set: Map<String, Value>,
    pub claims: Value,
}

/// What the provider answered since it started, in order.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderLog {
    pub token_grants: Vec<TokenGrant>,
    pub id_token_rewrites: Vec<RewrittenIdToken>,
    /// Authorization responses sent to a client's redirect URI, as the
    /// browser followed them (`REDIRECT_URI?code=...&state=...&iss=...`).
    pub authorization_redirects: Vec<String>,
}

/// `tests/oidc`, found from this crate's directory.
pub fn oidc_dir() -> PathBuf {
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate
        .parent()
        .unwrap_or(tests_crate)
        .join("tests")
        .join("oidc")
}

/// A running provider. Dropping it ends the process (by PID).
#[derive(Debug)]
pub struct OidcProvider {
    netns: String,
    addr: SocketAddr,
    issuer: String,
    token_path: String,
    /// The admin endpoint, on loopback in `netns`.
    admin: SocketAddr,
    process: Option<Process>,
}

impl OidcProvider {
    /// Starts the provider in `ns` on `addr` (an address of `ns`), with
    /// issuer `http://ADDR`, and waits until it answers discovery.
    pub fn start(
        lab: &Lab,
        ns: &Netns,
        addr: SocketAddr,
        clients: &[OidcClient],
        users: &[OidcUser],
    ) -> Result<OidcProvider> {
        Self::start_with(lab, ns, addr, clients, users, &OidcOptions::default())
    }

    /// [`OidcProvider::start`] with [`OidcOptions`].
    pub fn start_with(
        lab: &Lab,
        ns: &Netns,
        addr: SocketAddr,
        clients: &[OidcClient],
        users: &[OidcUser],
        options: &OidcOptions,
    ) -> Result<OidcProvider> {
        let dir = oidc_dir();
        let script = dir.join("provider.mjs");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            return Err(LabError::Invalid(format!(
                "{} is missing: run `npm ci --prefix tests/oidc` in the repository",
                dir.join("node_modules/oidc-provider").display()
            )));
        }
        // The admin endpoint listens on the namespace's loopback.
        ns.ip(["link", "set", "lo", "up"])?;
        let n = NEXT_PROVIDER.fetch_add(1, Ordering::Relaxed);
        let label = format!("oidc-provider-{n}");
        let issuer = format!("http://{addr}");
        let config = json!({
            "issuer": issuer,
            "listen": { "host": addr.ip().to_string(), "port": addr.port() },
            "clients": clients,
            "users": users,
            "id_token_ttl_seconds": options.id_token_ttl.map(|t| t.as_secs()),
            "admin": { "host": Ipv4Addr::LOCALHOST.to_string(), "port": 0 },
        });
        let config_path = lab.subdir(&label)?.join("provider.json");
        std::fs::write(&config_path, config.to_string())
            .map_err(|e| LabError::io(format!("writing {}", config_path.display()), e))?;
        let process = lab.spawn_in(
            ns,
            &label,
            "node",
            [script.as_os_str(), config_path.as_os_str()],
            &[],
        )?;
        let mut provider = OidcProvider {
            netns: ns.name().to_owned(),
            addr,
            issuer,
            token_path: String::new(),
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            process: Some(process),
        };
        provider.wait_ready()?;
        Ok(provider)
    }

    /// Waits for `ready ISSUER` on stdout (after `admin http://ADDR`), then
    /// for discovery to name the issuer; remembers the admin address and
    /// the token endpoint.
    fn wait_ready(&mut self) -> Result<()> {
        let want = format!("ready {}", self.issuer);
        self.admin = wait::until(
            "the OpenID provider to print `ready`",
            READY_TIMEOUT,
            || {
                let process = self.process_mut()?;
                process.ensure_running()?;
                let out = process.stdout();
                if !out.lines().any(|l| l == want) {
                    return Ok(Poll::Pending(format!("stdout {out:?}")));
                }
                let admin = out
                    .lines()
                    .find_map(|l| l.strip_prefix("admin http://"))
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| LabError::Output {
                        what: "the OpenID provider's stdout".into(),
                        detail: format!("no `admin http://ADDR` line before `ready`: {out:?}"),
                    })?;
                Ok(Poll::Ready(admin))
            },
        )?;
        let doc = wait::until(
            "the OpenID provider to answer discovery",
            READY_TIMEOUT,
            || {
                self.ensure_running()?;
                Ok(match self.discovery() {
                    Ok(doc) => Poll::Ready(doc),
                    Err(e) => Poll::Pending(e.to_string()),
                })
            },
        )?;
        if doc["issuer"] != json!(self.issuer) {
            return Err(LabError::Output {
                what: "OpenID discovery".into(),
                detail: format!("issuer {} instead of {}", doc["issuer"], self.issuer),
            });
        }
        let token = doc["token_endpoint"].as_str().unwrap_or("");
        self.token_path = token
            .strip_prefix(&self.issuer)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| LabError::Output {
                what: "OpenID discovery".into(),
                detail: format!("token endpoint {token:?} is not under {}", self.issuer),
            })?
            .to_owned();
        Ok(())
    }

    fn process_mut(&mut self) -> Result<&mut Process> {
        self.process
            .as_mut()
            .ok_or_else(|| LabError::Invalid("the OpenID provider is stopped".into()))
    }

    /// `http://ADDR`, exactly as the provider puts it in tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The discovery document, fetched from the provider's own namespace.
    pub fn discovery(&self) -> Result<Value> {
        let req = Request::new("GET", "/.well-known/openid-configuration", REQUEST_TIMEOUT);
        let reply = http1::send(&self.netns, self.addr, &req)?;
        if reply.status != 200 {
            return Err(LabError::Output {
                what: "OpenID discovery".into(),
                detail: format!("HTTP {}: {}", reply.status, reply.text()),
            });
        }
        reply.json("OpenID discovery")
    }

    /// POSTs `form` to the token endpoint from inside `from`, as `client`
    /// (HTTP Basic client authentication); returns the status and JSON.
    pub fn token_request(
        &self,
        from: &Netns,
        client: &OidcClient,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        let credentials = format!(
            "{}:{}",
            http1::percent_encode(&client.client_id),
            http1::percent_encode(&client.client_secret)
        );
        let req = Request::new("POST", &self.token_path, REQUEST_TIMEOUT)
            .header(
                "Authorization",
                format!("Basic {}", STANDARD.encode(credentials)),
            )
            .form(form);
        let reply = http1::send(from.name(), self.addr, &req)?;
        let json = reply.json("the OpenID token endpoint")?;
        Ok((reply.status, json))
    }

    /// Makes the provider's next successful code exchange answer with an
    /// ID token changed by `rewrite` (once). Errors if one is armed already.
    pub fn rewrite_next_id_token(&self, rewrite: &IdTokenRewrite) -> Result<()> {
        let body = serde_json::to_value(rewrite).map_err(|e| LabError::Output {
            what: "an ID token rewrite".into(),
            detail: e.to_string(),
        })?;
        let req = Request::new("POST", "/id-token-rewrites", REQUEST_TIMEOUT).json(&body);
        self.admin_call(&req, 204)
    }

    /// Removes `login` while the provider runs: it can no longer sign in,
    /// and its refresh tokens are refused (`invalid_grant`), as at a
    /// provider where the person was deleted.
    pub fn remove_user(&self, login: &str) -> Result<()> {
        let path = format!("/users/{}", http1::percent_encode(login));
        self.admin_call(&Request::new("DELETE", &path, REQUEST_TIMEOUT), 204)
    }

    /// What the provider answered so far (see [`ProviderLog`]).
    pub fn log(&self) -> Result<ProviderLog> {
        let reply = http1::send(
            &self.netns,
            self.admin,
            &Request::new("GET", "/log", REQUEST_TIMEOUT),
        )?;
        let value = reply.json("the OpenID provider's log")?;
        serde_json::from_value(value).map_err(|e| LabError::Output {
            what: "the OpenID provider's log".into(),
            detail: e.to_string(),
        })
    }

    fn admin_call(&self, req: &Request<'_>, want: u16) -> Result<()> {
        let reply = http1::send(&self.netns, self.admin, req)?;
        if reply.status != want {
            return Err(LabError::Output {
                what: format!("the OpenID provider's admin {} {}", req.method, req.path),
                detail: format!("HTTP {} instead of {want}: {}", reply.status, reply.text()),
            });
        }
        Ok(())
    }

    /// Errors with the log tail if the provider has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process_mut()?.ensure_running()
    }

    /// SIGTERM (SIGKILL after a grace period); errors if it had already
    /// died or did not exit cleanly.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        process.ensure_running()?;
        let status = process.stop()?;
        if !status.success() {
            return Err(LabError::Output {
                what: "the OpenID provider's exit".into(),
                detail: format!("{status}; stderr: {}", process.stderr()),
            });
        }
        Ok(())
    }
}

/// A PKCE verifier and its S256 challenge (RFC 7636).
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Pkce {
        Self::from_verifier(random_token(32))
    }

    pub fn from_verifier(verifier: String) -> Pkce {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// `bytes` random bytes as unpadded base64url, for state, nonce and PKCE.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The claims of a JWT (its payload), unverified: the tests compare them.
pub fn jwt_claims(jwt: &str) -> Result<Value> {
    let bad = |detail: String| LabError::Output {
        what: "a JWT".into(),
        detail,
    };
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| bad(format!("no payload in {jwt:?}")))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| bad(format!("payload is not base64url: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("payload is not JSON: {e}")))
}

/// `scheme://host:port` of a URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Completes the provider's login page, on which `browser` must be (or be
/// about to arrive), and waits until the provider has sent the browser on
/// to the client. An unknown login fails with [`LabError::SignInRefused`]
/// carrying the page's message.
pub fn sign_in(browser: &Browser, login: &str, password: &str) -> Result<()> {
    browser.find(LOGIN_FORM)?;
    let page = browser.current_url()?;
    let provider = origin_of(&page).to_owned();
    browser.fill(LOGIN_FIELD, login)?;
    browser.fill(PASSWORD_FIELD, password)?;
    browser.click(LOGIN_SUBMIT)?;
    wait::until(
        format!("the provider at {provider} to let {login:?} in"),
        SIGN_IN_TIMEOUT,
        || {
            let url = browser.current_url()?;
            if !url.starts_with(&provider) {
                return Ok(Poll::Ready(()));
            }
            if browser.find_now(ERROR_TEXT)?.is_some() {
                return Err(LabError::SignInRefused {
                    login: login.to_owned(),
                    message: browser.text(ERROR_TEXT)?,
                });
            }
            Ok(Poll::Pending(browser.whereabouts()))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(
            pkce.challenge,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(Pkce::generate().verifier.len(), 43);
    }

    #[test]
    fn reads_jwt_claims_and_origins() -> Result<()> {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"http://192.0.2.10:9000","groups":["a"]}"#);
        let claims = jwt_claims(&format!("eyJhbGciOiJub25lIn0.{payload}.sig"))?;
        assert_eq!(claims["groups"], json!(["a"]));
        assert!(jwt_claims("no-dots").is_err());
        assert_eq!(
            origin_of("http://192.0.2.10:9000/interaction/x?y"),
            "http://192.0.2.10:9000"
        );
        assert_eq!(origin_of("https://h:1"), "https://h:1");
        Ok(())
    }
}
