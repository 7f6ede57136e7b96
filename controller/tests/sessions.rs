//! People's sessions accepted where tokens are: the role `[roles]` gives
//! them, read-only auditors, changes only from the pages' own origin, and
//! nothing for the disabled or the roleless.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::{error_code, Harness};
use serde_json::{json, Value};
use warren_controller::api::{self, ApiState, Sessions, SESSION_COOKIE};
use warren_controller::roles::Roles;
use warren_controller::store::{Actor, AuditQuery, Person, Store, UserStore};

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

struct World {
    h: Harness,
    router: Router,
}

impl World {
    async fn new() -> Self {
        let h = Harness::new().await;
        let roles = Roles::parse(
            &["user:ana@example.com".into(), "group:ops".into()],
            &["group:security".into()],
        )
        .unwrap();
        let router = api::router(
            ApiState::new(h.hub.clone(), vec![]).with_sessions(Sessions {
                roles: Arc::new(roles),
                origin: ORIGIN.into(),
            }),
        );
        World { h, router }
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

    async fn call(
        &self,
        method: Method,
        path: &str,
        session: &str,
        origin: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "warren.test:7482")
            .header("cookie", format!("theme=dark; {SESSION_COOKIE}={session}"));
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        let body = match body {
            Some(v) => {
                builder = builder.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        let response = tower::ServiceExt::oneshot(self.router.clone(), builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn an_admins_session_does_what_an_admin_token_does_and_is_audited_by_name() {
    let w = World::new().await;
    let ana = w.session("ana", &[]).await;
    let made = json!({ "name": "corp" });
    let (status, body) = w
        .call(
            Method::POST,
            "/api/v1/networks",
            &ana,
            Some(ORIGIN),
            Some(made),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, list) = w
        .call(Method::GET, "/api/v1/networks", &ana, None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["networks"].as_array().unwrap().len(), 1);
    // A group from the provider holds the role as well.
    let bo = w.session("bo", &["ops"]).await;
    let (status, _) = w
        .call(
            Method::POST,
            "/api/v1/networks",
            &bo,
            Some(ORIGIN),
            Some(json!({ "name": "lab" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let audit =
        w.h.store
            .audit_page(&AuditQuery {
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
    let actors: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "network.create")
        .map(|e| e.actor.as_str())
        .collect();
    assert!(actors.contains(&"user:ana@example.com"), "{actors:?}");
    assert!(actors.contains(&"user:bo@example.com"), "{actors:?}");
}

#[tokio::test]
async fn a_session_changes_nothing_from_another_origin_and_auditors_only_read() {
    let w = World::new().await;
    let ana = w.session("ana", &[]).await;
    for origin in [
        None,
        Some("https://evil.test"),
        Some("http://warren.test:7482"),
    ] {
        let (status, body) = w
            .call(
                Method::POST,
                "/api/v1/networks",
                &ana,
                origin,
                Some(json!({ "name": "x" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin:?}: {body}");
    }
    let cy = w.session("cy", &["security"]).await;
    let (status, _) = w
        .call(Method::GET, "/api/v1/networks", &cy, None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = w
        .call(
            Method::POST,
            "/api/v1/networks",
            &cy,
            Some(ORIGIN),
            Some(json!({ "name": "y" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = w
        .call(Method::GET, "/api/v1/networks", &cy, None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn no_role_no_session_or_a_disabled_person_gets_nothing() {
    let w = World::new().await;
    let eve = w.session("eve", &["ops-adjacent"]).await;
    let (status, body) = w
        .call(Method::GET, "/api/v1/networks", &eve, None, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("eve@example.com"),
        "{body}"
    );
    let (status, body) = w
        .call(
            Method::GET,
            "/api/v1/networks",
            "ws_not-a-session",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthorized");

    let ana = w.session("ana", &[]).await;
    w.h.store
        .set_user_disabled(&Actor::token("ops"), "ana@example.com", true)
        .await
        .unwrap();
    let (status, _) = w
        .call(Method::GET, "/api/v1/networks", &ana, None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    w.h.store
        .set_user_disabled(&Actor::token("ops"), "ana@example.com", false)
        .await
        .unwrap();
    let (status, _) = w
        .call(Method::GET, "/api/v1/networks", &ana, None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    w.h.store.end_session(&ana).await.unwrap();
    let (status, _) = w
        .call(Method::GET, "/api/v1/networks", &ana, None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Sessions are not accepted where the API serves tokens only.
    let (status, _) =
        w.h.send(
            Request::builder()
                .uri("/api/v1/networks")
                .header(
                    "cookie",
                    format!("{SESSION_COOKIE}={}", w.session("ana", &[]).await),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
