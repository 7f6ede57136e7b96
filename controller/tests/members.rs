//! Members, pre-auth keys and the audit log through the API.
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{error_code, Harness};
use serde_json::json;
use warren_controller::store::{JoinDecision, JoinRequest, Store};
use warren_proto::{NetworkId, NodeId, NodePrivateKey, NodePublicKey};

async fn join(
    h: &Harness,
    net: &str,
    name: &str,
    key: Option<&str>,
) -> (NodePublicKey, JoinDecision) {
    let node_key = NodePrivateKey::generate().public_key();
    let result = h
        .store
        .join(JoinRequest {
            network_id: net.parse().unwrap(),
            node_key,
            name: name.into(),
            preauth_key: key.map(str::to_string),
            agent_version: "0.1.0".into(),
            endpoints: vec!["192.0.2.7:51820".parse().unwrap()],
        })
        .await
        .unwrap();
    (node_key, result.decision)
}

#[tokio::test]
async fn members_are_listed_authorized_renamed_revoked_and_deleted() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let (key, decision) = join(&h, &net, "Laptop One", None).await;
    assert_eq!(decision, JoinDecision::Pending);
    let node = NodeId::from_key(&key);
    let (status, list) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/members"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let m = &list["members"][0];
    // Pending: it holds no name and no address, and wrote no endpoints.
    assert_eq!(m["name"], json!(null));
    assert_eq!(m["requested_name"], "laptop-one");
    assert_eq!(m["node_id"], node.to_string());
    assert_eq!(m["public_key"], key.to_base64());
    assert_eq!(m["ipv4"], json!(null));
    assert_eq!(m["ipv6"], json!(null));
    assert_eq!(m["state"], "pending");
    assert_eq!(m["authorized"], false);
    assert_eq!(m["online"], false);
    assert_eq!(m["agent_version"], "0.1.0");
    assert_eq!(m["endpoints"], json!([]));
    assert!(m["created_at"].as_str().is_some());

    let base = format!("/api/v1/networks/{net}/members/{node}");
    let (status, m) = h
        .admin(Method::POST, &format!("{base}/authorize"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (m["state"].as_str(), m["authorized"].as_bool()),
        (Some("authorized"), Some(true))
    );
    // Authorization gives the name it asked for and the lowest address.
    assert_eq!(m["name"], "laptop-one");
    assert_eq!(m["ipv4"], "10.147.0.1");
    let net_id: NetworkId = net.parse().unwrap();
    assert_eq!(m["ipv6"], net_id.ula_address(&node).to_string());

    let (status, m) = h
        .admin(Method::PATCH, &base, Some(json!({ "name": "Build Box" })))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m["name"], "build-box");
    let (other, _) = join(&h, &net, "taken", None).await;
    let other = NodeId::from_key(&other);
    let (status, _) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{net}/members/{other}/authorize"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h
        .admin(Method::PATCH, &base, Some(json!({ "name": "taken" })))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = h
        .admin(Method::PATCH, &base, Some(json!({ "name": 7 })))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, m) = h.admin(Method::POST, &format!("{base}/revoke"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m["state"], "revoked");
    // A revoked node cannot come back by joining again.
    let again = h
        .store
        .join(JoinRequest {
            network_id: net.parse().unwrap(),
            node_key: key,
            name: "again".into(),
            preauth_key: None,
            agent_version: String::new(),
            endpoints: vec![],
        })
        .await
        .unwrap();
    assert_eq!(again.decision, JoinDecision::Refused("revoked".into()));

    let (status, _) = h.admin(Method::DELETE, &base, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.admin(Method::GET, &base, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, m) = h
        .admin(
            Method::GET,
            &format!("/api/v1/networks/{net}/members/{other}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m["ipv4"], "10.147.0.2");
}

#[tokio::test]
async fn preauth_keys_are_shown_once_and_work_once() {
    let h = Harness::new().await;
    let net = h.network("prod").await;
    let path = format!("/api/v1/networks/{net}/keys");
    let (status, made) = h
        .admin(Method::POST, &path, Some(json!({ "expires": "1h" })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let secret = made["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("wk_"));
    assert_eq!(made["reusable"], false);
    assert!(made["expires_at"].as_str().is_some());

    let (_, list) = h.admin(Method::GET, &path, None).await;
    let listed = list.to_string();
    assert!(!listed.contains(&secret), "secrets never listed");
    assert_eq!(list["keys"][0]["usable"], true);

    let (_, first) = join(&h, &net, "a", Some(&secret)).await;
    assert_eq!(first, JoinDecision::Authorized);
    let (_, second) = join(&h, &net, "b", Some(&secret)).await;
    assert!(matches!(second, JoinDecision::Refused(_)));
    let (_, list) = h.admin(Method::GET, &path, None).await;
    assert_eq!(
        (
            list["keys"][0]["uses"].as_u64(),
            list["keys"][0]["usable"].as_bool()
        ),
        (Some(1), Some(false))
    );

    let (_, reusable) = h
        .admin(Method::POST, &path, Some(json!({ "reusable": true })))
        .await;
    let reusable_secret = reusable["key"].as_str().unwrap();
    for name in ["c", "d", "e"] {
        assert_eq!(
            join(&h, &net, name, Some(reusable_secret)).await.1,
            JoinDecision::Authorized
        );
    }
    // A key of another network does nothing here.
    let other = h.network("other").await;
    let (_, foreign) = h
        .admin(
            Method::POST,
            &format!("/api/v1/networks/{other}/keys"),
            Some(json!({})),
        )
        .await;
    let (_, d) = join(&h, &net, "f", foreign["key"].as_str()).await;
    assert!(matches!(d, JoinDecision::Refused(_)));

    for bad in [
        json!({ "expires": "soon" }),
        json!({ "expires": "0s" }),
        json!({ "expires": "500years" }),
    ] {
        let (status, body) = h.admin(Method::POST, &path, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        error_code(&body);
    }
    let id = reusable["id"].as_str().unwrap();
    let (status, _) = h.admin(Method::DELETE, &format!("{path}/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, g) = join(&h, &net, "g", Some(reusable_secret)).await;
    assert!(
        matches!(g, JoinDecision::Refused(_)),
        "a deleted key is dead"
    );
}

#[tokio::test]
async fn audit_pages_filters_and_verifies() {
    let h = Harness::new().await;
    let prod = h.network("prod").await;
    let other = h.network("other").await;
    for _ in 0..3 {
        h.admin(
            Method::POST,
            &format!("/api/v1/networks/{prod}/keys"),
            Some(json!({})),
        )
        .await;
    }
    join(&h, &prod, "n1", None).await;

    let (status, page) = h.admin(Method::GET, "/api/v1/audit?limit=2", None).await;
    assert_eq!(status, StatusCode::OK);
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "token.create");
    assert_eq!(entries[0]["actor"], "system");
    let after = page["next_after"].as_i64().unwrap();
    let (_, rest) = h
        .admin(
            Method::GET,
            &format!("/api/v1/audit?after={after}&limit=1000"),
            None,
        )
        .await;
    let rest = rest["entries"].as_array().unwrap().clone();
    assert_eq!(rest[0]["id"].as_i64(), Some(after + 1));
    let actions: Vec<&str> = rest.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "network.create",
            "network.create",
            "key.create",
            "key.create",
            "key.create",
            "member.join"
        ]
    );
    assert_eq!(rest[0]["actor"], "token:admin");
    assert!(rest[5]["actor"].as_str().unwrap().starts_with("node:"));
    assert_eq!(rest[5]["after"]["requested_name"], "n1");
    for pair in rest.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }

    let (_, filtered) = h
        .admin(Method::GET, &format!("/api/v1/audit?network={other}"), None)
        .await;
    assert_eq!(filtered["entries"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["next_after"], json!(null));
    let (_, future) = h
        .admin(
            Method::GET,
            "/api/v1/audit?since=2999-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(future["entries"], json!([]));
    for bad in [
        "since=yesterday",
        "network=zz",
        "limit=0",
        "limit=5000",
        "after=x",
        "bogus=1",
    ] {
        let (status, body) = h
            .admin(Method::GET, &format!("/api/v1/audit?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    let (_, report) = h.admin(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(
        (&report["ok"], &report["entries"]),
        (&json!(true), &json!(8))
    );
    assert_eq!(report["head"]["id"], 8);
}

#[tokio::test]
async fn the_audit_log_is_append_only_and_tampering_is_detected() {
    let h = Harness::new().await;
    h.network("prod").await;
    h.network("other").await;
    let pool = h.raw_pool().await;
    let update = sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
        .execute(&pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM audit_log WHERE id = 3")
        .execute(&pool)
        .await;
    assert!(delete.is_err());

    // Someone with the file drops the triggers and rewrites history.
    sqlx::query(sqlx::AssertSqlSafe(
        h.drop_audit_trigger("audit_log_no_update"),
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (status, report) = h.admin(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&report["ok"], &report["entries"], &report["first_bad"]),
        (&json!(false), &json!(4), &json!(3))
    );
}
