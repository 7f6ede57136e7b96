//! The console in process: who sees which page, changes only with the
//! form token from the console's own origin, the portal filtered by
//! policy, policy edits that run their tests first, break-glass codes,
//! idle sessions, the audit timeline and its export.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::Harness;
use serde_json::json;
use warren_controller::console::session::form_token;
use warren_controller::console::{self, ConsoleState};
use warren_controller::roles::Roles;
use warren_controller::store::{JoinRequest, Person, PolicyStore, Store, UserStore};
use warren_proto::service::{ServiceProto, ServiceSpec};
use warren_proto::{NetworkId, NodeId, NodePrivateKey, NodePublicKey};

const ORIGIN: &str = "https://warren.test:7482";

fn person(login: &str, groups: &[&str]) -> Person {
    Person {
        issuer: "http://idp.test".into(),
        subject: login.into(),
        email: format!("{login}@example.com"),
        name: login.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

struct Answer {
    status: StatusCode,
    location: String,
    headers: axum::http::HeaderMap,
    body: String,
}

struct World {
    h: Harness,
    router: Router,
    net: NetworkId,
    server: NodeId,
    server_key: NodePublicKey,
    laptop: NodeId,
    pending: NodeId,
}

impl World {
    async fn new() -> Self {
        let h = Harness::new().await;
        let roles =
            Roles::parse(&["user:ana@example.com".into()], &["group:security".into()]).unwrap();
        let router = console::router(ConsoleState::new(
            h.hub.clone(),
            Arc::new(roles),
            ORIGIN.into(),
            None,
        ));
        let net: NetworkId = h.network("prod").await.parse().unwrap();
        let (status, made) = h
            .admin(
                Method::POST,
                &format!("/api/v1/networks/{net}/keys"),
                Some(json!({ "reusable": true })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        let key = made["key"].as_str().map(str::to_string);
        let join = |name: &str, key: Option<String>| {
            let node_key = NodePrivateKey::generate().public_key();
            let request = JoinRequest {
                network_id: net,
                node_key,
                name: name.into(),
                preauth_key: key,
                agent_version: "0.9.0".into(),
                endpoints: vec!["198.51.100.7:41641".parse().unwrap()],
            };
            (node_key, request)
        };
        let (server_key, request) = join("grafana-master", key);
        h.store.join(request).await.unwrap();
        let (_, request) = join("laptop-cy", None);
        h.store.join(request).await.unwrap();
        let (_, request) = join("stranger", None);
        h.store.join(request).await.unwrap();
        let members = h.store.list_members(net).await.unwrap();
        let id = |name: &str| {
            members
                .iter()
                .find(|m| m.requested_name == name)
                .unwrap()
                .node_id
        };
        // cy signs her laptop in: it is hers.
        let cy = h.store.sign_in_user(&person("cy", &[])).await.unwrap();
        h.store
            .confirm_device(&cy, net, id("laptop-cy"))
            .await
            .unwrap();
        let server = id("grafana-master");
        h.store
            .set_services(
                net,
                &server_key,
                &[
                    ServiceSpec {
                        name: "grafana".into(),
                        proto: ServiceProto::Tcp,
                        port: 3000,
                        txt: vec!["scheme=http".into(), "path=/d/home".into()],
                    },
                    ServiceSpec {
                        name: "redis".into(),
                        proto: ServiceProto::Tcp,
                        port: 6379,
                        txt: vec![],
                    },
                ],
            )
            .await
            .unwrap();
        World {
            router,
            net,
            server,
            server_key,
            laptop: id("laptop-cy"),
            pending: id("stranger"),
            h,
        }
    }

    async fn session(&self, login: &str, groups: &[&str]) -> String {
        let user = self
            .h
            .store
            .sign_in_user(&person(login, groups))
            .await
            .unwrap();
        self.h.store.start_session(&user, 3600).await.unwrap()
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = tower::ServiceExt::oneshot(self.router.clone(), request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let location = headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        Answer {
            status,
            location,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Answer {
        let mut builder = Request::builder().method(Method::GET).uri(path);
        if let Some(session) = session {
            builder = builder.header("cookie", format!("__Host-warren-session={session}"));
        }
        self.send(builder.body(Body::empty()).unwrap()).await
    }

    /// The policy: cy's laptop may reach grafana (tcp:3000), nothing else.
    async fn only_cy_reaches_grafana(&self) {
        let policy =
            "[[allow]]\nfrom = [\"laptop-cy\"]\nto = [\"grafana-master\"]\nports = [\"tcp:3000\"]\n";
        self.h
            .store
            .set_policy(&warren_controller::store::Actor::system(), self.net, policy)
            .await
            .unwrap();
    }

    /// A change from the console's own origin with the session's form
    /// token, and `more` form fields (`&name=value...`).
    async fn act(&self, path: &str, session: &str, more: &str) -> Answer {
        let form = format!("csrf={}{more}", form_token(session));
        self.post(path, session, Some(ORIGIN), &form).await
    }

    async fn post(&self, path: &str, session: &str, origin: Option<&str>, form: &str) -> Answer {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("cookie", format!("__Host-warren-session={session}"))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        self.send(builder.body(Body::from(form.to_string())).unwrap())
            .await
    }
}

#[tokio::test]
async fn each_role_sees_its_own_pages() {
    let w = World::new().await;
    let answer = w.get("/console", None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location, "/login");

    let ana = w.session("ana", &[]).await;
    let home = w.get("/console", Some(&ana)).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("id=\"role\">admin<"), "{}", home.body);
    assert!(home.body.contains(&format!("/console/networks/{}", w.net)));
    let members = w
        .get(&format!("/console/networks/{}", w.net), Some(&ana))
        .await;
    assert!(members.body.contains("grafana-master"));
    assert!(members.body.contains("198.51.100.7:41641"));
    assert!(members.body.contains(">Approve<"), "{}", members.body);

    let sec = w.session("sec", &["security"]).await;
    let members = w
        .get(&format!("/console/networks/{}", w.net), Some(&sec))
        .await;
    assert_eq!(members.status, StatusCode::OK);
    assert!(members.body.contains("id=\"role\">auditor<"));
    assert!(
        !members.body.contains(">Approve<"),
        "auditors change nothing"
    );
    assert_eq!(
        w.get("/console/audit", Some(&sec)).await.status,
        StatusCode::OK
    );

    let cy = w.session("cy", &[]).await;
    let home = w.get("/console", Some(&cy)).await;
    assert_eq!(home.location, "/console/portal");
    for staff_only in [
        "/console/queue".to_string(),
        "/console/audit".to_string(),
        format!("/console/networks/{}", w.net),
        format!("/console/networks/{}/policy", w.net),
    ] {
        let answer = w.get(&staff_only, Some(&cy)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{staff_only}");
    }
    let devices = w.get("/console/devices", Some(&cy)).await;
    assert!(devices.body.contains("laptop-cy"), "{}", devices.body);
    assert!(!devices.body.contains("grafana-master"));
}

#[tokio::test]
async fn a_change_needs_the_form_token_and_the_consoles_own_origin() {
    let w = World::new().await;
    let ana = w.session("ana", &[]).await;
    let csrf = form_token(&ana);
    let path = format!(
        "/console/networks/{}/members/{}/authorize",
        w.net, w.pending
    );
    let no_token = w.post(&path, &ana, Some(ORIGIN), "").await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(no_token.body.contains("form token"), "{}", no_token.body);
    let wrong_token = w
        .post(
            &path,
            &ana,
            Some(ORIGIN),
            &format!("csrf={}", form_token("other")),
        )
        .await;
    assert_eq!(wrong_token.status, StatusCode::FORBIDDEN);
    let foreign = w
        .post(
            &path,
            &ana,
            Some("https://evil.test"),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert!(foreign.body.contains("another site"), "{}", foreign.body);
    let request = Request::builder()
        .method(Method::POST)
        .uri(&path)
        .header("cookie", format!("__Host-warren-session={ana}"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    assert_eq!(w.send(request).await.status, StatusCode::FORBIDDEN);
    assert!(
        !w.h.store
            .get_member(w.net, w.pending)
            .await
            .unwrap()
            .authorized
    );

    // An auditor's token is genuine, but auditors change nothing.
    let sec = w.session("sec", &["security"]).await;
    let refused = w.act(&path, &sec, "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let done = w
        .post(&path, &ana, Some(ORIGIN), &format!("csrf={csrf}"))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(
        w.h.store
            .get_member(w.net, w.pending)
            .await
            .unwrap()
            .authorized
    );
    let audit = w
        .get("/console/audit?action=member.authorize", Some(&ana))
        .await;
    assert!(
        audit.body.contains("user:ana@example.com"),
        "{}",
        audit.body
    );
}

#[tokio::test]
async fn the_portal_shows_a_person_only_what_their_devices_may_reach() {
    let w = World::new().await;
    let ana = w.session("ana", &[]).await;
    let portal = w.get("/console/portal", Some(&ana)).await;
    assert!(portal
        .body
        .contains("http://grafana-master.prod.warren.internal:3000/d/home"));
    assert!(portal
        .body
        .contains("grafana-master.prod.warren.internal:6379"));

    // cy's laptop may reach grafana only.
    w.only_cy_reaches_grafana().await;
    let cy = w.session("cy", &[]).await;
    let portal = w.get("/console/portal", Some(&cy)).await;
    assert_eq!(portal.status, StatusCode::OK);
    assert!(
        portal
            .body
            .contains("href=\"http://grafana-master.prod.warren.internal:3000/d/home\""),
        "{}",
        portal.body
    );
    assert!(!portal.body.contains("6379"), "{}", portal.body);

    // dee has no device: no service at all.
    let dee = w.session("dee", &[]).await;
    let portal = w.get("/console/portal", Some(&dee)).await;
    assert!(!portal.body.contains("grafana-master"), "{}", portal.body);
    assert!(portal.body.contains("id=\"no-services\""));

    // A person changes only their own devices.
    let path = format!("/console/devices/{}/{}/remove", w.net, w.server);
    let refused = w.act(&path, &dee, "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let path = format!("/console/devices/{}/{}/rename", w.net, w.laptop);
    let renamed = w
        .post(
            &path,
            &cy,
            Some(ORIGIN),
            &format!("csrf={}&name=cy-laptop", form_token(&cy)),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER, "{}", renamed.body);
    let member = w.h.store.get_member(w.net, w.laptop).await.unwrap();
    assert_eq!(member.name.as_deref(), Some("cy-laptop"));
    let _ = w.server_key;
}

#[tokio::test]
async fn a_policy_is_saved_only_when_its_tests_pass() {
    let w = World::new().await;
    let ana = w.session("ana", &[]).await;
    let csrf = form_token(&ana);
    let path = format!("/console/networks/{}/policy", w.net);
    let page = w.get(&path, Some(&ana)).await;
    assert!(
        page.body.contains("hl-section"),
        "highlighted: {}",
        page.body
    );
    let version = w.h.store.policy_state(w.net).await.unwrap().current.version;
    let failing = "[[allow]]\nfrom = [\"*\"]\nto = [\"*\"]\nports = [\"*\"]\n\n[[test]]\nfrom = \"laptop-cy\"\nto = \"grafana-master\"\nport = \"tcp:6379\"\nexpect = \"deny\"\n";
    let form = |text: &str, version: u64| {
        format!(
            "csrf={csrf}&version={version}&text={}",
            text.replace('%', "%25")
                .replace('&', "%26")
                .replace('+', "%2B")
                .replace('=', "%3D")
                .replace('\n', "%0A")
                .replace(' ', "+")
        )
    };
    let refused = w
        .post(&path, &ana, Some(ORIGIN), &form(failing, version))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("id=\"policy-refused\""),
        "{}",
        refused.body
    );
    assert_eq!(
        w.h.store.policy_state(w.net).await.unwrap().current.version,
        version,
        "nothing saved"
    );
    let good = failing
        .replace("\"*\"]\nports", "\"laptop-cy\"]\nports")
        .replace("from = [\"*\"]", "from = [\"grafana-master\"]");
    let saved = w
        .post(&path, &ana, Some(ORIGIN), &form(&good, version))
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(saved.body.contains("Saved as version"), "{}", saved.body);
    assert_eq!(
        w.h.store.policy_state(w.net).await.unwrap().current.version,
        version + 1
    );
    // A draft from an older version is refused, not saved over the new one.
    let stale = w
        .post(&path, &ana, Some(ORIGIN), &form(failing, version))
        .await;
    assert_eq!(stale.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(stale.body.contains("changed since you opened it"));

    let explained = w
        .get(
            &format!("{path}?from=laptop-cy&to=grafana-master&port=tcp%3A3000"),
            Some(&ana),
        )
        .await;
    assert!(
        explained.body.contains("id=\"explained\""),
        "{}",
        explained.body
    );

    let audit = w.get("/console/audit?action=policy.set", Some(&ana)).await;
    assert!(audit.body.contains("policy.set"));
    let csv = w
        .get(
            "/console/audit/export?action=policy.set&format=csv",
            Some(&ana),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.starts_with("id,at,actor,action"), "{}", csv.body);
    assert!(csv.body.contains("\"policy.set\""));
    let json = w
        .get("/console/audit/export?format=json&actor=ana", Some(&ana))
        .await;
    let entries: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert!(entries
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "user:ana@example.com"));
}

#[tokio::test]
async fn a_break_glass_code_signs_in_an_admin_once() {
    let w = World::new().await;
    let code = w.h.store.new_login_code(600).await.unwrap();
    let redeem = |origin: &'static str, code: String| {
        Request::builder()
            .method(Method::POST)
            .uri("/login/code")
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("code={code}")))
            .unwrap()
    };
    let foreign = w.send(redeem("https://evil.test", code.clone())).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let answer = w.send(redeem(ORIGIN, code.clone())).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookie = answer.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("Secure")
            && cookie.contains("SameSite=Strict")
    );
    let secret = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let home = w.get("/console", Some(&secret)).await;
    assert!(home.body.contains("id=\"role\">admin<"), "{}", home.body);
    let again = w.send(redeem(ORIGIN, code)).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "a code works once");
}

#[tokio::test]
async fn sessions_end_when_idle_and_pages_refuse_framing_and_inline_script() {
    let w = World::new().await;
    let ana = w.session("ana", &[]).await;
    assert!(w.h.store.session_user(&ana, 3600).await.unwrap().is_some());
    assert!(
        w.h.store.session_user(&ana, 0).await.unwrap().is_none(),
        "a session unused for longer than the idle time is over"
    );
    // However busy, a session ends at its absolute lifetime.
    let user = w.h.store.sign_in_user(&person("ana", &[])).await.unwrap();
    let over = w.h.store.start_session(&user, 0).await.unwrap();
    assert!(w.h.store.session_user(&over, 3600).await.unwrap().is_none());
    assert_eq!(w.get("/console", Some(&over)).await.location, "/login");
    let page = w.get("/console", Some(&ana)).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(!page.body.contains("<script>"), "no inline script");
    let js = w.get("/console/assets/console.js", None).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.body.contains("EventSource"));
}

#[tokio::test]
async fn a_person_asks_for_a_service_and_an_admin_decides() {
    let w = World::new().await;
    // Nobody reaches redis: cy may reach grafana only.
    w.only_cy_reaches_grafana().await;
    let cy = w.session("cy", &[]).await;
    let ask = |rest: &str| format!("&network={}&{rest}", w.net);
    let page = w.get("/console/access", Some(&cy)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"request-form\""), "{}", page.body);

    // What cannot be asked for: a service nobody publishes, a bad name,
    // a duration past the longest grant, no reason.
    for (form, says) in [
        ("service=mongo&for=8h&reason=x", "service"),
        ("service=..%2F&for=8h&reason=x", "not a service name"),
        ("service=redis&for=90d&reason=x", "30 days"),
        ("service=redis&for=8h&reason=+", "say why"),
    ] {
        let refused = w.act("/console/access", &cy, &ask(form)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{form}");
        assert!(refused.body.contains(says), "{form}: {}", refused.body);
    }
    // dee has no device there: a grant would reach nothing.
    let dee = w.session("dee", &[]).await;
    let refused = w
        .post(
            "/console/access",
            &dee,
            Some(ORIGIN),
            &format!(
                "csrf={}&network={}&service=redis&for=1h&reason=x",
                form_token(&dee),
                w.net
            ),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("no authorized device"));

    let asked = w
        .act(
            "/console/access",
            &cy,
            &ask("service=redis&for=8h&reason=debug+the+cache"),
        )
        .await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
    let again = w
        .act(
            "/console/access",
            &cy,
            &ask("service=redis&for=1h&reason=again"),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "one waits already");
    let filter = warren_controller::store::RequestFilter {
        pending_only: true,
        limit: 10,
        ..Default::default()
    };
    let waiting = w.h.store.list_grant_requests(&filter).await.unwrap();
    assert_eq!(waiting.len(), 1);
    let request = &waiting[0];
    assert_eq!(request.requester, "cy@example.com");
    assert_eq!(request.to, "service:redis");
    assert_eq!(request.duration_secs, 8 * 3600);

    // The queue shows it; only an admin decides, and nobody else withdraws.
    let ana = w.session("ana", &[]).await;
    let queue = w.get("/console/queue", Some(&ana)).await;
    assert!(
        queue
            .body
            .contains(&format!("id=\"request-{}\"", request.id)),
        "{}",
        queue.body
    );
    assert!(queue.body.contains("debug the cache"));
    let approve = format!(
        "/console/networks/{}/requests/{}/approve",
        w.net, request.id
    );
    let sec = w.session("sec", &["security"]).await;
    for (who, session) in [("cy", &cy), ("sec", &sec)] {
        let refused = w.act(&approve, session, "").await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{who} approves");
    }
    let withdraw = format!("/console/access/{}/{}/withdraw", w.net, request.id);
    let refused = w.act(&withdraw, &dee, "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "dee withdraws cy's");
    let no_token = w.post(&approve, &ana, Some(ORIGIN), "").await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);

    let approved = w.act(&approve, &ana, "").await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    let grants = w.h.store.list_grants(w.net, false).await.unwrap();
    assert_eq!(grants.len(), 1);
    let grant = &grants[0];
    assert_eq!(grant.from, "user:cy@example.com");
    assert_eq!(grant.to, "service:redis");
    assert_eq!(grant.created_by, "user:ana@example.com");
    // Deciding twice finds nothing pending.
    let twice = w.act(&approve, &ana, "").await;
    assert_eq!(twice.status, StatusCode::NOT_FOUND);

    // cy now reaches redis: the portal shows it, and her page the grant.
    let portal = w.get("/console/portal", Some(&cy)).await;
    assert!(
        portal
            .body
            .contains("grafana-master.prod.warren.internal:6379"),
        "{}",
        portal.body
    );
    let mine = w.get("/console/access", Some(&cy)).await;
    assert!(
        mine.body.contains(&format!("id=\"grant-{}\"", grant.id)),
        "{}",
        mine.body
    );
    assert!(mine.body.contains("approved"), "{}", mine.body);

    // A second request, withdrawn by cy; a third, denied.
    for (service, decide) in [("grafana", "withdraw"), ("redis", "deny")] {
        let asked = w
            .act(
                "/console/access",
                &cy,
                &ask(&format!("service={service}&for=1h&reason=more")),
            )
            .await;
        assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
        let waiting = w.h.store.list_grant_requests(&filter).await.unwrap();
        let id = &waiting[0].id;
        let (path, session) = if decide == "withdraw" {
            (format!("/console/access/{}/{id}/withdraw", w.net), &cy)
        } else {
            (
                format!("/console/networks/{}/requests/{id}/deny", w.net),
                &ana,
            )
        };
        let done = w.act(&path, session, "").await;
        assert_eq!(
            done.status,
            StatusCode::SEE_OTHER,
            "{decide}: {}",
            done.body
        );
    }
    assert!(w
        .h
        .store
        .list_grant_requests(&filter)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(w.h.store.list_grants(w.net, false).await.unwrap().len(), 1);
    let audit = w
        .get("/console/audit?action=grant.request", Some(&ana))
        .await;
    assert!(audit.body.contains("cy@example.com"), "{}", audit.body);
    for action in [
        "grant.request.approve",
        "grant.request.withdraw",
        "grant.request.deny",
    ] {
        let audit = w
            .get(&format!("/console/audit?action={action}"), Some(&ana))
            .await;
        assert!(
            audit.body.contains(&format!("{action}<")),
            "{action}: {}",
            audit.body
        );
    }

    // Asking cannot flood the queue: ten waiting requests per person.
    let many: Vec<ServiceSpec> = (0..11)
        .map(|i| ServiceSpec {
            name: format!("s{i}"),
            proto: ServiceProto::Tcp,
            port: 7000 + i,
            txt: vec![],
        })
        .collect();
    w.h.store
        .set_services(w.net, &w.server_key, &many)
        .await
        .unwrap();
    for i in 0..11 {
        let answer = w
            .act(
                "/console/access",
                &cy,
                &ask(&format!("service=s{i}&for=1h&reason=many")),
            )
            .await;
        let expected = if i < 10 {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(answer.status, expected, "request {i}: {}", answer.body);
    }
}
