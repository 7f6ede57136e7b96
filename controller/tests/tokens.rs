//! API tokens' lifecycle through the API: create, list, revoke, expiry,
//! network scope, last use, and a revocation seen by another replica.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use common::{error_code, Harness};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tower::ServiceExt;
use warren_controller::api::{self, ApiState};
use warren_controller::hub::Hub;
use warren_controller::metrics::Metrics;
use warren_controller::store::{Actor, Scope, Store, TokenSpec};

/// Status, headers and JSON of one request with `authorization` as given.
async fn exchange(
    router: &Router,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    let body = match body {
        Some(v) => {
            builder = builder.header("content-type", "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(builder.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

fn listed<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("token {id} not in {list}"))
}

#[tokio::test]
async fn tokens_are_created_listed_and_revoked_through_the_api_and_audited() {
    let h = Harness::new().await;
    let (status, headers, made) = exchange(
        &h.router,
        Method::POST,
        "/api/v1/tokens",
        Some(&bearer(&h.admin)),
        Some(json!({ "scope": "auditor", "name": "ci" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    // The one answer that carries the secret is never cached.
    assert_eq!(headers["cache-control"], "no-store");
    let secret = made["token"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("wt_"), "{made}");
    assert_eq!(made["state"], "active");
    assert_eq!(made["created_by"], "token:admin");

    let (status, _, _) = exchange(
        &h.router,
        Method::GET,
        "/api/v1/networks",
        Some(&bearer(&secret)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The auditor lists tokens but makes and revokes none; nobody sees secrets.
    let (status, list) = h
        .call(Method::GET, "/api/v1/tokens", Some(&h.auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(listed(&list, &id)["name"], "ci");
    assert!(!list.to_string().contains(&secret), "{list}");
    assert!(!list.to_string().contains("hash"), "{list}");
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/tokens".to_string(),
            Some(json!({ "scope": "admin" })),
        ),
        (Method::DELETE, format!("/api/v1/tokens/{id}"), None),
    ] {
        let (status, body) = h.call(method, &path, Some(&h.auditor), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }

    let (status, revoked) = h
        .admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    let (status, _, refused) = exchange(
        &h.router,
        Method::GET,
        "/api/v1/networks",
        Some(&bearer(&secret)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&refused), "unauthorized");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{refused}"
    );
    // Revoking again changes nothing; an unknown ID is 404.
    let (status, again) = h
        .admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(
        (status, &again["revoked_at"]),
        (StatusCode::OK, &revoked["revoked_at"])
    );
    let (status, _) = h
        .admin(Method::DELETE, "/api/v1/tokens/00000000", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, audit) = h.admin(Method::GET, "/api/v1/audit", None).await;
    let entries: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == id.as_str())
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("token.create".to_string(), "token:admin".to_string()),
            ("token.revoke".to_string(), "token:admin".to_string()),
        ]
    );
    assert!(!audit.to_string().contains(&secret));
}

#[tokio::test]
async fn an_expired_token_is_refused_saying_so() {
    let h = Harness::new().await;
    let past = (OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&Rfc3339)
        .unwrap();
    let (status, body) = h
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "scope": "admin", "expires_at": past })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let expiry = OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    let soon = expiry.format(&Rfc3339).unwrap();
    let (status, made) = h
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "scope": "admin", "expires_at": soon })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let secret = made["token"].as_str().unwrap();
    let (status, _) = h
        .call(Method::GET, "/api/v1/networks", Some(secret), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Expiry is exact, not rounded to a second either way.
    let left = expiry - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(left).unwrap_or_default()).await;
    let (status, body) = h
        .call(Method::GET, "/api/v1/networks", Some(secret), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("expired"), "{body}");
    let (_, list) = h.admin(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(
        listed(&list, made["id"].as_str().unwrap())["state"],
        "expired"
    );
}

#[tokio::test]
async fn a_revocation_holds_at_once_on_another_replica() {
    let h = Harness::new().await;
    // A second controller process on the same database.
    let replica_store = h.second_store().await;
    let replica_hub = Hub::new(Arc::new(replica_store), Arc::new(Metrics::default()));
    let replica = api::router(ApiState::new(replica_hub, vec![]));
    let made = h
        .store
        .create_token(&Actor::system(), TokenSpec::new(Scope::Admin, Some("ops")))
        .await
        .unwrap();
    let auth = bearer(&made.secret);
    let (status, _, _) =
        exchange(&replica, Method::GET, "/api/v1/networks", Some(&auth), None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", made.token.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) =
        exchange(&replica, Method::GET, "/api/v1/networks", Some(&auth), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn a_network_scoped_token_sees_and_changes_only_its_network() {
    let h = Harness::new().await;
    let mine = h.network("mine").await;
    let other = h.network("other").await;
    let (status, body) = h
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "scope": "admin", "network_id": "00000000000000aa" })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a token for no network: {body}"
    );
    let (status, made) = h
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "scope": "admin", "name": "team", "network_id": mine })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["network_id"], mine.as_str());
    let scoped = made["token"].as_str().unwrap().to_string();
    let call = |method: Method, path: String, body: Option<Value>| {
        let scoped = scoped.clone();
        let h = &h;
        async move { h.call(method, &path, Some(&scoped), body).await }
    };

    let (status, list) = call(Method::GET, "/api/v1/networks".into(), None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);

    // Its own network: read and change.
    for path in [
        format!("/api/v1/networks/{mine}"),
        format!("/api/v1/networks/{mine}/members"),
        format!("/api/v1/networks/{mine}/routes"),
    ] {
        let (status, body) = call(Method::GET, path.clone(), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, key) = call(
        Method::POST,
        format!("/api/v1/networks/{mine}/keys"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");

    // Another network does not exist for it.
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/networks/{other}"), None),
        (
            Method::GET,
            format!("/api/v1/networks/{other}/members"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/networks/{other}/keys"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/api/v1/networks/{other}"), None),
        (Method::GET, format!("/api/v1/audit?network={other}"), None),
    ] {
        let (status, body) = call(method, path.clone(), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    // Global endpoints are forbidden.
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/networks".to_string(),
            Some(json!({ "name": "third" })),
        ),
        (Method::GET, "/api/v1/tokens".to_string(), None),
        (
            Method::POST,
            "/api/v1/tokens".to_string(),
            Some(json!({ "scope": "admin" })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/tokens/{}", made["id"].as_str().unwrap()),
            None,
        ),
        (Method::GET, "/api/v1/audit/verify".to_string(), None),
    ] {
        let (status, body) = call(method, path.clone(), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }

    // The audit log shows it only its network's entries, and it has some.
    let (status, audit) = call(Method::GET, "/api/v1/audit".into(), None).await;
    assert_eq!(status, StatusCode::OK);
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["action"] == "key.create"),
        "{audit}"
    );
    assert!(
        entries.iter().all(|e| e["network_id"] == mine.as_str()),
        "{audit}"
    );
    // The other network is untouched.
    let (_, keys) = h
        .admin(Method::GET, &format!("/api/v1/networks/{other}/keys"), None)
        .await;
    assert_eq!(keys["keys"], json!([]));
}

#[tokio::test]
async fn last_use_is_recorded_at_most_once_a_minute() {
    let h = Harness::new().await;
    let (_, list) = h.admin(Method::GET, "/api/v1/tokens", None).await;
    // The admin token made the list call itself; the auditor is unused yet.
    let auditor_id = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "auditor")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(listed(&list, &auditor_id)["last_used_at"], Value::Null);

    let (status, _) = h
        .call(Method::GET, "/api/v1/networks", Some(&h.auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Written off the request path: poll for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let first = loop {
        let (_, list) = h.admin(Method::GET, "/api/v1/tokens", None).await;
        let used = listed(&list, &auditor_id)["last_used_at"].clone();
        if used != Value::Null {
            break used;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last_used_at was never written: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A second use a second later is not written again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.call(Method::GET, "/api/v1/networks", Some(&h.auditor), None)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, list) = h.admin(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(listed(&list, &auditor_id)["last_used_at"], first);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let h = Harness::new().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (status, _, body) = exchange(
            &h.router,
            Method::GET,
            "/api/v1/networks",
            Some(&format!("{scheme} {}", h.admin)),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {body}");
    }
}
