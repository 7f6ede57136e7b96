//! Signing in with GitHub, against a stand-in for GitHub's OAuth and REST
//! endpoints on 127.0.0.1 (GitHub itself is never contacted): the round
//! trip through `Provider::begin` and `finish`, who may sign in, the
//! groups, the re-check, and a hostile stand-in.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_controller::identity::{
    GithubSettings, Provider, ProviderError, ProviderSettings, Recheck,
};

const PUBLIC_URL: &str = "https://warren.test:7482";
const CLIENT_ID: &str = "Ov23li-warren";
const CLIENT_SECRET: &str = "stand-in-secret";

/// How the stand-in's API answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// 2 MiB, with its length said.
    Huge,
    Garbage,
    WrongShape,
    ServerError,
    /// Answers after 3 s.
    Slow,
}

/// One GitHub account, as the API shows it to its token.
#[derive(Clone)]
struct Account {
    id: u64,
    login: &'static str,
    name: Option<&'static str>,
    emails: Value,
    /// (organization login, membership state)
    orgs: Vec<(&'static str, &'static str)>,
    /// (organization login, team slug)
    teams: Vec<(&'static str, &'static str)>,
}

#[derive(Default)]
struct Inner {
    /// Authorization codes: code -> (PKCE challenge, token).
    codes: HashMap<String, (String, String)>,
    /// Tokens -> accounts.
    accounts: HashMap<String, Account>,
    mode: Option<Mode>,
    /// The API paths asked for, with their query.
    asked: Vec<String>,
}

#[derive(Clone, Default)]
struct GitHub(Arc<Mutex<Inner>>);

impl GitHub {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap()
    }

    fn set_mode(&self, mode: Mode) {
        self.inner().mode = Some(mode);
    }

    /// What GitHub does when `account` approves the app on the page
    /// `authorize_url` points at: a code for the callback.
    fn approve(&self, authorize_url: &str, account: &Account) -> String {
        let url = reqwest::Url::parse(authorize_url).unwrap();
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(url.path(), "/login/oauth/authorize");
        assert_eq!(query["client_id"], CLIENT_ID);
        assert_eq!(
            query["redirect_uri"],
            format!("{PUBLIC_URL}/github/callback")
        );
        assert_eq!(query["scope"], "read:user user:email read:org");
        assert_eq!(query["code_challenge_method"], "S256");
        assert!(!query["state"].is_empty());
        let code = format!("code-{}", account.login);
        let token = format!("gho_{}_{}", account.login, query["state"].len());
        let mut inner = self.inner();
        inner.codes.insert(
            code.clone(),
            (query["code_challenge"].clone(), token.clone()),
        );
        inner.accounts.insert(token, account.clone());
        code
    }

    fn update(&self, login: &str, change: impl Fn(&mut Account)) {
        for account in self.inner().accounts.values_mut() {
            if account.login == login {
                change(account);
            }
        }
    }

    fn revoke(&self, login: &str) {
        self.inner().accounts.retain(|_, a| a.login != login);
    }
}

