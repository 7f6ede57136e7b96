//! Pre-auth keys through the API: they expire by default (a day when
//! single-use, 90 days otherwise), never only when asked, and can cap
//! their uses.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{error_code, Harness};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use warren_controller::store::{JoinDecision, JoinRequest, Store};
use warren_proto::NodePrivateKey;

async fn join(h: &Harness, net: &str, name: &str, key: &str) -> JoinDecision {
    h.store
        .join(JoinRequest {
            network_id: net.parse().unwrap(),
            node_key: NodePrivateKey::generate().public_key(),
            name: name.into(),
            preauth_key: Some(key.to_string()),
            agent_version: "0.1.0".into(),
            endpoints: vec![],
        })
        .await
        .unwrap()
        .decision
}

/// How far from now a key expires.
fn lifetime(key: &Value) -> Duration {
    let at = OffsetDateTime::parse(key["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    at - OffsetDateTime::now_utc()
}

fn about(actual: Duration, expected: Duration) -> bool {
    (actual - expected).abs() < Duration::minutes(1)
}

#[tokio::test]
async fn keys_expire_by_default_and_never_only_when_asked() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let path = format!("/api/v1/networks/{net}/keys");
    let create = |body: Value| {
        let path = path.clone();
        let h = &h;
        async move {
            let (status, made) = h.admin(Method::POST, &path, Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{made}");
            made
        }
    };
    let single = create(json!({})).await;
    assert_eq!(
        (&single["reusable"], &single["max_uses"]),
        (&json!(false), &json!(1))
    );
    assert!(about(lifetime(&single), Duration::hours(24)), "{single}");
    let reusable = create(json!({ "reusable": true })).await;
    assert_eq!(reusable["max_uses"], json!(null));
    assert!(about(lifetime(&reusable), Duration::days(90)), "{reusable}");
    let capped = create(json!({ "max_uses": 5 })).await;
    assert_eq!(
        (&capped["reusable"], &capped["max_uses"]),
        (&json!(true), &json!(5))
    );
    assert!(about(lifetime(&capped), Duration::days(90)), "{capped}");
    let short = create(json!({ "reusable": true, "expires": "2h" })).await;
    assert!(about(lifetime(&short), Duration::hours(2)), "{short}");
    let forever = create(json!({ "reusable": true, "expires": "never" })).await;
    assert_eq!(forever["expires_at"], json!(null));

    // The list says the same, and a default key is usable.
    let (_, list) = h.admin(Method::GET, &path, None).await;
    let listed = list["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|k| k["usable"] == true));
    assert_eq!(
        join(&h, &net, "a", single["key"].as_str().unwrap()).await,
        JoinDecision::Authorized
    );

    for bad in [
        json!({ "max_uses": 0 }),
        json!({ "max_uses": 2_000_000 }),
        json!({ "max_uses": -1 }),
        json!({ "reusable": false, "max_uses": 3 }),
        json!({ "expires": "forever" }),
    ] {
        let (status, body) = h.admin(Method::POST, &path, Some(bad.clone())).await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
        error_code(&body);
    }
}

#[tokio::test]
async fn a_capped_key_admits_that_many_joins_then_none() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let path = format!("/api/v1/networks/{net}/keys");
    let (_, made) = h
        .admin(Method::POST, &path, Some(json!({ "max_uses": 2 })))
        .await;
    let secret = made["key"].as_str().unwrap();
    assert_eq!(join(&h, &net, "a", secret).await, JoinDecision::Authorized);
    assert_eq!(join(&h, &net, "b", secret).await, JoinDecision::Authorized);
    assert!(matches!(
        join(&h, &net, "c", secret).await,
        JoinDecision::Refused(_)
    ));
    let (_, list) = h.admin(Method::GET, &path, None).await;
    let key = &list["keys"][0];
    assert_eq!(
        (&key["uses"], &key["max_uses"], &key["usable"]),
        (&json!(2), &json!(2), &json!(false))
    );
    // A cap of one is a single-use key, even when asked as reusable.
    let (_, one) = h
        .admin(
            Method::POST,
            &path,
            Some(json!({ "reusable": true, "max_uses": 1 })),
        )
        .await;
    assert_eq!(
        (&one["reusable"], &one["max_uses"]),
        (&json!(false), &json!(1))
    );
    assert!(about(lifetime(&one), Duration::hours(24)), "{one}");
}

#[tokio::test]
async fn a_tagged_key_puts_its_tags_on_the_members_it_authorizes() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let path = format!("/api/v1/networks/{net}/keys");
    let (status, made) = h
        .admin(
            Method::POST,
            &path,
            Some(json!({ "reusable": true, "tags": ["tag:server", "tag:k8s", "tag:server"] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["tags"], json!(["tag:server", "tag:k8s"]));
    let secret = made["key"].as_str().unwrap().to_string();
    let node = NodePrivateKey::generate().public_key();
    let joined = h
        .store
        .join(JoinRequest {
            network_id: net.parse().unwrap(),
            node_key: node,
            name: "master".into(),
            preauth_key: Some(secret),
            agent_version: "0.1.0".into(),
            endpoints: vec![],
        })
        .await
        .unwrap();
    assert_eq!(joined.decision, JoinDecision::Authorized);
    let id = warren_proto::NodeId::from_key(&node);
    let (_, tags) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/members/{id}/tags"),
            None,
        )
        .await;
    let mut tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, vec!["tag:k8s", "tag:server"]);
    let (_, member) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/members/{id}"),
            None,
        )
        .await;
    assert_eq!(member["owner"], Value::Null);
    assert_eq!(member["expires_at"], Value::Null);
    let (_, list) = h.admin(Method::GET, &path, None).await;
    assert_eq!(list["keys"][0]["tags"], json!(["tag:server", "tag:k8s"]));

    for bad in [
        json!({ "tags": ["server"] }),
        json!({ "tags": ["tag:Bad!"] }),
        json!({ "tags": "tag:x" }),
    ] {
        let (status, body) = h.admin(Method::POST, &path, Some(bad.clone())).await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
        assert!(!error_code(&body).is_empty());
    }
}