async fn access_token(
    State(github): State<GitHub>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    // GitHub answers form-encoded unless asked for JSON.
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(
        form["redirect_uri"],
        format!("{PUBLIC_URL}/github/callback")
    );
    let refused = Json(json!({
        "error": "bad_verification_code",
        "error_description": "The code passed is incorrect or expired.",
    }));
    let Some((challenge, token)) = github.inner().codes.remove(&form["code"]) else {
        return refused.into_response();
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if computed != challenge {
        return refused.into_response();
    }
    Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:org,read:user,user:email"}))
        .into_response()
}

async fn api(State(github): State<GitHub>, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let mode = {
        let mut inner = github.inner();
        inner.asked.push(uri.to_string());
        inner.mode.unwrap_or(Mode::Normal)
    };
    match mode {
        Mode::Normal => {}
        Mode::Huge => return "[".repeat(2 * 1024 * 1024).into_response(),
        Mode::Garbage => return "<html>rate limited?</html>{{{".into_response(),
        Mode::WrongShape => return Json(json!({"id": "x", "login": 7})).into_response(),
        Mode::ServerError => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Slow => tokio::time::sleep(Duration::from_secs(3)).await,
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let Some(account) = github.inner().accounts.get(&token).cloned() else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    };
    if uri.query().is_some_and(|q| !q.contains("page=1")) && uri.path() != "/user" {
        return Json(json!([])).into_response();
    }
    let body = match uri.path() {
        "/user" => json!({"id": account.id, "login": account.login, "name": account.name}),
        "/user/emails" => account.emails.clone(),
        "/user/memberships/orgs" => Value::Array(
            account
                .orgs
                .iter()
                .map(|(org, state)| json!({"state": state, "role": "member", "organization": {"login": org}}))
                .collect(),
        ),
        "/user/teams" => Value::Array(
            account
                .teams
                .iter()
                .map(|(org, slug)| json!({"slug": slug, "name": slug, "organization": {"login": org}}))
                .collect(),
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    Json(body).into_response()
}

/// The stand-in on 127.0.0.1: its address and its state.
async fn stand_in() -> (SocketAddr, GitHub) {
    let github = GitHub::default();
    let app = Router::new()
        .route("/login/oauth/access_token", post(access_token))
        .route("/user", get(api))
        .route("/user/emails", get(api))
        .route("/user/memberships/orgs", get(api))
        .route("/user/teams", get(api))
        .with_state(github.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, github)
}

fn provider(token_url: SocketAddr, api_url: SocketAddr, allowed: &[&str]) -> Provider {
    let settings = GithubSettings {
        url: format!("http://{token_url}"),
        api_url: format!("http://{api_url}"),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        allowed_organizations: allowed.iter().map(|o| o.to_string()).collect(),
        timeout: Duration::from_millis(700),
    };
    Provider::new(&ProviderSettings::Github(settings), PUBLIC_URL).unwrap()
}

fn ana() -> Account {
    Account {
        id: 583231,
        login: "Ana-Dev",
        name: Some("Ana Lima"),
        emails: json!([
            {"email": "ana@users.noreply.github.com", "primary": false, "verified": true},
            {"email": "ana@example.com", "primary": true, "verified": true, "visibility": "private"},
        ]),
        orgs: vec![
            ("Acme", "active"),
            ("Elsewhere", "active"),
            ("Pending-Org", "pending"),
        ],
        teams: vec![
            ("Acme", "ops"),
            ("Acme", "data_team"),
            ("Elsewhere", "secret-team"),
            (
                "Acme",
                "x-this-slug-is-far-too-long-to-be-a-dns-label-in-any-policy-at-all",
            ),
        ],
    }
}

/// begin(), the person approves at the stand-in, finish().
async fn sign_in(
    p: &Provider,
    github: &GitHub,
    account: &Account,
) -> Result<warren_controller::identity::SignedIn, ProviderError> {
    let begin = p.begin().await.unwrap();
    assert!(begin.nonce.is_empty(), "GitHub has no ID token, no nonce");
    let code = github.approve(&begin.url, account);
    p.finish(&code, &begin.nonce, &begin.verifier).await
}

#[tokio::test]
async fn a_member_of_an_allowed_organization_signs_in_with_teams_as_groups() {
    let (addr, github) = stand_in().await;
    let p = provider(addr, addr, &["acme"]);
    assert_eq!(p.callback_path(), "/github/callback");
    assert_eq!(p.issuer(), format!("http://{addr}"));
    let signed_in = sign_in(&p, &github, &ana()).await.unwrap();
    let person = signed_in.person;
    assert_eq!(
        person.subject, "583231",
        "the numeric ID, which never changes"
    );
    assert_eq!(person.issuer, format!("http://{addr}"));
    assert_eq!(person.email, "ana@example.com");
    assert_eq!(person.name, "Ana Lima");
    assert_eq!(
        person.groups,
        vec!["acme", "data-team", "ops"],
        "the allowed org and its teams, lowercase DNS labels; other orgs' teams and long slugs left out"
    );
    let token = signed_in.kept.expect("the token is kept for the re-check");
    assert!(token.starts_with("gho_"));

    // A code is used once.
    let begin = p.begin().await.unwrap();
    let e = p
        .finish("code-Ana-Dev", "", &begin.verifier)
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Exchange(_)), "{e}");
    assert!(e.to_string().contains("bad_verification_code"), "{e}");

    // The re-check follows GitHub: teams change, then the person leaves.
    assert_eq!(
        p.recheck("583231", &token).await,
        Recheck::Still {
            person: Some(person.clone()),
            kept: None
        }
    );
    github.update("Ana-Dev", |a| a.teams = vec![("Acme", "SRE")]);
    let Recheck::Still {
        person: Some(fresh),
        ..
    } = p.recheck("583231", &token).await
    else {
        panic!("still there");
    };
    assert_eq!(fresh.groups, vec!["acme", "sre"]);
    let Recheck::Gone { reason } = p.recheck("999", &token).await else {
        panic!("another account's token");
    };
    assert!(reason.contains("another GitHub account"), "{reason}");
    github.update("Ana-Dev", |a| a.orgs = vec![("Acme", "pending")]);
    let Recheck::Gone { reason } = p.recheck("583231", &token).await else {
        panic!("left the organization");
    };
    assert!(reason.contains("not an active member"), "{reason}");
    assert!(reason.contains("acme"), "{reason}");
    github.revoke("Ana-Dev");
    let Recheck::Gone { reason } = p.recheck("583231", &token).await else {
        panic!("token revoked");
    };
    assert!(reason.contains("no longer accepts"), "{reason}");
    assert!(!reason.contains(&token), "no token in messages");
}

#[tokio::test]
async fn with_no_organizations_listed_any_account_signs_in_with_all_its_groups() {
    let (addr, github) = stand_in().await;
    let p = provider(addr, addr, &[]);
    let mut bob = ana();
    bob.login = "bob";
    bob.name = None;
    let person = sign_in(&p, &github, &bob).await.unwrap().person;
    assert_eq!(person.name, "bob", "the login when there is no name");
    assert_eq!(
        person.groups,
        vec!["acme", "data-team", "elsewhere", "ops", "secret-team"]
    );
    let asked = github.inner().asked.clone();
    assert!(
        asked
            .iter()
            .any(|a| a == "/user/memberships/orgs?state=active&per_page=100&page=1"),
        "{asked:?}"
    );
}

#[tokio::test]
async fn people_outside_the_allowed_organizations_are_refused() {
    let (addr, github) = stand_in().await;
    let p = provider(addr, addr, &["acme", "widgets"]);
    let mut eve = ana();
    eve.login = "eve";
    eve.orgs = vec![("Elsewhere", "active"), ("Acme", "pending")];
    let e = sign_in(&p, &github, &eve).await.unwrap_err();
    assert!(e.is_refusal());
    assert_eq!(
        e.to_string(),
        "eve is not an active member of an allowed GitHub organization (acme, widgets); \
         an organization that restricts OAuth apps must approve this one first"
    );
}

#[tokio::test]
async fn a_primary_address_must_be_there_and_verified() {
    let (addr, github) = stand_in().await;
    let p = provider(addr, addr, &["acme"]);
    let mut unverified = ana();
    unverified.emails = json!([{"email": "ana@example.com", "primary": true, "verified": false}]);
    let e = sign_in(&p, &github, &unverified).await.unwrap_err();
    assert!(matches!(e, ProviderError::EmailNotVerified), "{e}");
    let mut verified_not_primary = ana();
    verified_not_primary.emails =
        json!([{"email": "ana@example.com", "primary": false, "verified": true}]);
    let e = sign_in(&p, &github, &verified_not_primary)
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::NoEmail), "{e}");
    let mut none = ana();
    none.emails = json!([]);
    let e = sign_in(&p, &github, &none).await.unwrap_err();
    assert!(matches!(e, ProviderError::NoEmail), "{e}");
    assert_eq!(
        e.to_string(),
        "the identity provider gave no e-mail address"
    );
}

#[tokio::test]
async fn a_hostile_or_broken_github_gives_clear_errors_and_an_unknown_recheck() {
    let (addr, github) = stand_in().await;
    let p = provider(addr, addr, &["acme"]);
    let token = sign_in(&p, &github, &ana()).await.unwrap().kept.unwrap();
    for (mode, expected) in [
        (Mode::Huge, "larger than 1048576 bytes"),
        (Mode::Garbage, "not what GitHub sends"),
        (Mode::WrongShape, "not what GitHub sends"),
        (Mode::ServerError, "HTTP 500"),
        (Mode::Slow, "timed out"),
    ] {
        github.set_mode(mode);
        let started = Instant::now();
        let e = sign_in(&p, &github, &ana()).await.unwrap_err();
        assert!(matches!(e, ProviderError::Unavailable(_)), "{e}");
        assert!(!e.is_refusal());
        let text = e.to_string();
        assert!(text.contains(expected), "{text}");
        assert!(text.contains("GitHub's /user"), "names the request: {text}");
        assert!(started.elapsed() < Duration::from_secs(3), "{text}");
        let Recheck::Unknown { error } = p.recheck("583231", &token).await else {
            panic!("an outage cuts nobody off ({expected})");
        };
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains(&token), "no token in messages");
    }
}

/// Answers every connection with an endless chunked body: no length
/// to refuse up front.
async fn endless() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "[".repeat(64 * 1024));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_cap() {
    let (addr, github) = stand_in().await;
    let api = endless().await;
    let p = provider(addr, api, &["acme"]);
    let e = sign_in(&p, &github, &ana()).await.unwrap_err();
    assert!(e.to_string().contains("larger than 1048576 bytes"), "{e}");
    let Recheck::Unknown { .. } = p.recheck("583231", "gho_anything").await else {
        panic!("unknown");
    };
}

#[tokio::test]
async fn an_unreachable_github_is_an_outage() {
    let (addr, github) = stand_in().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let p = provider(addr, closed, &["acme"]);
    let e = sign_in(&p, &github, &ana()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable(_)), "{e}");
    let Recheck::Unknown { error } = p.recheck("583231", "gho_anything").await else {
        panic!("unknown");
    };
    assert!(error.contains("could not be reached"), "{error}");
    let p = provider(closed, addr, &["acme"]);
    let begin = p.begin().await.unwrap();
    let e = p.finish("code", "", &begin.verifier).await.unwrap_err();
    assert!(matches!(e, ProviderError::Exchange(_)), "{e}");
}

/// The whole sign-in through the controller's pages, as a browser goes
/// through it, with the stand-in as GitHub.
mod pages {
    use super::*;
    use axum::body::Body;
    use axum::http::{header, Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use warren_controller::hub::Hub;
    use warren_controller::identity::pages::{router, PagesState};
    use warren_controller::identity::{SignIn, SignInNetworks, SignInSettings};
    use warren_controller::metrics::Metrics;
    use warren_controller::store::{
        Actor, AuditQuery, JoinRequest, MemberState, NewNetwork, SqlStore, Store, UserStore,
    };
    use warren_proto::{NetworkId, NodeId, NodePrivateKey};

    struct Browser {
        router: Router,
        cookie: Option<String>,
    }

    impl Browser {
        /// Status, `Location`, and body of one request.
        async fn go(
            &mut self,
            method: &str,
            uri: &str,
            form: Option<String>,
        ) -> (u16, String, String) {
            let mut request = Request::builder().method(method).uri(uri);
            if let Some(cookie) = &self.cookie {
                request = request.header(header::COOKIE, cookie.as_str());
            }
            let body = match form {
                Some(form) => {
                    request =
                        request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                    Body::from(form)
                }
                None => Body::empty(),
            };
            let response = self
                .router
                .clone()
                .oneshot(request.body(body).unwrap())
                .await
                .unwrap();
            if let Some(set) = response.headers().get(header::SET_COOKIE) {
                let set = set.to_str().unwrap();
                self.cookie = Some(set.split(';').next().unwrap().to_owned());
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .map(|l| l.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                location,
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        }
    }

    /// A controller with GitHub sign-in and one pending device: the
    /// browser, the store, the network, the device and its page's path.
    async fn controller(
        addr: SocketAddr,
        dir: &std::path::Path,
    ) -> (Browser, SqlStore, NetworkId, NodeId, String) {
        let store = SqlStore::open(&dir.join("controller.db")).await.unwrap();
        let net = store
            .create_network(
                &Actor::system(),
                NewNetwork {
                    name: "corp".into(),
                    pool: "10.147.0.0/16".parse().unwrap(),
                    zone: "corp.warren.internal".into(),
                    mtu: 1420,
                },
            )
            .await
            .unwrap()
            .id;
        let key = NodePrivateKey::generate().public_key();
        store
            .join(JoinRequest {
                network_id: net,
                node_key: key,
                name: "laptop".into(),
                preauth_key: None,
                agent_version: String::new(),
                endpoints: vec![],
            })
            .await
            .unwrap();
        let node = NodeId::from_key(&key);
        let sign_in = SignIn::new(SignInSettings {
            public_url: PUBLIC_URL.into(),
            provider: ProviderSettings::Github(GithubSettings {
                url: format!("http://{addr}"),
                api_url: format!("http://{addr}"),
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                allowed_organizations: vec!["acme".into()],
                timeout: Duration::from_secs(5),
            }),
            networks: SignInNetworks::All,
            recheck_every: warren_controller::identity::DEFAULT_RECHECK,
        })
        .unwrap();
        let page = sign_in.device_page(net, node, "laptop").unwrap();
        let path = page.strip_prefix(PUBLIC_URL).unwrap().to_owned();
        let hub = Hub::new(Arc::new(store.clone()), Arc::new(Metrics::default()));
        let router = router(PagesState {
            hub,
            sign_in: Arc::new(sign_in),
            roles: Arc::default(),
        });
        let browser = Browser {
            router,
            cookie: None,
        };
        (browser, store, net, node, path)
    }

    /// The device page, on to GitHub, back with the code: where the
    /// callback sends the browser, and its page.
    async fn through_github(
        browser: &mut Browser,
        github: &GitHub,
        path: &str,
        account: &Account,
    ) -> (u16, String, String) {
        let (status, _, body) = browser.go("GET", path, None).await;
        assert_eq!(status, 200);
        assert!(body.contains("Sign in with GitHub (127.0.0.1)"), "{body}");
        let (status, to_github, _) = browser.go("GET", &format!("{path}/start"), None).await;
        assert_eq!(status, 303);
        assert!(
            browser.cookie.is_some(),
            "the round trip is tied to this browser"
        );
        let state = reqwest::Url::parse(&to_github)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        let code = github.approve(&to_github, account);
        browser
            .go(
                "GET",
                &format!("/github/callback?code={code}&state={state}"),
                None,
            )
            .await
    }

    #[tokio::test]
    async fn a_person_connects_their_device_with_github() {
        let (addr, github) = stand_in().await;
        let dir = tempfile::tempdir().unwrap();
        let (mut browser, store, net, node, path) = controller(addr, dir.path()).await;
        let (status, confirm, _) = through_github(&mut browser, &github, &path, &ana()).await;
        assert_eq!(status, 303);
        assert_eq!(
            confirm,
            format!("{path}/confirm"),
            "the code leaves the address bar"
        );
        let (status, _, form) = browser.go("GET", &confirm, None).await;
        assert_eq!(status, 200);
        assert!(
            form.contains("Signed in as <strong id=\"user\">ana@example.com"),
            "{form}"
        );
        let token = form
            .split("name=\"token\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        let (status, _, done) = browser
            .go("POST", &confirm, Some(format!("token={token}")))
            .await;
        assert_eq!(status, 200, "{done}");
        assert!(
            done.contains("is connected to <strong>corp</strong>"),
            "{done}"
        );
        let member = store.get_member(net, node).await.unwrap();
        assert_eq!(member.state, MemberState::Authorized);
        assert_eq!(member.owner.as_deref(), Some("ana@example.com"));
        let users = store.list_users().await.unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].issuer, format!("http://{addr}"));
        assert_eq!(users[0].subject, "583231");
        assert_eq!(users[0].groups, vec!["acme", "data-team", "ops"]);
    }

    #[tokio::test]
    async fn someone_outside_the_organizations_sees_why_and_it_is_audited() {
        let (addr, github) = stand_in().await;
        let dir = tempfile::tempdir().unwrap();
        let (mut browser, store, net, node, path) = controller(addr, dir.path()).await;
        let mut eve = ana();
        eve.login = "eve";
        eve.orgs = vec![("Elsewhere", "active")];
        let (status, _, page) = through_github(&mut browser, &github, &path, &eve).await;
        assert_eq!(status, 403);
        assert!(page.contains("Sign-in failed"), "{page}");
        assert!(
            page.contains("eve is not an active member of an allowed GitHub organization (acme)"),
            "{page}"
        );
        assert_eq!(
            store.get_member(net, node).await.unwrap().state,
            MemberState::Pending
        );
        assert!(store.list_users().await.unwrap().is_empty());
        let audit = store
            .audit_page(&AuditQuery {
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert!(
            audit.iter().any(|e| e.action == "user.sign_in_failed"),
            "the refusal is audited"
        );
    }
}
